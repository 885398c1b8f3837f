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
service by service through the key index.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from decimal import Decimal
from functools import singledispatchmethod
from typing import IO, Any, Final, NamedTuple

import msgspec
from eventsourcing.application import Application
from eventsourcing.persistence import (
    IntegrityError,
    JSONTranscoder,
    Mapper,
    Notification,
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
from ledger.errors import StoreError
from ledger.events import Recorded, decode_state
from ledger.policy import Policy, resolve
from ledger.runtime import paused_gc
from ledger.store import LedgerRecorder, reference_key
from projections.affected import Known, Pair, affected, walk_back
from projections.contracts import ContractVersion
from projections.model import Report

APP_NAME: Final = "ledger"  # the tracked application: positions are the ledger's notification ids
PROJECTION: Final = "reporting"
PAGE: Final = 5000  # notifications per batch transaction
TABLES: Final = ("report_monthly_availability", "report_downtime_intervals", "report_credit_entitlements")
TRACKING_TABLE: Final = f"{PROJECTION}_tracking"  # PostgreSQL (SQLite: the library's `tracking`)


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


# --- views ---------------------------------------------------------------------


class ReportingView(ABC):
    """What the projection needs from a tracking recorder holding the report tables."""

    @abstractmethod
    def max_tracking_id(self, application_name: str) -> int | None:
        """The tracked position (None: never written)."""

    @abstractmethod
    def replace(self, pairs: Iterable[Pair], reports: Sequence[Report], tracking: Tracking) -> None:
        """In one transaction: move tracking forward, replace the rows of ``pairs`` by ``reports``."""

    @abstractmethod
    def reset(self, chunks: Iterable[Sequence[Report]], tracking: Tracking | None) -> None:
        """In one transaction: empty the view and its tracking, then write the reports and ``tracking``."""

    @contextmanager
    def rebuilding(self, tracking: Tracking | None) -> Iterator[Callable[[list[tuple[int, bytes]]], None]]:
        """A writer of encoded groups of reports that replace the whole view, with ``tracking``.

        Each call takes a task's ``(count, msgpack of reports)`` pairs. Here they wait
        in a temporary file, not in memory, and are written by ``reset`` in one short
        transaction when the block ends: a write transaction held for the whole rebuild
        would hold SQLite's single write lock, and with it every append. Nothing is
        written if the block raises.
        """
        with tempfile.TemporaryFile() as spool:
            yield lambda part: _spool(spool, part)
            spool.seek(0)
            self.reset(_gathered(_unspool(spool), WRITE_BATCH), tracking)

    @abstractmethod
    def wall_to_wall(self) -> set[Pair]:
        """Contract-months whose downtime is the whole month."""

    @abstractmethod
    def ledger_recorder(self) -> LedgerRecorder:
        """A reader of the ledger in the same database."""


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
)
_WIDTH: Final = (14, 9, 8)  # columns of each table, in TABLES order


class SQLiteReportingView(SQLiteTrackingRecorder, ReportingView):
    """The report tables in the ledger's SQLite file, with the library's ``tracking`` table."""

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *_SQLITE_TABLES]

    def replace(self, pairs: Iterable[Pair], reports: Sequence[Report], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as c:
            # Tracking first: a worker that lost the race fails here, before touching rows.
            self._insert_tracking(c, tracking)
            keys = list(pairs)
            for table in TABLES:
                c.executemany(f"DELETE FROM {table} WHERE contract = ? AND month = ?", keys)  # noqa: S608
            self._write(c, reports)

    def reset(self, chunks: Iterable[Sequence[Report]], tracking: Tracking | None) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("DELETE FROM tracking WHERE application_name = ?", (APP_NAME,))
            for table in TABLES:
                c.execute(f"DELETE FROM {table}")  # noqa: S608
            for reports in chunks:
                self._write(c, reports)
            if tracking is not None:
                self._insert_tracking(c, tracking)

    def _write(self, c: SQLiteCursor, reports: Sequence[Report]) -> None:
        for table, width, values in zip(TABLES, _WIDTH, rows(reports, text=True), strict=True):
            if values:
                marks = ", ".join("?" * width)
                c.executemany(f"INSERT INTO {table} VALUES ({marks})", values)  # noqa: S608

    def wall_to_wall(self) -> set[Pair]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT contract, month FROM report_monthly_availability "
                "WHERE downtime_seconds = total_seconds"
            )
            return {(r[0], r[1]) for r in c.fetchall()}

    def ledger_recorder(self) -> LedgerRecorder:
        from ledger.sqlite import SQLiteLedgerRecorder

        return SQLiteLedgerRecorder(self.datastore)


class PostgresReportingView(PostgresTrackingRecorder, ReportingView):
    """The report tables in the ledger's PostgreSQL schema, with the library's tracking table."""

    def __init__(
        self, datastore: PostgresDatastore, *, tracking_table_name: str = TRACKING_TABLE,
        **kwargs: Any,
    ) -> None:
        super().__init__(datastore, tracking_table_name=tracking_table_name, **kwargs)
        schema = Identifier(self.datastore.schema)
        self.sql_create_statements.extend(SQL(t).format(schema=schema) for t in _PG_TABLES)
        self.sql_delete_pairs = [
            SQL(
                "DELETE FROM {schema}.{table} "
                "WHERE (contract, month) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
            ).format(schema=schema, table=Identifier(t))
            for t in TABLES
        ]
        self.sql_delete_all = [SQL("DELETE FROM {schema}.{table}").format(schema=schema, table=Identifier(t))
                               for t in TABLES]
        self.sql_copy = [SQL("COPY {schema}.{table} FROM STDIN").format(schema=schema, table=Identifier(t))
                         for t in TABLES]
        self.sql_reset_tracking = SQL("DELETE FROM {schema}.{table} WHERE application_name = %s").format(
            schema=schema, table=Identifier(self.tracking_table_name)
        )
        self.sql_wall_to_wall = SQL(
            "SELECT contract, month FROM {schema}.report_monthly_availability "
            "WHERE downtime_seconds = total_seconds"
        ).format(schema=schema)

    def replace(self, pairs: Iterable[Pair], reports: Sequence[Report], tracking: Tracking) -> None:
        keys = list(pairs)
        with self.datastore.transaction(commit=True) as curs:
            # Tracking first: it takes the tracking row's lock, so concurrent workers queue here
            # and the loser fails (position not ahead any more) before touching a row.
            self._insert_tracking(curs, tracking)
            for stmt in self.sql_delete_pairs:
                curs.execute(stmt, ([k[0] for k in keys], [k[1] for k in keys]))
            self._write(curs, reports)

    def reset(self, chunks: Iterable[Sequence[Report]], tracking: Tracking | None) -> None:
        with self._replacing(tracking) as curs:
            for reports in chunks:
                self._write(curs, reports)

    @contextmanager
    def rebuilding(self, tracking: Tracking | None) -> Iterator[Callable[[list[tuple[int, bytes]]], None]]:
        """``ReportingView.rebuilding``, written while the workers run, in one transaction.

        The view's tables are the only ones it locks, so appends go on; readers see
        the old view until the commit. Writing at the end instead left the second core
        idle for most of a second per 1M events.
        """
        with self._replacing(tracking) as curs:
            pending: list[Report] = []

            def write(part: list[tuple[int, bytes]]) -> None:
                for _, data in part:
                    pending.extend(_spool_decoder.decode(data))
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
            curs.execute(self.sql_reset_tracking, (APP_NAME,))
            for stmt in self.sql_delete_all:
                curs.execute(stmt)
            yield curs
            if tracking is not None:
                self._insert_tracking(curs, tracking)

    def _write(self, curs: Cursor[DictRow], reports: Sequence[Report]) -> None:
        for stmt, values in zip(self.sql_copy, rows(reports, text=False), strict=True):
            if values:
                with curs.copy(stmt) as copy:
                    for row in values:
                        copy.write_row(row)

    def wall_to_wall(self) -> set[Pair]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.sql_wall_to_wall)
            return {(r["contract"], r["month"]) for r in curs.fetchall()}

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
        names = [f"{schema}.{t}" for t in (*TABLES, pg_view.tracking_table_name)]
        with recorder.datastore.get_connection() as conn:
            row = conn.execute(
                "SELECT bool_and(to_regclass(format('%%I.%%I', %s::text, t)) IS NOT NULL) AS found, "
                "has_schema_privilege(%s, 'CREATE') AS may FROM unnest(%s::text[]) t",
                (schema, schema, [*TABLES, pg_view.tracking_table_name]),
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


# --- evaluation ----------------------------------------------------------------


class Evaluator:
    """Evaluates contract-months from a ``Known`` index (policies resolved once per version).

    An index that keeps positions only needs ``reader`` to fetch each month's facts,
    unless the caller passes them.
    """

    def __init__(self, known: Known, reader: LedgerRecorder | None = None) -> None:
        self.known = known
        self.reader = reader
        self._policies: dict[tuple[str, int], Policy] = {}

    def report(self, pair: Pair, upto: int, records: list[Recorded] | None = None) -> Report:
        """The pair's report from the facts folded so far (``upto`` is the last position folded).

        ``records``: what ``Known.positions_for`` named, fetched by the caller.
        """
        from projections.availability import evaluate

        contract, month = pair
        version = self.known.version_in_force(contract, month)
        key = (contract, version.version)
        policy = self._policies.get(key)
        if policy is None:
            policy = self._policies[key] = resolve(version.policy)
        if records is None and self.known.keep:
            records = self.known.records_for(contract, month)
        elif records is None:
            if self.reader is None:
                raise ValueError("an index of positions needs a reader to fetch the facts")
            records = list(self.reader.read_positions(self.known.positions_for(contract, month)))
        return evaluate(records, policy, version.version, month, as_of_position=upto).report


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

    def __init__(self, view: ReportingView) -> None:
        super().__init__(view)
        self.reader = view.ledger_recorder()
        # Positions only: a long-running worker would otherwise hold every fact it has seen
        # (about 475 bytes each decoded); each month's facts are read again when it is evaluated.
        self.known = Known(keep=False)
        self.evaluator = Evaluator(self.known, self.reader)
        self._loaded = False

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

    def catch_up(self, page: int = PAGE) -> int:
        """The batch path: process pages of notifications until the ledger's head; returns the position."""
        self._load()
        while True:
            # Another worker (or a rebuild) may be ahead: skip to where the view is.
            self._fold_to(self.tracked)
            batch = list(self.reader.read_records(self.known.position + 1, self.known.position + page))
            if not batch:
                return self.known.position
            self.apply(batch)

    def apply(self, batch: Sequence[Recorded]) -> bool:
        """Fold ``batch`` (the next positions) and write what it changes; False if another worker did."""
        if not batch:
            return False
        first, last = batch[0].position, batch[-1].position
        if first != self.known.position + 1:
            raise ProjectionError(f"expected position {self.known.position + 1}, got {first}")
        held_before = self.known.all_held()
        self.known.add_all(batch)
        tracked = self.tracked
        if tracked >= last:
            return False
        if tracked < first - 1:
            raise ProjectionError(
                f"the reporting view is at position {tracked} but this worker at {first - 1}: "
                "run `ledger projections rebuild`"
            )
        pairs = affected(batch, self.known, held_before)
        reports = self._recompute(pairs, last)
        try:
            self.view.replace(reports.keys(), list(reports.values()), Tracking(APP_NAME, last))
        except IntegrityError:
            return False  # another worker wrote this position first: its rows are as good as ours
        return True

    def _recompute(self, pairs: set[Pair], upto: int) -> dict[Pair, Report]:
        """Reports for ``pairs`` and for the earlier months whose downtime stretch may reach them."""
        old = self.view.wall_to_wall() if pairs else set()
        held = self.known.all_held()
        reports: dict[Pair, Report] = {}
        todo = set(pairs)
        while todo:
            for pair in sorted(todo):
                reports[pair] = self.evaluator.report(pair, upto)

            def full(pair: Pair) -> bool:
                r = reports.get(pair)
                return pair in old or (r is not None and r.downtime_seconds == r.total_seconds)

            todo = walk_back(set(reports), self.known, held, full)
        return reports


# --- commands ------------------------------------------------------------------


class RebuildResult(msgspec.Struct, frozen=True):
    """What a rebuild did and how fast."""

    events: int
    pairs: int
    seconds: float

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
    """
    started = time.perf_counter()
    view = open_view(ledger.recorder)
    head = ledger.recorder.last_position()
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
                workers, mp_context=context, initializer=_open_worker_ledger, initargs=(ledger.url,)))
            parts = pool.map(_evaluate_groups, chunks, [head] * len(chunks))
        else:
            parts = (_groups_reports(ledger, chunk, head) for chunk in chunks)
        for part in parts:
            write(part)
            pairs += sum(n for n, _ in part)
    return RebuildResult(events=head, pairs=pairs, seconds=time.perf_counter() - started)


GROUPS_PER_TASK: Final = 10
_spool_decoder: Final = msgspec.msgpack.Decoder(list[Report])


def _spool(spool: IO[bytes], part: list[tuple[int, bytes]]) -> None:
    """Append a task's groups (count, msgpack of their reports) to the spool."""
    for _, data in part:
        spool.write(len(data).to_bytes(8, "big"))
        spool.write(data)


def _unspool(spool: IO[bytes]) -> Iterator[list[Report]]:
    """One group's reports at a time."""
    while size := spool.read(8):
        yield _spool_decoder.decode(spool.read(int.from_bytes(size, "big")))


# Reports written to the view per statement (per table): what the parent holds while writing.
# One group at a time meant three COPY statements per service on PostgreSQL: 1.8 s of a 10 s
# rebuild of 1M events, most of it round trips.
WRITE_BATCH: Final = 1000


def _gathered(groups: Iterable[list[Report]], size: int) -> Iterator[list[Report]]:
    """Consecutive groups' reports, joined into lists of at least ``size`` (the last one shorter)."""
    batch: list[Report] = []
    for reports in groups:
        batch.extend(reports)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _groups_reports(
    ledger: Ledger, groups: Sequence[tuple[list[str], list[str]]], head: int
) -> list[tuple[int, bytes]]:
    """Each group's report count and reports, encoded: compact to hold and to hand to the parent."""
    reports: list[tuple[int, bytes]] = []
    # A group's facts and indexes are freed by reference counting when the next one starts.
    with paused_gc():
        for services, contracts in groups:
            group = _group_reports(ledger.recorder, services, contracts, head)
            reports.append((len(group), msgspec.msgpack.encode(group)))
    return reports


# Decoded facts a rebuild worker keeps to fold each month without reading or decoding it again.
FACT_BUDGET: Final = 32 * 1024 * 1024  # bytes, counted as twice each fact's stored state
# (a decoded fact takes about twice its stored state: 475 bytes against 233 on average in
# the benchmark's data)


def _group_reports(
    reader: LedgerRecorder, services: list[str], contracts: list[str], head: int
) -> list[Report]:
    """Every held month of one service group, in memory bounded by a budget, not by the history.

    The group's facts are streamed once through the key index into a ``Known`` that
    keeps positions only (plus the references to their ids, read second); then each
    contract-month evaluates just the facts ``positions_for`` names. The decoded
    facts are kept up to ``FACT_BUDGET``; one past it is read and decoded again
    when its month comes, and dropped after.
    """
    known = Known(keep=False)
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
    reports: list[Report] = []
    for cid, months in known.all_held().items():
        for month in months:
            positions = known.positions_for(cid, month)
            missing = [p for p in positions if p not in kept]
            fetched = {p: decode_state(p, s) for p, s in reader.read_position_states(missing)}
            records = [kept[p] if p in kept else fetched[p] for p in positions]
            reports.append(evaluator.report((cid, month), head, records))
    return reports


_worker_ledger: list[Ledger] = []  # a worker process's own connection, opened once


def _open_worker_ledger(url: str) -> None:
    from ledger.application import open_ledger

    _worker_ledger.append(open_ledger(url, create=False))


def _evaluate_groups(groups: Sequence[tuple[list[str], list[str]]], head: int) -> list[tuple[int, bytes]]:
    """Worker process: evaluate some service groups as of ``head``."""
    return _groups_reports(_worker_ledger[0], groups, head)


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
    """How far a projection has got."""

    projection: str
    position: int
    head: int

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


def status(ledger: Ledger) -> list[Status]:
    """Per projection: its tracked position and the ledger's head."""
    view = open_view(ledger.recorder)
    position = int(view.max_tracking_id(APP_NAME) or 0)
    return [Status(projection=PROJECTION, position=position, head=ledger.recorder.last_position())]


def _postgres_env(url: str) -> dict[str, str]:
    from ledger.postgres import parse_postgres_url

    args = parse_postgres_url(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(args["dbname"]),
        "POSTGRES_HOST": str(args["host"]),
        "POSTGRES_PORT": str(args["port"]),
        "POSTGRES_USER": str(args["user"]),
        "POSTGRES_PASSWORD": str(args["password"]),
        "POSTGRES_ORIGINATOR_ID_TYPE": "text",  # stream ids are fact ids (ledger.postgres)
        # The tables exist already (open_view made them under a lock); concurrent DDL fails.
        "CREATE_TABLE": "false",
    }


def run(
    ledger: Ledger,
    url: str,
    *,
    once: bool = False,
    interval: float = 1.0,
    stop: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Keep the view up to date until ``stop`` is set (or SIGTERM/SIGINT); ``once``: catch up and return.

    PostgreSQL: catch up in pages, then follow with the library's ``ProjectionRunner``
    (LISTEN/NOTIFY). SQLite has no subscription: poll every ``interval`` seconds.
    Returns the tracked position when it stops.
    """
    from ledger.postgres import PostgresLedgerRecorder

    view = open_view(ledger.recorder)
    projection = ReportingProjection(view)
    position = projection.catch_up()
    if progress is not None:
        progress(position)
    if once:
        return position
    stop = stop or threading.Event()
    with _stopped_by_signals(stop):
        if isinstance(ledger.recorder, PostgresLedgerRecorder):
            runner: ProjectionRunner[LedgerApplication, Any] = ProjectionRunner(
                application_class=LedgerApplication,
                projection_class=ReportingProjection,
                view_class=PostgresReportingView,
                env=_postgres_env(url),
            )
            with runner:
                while not stop.wait(min(interval, 1.0)):
                    # Re-raises an error of the processing thread; returns at once when stopped.
                    runner.run_forever(timeout=0)
                    if runner.is_interrupted.is_set():
                        break
            return projection.tracked
        while not stop.wait(interval):
            position = projection.catch_up()
            if progress is not None:
                progress(position)
    return projection.tracked


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

