"""Paged reads of the log by position for the SQL backends (no eventsourcing import: read commands use it).

``ledger.persistence.sql.SQLRecorder`` (the library's recorders) and the SQLite reader
(``ledger.persistence.sqlite.reads``) both read the log this way.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, Final

from ledger.events import Recorded, decode_state
from ledger.persistence.port import PAGE, LedgerRecorder

OLD_FORMAT: Final = (
    "this store was written by an earlier ledger format (uuid5 stream ids); the ledger now uses "
    "fact ids as stream ids: export it with the earlier version's `ledger events` and import "
    "that into a new store"
)
END: Final = 2**62  # above every position


class PagedReader(LedgerRecorder):
    """A ledger recorder reading the log a page of positions at a time."""

    # (position, state) and (position, originator_id, topic, state) from a first to a last
    # position, at most a page of them: parameters (first, last, limit).
    sql_read: Any
    sql_read_raw: Any

    @abstractmethod
    def _fetch(self, query: Any, params: Sequence[Any]) -> list[Any]:
        """Every row of one read-only query, as tuples."""

    @abstractmethod
    def max_notification_id(self) -> int | None:
        """The highest position recorded (the library's notification id)."""

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

    def last_position(self) -> int:
        return self.max_notification_id() or 0
