"""What the SQLite and PostgreSQL recorders share: paged reads (``ledger.persistence.paged``), the view."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from eventsourcing.persistence import PersistenceError

from ledger.errors import StoreError
from ledger.persistence.paged import OLD_FORMAT, PagedReader
from ledger.persistence.port import ReportingView

__all__ = ["OLD_FORMAT", "SQLRecorder"]


class SQLRecorder(PagedReader):
    """A ledger recorder on one of the eventsourcing library's SQL application recorders."""

    store_errors: ClassVar[tuple[type[BaseException], ...]] = (PersistenceError, StoreError)
    datastore: Any
    # The backend's reporting view: opened (tables made if needed), or found as it is.
    view_opener: Callable[[Any], ReportingView]
    view_finder: Callable[[Any], tuple[ReportingView, set[str]] | None]

    def open_view(self) -> ReportingView:
        return self.view_opener(self.datastore)

    def existing_view(self) -> tuple[ReportingView, set[str]] | None:
        return self.view_finder(self.datastore)

    def close(self) -> None:
        self.datastore.close()
