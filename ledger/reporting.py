"""Reporting projections: SQL tables that reporting jobs read, kept up to date from the ledger.

Three tables (docs/reporting.md) hold, per contract-month, the report's figures,
its intervals and its credit. They live in the ledger's own database, written by a
tracking recorder of the eventsourcing library (``SQLiteReportingView`` /
``PostgresReportingView``): the rows of a batch and the tracking position
(application "ledger", position = notification id) are written in one transaction,
so the view is always exactly "the ledger up to position N".

``ReportingProjection`` processes notifications one at a time (``process_event``,
what the library's ``ProjectionRunner`` calls) or a page at a time (``catch_up``):
fold the new facts into an in-memory index (``projections.affected.Known``), ask
which contract-months they can change, recompute each of those once, write rows
and tracking together. Several workers may run against one PostgreSQL: the
tracking row only moves forward, so a worker that lost the race for a position
gets an IntegrityError from the library, rolls back, and skips ahead.

``rebuild`` resets the view and its tracking and recomputes every contract-month
service by service through the key index. It holds the view's fence for its whole run,
and every write of a worker takes it too, so the two never interleave; tracking never
moves back. A contract-month whose fold raises is recorded in ``report_failed_months``
instead of stopping the view (docs/decisions.md, issue 15).
"""

from __future__ import annotations

import ctypes
import fcntl
import multiprocessing
import os
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from decimal import Decimal
from functools import singledispatchmethod
from typing import IO, Any, Final, NamedTuple

import msgspec
import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    JSONTranscoder,
    Mapper,
    Notification,
    OperationalError,
    PersistenceError,
    StoredEvent,
    Tracking,
)
from eventsourcing.postgres import PostgresDatastore, PostgresFactory, PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.sqlite import SQLiteCursor, SQLiteTrackingRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from ledger.application import Ledger
from ledger.errors import StoreError, one_line
from ledger.events import Recorded, decode_state
from ledger.policy import Policy, resolve
from ledger.runtime import paused_gc
from ledger.store import LedgerRecorder, reference_key
from projections.affected import Affected, Known, Pair, affected, walk_back
from projections.contracts import ContractVersion
from projections.model import Credit, Report

APP_NAME: Final = "ledger"  # the tracked application: positions are the ledger's notification ids
PROJECTION: Final = "reporting"
PAGE: Final = 5000  # notifications per batch transaction
TABLES: Final = ("report_monthly_availability", "report_downtime_intervals", "report_credit_entitlements")
TRACKING_TABLE: Final = f"{PROJECTION}_tracking"  # PostgreSQL (SQLite: the library's `tracking`)
FAILED_TABLE: Final = "report_failed_months"  # contract-months the fold could not evaluate


class ProjectionError(StoreError):
    """The view cannot follow the ledger (e.g. its tracking was removed by hand)."""


# --- rows ----------------------------------------------------------------------


def _utc(instant: datetime) -> datetime:
    return instant.astimezone(UTC)


def _iso(instant: datetime) -> str:
    # RFC 3339 in UTC ("...Z"): sorts as text, and an offset change at DST cannot reorder it.
    return msgspec.json.encode(_utc(instant)).decode()[1:-1]


class Rows(NamedTuple):
    """The three tables' rows for a set of reports, in one backend's column types."""

    monthly: list[tuple[Any, ...]]
    intervals: list[tuple[Any, ...]]
    credits: list[tuple[Any, ...]]


def rows(reports: Iterable[Report], *, text: bool) -> Rows:
    """Rows for the view; ``text``: SQLite (decimals, instants and booleans as text/integers)."""

    def dec(value: Decimal) -> str | Decimal:
        return str(value) if text else value

    def flag(value: bool) -> int | bool:
        return int(value) if text else value

    def at(value: datetime) -> str | datetime:
        return _iso(value) if text else _utc(value)

    out = Rows([], [], [])
    for r in reports:
        out.monthly.append((
            r.contract, r.month, r.policy_version, r.timezone,
            dec(r.total_seconds), dec(r.outage_seconds), dec(r.maintenance_seconds),
            dec(r.excused_seconds), dec(r.downtime_seconds),
            r.availability_percent, r.target_percent, flag(r.target_met), r.as_of_position, r.digest,
        ))  # fmt: skip
        for seq, i in enumerate(r.intervals, 1):
            out.intervals.append((
                r.contract, r.month, seq, at(i.start), at(i.end), dec(i.seconds), i.kind, i.reason,
                " ".join(str(p) for p in i.events),
            ))  # fmt: skip
        c = r.credit
        out.credits.append((
            r.contract, r.month, c.percent, c.amount, c.long_outage_amount, c.currency, c.claim,
            flag(c.payable),
        ))  # fmt: skip
    return out


class Failed(msgspec.Struct, frozen=True, array_like=True):
    """A contract-month the fold could not evaluate: at which position, and the error as one line."""

    contract: str
    month: str
    position: int
    error: str


ERROR_CHARS: Final = 500  # of a failure's message kept in the view: enough for the cause, not a dump


def failure(pair: Pair, position: int, exc: BaseException) -> Failed:
    """``exc`` as the record of ``pair`` failing at ``position``."""
    text = one_line(f"{type(exc).__name__}: {exc}")
    if len(text) > ERROR_CHARS:
        text = text[: ERROR_CHARS - 3] + "..."
    return Failed(pair[0], pair[1], position, text)


# --- views ---------------------------------------------------------------------


def _refuse_backwards(current: int | None, tracking: Tracking | None) -> None:
    """Tracking never moves back: a view older than its position would be taken for current."""
    new = tracking.notification_id if tracking is not None else 0
    if (current or 0) > new:
        raise ProjectionError(
            f"the reporting view is at position {current}: refusing to move it back to {new}"
        )


class ReportingView(ABC):
    """What the projection needs from a tracking recorder holding the report tables."""

    @abstractmethod
    def max_tracking_id(self, application_name: str) -> int | None:
        """The tracked position (None: never written)."""

    @abstractmethod
    def fence(self) -> AbstractContextManager[None]:
        """Held by a rebuild from before it reads the head until its view is written.

        ``replace`` takes the same fence, shared, for each of its transactions: no
        follower writes while a rebuild runs, and afterwards tracking (which only moves
        forward) refuses the follower's positions the rebuild already covers.
        """

    @abstractmethod
    def replace(
        self, pairs: Iterable[Pair], reports: Sequence[Report], tracking: Tracking,
        failed: Sequence[Failed] = (),
    ) -> None:
        """In one transaction, in the fence: move tracking forward, replace the rows and failures of pairs."""

    @abstractmethod
    def reset(self, chunks: Iterable[Sequence[Report | Failed]], tracking: Tracking | None) -> None:
        """In one transaction: empty the view, write ``chunks``, set tracking to ``tracking`` (never back)."""

    @contextmanager
    def rebuilding(self, tracking: Tracking | None) -> Iterator[Callable[[list[tuple[int, bytes]]], None]]:
        """A writer of encoded groups of reports that replace the whole view, with ``tracking``.

        Each call takes a task's ``(count, msgpack of reports and failures)`` pairs. Here
        they wait in a temporary file, not in memory, and are written by ``reset`` in one
        short transaction when the block ends: a write transaction held for the whole
        rebuild would hold SQLite's single write lock, and with it every append. Nothing
        is written if the block raises.
        """
        with tempfile.TemporaryFile() as spool:
            yield lambda part: _spool(spool, part)
            spool.seek(0)
            self.reset(_gathered(_unspool(spool), WRITE_BATCH), tracking)

    @abstractmethod
    def wall_to_wall(self, contracts: Collection[str]) -> set[Pair]:
        """Months of ``contracts`` whose downtime is the whole month, and their failed ones (as whole)."""

    @abstractmethod
    def failures(self, limit: int) -> tuple[int, list[Failed]]:
        """How many contract-months failed, and the first ``limit`` of them by contract and month."""

    @abstractmethod
    def ledger_recorder(self) -> LedgerRecorder:
        """A reader of the ledger in the same database."""


def _split(items: Iterable[Report | Failed]) -> tuple[list[Report], list[Failed]]:
    reports: list[Report] = []
    failed: list[Failed] = []
    for item in items:
        if isinstance(item, Failed):
            failed.append(item)
        else:
            reports.append(item)
    return reports, failed


_SQLITE_TABLES: Final = (
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
)
_PG_TABLES: Final = (
    "CREATE TABLE IF NOT EXISTS {schema}.report_monthly_availability ("
    "contract text NOT NULL, month text NOT NULL, policy_version integer NOT NULL, timezone text NOT NULL, "
    "total_seconds numeric NOT NULL, outage_seconds numeric NOT NULL, maintenance_seconds numeric NOT NULL, "
    "excused_seconds numeric NOT NULL, downtime_seconds numeric NOT NULL, "
    "availability_percent text NOT NULL, target_percent text NOT NULL, target_met boolean NOT NULL, "
    "as_of_position bigint NOT NULL, digest text NOT NULL, PRIMARY KEY (contract, month))",
    "CREATE TABLE IF NOT EXISTS {schema}.report_downtime_intervals ("
    "contract text NOT NULL, month text NOT NULL, seq integer NOT NULL, start timestamptz NOT NULL, "
    '"end" timestamptz NOT NULL, seconds numeric NOT NULL, kind text NOT NULL, reason text NOT NULL, '
    "events text NOT NULL, PRIMARY KEY (contract, month, seq))",
    "CREATE TABLE IF NOT EXISTS {schema}.report_credit_entitlements ("
    "contract text NOT NULL, month text NOT NULL, percent text NOT NULL, amount text NOT NULL, "
    "long_outage_amount text NOT NULL, currency text NOT NULL, claim text NOT NULL, "
    "payable boolean NOT NULL, PRIMARY KEY (contract, month))",
    "CREATE TABLE IF NOT EXISTS {schema}.report_failed_months ("
    "contract text NOT NULL, month text NOT NULL, position bigint NOT NULL, error text NOT NULL, "
    "PRIMARY KEY (contract, month))",
)
_WIDTH: Final = (14, 9, 8)  # columns of each table, in TABLES order
FENCE_SUFFIX: Final = "-projections.lock"  # SQLite: the fence is a lock on this file next to the database
_IN_CHUNK: Final = 500  # SQLite parameters per IN list (older builds allow 999 per statement)


class SQLiteReportingView(SQLiteTrackingRecorder, ReportingView):
    """The report tables in the ledger's SQLite file, with the library's ``tracking`` table."""

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *_SQLITE_TABLES]

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

    def replace(
        self, pairs: Iterable[Pair], reports: Sequence[Report], tracking: Tracking,
        failed: Sequence[Failed] = (),
    ) -> None:
        keys = list(pairs)
        # The fence before SQLite's write lock: waiting for a rebuild must not stop appends.
        with self._flock(fcntl.LOCK_SH), self.datastore.transaction(commit=True) as c:
            # Tracking first: a worker that lost the race fails here, before touching rows.
            self._insert_tracking(c, tracking)
            for table in (*TABLES, FAILED_TABLE):
                c.executemany(f"DELETE FROM {table} WHERE contract = ? AND month = ?", keys)  # noqa: S608
            self._write(c, [*reports, *failed])

    def reset(self, chunks: Iterable[Sequence[Report | Failed]], tracking: Tracking | None) -> None:
        with self.datastore.transaction(commit=True) as c:
            # A write first takes SQLite's write lock, so the position read next holds until the commit.
            c.execute(f"DELETE FROM {FAILED_TABLE}")  # noqa: S608
            c.execute("SELECT notification_id FROM tracking WHERE application_name = ?", (APP_NAME,))
            row = c.fetchone()
            _refuse_backwards(row[0] if row else None, tracking)
            c.execute("DELETE FROM tracking WHERE application_name = ?", (APP_NAME,))
            for table in TABLES:
                c.execute(f"DELETE FROM {table}")  # noqa: S608
            for items in chunks:
                self._write(c, items)
            if tracking is not None:
                self._insert_tracking(c, tracking)

    def _write(self, c: SQLiteCursor, items: Sequence[Report | Failed]) -> None:
        reports, failed = _split(items)
        for table, width, values in zip(TABLES, _WIDTH, rows(reports, text=True), strict=True):
            if values:
                marks = ", ".join("?" * width)
                c.executemany(f"INSERT INTO {table} VALUES ({marks})", values)  # noqa: S608
        if failed:
            c.executemany(f"INSERT INTO {FAILED_TABLE} VALUES (?, ?, ?, ?)",  # noqa: S608
                          [(f.contract, f.month, f.position, f.error) for f in failed])

    def wall_to_wall(self, contracts: Collection[str]) -> set[Pair]:
        names = sorted(set(contracts))
        out: set[Pair] = set()
        with self.datastore.transaction(commit=False) as c:
            for i in range(0, len(names), _IN_CHUNK):
                part = names[i : i + _IN_CHUNK]
                marks = ", ".join("?" * len(part))
                c.execute(
                    "SELECT contract, month FROM report_monthly_availability "  # noqa: S608
                    f"WHERE contract IN ({marks}) AND downtime_seconds = total_seconds "
                    f"UNION ALL SELECT contract, month FROM report_failed_months WHERE contract IN ({marks})",
                    [*part, *part],
                )
                out.update((r[0], r[1]) for r in c.fetchall())
        return out

    def failures(self, limit: int) -> tuple[int, list[Failed]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT count(*) FROM {FAILED_TABLE}")  # noqa: S608
            count = c.fetchone()[0]
            c.execute(f"SELECT contract, month, position, error FROM {FAILED_TABLE} "  # noqa: S608
                      "ORDER BY contract, month LIMIT ?", (limit,))
            return int(count), [Failed(*r) for r in c.fetchall()]

    def ledger_recorder(self) -> LedgerRecorder:
        from ledger.sqlite import SQLiteLedgerRecorder

        return SQLiteLedgerRecorder(self.datastore)


# PostgreSQL: the fence is the advisory lock (_FENCE_LOCK, hashtext(schema)), one per ledger schema.
_FENCE_LOCK: Final = 0x1ED6E7


class PostgresReportingView(PostgresTrackingRecorder, ReportingView):
    """The report tables in the ledger's PostgreSQL schema, with the library's tracking table."""

    def __init__(
        self, datastore: PostgresDatastore, *, tracking_table_name: str = TRACKING_TABLE,
        **kwargs: Any,
    ) -> None:
        super().__init__(datastore, tracking_table_name=tracking_table_name, **kwargs)
        schema = Identifier(self.datastore.schema)
        tracking = Identifier(self.tracking_table_name)
        self.sql_create_statements.extend(SQL(t).format(schema=schema) for t in _PG_TABLES)
        self.sql_delete_pairs = [
            SQL(
                "DELETE FROM {schema}.{table} "
                "WHERE (contract, month) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
            ).format(schema=schema, table=Identifier(t))
            for t in (*TABLES, FAILED_TABLE)
        ]
        self.sql_delete_all = [SQL("DELETE FROM {schema}.{table}").format(schema=schema, table=Identifier(t))
                               for t in (*TABLES, FAILED_TABLE)]
        self.sql_copy = [SQL("COPY {schema}.{table} FROM STDIN").format(schema=schema, table=Identifier(t))
                         for t in (*TABLES, FAILED_TABLE)]
        self.sql_current_tracking = SQL(
            "SELECT notification_id FROM {schema}.{table} WHERE application_name = %s FOR UPDATE"
        ).format(schema=schema, table=tracking)
        self.sql_reset_tracking = SQL("DELETE FROM {schema}.{table} WHERE application_name = %s").format(
            schema=schema, table=tracking
        )
        self.sql_wall_to_wall = SQL(
            "SELECT contract, month FROM {schema}.report_monthly_availability "
            "WHERE contract = ANY(%s::text[]) AND downtime_seconds = total_seconds "
            "UNION ALL SELECT contract, month FROM {schema}.report_failed_months "
            "WHERE contract = ANY(%s::text[])"
        ).format(schema=schema)
        self.sql_failures = SQL(
            "SELECT contract, month, position, error FROM {schema}.report_failed_months "
            "ORDER BY contract, month LIMIT %s"
        ).format(schema=schema)
        self.sql_count_failures = SQL("SELECT count(*) AS n FROM {schema}.report_failed_months").format(
            schema=schema
        )
        self.fence_key = (_FENCE_LOCK, self.datastore.schema)

    @contextmanager
    def fence(self) -> Iterator[None]:
        # A session lock on a connection of its own, for the whole rebuild; the server drops
        # it with the session if the process dies.
        with self.datastore.get_connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", self.fence_key)
            try:
                yield
            finally:
                with suppress(psycopg.Error):  # the connection is gone, and the lock with it
                    conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", self.fence_key)

    def replace(
        self, pairs: Iterable[Pair], reports: Sequence[Report], tracking: Tracking,
        failed: Sequence[Failed] = (),
    ) -> None:
        keys = list(pairs)
        with self.datastore.transaction(commit=True) as curs:
            # Shared: followers do not wait for each other here, only for a rebuild.
            curs.execute("SELECT pg_advisory_xact_lock_shared(%s, hashtext(%s))", self.fence_key)
            # Tracking next: it takes the tracking row's lock, so concurrent workers queue here
            # and the loser fails (position not ahead any more) before touching a row.
            self._insert_tracking(curs, tracking)
            for stmt in self.sql_delete_pairs:
                curs.execute(stmt, ([k[0] for k in keys], [k[1] for k in keys]))
            self._write(curs, [*reports, *failed])

    def reset(self, chunks: Iterable[Sequence[Report | Failed]], tracking: Tracking | None) -> None:
        with self._replacing(tracking) as curs:
            for items in chunks:
                self._write(curs, items)

    @contextmanager
    def rebuilding(self, tracking: Tracking | None) -> Iterator[Callable[[list[tuple[int, bytes]]], None]]:
        """``ReportingView.rebuilding``, written while the workers run, in one transaction.

        The view's tables are the only ones it locks, so appends go on; readers see
        the old view until the commit. Writing at the end instead left the second core
        idle for most of a second per 1M events.
        """
        with self._replacing(tracking) as curs:
            pending: list[Report | Failed] = []

            def write(part: list[tuple[int, bytes]]) -> None:
                for _, data in part:
                    pending.extend(_decoded(data))
                if len(pending) >= WRITE_BATCH:
                    self._write(curs, pending)
                    pending.clear()

            yield write
            if pending:
                self._write(curs, pending)

    @contextmanager
    def _replacing(self, tracking: Tracking | None) -> Iterator[Cursor[DictRow]]:
        """One transaction: empty the view and its tracking, let the block write, then ``tracking``."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self.sql_current_tracking, (APP_NAME,))
            row = curs.fetchone()
            _refuse_backwards(row["notification_id"] if row else None, tracking)
            curs.execute(self.sql_reset_tracking, (APP_NAME,))
            for stmt in self.sql_delete_all:
                curs.execute(stmt)
            yield curs
            if tracking is not None:
                self._insert_tracking(curs, tracking)

    def _write(self, curs: Cursor[DictRow], items: Sequence[Report | Failed]) -> None:
        reports, failed = _split(items)
        tables = [*rows(reports, text=False), [(f.contract, f.month, f.position, f.error) for f in failed]]
        for stmt, values in zip(self.sql_copy, tables, strict=True):
            if values:
                with curs.copy(stmt) as copy:
                    for row in values:
                        copy.write_row(row)

    def wall_to_wall(self, contracts: Collection[str]) -> set[Pair]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            names = sorted(set(contracts))
            curs.execute(self.sql_wall_to_wall, (names, names))
            return {(r["contract"], r["month"]) for r in curs.fetchall()}

    def failures(self, limit: int) -> tuple[int, list[Failed]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            counted = curs.execute(self.sql_count_failures).fetchone()
            count = int(counted["n"]) if counted else 0
            found = curs.execute(self.sql_failures, (limit,)).fetchall() if count else []
            return count, [Failed(r["contract"], r["month"], r["position"], r["error"]) for r in found]

    def ledger_recorder(self) -> LedgerRecorder:
        from ledger.postgres import PostgresLedgerRecorder

        return PostgresLedgerRecorder(self.datastore)


_SCHEMA_LOCK: Final = 0x1ED6E6  # advisory lock held while creating the view's tables


def open_view(recorder: LedgerRecorder) -> ReportingView:
    """The reporting view in the same database as ``recorder`` (tables created if needed).

    On PostgreSQL the tables are created only where one is missing: a role without the
    right to create tables (``ledger_projector``, ``ledger_reporting``) runs no DDL at all,
    and is told to run ``ledger init`` if the view has not been made yet.
    """
    from ledger.postgres import PostgresLedgerRecorder
    from ledger.sqlite import SQLiteLedgerRecorder

    if isinstance(recorder, SQLiteLedgerRecorder):
        sqlite_view = SQLiteReportingView(recorder.datastore)
        sqlite_view.create_table()
        return sqlite_view
    if isinstance(recorder, PostgresLedgerRecorder):
        pg_view = PostgresReportingView(recorder.datastore)
        schema = pg_view.datastore.schema
        made = [*TABLES, FAILED_TABLE, pg_view.tracking_table_name]
        names = [f"{schema}.{t}" for t in made]
        with recorder.datastore.get_connection() as conn:
            row = conn.execute(
                "SELECT bool_and(to_regclass(format('%%I.%%I', %s::text, t)) IS NOT NULL) AS found, "
                "has_schema_privilege(%s, 'CREATE') AS may FROM unnest(%s::text[]) t",
                (schema, schema, made),
            ).fetchone()
            if row is not None and row["found"]:
                return pg_view
            if row is None or not row["may"]:
                raise StoreError(
                    f"the reporting view's tables ({', '.join(names)}) do not exist and this role may not "
                    "create them: run `ledger init` as the owner of the ledger's tables"
                )
            # Two workers creating tables at once fail ("tuple concurrently updated").
            conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
            try:
                pg_view.create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))
        return pg_view
    raise StoreError(f"no reporting view for {type(recorder).__name__}")


def _existing_view(recorder: LedgerRecorder) -> tuple[ReportingView, set[str]] | None:
    """The reporting view and which of its tables exist, if its tracking table was ever made.

    Nothing is created: a view made by an earlier version may lack a table added since
    (``report_failed_months``); the next `projections run` or `rebuild` creates it.
    """
    from ledger.postgres import PostgresLedgerRecorder
    from ledger.sqlite import SQLiteLedgerRecorder

    view: ReportingView
    if isinstance(recorder, SQLiteLedgerRecorder):
        view = SQLiteReportingView(recorder.datastore)
        wanted = [*TABLES, FAILED_TABLE, "tracking"]  # the library's fixed tracking name
        with recorder.datastore.transaction(commit=False) as c:
            marks = ", ".join("?" * len(wanted))
            c.execute(f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({marks})",  # noqa: S608
                      wanted)
            found = {row[0] for row in c.fetchall()}
        tracking = "tracking"
    elif isinstance(recorder, PostgresLedgerRecorder):
        pg_view = PostgresReportingView(recorder.datastore)
        view, tracking = pg_view, pg_view.tracking_table_name
        wanted = [*TABLES, FAILED_TABLE, tracking]
        with recorder.datastore.get_connection() as conn:
            rows = conn.execute(
                "SELECT t FROM unnest(%s::text[]) t "
                "WHERE to_regclass(format('%%I.%%I', %s::text, t)) IS NOT NULL",
                (wanted, recorder.datastore.schema),
            ).fetchall()
        found = {row["t"] for row in rows}
    else:
        raise StoreError(f"no reporting view for {type(recorder).__name__}")
    return (view, found) if tracking in found else None


# --- evaluation ----------------------------------------------------------------


class Evaluator:
    """Evaluates contract-months from a ``Known`` index (policies resolved once per version).

    An index that keeps positions only needs ``reader`` to fetch each month's facts,
    unless the caller passes them.
    """

    def __init__(self, known: Known, reader: LedgerRecorder | None = None) -> None:
        self.known = known
        self.reader = reader
        self._policies: dict[tuple[str, int], tuple[Policy, Credit]] = {}

    def report(self, pair: Pair, upto: int, records: list[Recorded] | None = None) -> Report:
        """The pair's report from the facts folded so far (``upto`` is the last position folded).

        ``records``: what ``Known.positions_for`` named, fetched by the caller.
        """
        from projections.availability import evaluate, quiet_credit, quiet_report

        contract, month = pair
        version = self.known.version_in_force(contract, month)
        key = (contract, version.version)
        resolved = self._policies.get(key)
        if resolved is None:
            policy = resolve(version.policy)
            resolved = self._policies[key] = (policy, quiet_credit(policy))
        policy, quiet = resolved
        if records is None and self.known.keep:
            records = self.known.records_for(contract, month)
        elif records is None:
            positions = self.known.positions_for(contract, month)
            records = []
            if positions:
                if self.reader is None:
                    raise ValueError("an index of positions needs a reader to fetch the facts")
                records = list(self.reader.read_positions(positions))
        if not records:
            # Most held months have no fact at all (every month up to the clock is held).
            return quiet_report(policy, version.version, month, as_of_position=upto, credit=quiet)
        return evaluate(records, policy, version.version, month, as_of_position=upto).report

    def report_or_failure(
        self, pair: Pair, upto: int, records: list[Recorded] | None = None
    ) -> Report | Failed:
        """``report``, or the month marked failed: an error of the fold stops one month, not the view.

        An error of the store (reading the month's facts) is not the month's: it propagates.
        """
        try:
            return self.report(pair, upto, records)
        except _STORE_ERRORS:
            raise
        except Exception as exc:
            return failure(pair, upto, exc)


_STORE_ERRORS: Final = (PersistenceError, psycopg.Error, sqlite3.Error, StoreError)


# --- the projection ------------------------------------------------------------


class LedgerEvent(msgspec.Struct, frozen=True):
    """A ledger notification as a domain event for the library's subscription machinery."""

    originator_id: str
    originator_version: int
    record: Recorded


class MsgspecMapper(Mapper[str]):
    """Decodes the ledger's stored state (msgspec JSON) into ``LedgerEvent``s."""

    def __init__(self) -> None:
        # The base class wants a transcoder; ours is msgspec, used directly below.
        super().__init__(transcoder=JSONTranscoder())

    def to_domain_event(self, stored_event: StoredEvent) -> LedgerEvent:
        """The recorded fact behind a notification (position = notification id)."""
        if not isinstance(stored_event, Notification):
            raise TypeError("the ledger's mapper decodes notifications (it needs their position)")
        record = decode_state(stored_event.id, bytes(stored_event.state))
        oid = stored_event.originator_id
        version = stored_event.originator_version
        return LedgerEvent(str(oid), version, record)

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        raise NotImplementedError("facts are appended through ledger.store, not through the mapper")


class LedgerApplication(Application[str]):
    """The ledger as an eventsourcing application, for ``ProjectionRunner`` (PostgreSQL only)."""

    name = APP_NAME

    def construct_mapper(self) -> Mapper[str]:
        return MsgspecMapper()

    def construct_recorder(self) -> Any:
        from ledger.postgres import PostgresLedgerRecorder

        assert isinstance(self.factory, PostgresFactory)
        return PostgresLedgerRecorder(self.factory.datastore)


class ReportingProjection(Projection[Any]):
    """Keeps the report tables up to date, one notification or one page at a time."""

    name = PROJECTION
    topics = ()

    def __init__(self, view: ReportingView, known: Known | None = None) -> None:
        """``known``: an index another projection folded up to at most the view's position, to go on from."""
        super().__init__(view)
        self.reader = view.ledger_recorder()
        # Positions only: a long-running worker would otherwise hold every fact it has seen
        # (about 475 bytes each decoded); each month's facts are read again when it is evaluated.
        self.known = Known(keep=False) if known is None else known
        self.evaluator = Evaluator(self.known, self.reader)
        self._loaded = known is not None

    @property
    def tracked(self) -> int:
        """The view's tracked position (0: nothing yet)."""
        return int(self.view.max_tracking_id(APP_NAME) or 0)

    def _fold_to(self, position: int) -> None:
        """Fold the ledger into the index up to ``position`` without writing (someone else did)."""
        if position > self.known.position:
            self.known.add_all(self.reader.read_records(self.known.position + 1, position))

    def _load(self) -> None:
        if not self._loaded:
            self._fold_to(self.tracked)
            self._loaded = True

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Anything but a ledger event: nothing to project."""

    @process_event.register
    def _(self, domain_event: LedgerEvent, tracking: Tracking) -> None:
        """One notification: recompute what it changes, with tracking, in one transaction."""
        self._load()
        position = tracking.notification_id
        if position <= self.known.position:
            return  # folded already: written by the batch path, or skipped as someone else's
        self._fold_to(position - 1)
        record = domain_event.record
        self.apply([record])

    def catch_up(self, page: int = PAGE, stop: threading.Event | None = None) -> int:
        """The batch path: process pages until the ledger's head (or ``stop``); returns the position."""
        self._load()
        while stop is None or not stop.is_set():  # a stop waits for one page at most, not the backlog
            # Another worker (or a rebuild) may be ahead: skip to where the view is.
            self._fold_to(self.tracked)
            batch = list(self.reader.read_records(self.known.position + 1, self.known.position + page))
            if not batch:
                return self.known.position
            self.apply(batch)
        return self.known.position

    def apply(self, batch: Sequence[Recorded]) -> bool:
        """Fold ``batch`` (the next positions) and write what it changes; False if another worker did."""
        if not batch:
            return False
        first, last = batch[0].position, batch[-1].position
        if first != self.known.position + 1:
            raise ProjectionError(f"expected position {self.known.position + 1}, got {first}")
        self.known.settle()  # the rows as they were before this batch (others' batches included)
        self.known.add_all(batch)
        tracked = self.tracked
        if tracked >= last:
            return False
        if tracked < first - 1:
            raise ProjectionError(
                f"the reporting view is at position {tracked} but this worker at {first - 1}: "
                "run `ledger projections rebuild`"
            )
        reports, failed = self._recompute(affected(batch, self.known, self.known.settle()), last)
        try:
            self.view.replace([*reports, *failed], list(reports.values()), Tracking(APP_NAME, last),
                              list(failed.values()))
        except IntegrityError:
            return False  # another worker wrote this position first: its rows are as good as ours
        return True

    def _recompute(self, pairs: Affected, upto: int) -> tuple[dict[Pair, Report], dict[Pair, Failed]]:
        """Reports for ``pairs`` and for the earlier months whose downtime stretch may reach them.

        New rows that no fact reaches (``fresh``: months the clock or a widened span added)
        start no walk: no other month's figures depend on whether a row exists. A month the
        fold fails on is returned as failed; the others go on.
        """
        # Only the contracts whose months changed: a walk back never leaves its contract.
        old = self.view.wall_to_wall({c for c, _ in pairs.changed}) if pairs.changed else set()
        reports: dict[Pair, Report] = {}
        failed: dict[Pair, Failed] = {}
        todo = pairs.changed | pairs.fresh
        while todo:
            for pair in sorted(todo):
                out = self.evaluator.report_or_failure(pair, upto)
                if isinstance(out, Failed):
                    failed[pair] = out
                else:
                    reports[pair] = out

            def full(pair: Pair) -> bool:
                # A failed month's downtime is unknown: taken as whole, which recomputes more, never less.
                r = reports.get(pair)
                return pair in old or pair in failed or (
                    r is not None and r.downtime_seconds == r.total_seconds)

            todo = walk_back(todo - pairs.fresh, self.known, full, reports.keys() | failed.keys())
        return reports, failed


# --- commands ------------------------------------------------------------------


class RebuildResult(msgspec.Struct, frozen=True):
    """What a rebuild did and how fast."""

    events: int
    pairs: int
    seconds: float
    failed: int = 0  # contract-months the fold could not evaluate (``projections status`` lists them)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


PARALLEL_FROM: Final = 50_000  # events; below this, starting worker processes costs more than it saves


def rebuild(ledger: Ledger, *, workers: int | None = None) -> RebuildResult:
    """Reset the view and its tracking, then recompute every contract-month, one service at a time.

    Each group of services (contracts whose versions name several services join
    theirs) is read once through the key index and evaluated on its own, so memory
    is bounded by the largest service, not by the ledger, and facts no contract is
    about are never read. Groups are independent, so on a large ledger they are
    shared out among worker processes (one per core), each with its own connection.
    The view is replaced in one transaction (``ReportingView.rebuilding``: on SQLite
    the reports wait in a temporary file and are written in one short transaction at
    the end; on PostgreSQL they are written as they come), so readers never see a
    half-built view.

    The whole run is inside the view's fence, taken before the head is read: a
    follower's writes wait for it, and its positions at or below the rebuild's are
    then refused, so the view never goes back and no follower's row is lost. Worker
    processes end with this one, even when it is killed (``_die_with_parent``).
    """
    started = time.perf_counter()
    view = open_view(ledger.recorder)
    with view.fence():
        head, pairs = _rebuild_fenced(ledger, view, workers)
    failed, _ = view.failures(0)
    return RebuildResult(events=head, pairs=pairs, seconds=time.perf_counter() - started, failed=failed)


def _rebuild_fenced(ledger: Ledger, view: ReportingView, workers: int | None) -> tuple[int, int]:
    """``rebuild`` inside the fence: the head it rebuilt to, and the contract-months written."""
    head = ledger.recorder.last_position()
    # The ledger's clock: every contract's rows run to its month (a group sees only its own facts).
    clock = next((r.recorded_at for r in ledger.recorder.read_records(head, head)), None) if head else None
    groups = [(sorted(s), sorted(c)) for s, c in _service_groups(ledger.contracts(head))]
    if workers is None:
        # One worker per core on both stores. PostgreSQL once had two per core, to overlap
        # each worker's wait on the server with another's fold (1M events: 23 s with two
        # workers, 16 s with four); since a group is read by position in one statement, the
        # fold is the work, and two workers beat four on 2 cores in 6 of 7 alternated runs
        # (median 8.7 s against 9.6 s, and about 2 s less CPU).
        workers = min(os.cpu_count() or 1, 8) if head >= PARALLEL_FROM else 1
    chunks = [groups[i : i + GROUPS_PER_TASK] for i in range(0, len(groups), GROUPS_PER_TASK)]
    pairs = 0
    with view.rebuilding(Tracking(APP_NAME, head) if head else None) as write, ExitStack() as stack:
        parts: Iterable[list[tuple[int, bytes]]]
        if workers > 1 and len(chunks) > 1 and ledger.url is not None:
            context = multiprocessing.get_context("spawn")  # no fork: the parent holds connections
            pool = stack.enter_context(ProcessPoolExecutor(
                workers, mp_context=context, initializer=_open_worker_ledger,
                initargs=(ledger.url, os.getpid())))
            parts = pool.map(_evaluate_groups, chunks, [head] * len(chunks), [clock] * len(chunks))
        else:
            parts = (_groups_reports(ledger, chunk, head, clock) for chunk in chunks)
        for part in parts:
            write(part)
            pairs += sum(n for n, _ in part)
    return head, pairs


GROUPS_PER_TASK: Final = 10


class _Evaluated(msgspec.Struct, frozen=True, array_like=True):
    """A group's evaluation as it travels from a worker to the view (msgpack)."""

    reports: list[Report]
    failed: list[Failed]


_spool_decoder: Final = msgspec.msgpack.Decoder(_Evaluated)


def _decoded(data: bytes) -> list[Report | Failed]:
    group = _spool_decoder.decode(data)
    return [*group.reports, *group.failed]


def _spool(spool: IO[bytes], part: list[tuple[int, bytes]]) -> None:
    """Append a task's groups (count, msgpack of their reports) to the spool."""
    for _, data in part:
        spool.write(len(data).to_bytes(8, "big"))
        spool.write(data)


def _unspool(spool: IO[bytes]) -> Iterator[list[Report | Failed]]:
    """One group's reports at a time."""
    while size := spool.read(8):
        yield _decoded(spool.read(int.from_bytes(size, "big")))


# Reports written to the view per statement (per table): what the parent holds while writing.
# One group at a time meant three COPY statements per service on PostgreSQL: 1.8 s of a 10 s
# rebuild of 1M events, most of it round trips.
WRITE_BATCH: Final = 1000


def _gathered(groups: Iterable[list[Report | Failed]], size: int) -> Iterator[list[Report | Failed]]:
    """Consecutive groups' reports, joined into lists of at least ``size`` (the last one shorter)."""
    batch: list[Report | Failed] = []
    for reports in groups:
        batch.extend(reports)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _groups_reports(
    ledger: Ledger, groups: Sequence[tuple[list[str], list[str]]], head: int, clock: datetime | None
) -> list[tuple[int, bytes]]:
    """Each group's report count and reports, encoded: compact to hold and to hand to the parent."""
    reports: list[tuple[int, bytes]] = []
    # A group's facts and indexes are freed by reference counting when the next one starts.
    with paused_gc():
        for services, contracts in groups:
            done, failed = _split(_group_reports(ledger.recorder, services, contracts, head, clock))
            reports.append((len(done), msgspec.msgpack.encode(_Evaluated(done, failed))))
    return reports


# Decoded facts a rebuild worker keeps to fold each month without reading or decoding it again.
FACT_BUDGET: Final = 32 * 1024 * 1024  # bytes, counted as twice each fact's stored state
# (a decoded fact takes about twice its stored state: 475 bytes against 233 on average in
# the benchmark's data)


def _group_reports(
    reader: LedgerRecorder, services: list[str], contracts: list[str], head: int, clock: datetime | None,
    month: str | None = None,
) -> list[Report | Failed]:
    """Every held month of one service group, in memory bounded by a budget, not by the history.

    The group's facts are streamed once through the key index into a ``Known`` that
    keeps positions only (plus the references to their ids, read second); then each
    contract-month evaluates just the facts ``positions_for`` names (with ``month``, only
    that month of each of ``contracts``, held or not: ``ledger report --month``). The decoded
    facts are kept up to ``FACT_BUDGET``; one past it is read and decoded again
    when its month comes, and dropped after.
    """
    known = Known(keep=False)
    known.see_clock(clock)  # the ledger's latest recorded_at: the group's own facts may be older
    kept: dict[int, Recorded] = {}
    room = FACT_BUDGET
    refs: set[str] = set()

    def fold(rows: Iterable[tuple[int, bytes]], collect: bool) -> None:
        nonlocal room
        for position, state in rows:
            rec = decode_state(position, state)
            known.add(rec)
            cost = 2 * len(state)
            if cost <= room:
                kept[position] = rec
                room -= cost
            if collect and (ref := reference_key(rec.fact)) is not None:
                refs.add(ref)

    keys = [*("s:" + s for s in services), *("c:" + c for c in contracts), *("k:" + c for c in contracts)]
    fold(reader.read_keyed_states(keys, head), collect=True)
    if refs:
        fold(reader.read_keyed_states(sorted(refs), head), collect=False)
    evaluator = Evaluator(known)
    reports: list[Report | Failed] = []
    wanted = {cid: [month] for cid in contracts} if month is not None else known.all_held()
    for cid, months in wanted.items():
        for m in months:
            positions = known.positions_for(cid, m)
            missing = [p for p in positions if p not in kept]
            fetched = {p: decode_state(p, s) for p, s in reader.read_position_states(missing)}
            records = [kept[p] if p in kept else fetched[p] for p in positions]
            reports.append(evaluator.report_or_failure((cid, m), head, records))
    return reports


_worker_ledger: list[Ledger] = []  # a worker process's own connection, opened once


def _open_worker_ledger(url: str, parent: int) -> None:
    from ledger.application import open_ledger

    _die_with_parent(parent)
    _worker_ledger.append(open_ledger(url, create=False))


PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h
PARENT_POLL: Final = 0.5  # seconds between the watchdog's looks at the parent


def _die_with_parent(parent: int) -> None:
    """End this worker process as soon as ``parent`` dies, however it dies.

    A worker waits for tasks on a queue whose write end it holds itself, so it would
    never see its parent go: a rebuild killed with SIGKILL left its workers, and on
    PostgreSQL their server connections, alive for ever. Linux sends SIGKILL to the
    worker when the parent ends (PR_SET_PDEATHSIG); a watchdog thread checks the
    parent's pid too, where prctl is missing, and for a parent gone before the call.
    """
    if sys.platform == "linux":
        with suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watchdog", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(1)  # orphaned: reparented to init or a subreaper


def _evaluate_groups(
    groups: Sequence[tuple[list[str], list[str]]], head: int, clock: datetime | None
) -> list[tuple[int, bytes]]:
    """Worker process: evaluate some service groups as of ``head``."""
    return _groups_reports(_worker_ledger[0], groups, head, clock)


def _service_groups(versions: dict[str, list[ContractVersion]]) -> list[tuple[set[str], set[str]]]:
    """Services joined by the contracts that name them (across versions), with those contracts."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for vs in versions.values():
        services = [v.policy.contract.service for v in vs]
        for other in services[1:]:
            parent[root(other)] = root(services[0])
        root(services[0])
    groups: dict[str, tuple[set[str], set[str]]] = {}
    for cid, vs in sorted(versions.items()):
        named = {v.policy.contract.service for v in vs}
        g = groups.setdefault(root(next(iter(named))), (set(), set()))
        g[0].update(named)
        g[1].add(cid)
    return [groups[k] for k in sorted(groups)]


class Status(msgspec.Struct, frozen=True):
    """How far a projection has got, and which of its contract-months failed."""

    projection: str
    position: int
    head: int
    failed: int = 0
    failures: list[Failed] = msgspec.field(default_factory=list)  # the first few, by contract and month

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


SHOWN_FAILURES: Final = 5


def status(ledger: Ledger, *, failures: int = SHOWN_FAILURES) -> list[Status]:
    """Per projection: tracked position, ledger head and failed contract-months (creates nothing)."""
    existing = _existing_view(ledger.recorder)
    head = ledger.recorder.last_position()
    if existing is None:
        return [Status(projection=PROJECTION, position=0, head=head)]
    view, tables = existing
    position = int(view.max_tracking_id(APP_NAME) or 0)
    failed, first = view.failures(failures) if FAILED_TABLE in tables else (0, [])
    return [Status(projection=PROJECTION, position=position, head=head, failed=failed, failures=first)]


RECONNECT_FIRST: Final = 0.5  # seconds before the first reconnection attempt; doubled after each failure
RECONNECT_MAX: Final = 15.0  # the cap on that wait
# What a lost connection or a restarting server raises (the library wraps psycopg's errors in its own).
_CONNECTION_ERRORS: Final = (
    psycopg.OperationalError, psycopg.InterfaceError, OperationalError, InterfaceError)


def run(
    ledger: Ledger,
    url: str,
    *,
    once: bool = False,
    interval: float = 1.0,
    stop: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> int:
    """Keep the view up to date until ``stop`` is set (or SIGTERM/SIGINT); ``once``: catch up and return.

    PostgreSQL: catch up in pages, then follow with the library's ``ProjectionRunner``
    (LISTEN/NOTIFY); a lost connection (a server restart) is retried with a growing
    wait, one line to ``log`` (stderr) per attempt, and the worker goes on from the
    view's tracking. SQLite has no subscription: poll every ``interval`` seconds. A stop
    is seen between pages. Returns the tracked position when it stops.
    """
    from ledger.postgres import PostgresLedgerRecorder

    stop = stop or threading.Event()
    with _stopped_by_signals(stop):
        if isinstance(ledger.recorder, PostgresLedgerRecorder) and not once:
            return _follow_postgres(ledger, url, interval, stop, progress, log or _to_stderr)
        projection = ReportingProjection(open_view(ledger.recorder))
        while True:
            position = projection.catch_up(stop=stop)
            if progress is not None:
                progress(position)
            if once or stop.wait(interval):
                return projection.tracked


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _follow_postgres(
    ledger: Ledger,
    url: str,
    interval: float,
    stop: threading.Event,
    progress: Callable[[int], None] | None,
    log: Callable[[str], None],
) -> int:
    """``run`` on PostgreSQL: catch up, follow, and on a lost connection reconnect and go on."""
    from ledger.application import open_ledger
    from ledger.urls import scrub

    current = ledger
    opened: Ledger | None = None  # a ledger opened here on reconnecting (the caller closes its own)
    projection: ReportingProjection | None = None
    position = 0
    attempt = 0
    try:
        while not stop.is_set():
            try:
                if attempt:
                    # A probe fails at once while the server is down; the pool would wait its timeout.
                    psycopg.connect(url, connect_timeout=5).close()
                    if opened is not None:
                        opened.close()
                    opened = current = open_ledger(url, create=False)
                projection = _resumed(current, projection)
                position = projection.catch_up(stop=stop)
                if progress is not None:
                    progress(position)
                attempt = 0
                if stop.is_set():
                    break
                position = _follow(projection, url, interval, stop)
            except _CONNECTION_ERRORS as exc:
                attempt += 1
                wait = min(RECONNECT_FIRST * 2 ** (attempt - 1), RECONNECT_MAX)
                reason = scrub(one_line(' '.join(str(exc).split())), url)  # libpq may echo the URL
                log(f"projections run: connection lost ({reason}); "
                    f"reconnecting in {wait:g} s (attempt {attempt})")
                stop.wait(wait)
            else:
                break
        if projection is not None and not attempt:  # connected: where the view is now
            with suppress(*_CONNECTION_ERRORS):
                position = projection.tracked
        return position
    finally:
        if opened is not None:
            opened.close()


def _resumed(ledger: Ledger, before: ReportingProjection | None) -> ReportingProjection:
    """A projection on ``ledger``'s view, going on from ``before``'s index where that is safe.

    The index is kept if it is not ahead of the view: a connection lost after a batch
    was folded in but before its rows were written leaves it ahead, and it is rebuilt.
    """
    view = open_view(ledger.recorder)
    if before is not None and before.known.position <= int(view.max_tracking_id(APP_NAME) or 0):
        return ReportingProjection(view, before.known)
    return ReportingProjection(view)


def _follow(projection: ReportingProjection, url: str, interval: float, stop: threading.Event) -> int:
    """Follow new facts (LISTEN/NOTIFY) with ``projection``'s index until ``stop``; raises what stops it."""
    from ledger.postgres import runner_env

    known = projection.known

    class Following(ReportingProjection):
        name = PROJECTION

        def __init__(self, view: ReportingView) -> None:
            # The catch-up's index, handed over: one index in memory, and no second load of it.
            super().__init__(view, known)

    runner: ProjectionRunner[LedgerApplication, Any] = ProjectionRunner(
        application_class=LedgerApplication,
        projection_class=Following,
        view_class=PostgresReportingView,
        env=runner_env(url),  # every parameter of the URL, not the library's five
    )
    try:
        with runner:
            while not stop.wait(min(interval, 1.0)):
                # Re-raises an error of the processing thread; returns at once when stopped.
                runner.run_forever(timeout=0)
                if runner.is_interrupted.is_set():
                    break
    finally:
        runner.view.datastore.close()  # the runner closes its application's connections, not the view's
    return known.position


class _stopped_by_signals:  # lower case: reads as a function in a `with` statement
    """Set ``stop`` on SIGTERM and SIGINT while inside (main thread only)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.saved: list[tuple[int, Any]] = []

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.saved.append((sig, signal.signal(sig, lambda *_: self.stop.set())))

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved:
            with suppress(ValueError, TypeError):
                signal.signal(sig, handler)

