"""The composition root: turns a store URL (or ``LEDGER_STORE``) into recorders, views and a ``Ledger``.

The CLI, the rebuild's worker processes, the benchmarks and the tests open stores
here; nothing else chooses a backend.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from datetime import datetime
from typing import Final

import msgspec

from ledger.application import Ledger, utc_now
from ledger.errors import BadInput, StoreError
from ledger.persistence.port import LedgerRecorder, ReportingView
from ledger.text import printable
from ledger.urls import DEFAULT_STORE, EXPECTED, backend_of, check_url_text, redact, sqlite_path, store_url

__all__ = ["DEFAULT_STORE", "in_recovery", "library_env", "open_ledger", "open_recorder", "open_view",
           "roles", "sqlite_path", "store_url", "writable"]


class StoreURL(msgspec.Struct, frozen=True):
    """A store URL checked for its form: a SQLite file path or libpq connection parameters."""

    url: str  # as given: worker processes open their own connections with it
    shown: str  # for messages: no password, no control character
    path: str | None = None  # SQLite: the file, as written
    params: dict[str, str] = {}  # PostgreSQL: libpq keywords (a new dict for each)


def parse_store_url(url: str) -> StoreURL:
    """Check ``url``'s form (nothing is opened); a URL that cannot work is refused in one line."""
    shown = check_url_text(url)
    backend = backend_of(url)
    if backend == "sqlite":
        return StoreURL(url, shown, path=sqlite_path(url))
    if backend == "postgres":
        from ledger.persistence.postgres.connect import (
            connection_params,  # the driver is imported for PostgreSQL only
        )

        return StoreURL(url, shown, params=connection_params(url))
    raise BadInput(f"store URL {shown}: {EXPECTED}")


def open_recorder(url: str, *, create: bool = True, read_only: bool = False) -> LedgerRecorder:
    """Open the store a URL names (``sqlite:///...`` or ``postgresql://...``).

    Without ``create`` nothing is created: a store that holds no ledger is refused as
    ``not a ledger store``. ``read_only`` (implies not ``create``; read-only commands):
    on SQLite a reader on ``sqlite3`` alone, which opens the full recorder only if
    something else than a read is asked of it (issue 17: a report does not import the
    eventsourcing library); PostgreSQL opens its recorder either way.
    """
    store = parse_store_url(url)
    if store.path is not None and read_only:
        from ledger.persistence.sqlite.reads import open_reader

        return open_reader(store.path, _full_sqlite)
    if store.path is not None:
        from ledger.persistence.sqlite.recorder import open_sqlite

        parent = os.path.dirname(store.path)
        if create and parent and not os.path.isdir(parent):
            raise StoreError(f"store URL {store.shown}: directory {printable(parent)} does not exist")
        return open_sqlite(store.path, create=create)
    from ledger.persistence.postgres.recorder import open_postgres

    recorder = open_postgres(url, create=create)
    if create and in_recovery(recorder):
        recorder.close()
        raise StoreError(STANDBY.format(store=store.shown))
    return recorder


def _full_sqlite(path: str, lock_timeout: int) -> LedgerRecorder:
    """The eventsourcing library's SQLite recorder, for a reader asked something else than a read."""
    from ledger.persistence.sqlite.recorder import open_sqlite

    return open_sqlite(path, create=False, lock_timeout=lock_timeout)


# A write (or `init`) on a streaming replica: one line instead of the server's own words.
STANDBY: Final = ("store URL {store}: a hot standby (PostgreSQL in recovery, read-only); "
                  "read-only commands work here, writes and `ledger init` go to the primary")


def in_recovery(recorder: LedgerRecorder) -> bool:
    """Whether ``recorder``'s database is a PostgreSQL hot standby (read-only while it replays)."""
    datastore = getattr(recorder, "datastore", None)
    if datastore is None or not type(recorder).__module__.startswith("ledger.persistence.postgres"):
        return False
    with datastore.transaction(commit=False) as curs:
        curs.execute("SELECT pg_is_in_recovery() AS standby")
        row = curs.fetchone()
    return bool(row is not None and row["standby"])


def writable(ledger: Ledger) -> Ledger:
    """``ledger``, refused in one line if its store is a hot standby (for commands that write the view)."""
    if in_recovery(ledger.recorder):
        raise StoreError(STANDBY.format(store=redact(ledger.url or DEFAULT_STORE)))
    return ledger


def open_ledger(url: str | None = None, *, create: bool = True,
                clock: Callable[[], datetime] = utc_now, read_only: bool = False) -> Ledger:
    """Build the ledger application from a store URL (else ``LEDGER_STORE``, else the default).

    ``read_only``: for commands that only read (``open_recorder``); implies not ``create``.
    """
    resolved = store_url(url)
    # The rebuild's worker processes and a reconnecting follower open their own ledger with it.
    reopen = functools.partial(open_ledger, resolved, create=False)
    recorder = open_recorder(resolved, create=create and not read_only, read_only=read_only)
    return Ledger(recorder, clock, resolved, reopen=reopen)


def open_view(recorder: LedgerRecorder) -> ReportingView:
    """The reporting view in the same database as ``recorder`` (tables created if needed and allowed)."""
    return recorder.open_view()


def roles(recorder: LedgerRecorder, prefix: str = "ledger") -> list[str]:
    """Create (or bring up to date) the ledger's NOLOGIN roles and grants: PostgreSQL only."""
    from ledger.persistence.postgres.recorder import PostgresLedgerRecorder, create_roles

    if not isinstance(recorder, PostgresLedgerRecorder):
        raise BadInput("--roles: roles exist only on PostgreSQL (SQLite has no users)")
    return create_roles(recorder, prefix)


def library_env(url: str) -> dict[str, str]:
    """The eventsourcing library's own environment for a plain ``Application`` on the store at ``url``."""
    store = parse_store_url(url)
    if store.path is not None:
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": store.path}
    from ledger.persistence.postgres.connect import parse_postgres_url

    a = parse_postgres_url(url)
    return {"PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_DBNAME": a["dbname"],
            "POSTGRES_HOST": a["host"], "POSTGRES_PORT": str(a["port"]),
            "POSTGRES_USER": a["user"], "POSTGRES_PASSWORD": a["password"]}
