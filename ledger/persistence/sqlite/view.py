"""The reporting view on SQLite: the report tables in the ledger's file, with the library's tracking."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import ClassVar, Final

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.sqlite import SQLiteCursor, SQLiteDatastore, SQLiteTrackingRecorder

from ledger.persistence.port import (
    APP_NAME,
    FAILED_TABLE,
    ROW_TABLES,
    SUPPORT_TABLES,
    TABLES,
    Filling,
    LedgerRecorder,
    Pair,
    ProjectionError,
    ReportingView,
    refuse_backwards,
)
from ledger.persistence.rows import ViewRows

_TABLES: Final = (
    "CREATE TABLE IF NOT EXISTS report_monthly_availability ("
    "contract TEXT NOT NULL, month TEXT NOT NULL, policy_version INTEGER NOT NULL, timezone TEXT NOT NULL, "
    "total_seconds TEXT NOT NULL, outage_seconds TEXT NOT NULL, maintenance_seconds TEXT NOT NULL, "
    "excused_seconds TEXT NOT NULL, downtime_seconds TEXT NOT NULL, availability_percent TEXT NOT NULL, "
    "target_percent TEXT NOT NULL, target_met INTEGER NOT NULL, as_of_position INTEGER NOT NULL, "
    "digest TEXT NOT NULL, PRIMARY KEY (contract, month))",
    "CREATE TABLE IF NOT EXISTS report_downtime_intervals ("
    "contract TEXT NOT NULL, month TEXT NOT NULL, seq INTEGER NOT NULL, start TEXT NOT NULL, "
    '"end" TEXT NOT NULL, seconds TEXT NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL, '
    "events TEXT NOT NULL, PRIMARY KEY (contract, month, seq))",
    "CREATE TABLE IF NOT EXISTS report_credit_entitlements ("
    "contract TEXT NOT NULL, month TEXT NOT NULL, percent TEXT NOT NULL, amount TEXT NOT NULL, "
    "long_outage_amount TEXT NOT NULL, currency TEXT NOT NULL, claim TEXT NOT NULL, "
    "payable INTEGER NOT NULL, PRIMARY KEY (contract, month))",
    "CREATE TABLE IF NOT EXISTS report_failed_months ("
    "contract TEXT NOT NULL, month TEXT NOT NULL, position INTEGER NOT NULL, error TEXT NOT NULL, "
    "PRIMARY KEY (contract, month))",
    "CREATE TABLE IF NOT EXISTS report_support_tickets ("
    "contract TEXT NOT NULL, month TEXT NOT NULL, seq INTEGER NOT NULL, ticket TEXT NOT NULL, "
    "severity TEXT NOT NULL, kind TEXT NOT NULL, opened_at TEXT NOT NULL, responded_at TEXT, "
    "target TEXT NOT NULL, deadline TEXT, response_seconds TEXT NOT NULL, status TEXT NOT NULL, "
    "events TEXT NOT NULL, policy_version INTEGER NOT NULL, as_of_position INTEGER NOT NULL, "
    "digest TEXT NOT NULL, PRIMARY KEY (contract, month, seq))",
    "CREATE TABLE IF NOT EXISTS report_support_targets ("
    "contract TEXT NOT NULL, month TEXT NOT NULL, seq INTEGER NOT NULL, severity TEXT NOT NULL, "
    "target TEXT NOT NULL, kind TEXT NOT NULL, tickets INTEGER NOT NULL, met INTEGER, breached INTEGER, "
    "pending INTEGER, mean_seconds TEXT, mean_met INTEGER, policy_version INTEGER NOT NULL, "
    "as_of_position INTEGER NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (contract, month, seq))",
)
# "Every contract of a month" is a range read (the primary keys start with the contract).
_INDEXES: Final = tuple(
    f"CREATE INDEX IF NOT EXISTS {t}_by_month ON {t} (month, contract)" for t in (*TABLES, *SUPPORT_TABLES)
)
SHADOW: Final = "__rebuild"  # suffix of the tables a rebuild fills before they replace the view's
_WIDTH: Final = (14, 9, 8, 4, 16, 15)  # columns of each table, in ROW_TABLES order
FENCE_SUFFIX: Final = "-projections.lock"  # the fence is a lock on this file next to the database
_IN_CHUNK: Final = 500  # SQLite parameters per IN list (older builds allow 999 per statement)


class SQLiteReportingView(SQLiteTrackingRecorder, ReportingView):
    """The report tables in the ledger's SQLite file, with the library's ``tracking`` table."""

    text = True
    holds_appends = False  # a rebuild fills shadow tables in short transactions (``replacing``)
    reader_class: ClassVar[Callable[[SQLiteDatastore], LedgerRecorder]]  # set by the recorder's module

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *_TABLES, *_INDEXES]

    def fence(self) -> AbstractContextManager[None]:
        return self._flock(fcntl.LOCK_EX)

    @contextmanager
    def _flock(self, mode: int) -> Iterator[None]:
        """A lock on a file next to the database, dropped by the kernel when the process dies.

        Not SQLite's own lock: held for a whole rebuild, that would stop every append.
        An in-memory database lives in one process and has no fence.
        """
        pool = self.datastore.pool
        if pool.is_sqlite_memory_mode:
            yield
            return
        fd = os.open(pool.db_name + FENCE_SUFFIX, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # and with it the lock

    def replace(self, pairs: Iterable[Pair], rows: ViewRows, tracking: Tracking) -> None:
        keys = list(pairs)
        # The fence before SQLite's write lock: waiting for a rebuild must not stop appends.
        with self._flock(fcntl.LOCK_SH), self.datastore.transaction(commit=True) as c:
            # Tracking first: a worker that lost the race fails here, before touching rows.
            self._insert_tracking(c, tracking)
            for table in ROW_TABLES:
                c.executemany(f"DELETE FROM {table} WHERE contract = ? AND month = ?", keys)  # noqa: S608
            self._write(c, rows)

    @contextmanager
    def replacing(self, tracking: Tracking | None) -> Iterator[Callable[[ViewRows], None]]:
        """Fill shadow tables in short transactions, then swap them in with ``tracking`` in one.

        Appends go on between the writes (SQLite's write lock is held per chunk, not for the
        rebuild); readers see the old tables until the swap commits, and the old pages go
        back to the file's free list with the dropped tables (no bloat, no long DELETE).
        """
        names = ROW_TABLES
        with self.datastore.transaction(commit=True) as c:
            for name, ddl in zip(names, _TABLES, strict=True):
                c.execute(f"DROP TABLE IF EXISTS {name}{SHADOW}")
                c.execute(ddl.replace(f" {name} (", f" {name}{SHADOW} (", 1))
        try:
            yield Filling(lambda rows: self.fill(SHADOW, rows), SHADOW)
            with self.datastore.transaction(commit=True) as c:
                # The swap's writes take SQLite's write lock first, so the position read next
                # holds until the commit (and a refusal rolls the swap back).
                for name in names:
                    c.execute(f"DROP TABLE IF EXISTS {name}")
                    c.execute(f"ALTER TABLE {name}{SHADOW} RENAME TO {name}")
                for index in _INDEXES:
                    c.execute(index)
                c.execute("SELECT notification_id FROM tracking WHERE application_name = ?", (APP_NAME,))
                row = c.fetchone()
                refuse_backwards(row[0] if row else None, tracking)
                c.execute("DELETE FROM tracking WHERE application_name = ?", (APP_NAME,))
                if tracking is not None:
                    self._insert_tracking(c, tracking)
        except BaseException:
            with suppress(Exception), self.datastore.transaction(commit=True) as c:
                for name in names:
                    c.execute(f"DROP TABLE IF EXISTS {name}{SHADOW}")
            raise

    def fill(self, target: str, rows: ViewRows) -> None:
        if target != SHADOW:
            raise ProjectionError(f"no such tables to fill: {target!r}")
        # A rebuild's workers each write here: SQLite's write lock taken per chunk (busy timeout).
        with self.datastore.transaction(commit=True) as w:
            self._write(w, rows, SHADOW)

    def _write(self, c: SQLiteCursor, rows: ViewRows, suffix: str = "") -> None:
        for table, width, values in zip(ROW_TABLES, _WIDTH, rows, strict=True):
            if values:
                marks = ", ".join("?" * width)
                c.executemany(f"INSERT INTO {table}{suffix} VALUES ({marks})", values)  # noqa: S608

    def wall_to_wall(self, pairs: Collection[Pair]) -> set[Pair]:
        keys = sorted(set(pairs))
        out: set[Pair] = set()
        with self.datastore.transaction(commit=False) as c:
            for i in range(0, len(keys), _IN_CHUNK // 2):
                part = keys[i : i + _IN_CHUNK // 2]
                values = ", ".join(["(?, ?)"] * len(part))
                c.execute(
                    f"WITH k(c, m) AS (VALUES {values}) "  # noqa: S608
                    "SELECT r.contract, r.month FROM k JOIN report_monthly_availability r "
                    "ON r.contract = k.c AND r.month = k.m WHERE r.downtime_seconds = r.total_seconds "
                    "UNION ALL SELECT f.contract, f.month FROM k JOIN report_failed_months f "
                    "ON f.contract = k.c AND f.month = k.m",
                    [x for pair in part for x in pair],
                )
                out.update((r[0], r[1]) for r in c.fetchall())
        return out

    def failures(self, limit: int) -> tuple[int, list[tuple[str, str, int, str]]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT count(*) FROM {FAILED_TABLE}")  # noqa: S608
            count = c.fetchone()[0]
            c.execute(f"SELECT contract, month, position, error FROM {FAILED_TABLE} "  # noqa: S608
                      "ORDER BY contract, month LIMIT ?", (limit,))
            return int(count), [(r[0], r[1], r[2], r[3]) for r in c.fetchall()]

    def ledger_recorder(self) -> LedgerRecorder:
        return type(self).reader_class(self.datastore)


def open_view(datastore: SQLiteDatastore) -> SQLiteReportingView:
    """The reporting view in the ledger's SQLite file (tables created if needed)."""
    view = SQLiteReportingView(datastore)
    try:
        view.create_table()
    except IntegrityError:
        # Another process made the tables between the library's look for its tracking table
        # and its transaction (two `ledger init` at once on a new file): both insert the table's
        # migration row, and the second finds it there. Looked at again, the tables exist.
        view = SQLiteReportingView(datastore)
        view.create_table()
    return view


def existing_view(datastore: SQLiteDatastore) -> tuple[ReportingView, set[str]] | None:
    """The view and which of its tables exist, if its tracking table was ever made (creates nothing)."""
    wanted = [*ROW_TABLES, "tracking"]  # the library's fixed tracking name
    with datastore.transaction(commit=False) as c:
        marks = ", ".join("?" * len(wanted))
        c.execute(f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({marks})",  # noqa: S608
                  wanted)
        found = {row[0] for row in c.fetchall()}
    return (SQLiteReportingView(datastore), found) if "tracking" in found else None


