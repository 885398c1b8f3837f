"""Reporting projections: SQL tables that reporting jobs read, kept up to date from the ledger.

Over 400 lines: the tracked projection, its parallel rebuild and its runner share the
view's invariants (tracking only moves forward, the fence) and are read together.

Three tables (docs/reporting.md) hold, per contract-month, the report's figures,
its intervals and its credit. They live in the ledger's own database, written by a
tracking recorder of the eventsourcing library (each backend's ``ReportingView``):
the rows of a batch and the tracking position
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
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from decimal import Decimal
from functools import singledispatchmethod
from typing import IO, Any, Final, NamedTuple, Protocol

import msgspec
from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.projection import Projection

from ledger.contracts import ContractVersion
from ledger.errors import one_line
from ledger.events import Recorded, decode_state
from ledger.persistence.keys import month_keys, read_related
from ledger.persistence.notifications import LedgerEvent
from ledger.persistence.port import (
    APP_NAME,
    FAILED_TABLE,
    PAGE,
    PROJECTION,
    TABLES,
    TRACKING_TABLE,
    LedgerRecorder,
    ProjectionError,
    ReportingView,
    ViewRows,
)
from ledger.policy import Policy, resolve
from ledger.runtime import paused_gc
from ledger.urls import scrub
from projections.affected import Affected, Known, Pair, affected, walk_back
from projections.model import Credit, Report

__all__ = ["APP_NAME", "FAILED_TABLE", "PAGE", "TABLES", "TRACKING_TABLE", "ProjectionError", "Tracking"]


class LedgerLike(Protocol):
    """What the commands need of the ledger application (``ledger.application.Ledger``)."""

    recorder: LedgerRecorder
    reopen: Callable[[], Any] | None

    def contracts(self, upto: int | None = None) -> dict[str, list[ContractVersion]]: ...

    def close(self) -> None: ...


def open_view(recorder: LedgerRecorder) -> ReportingView:
    """The reporting view in the same database as ``recorder`` (tables created if needed and allowed)."""
    return recorder.open_view()


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


def view_rows(items: Iterable[Report | Failed], *, text: bool) -> ViewRows:
    """The view's rows for reports and failed months, in the column types of a ``text`` view or not."""
    reports, failed = _split(items)
    monthly, intervals, credits = rows(reports, text=text)
    return ViewRows(monthly, intervals, credits, [(f.contract, f.month, f.position, f.error) for f in failed])


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


ReportingView.row_maker = staticmethod(lambda items, text: view_rows(items, text=text))


def _split(items: Iterable[Report | Failed]) -> tuple[list[Report], list[Failed]]:
    reports: list[Report] = []
    failed: list[Failed] = []
    for item in items:
        if isinstance(item, Failed):
            failed.append(item)
        else:
            reports.append(item)
    return reports, failed


# --- evaluation ----------------------------------------------------------------


class Evaluator:
    """Evaluates contract-months from a ``Known`` index (policies resolved once per version).

    An index that keeps positions only needs ``reader`` to fetch each month's facts,
    unless the caller passes them.
    """

    def __init__(self, known: Known, reader: LedgerRecorder | None = None,
                 store_errors: tuple[type[BaseException], ...] | None = None) -> None:
        self.known = known
        self.reader = reader
        # What is the store's failure, not the month's: the reader's backend says.
        self.store_errors = store_errors if store_errors is not None else getattr(
            reader, "store_errors", LedgerRecorder.store_errors)
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
        if records is None:
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
        except self.store_errors:
            raise
        except Exception as exc:
            return failure(pair, upto, exc)


# --- the projection ------------------------------------------------------------


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
        self.known = Known() if known is None else known
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


def rebuild(ledger: LedgerLike, *, workers: int | None = None) -> RebuildResult:
    """Reset the view and its tracking, then recompute every contract-month, one service at a time.

    Each group of services (contracts whose versions name several services join
    theirs) is read once through the key index and evaluated on its own, so memory
    is bounded by the largest service, not by the ledger, and facts no contract is
    about are never read. Groups are independent, so on a large ledger they are
    shared out among worker processes (one per core), each with its own connection.
    The view is replaced in one transaction (``_rebuilding``: on SQLite
    the reports wait in a temporary file and are written in one short transaction at
    the end; on PostgreSQL they are written as they come), so readers never see a
    half-built view.

    The whole run is inside the view's fence, taken before the head is read: a
    follower's writes wait for it, and its positions at or below the rebuild's are
    then refused, so the view never goes back and no follower's row is lost. Worker
    processes end with this one, even when it is killed (``_die_with_parent``); each opens
    its own ledger with ``ledger.reopen`` (``ledger.bootstrap`` gives it).
    """
    started = time.perf_counter()
    view = ledger.recorder.open_view()
    with view.fence():
        head, pairs = _rebuild_fenced(ledger, view, workers)
    failed, _ = view.failures(0)
    return RebuildResult(events=head, pairs=pairs, seconds=time.perf_counter() - started, failed=failed)


def _rebuild_fenced(ledger: LedgerLike, view: ReportingView, workers: int | None) -> tuple[int, int]:
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
    with _rebuilding(view, Tracking(APP_NAME, head) if head else None) as write, ExitStack() as stack:
        parts: Iterable[list[tuple[int, bytes]]]
        if workers > 1 and len(chunks) > 1 and ledger.reopen is not None:
            context = multiprocessing.get_context("spawn")  # no fork: the parent holds connections
            pool = stack.enter_context(ProcessPoolExecutor(
                workers, mp_context=context, initializer=_open_worker_ledger,
                initargs=(ledger.reopen, os.getpid())))
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


@contextmanager
def _rebuilding(
    view: ReportingView, tracking: Tracking | None
) -> Iterator[Callable[[list[tuple[int, bytes]]], None]]:
    """A writer of encoded groups of reports that replace the whole view, with ``tracking``.

    Each call takes a task's ``(count, msgpack of reports and failures)`` pairs. Where one
    transaction held for the whole rebuild would hold the appends out (SQLite's single
    write lock), they wait in a temporary file, not in memory, and are written in one short
    transaction when the block ends. Elsewhere (PostgreSQL) they are written as they come,
    in one transaction: writing at the end left the second core idle for most of a second
    per 1M events. Nothing is written if the block raises.
    """
    if view.holds_appends:
        with tempfile.TemporaryFile() as spool:
            yield lambda part: _spool(spool, part)
            spool.seek(0)
            view.reset((view_rows(items, text=view.text)
                        for items in _gathered(_unspool(spool), WRITE_BATCH)), tracking)
        return
    with view.replacing(tracking) as write_rows:
        pending: list[Report | Failed] = []

        def write(part: list[tuple[int, bytes]]) -> None:
            for _, data in part:
                pending.extend(_decoded(data))
            if len(pending) >= WRITE_BATCH:
                write_rows(view_rows(pending, text=view.text))
                pending.clear()

        yield write
        if pending:
            write_rows(view_rows(pending, text=view.text))


def _groups_reports(
    ledger: LedgerLike, groups: Sequence[tuple[list[str], list[str]]], head: int, clock: datetime | None
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
    known = Known()
    known.see_clock(clock)  # the ledger's latest recorded_at: the group's own facts may be older
    kept: dict[int, Recorded] = {}
    room = FACT_BUDGET

    def fold(rec: Recorded, state: bytes) -> None:
        nonlocal room
        known.add(rec)
        cost = 2 * len(state)
        if cost <= room:
            kept[rec.position] = rec
            room -= cost

    for _ in read_related(reader, month_keys(services, contracts, versions=True), head, fold):
        pass
    evaluator = Evaluator(known, store_errors=getattr(reader, "store_errors", None))
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


_worker_ledger: list[LedgerLike] = []  # a worker process's own connection, opened once


def _open_worker_ledger(reopen: Callable[[], LedgerLike], parent: int) -> None:
    _die_with_parent(parent)
    _worker_ledger.append(reopen())


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


def status(ledger: LedgerLike, *, failures: int = SHOWN_FAILURES) -> list[Status]:
    """Per projection: tracked position, ledger head and failed contract-months (creates nothing)."""
    existing = ledger.recorder.existing_view()
    head = ledger.recorder.last_position()
    if existing is None:
        return [Status(projection=PROJECTION, position=0, head=head)]
    view, tables = existing
    position = int(view.max_tracking_id(APP_NAME) or 0)
    failed, first = view.failures(failures) if FAILED_TABLE in tables else (0, [])
    return [Status(projection=PROJECTION, position=position, head=head, failed=failed,
                   failures=[Failed(*f) for f in first])]


RECONNECT_FIRST: Final = 0.5  # seconds before the first reconnection attempt; doubled after each failure
RECONNECT_MAX: Final = 15.0  # the cap on that wait


def run(
    ledger: LedgerLike,
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
    stop = stop or threading.Event()
    with _stopped_by_signals(stop):
        if ledger.recorder.subscribes and not once:
            return _follow_postgres(ledger, url, interval, stop, progress, log or _to_stderr)
        projection = ReportingProjection(ledger.recorder.open_view())
        while True:
            position = projection.catch_up(stop=stop)
            if progress is not None:
                progress(position)
            if once or stop.wait(interval):
                return projection.tracked


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _follow_postgres(
    ledger: LedgerLike,
    url: str,
    interval: float,
    stop: threading.Event,
    progress: Callable[[int], None] | None,
    log: Callable[[str], None],
) -> int:
    """``run`` on PostgreSQL: catch up, follow, and on a lost connection reconnect and go on."""
    current = ledger
    lost = ledger.recorder.connection_errors
    opened: LedgerLike | None = None  # a ledger opened here on reconnecting (the caller closes its own)
    projection: ReportingProjection | None = None
    position = 0
    attempt = 0
    try:
        while not stop.is_set():
            try:
                if attempt:
                    current.recorder.reachable(url)
                    if ledger.reopen is None:
                        raise ProjectionError("cannot reconnect: this ledger cannot be opened again")
                    if opened is not None:
                        opened.close()
                    opened = current = ledger.reopen()
                projection = _resumed(current, projection)
                position = projection.catch_up(stop=stop)
                if progress is not None:
                    progress(position)
                attempt = 0
                if stop.is_set():
                    break
                position = _follow(projection, url, interval, stop)
            except lost as exc:
                attempt += 1
                wait = min(RECONNECT_FIRST * 2 ** (attempt - 1), RECONNECT_MAX)
                reason = scrub(one_line(' '.join(str(exc).split())), url)  # libpq may echo the URL
                log(f"projections run: connection lost ({reason}); "
                    f"reconnecting in {wait:g} s (attempt {attempt})")
                stop.wait(wait)
            else:
                break
        if projection is not None and not attempt:  # connected: where the view is now
            with suppress(*lost):
                position = projection.tracked
        return position
    finally:
        if opened is not None:
            opened.close()


def _resumed(ledger: LedgerLike, before: ReportingProjection | None) -> ReportingProjection:
    """A projection on ``ledger``'s view, going on from ``before``'s index where that is safe.

    The index is kept if it is not ahead of the view: a connection lost after a batch
    was folded in but before its rows were written leaves it ahead, and it is rebuilt.
    """
    view = ledger.recorder.open_view()
    if before is not None and before.known.position <= int(view.max_tracking_id(APP_NAME) or 0):
        return ReportingProjection(view, before.known)
    return ReportingProjection(view)


def _follow(projection: ReportingProjection, url: str, interval: float, stop: threading.Event) -> int:
    """Follow new facts (LISTEN/NOTIFY) with ``projection``'s index until ``stop``; raises what stops it."""
    known = projection.known

    class Following(ReportingProjection):
        name = PROJECTION

        def __init__(self, view: ReportingView) -> None:
            # The catch-up's index, handed over: one index in memory, and no second load of it.
            super().__init__(view, known)

    runner = projection.reader.follower(url, Following)
    if runner is None:
        raise ProjectionError("this store cannot be followed: it has no notifications (poll it)")
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

