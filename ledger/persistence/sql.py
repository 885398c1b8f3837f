"""What the SQLite and PostgreSQL recorders share: paged reads of the log, its last position, OLD_FORMAT."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Final

from eventsourcing.persistence import PersistenceError

from ledger.errors import StoreError
from ledger.events import Recorded, decode_state
from ledger.persistence.port import PAGE, LedgerRecorder, ReportingView

OLD_FORMAT: Final = (
    "this store was written by an earlier ledger format (uuid5 stream ids); the ledger now uses "
    "fact ids as stream ids: export it with the earlier version's `ledger events` and import "
    "that into a new store"
)
END: Final = 2**62  # above every position


class SQLRecorder(LedgerRecorder):
    """A ledger recorder on one of the eventsourcing library's SQL application recorders."""

    store_errors: ClassVar[tuple[type[BaseException], ...]] = (PersistenceError, StoreError)
    datastore: Any
    # (position, state) and (position, originator_id, topic, state) from a first to a last
    # position, at most a page of them: parameters (first, last, limit).
    sql_read: Any
    sql_read_raw: Any
    # The backend's reporting view: opened (tables made if needed), or found as it is.
    view_opener: Callable[[Any], ReportingView]
    view_finder: Callable[[Any], tuple[ReportingView, set[str]] | None]

    @abstractmethod
    def _fetch(self, query: Any, params: Sequence[Any]) -> list[Any]:
        """Every row of one read-only query, as tuples."""

    @abstractmethod
    def max_notification_id(self) -> int | None:
        """The library's highest notification id."""

    def _pages(self, query: Any, start: int, stop: int | None) -> Iterator[Any]:
        """Rows of ``query`` (parameters: first, last, limit; position first), a page at a time."""
        pos, end = start, stop if stop is not None else END
        while pos <= end:
            rows = self._fetch(query, (pos, end, PAGE))
            yield from rows
            if len(rows) < PAGE:
                return
            pos = rows[-1][0] + 1

    def read_records(self, start: int = 1, stop: int | None = None) -> Iterator[Recorded]:
        for row in self._pages(self.sql_read, start, stop):
            yield decode_state(row[0], row[1])

    def read_raw(self, start: int = 1) -> Iterator[tuple[int, str, str, bytes]]:
        for row in self._pages(self.sql_read_raw, start, None):
            yield row[0], row[1], row[2], bytes(row[3])

    def open_view(self) -> ReportingView:
        return self.view_opener(self.datastore)

    def existing_view(self) -> tuple[ReportingView, set[str]] | None:
        return self.view_finder(self.datastore)

    def last_position(self) -> int:
        return self.max_notification_id() or 0

    def close(self) -> None:
        self.datastore.close()
