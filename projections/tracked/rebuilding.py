"""Rebuilding the view: every contract-month, service group by group, shared out among worker processes.

``rebuild`` resets the view and its tracking and recomputes every contract-month
service by service through the key index. It holds the view's fence for its whole run,
and every write of a worker takes it too, so the two never interleave; tracking never
moves back. Where the view's ``replacing`` says what it fills (``Filling.target``: SQLite's
shadow tables, PostgreSQL's copy readers do not see), each worker writes its groups' rows there
itself (``ReportingView.fill``) and hands back their count; otherwise (a view filled by its
rebuild's writer alone, or a rebuild in one process) the reports travel from the workers as
msgpack and the parent writes them, and on a backend whose long transaction would hold appends
out (``holds_appends``; neither store today) they wait in a spool file.

Size: over 400 lines: the rebuild's three ways to the view (workers' own writes, the parent's,
a spool), its worker processes' start and end, and the group read they share belong together.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util
import os
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from datetime import datetime
from operator import itemgetter
from typing import IO, Final

import msgspec
from eventsourcing.persistence import Tracking

from ledger.events import (
    ExclusionDeclared,
    ForceMajeureDeclared,
    IncidentOpened,
    MaintenanceAnnounced,
    Recorded,
    TicketOpened,
    decode_state,
    decode_states,
)
from ledger.persistence.keys import (
    holidays_key,
    month_keys,
    opened_key,
    prefix_end,
    reference_key,
    service_ranges,
    ticket_key,
    tickets_key,
)
from ledger.persistence.port import APP_NAME, Filling, LedgerRecorder, ReportingView
from ledger.runtime import killed_with_parent, paused_gc
from ledger.workers import (
    fork_server_running,
    rebuild_modules,
    start_fork_server,
    stop_fork_server,
    worker_context,
)
from projections.affected import Known
from projections.model import Report
from projections.support_index import TICKET_FACTS, support_countries
from projections.tracked.evaluator import Evaluator
from projections.tracked.groups import service_groups
from projections.tracked.projection import LedgerLike
from projections.tracked.rows import Failed, Item, SupportRows, split, view_rows

_PART: Final = itemgetter(0)  # a row's part (``LedgerRecorder.read_key_parts_states``)
_POSITION: Final = itemgetter(1)  # its position
_STATE: Final = itemgetter(2)  # and its stored state
_TICKET_TYPES: Final = frozenset({TicketOpened, *TICKET_FACTS})  # what the ticket read below may repeat
# The facts whose ids corrections refer to: ``reference_key`` is None for every other type
# (``tests/unit/test_rebuild_reads.py``), so the rest skip its match statement.
_OPENINGS: Final = frozenset({IncidentOpened, MaintenanceAnnounced, ForceMajeureDeclared, ExclusionDeclared,
                              TicketOpened})
_NOTED: Final = _OPENINGS | _TICKET_TYPES  # the types the group's first read looks at again


class RebuildResult(msgspec.Struct, frozen=True):
    """What a rebuild did and how fast."""

    events: int
    pairs: int
    seconds: float
    failed: int = 0  # contract-months the fold could not evaluate (``projections status`` lists them)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


PARALLEL_FROM_EVENTS: Final = 50_000  # events; below this, starting worker processes costs more than it saves


def rebuild(ledger: LedgerLike, *, workers: int | None = None) -> RebuildResult:
    """Reset the view and its tracking, then recompute every contract-month, one service at a time.

    Each group of services (contracts whose versions name several services join
    theirs) is read once through the key index and evaluated on its own, so memory
    is bounded by the largest service, not by the ledger, and facts no contract is
    about are never read. Groups are independent, so on a large ledger they are
    shared out among worker processes (one per core), each with its own connection.
    The reports are written as they come (by the workers themselves where the view allows
    it, ``ReportingView.fill``) and the view is replaced at once
    (``ReportingView.replacing``: on SQLite into shadow tables swapped in at the end, on
    PostgreSQL into the copy readers do not see, made live at the end), so readers never
    see a half-built view.

    The whole run is inside the view's fence, taken before the head is read: a
    follower's writes wait for it, and its positions at or below the rebuild's are
    then refused, so the view never goes back and no follower's row is lost. Worker
    processes end with this one, even when it is killed (``_die_with_parent``); each opens
    its own ledger with ``ledger.reopen`` (``ledger.bootstrap`` gives it).
    """
    started = time.perf_counter()
    with ExitStack() as stack:
        # The workers start first (from a first look at the head), so that their start overlaps
        # this process's opening of the view, its fence, the contracts and the other copy's
        # emptying. The pool outlives the view's swap: the workers' exits overlap it. Should the
        # rebuild fail, they are stopped first, so none writes after the view's cleanup.
        if workers is None:
            # One worker per core on both stores. PostgreSQL once had two per core, to overlap
            # each worker's wait on the server with another's fold (1M events: 23 s with two
            # workers, 16 s with four); since a group is read by position in one statement, the
            # fold is the work, and two workers beat four on 2 cores in 6 of 7 alternated runs
            # (median 8.7 s against 9.6 s, and about 2 s less CPU).
            large = ledger.recorder.last_position() >= PARALLEL_FROM_EVENTS
            workers = min(os.cpu_count() or 1, 8) if large else 1
        pool = None
        if workers > 1 and ledger.reopen is not None:
            pool = _started_pool(stack, ledger, ledger.reopen, workers)
        elif fork_server_running():  # started ahead by the command (``ledger.workers``), not needed
            stop_fork_server(unused=True)
        view = ledger.recorder.open_view()
        with view.fence():
            head, pairs = _rebuild_fenced(ledger, view, pool)
    failed, _ = view.failures(0)
    return RebuildResult(events=head, pairs=pairs, seconds=time.perf_counter() - started, failed=failed)


def _rebuild_fenced(ledger: LedgerLike, view: ReportingView,
                    pool: ProcessPoolExecutor | None) -> tuple[int, int]:
    """``rebuild`` inside the fence: the head it rebuilt to, and the contract-months written."""
    head = ledger.recorder.last_position()
    pairs = 0
    # The ledger's clock: every contract's rows run to its month (a group sees only its own facts).
    last = ledger.recorder.read_records(head, head) if head else iter(())
    clock = next((r.recorded_at for r in last), None)
    groups = [(sorted(s), sorted(c)) for s, c in service_groups(ledger.contracts(head))]
    chunks = [groups[i : i + GROUPS_PER_TASK] for i in range(0, len(groups), GROUPS_PER_TASK)]
    with _rebuilding(view, Tracking(APP_NAME, head) if head else None) as (write, target):
        parts: Iterable[list[tuple[int, bytes]]]
        if pool is not None and len(chunks) > 1:
            # Where the view can be filled from other processes (``target``: both stores today),
            # each worker writes its own rows and hands back only their count.
            n = len(chunks)
            parts = pool.map(_evaluate_groups, chunks, [head] * n, [clock] * n, [target] * n)
        else:
            parts = (_groups_reports(ledger, chunk, head, clock) for chunk in chunks)
        try:
            for part in parts:
                write(part)
                pairs += sum(n for n, _ in part)
        except BaseException:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            raise
    return head, pairs


def _started_pool(stack: ExitStack, ledger: LedgerLike, reopen: Callable[[], LedgerLike],
                  workers: int) -> ProcessPoolExecutor:
    """``workers`` processes, each with its own ledger (``reopen``), forked from a fork server where
    there is one (``ledger.workers``), started now from a thread (a process's start waits for the
    server's imports); ended when ``stack`` closes, the server last.
    """
    preload = rebuild_modules(type(ledger.recorder).__module__)
    context = worker_context(preload)
    if isinstance(context, multiprocessing.context.ForkServerContext):
        stack.callback(stop_fork_server)  # last: after the pool's processes have ended
        start_fork_server(preload)  # here, if the command did not (this thread outlives it)
    pool = stack.enter_context(ProcessPoolExecutor(
        workers, mp_context=context, initializer=_open_worker_ledger, initargs=(reopen, os.getpid())))
    starting = threading.Thread(target=_start_workers, args=(pool, workers), name="rebuild-start")
    starting.start()
    stack.callback(starting.join)
    return pool


GROUPS_PER_TASK: Final = 10


class _Evaluated(msgspec.Struct, frozen=True, array_like=True):
    """A group's evaluation as it travels from a worker to the view (msgpack)."""

    reports: list[Report]
    failed: list[Failed]
    support: list[SupportRows]


_spool_decoder: Final = msgspec.msgpack.Decoder(_Evaluated)


def _decoded(data: bytes) -> list[Item]:
    group = _spool_decoder.decode(data)
    return [*group.reports, *group.support, *group.failed]


def _spool(spool: IO[bytes], part: list[tuple[int, bytes]]) -> None:
    """Append a task's groups (count, msgpack of their reports) to the spool."""
    for _, data in part:
        spool.write(len(data).to_bytes(8, "big"))
        spool.write(data)


def _unspool(spool: IO[bytes]) -> Iterator[list[Item]]:
    """One group's reports at a time."""
    while size := spool.read(8):
        yield _decoded(spool.read(int.from_bytes(size, "big")))


# Reports written to the view per statement (per table): what the parent holds while writing.
# One group at a time meant three COPY statements per service on PostgreSQL: 1.8 s of a 10 s
# rebuild of 1M events, most of it round trips.
WRITE_BATCH: Final = 1000


def _gathered(groups: Iterable[list[Item]], size: int) -> Iterator[list[Item]]:
    """Consecutive groups' reports, joined into lists of at least ``size`` (the last one shorter)."""
    batch: list[Item] = []
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
) -> Iterator[tuple[Callable[[list[tuple[int, bytes]]], None], str | None]]:
    """A writer of encoded groups of reports that replace the whole view, with ``tracking``, and
    the ``target`` other processes may fill directly (``ReportingView.fill``; None: they may not).

    Each call takes a task's ``(count, msgpack of reports and failures)`` pairs (empty bytes: a
    worker wrote them itself). Where one transaction held for the whole rebuild would hold the
    appends out (SQLite's single write lock), they wait in a temporary file, not in memory, and
    are written in one short transaction when the block ends. Otherwise (both stores today) they
    are written as they come, in the view's short transactions: writing at the end left the
    second core idle for most of a second per 1M events. The view stays as it was if the block
    raises.
    """
    if view.holds_appends:
        with tempfile.TemporaryFile() as spool:
            yield (lambda part: _spool(spool, part)), None
            spool.seek(0)
            view.reset((view_rows(items, text=view.text)
                        for items in _gathered(_unspool(spool), WRITE_BATCH)), tracking)
        return
    with view.replacing(tracking) as write_rows:
        pending: list[Item] = []

        def write(part: list[tuple[int, bytes]]) -> None:
            for _, data in part:
                if data:
                    pending.extend(_decoded(data))
            if len(pending) >= WRITE_BATCH:
                write_rows(view_rows(pending, text=view.text))
                pending.clear()

        yield write, write_rows.target if isinstance(write_rows, Filling) else None
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
            done, failed, support = split(_group_reports(ledger.recorder, services, contracts, head, clock))
            reports.append((len(done), msgspec.msgpack.encode(_Evaluated(done, failed, support))))
    return reports


DECODE_SLICE: Final = 4096  # rows of a group's first read decoded and folded at once
# Decoded facts a rebuild worker keeps to fold each month without reading or decoding it again.
FACT_BUDGET: Final = 32 * 1024 * 1024  # bytes, counted as twice each fact's stored state
# (a decoded fact takes about twice its stored state: 475 bytes against 233 on average in
# the benchmark's data)


def _group_reports(
    reader: LedgerRecorder, services: list[str], contracts: list[str], head: int, clock: datetime | None
) -> list[Item]:
    """Every held month of one service group, in memory bounded by a budget, not by the history.

    The group's facts are streamed once through the key index into a ``Known`` that
    keeps positions only (plus the references to their ids, read second); then each
    contract-month evaluates just the facts ``positions_for`` names. The decoded
    facts are kept up to ``FACT_BUDGET``; one past it is read and decoded again
    when its month comes, and dropped after.
    """
    known = Known(instants={})  # its probe facts' instants, for the months' folds (``collect``)
    known.see_clock(clock)  # the ledger's latest recorded_at: the group's own facts may be older
    kept: dict[int, Recorded] = {}
    room = FACT_BUDGET
    add = known.add
    ticketed: set[int] = set()
    refs: set[str] = set()

    def keep(position: int, state: bytes, rec: Recorded) -> None:
        nonlocal room
        cost = 2 * len(state)
        if cost <= room:
            kept[position] = rec
            room -= cost

    def take(position: int, state: bytes) -> None:
        rec = decode_state(position, state)
        add(rec)
        if type(rec.fact) in _TICKET_TYPES:
            ticketed.add(position)
        keep(position, state, rec)

    # The services' facts, claims, versions and old-layout tickets (``o:``) with their probe reports
    # (``keys.read_service_states``), and the contracts' ticket openings (``u:`` by month): one read
    # of two parts (one statement on PostgreSQL). The first part is ``take`` for each row, in steps over
    # all of them: decoded, folded by ``Known.add_all``, kept (at once when all fit), then looked at.
    keys = [*month_keys(services, contracts, versions=True), *(tickets_key(c) for c in contracts)]
    probes = [(prefix, prefix_end(prefix)) for prefix in service_ranges(keys)]
    opened = [(prefix, prefix_end(prefix)) for prefix in (opened_key(c, "") for c in contracts)]
    rows = reader.read_key_parts_states([(keys, probes), ((), opened)], head)
    split = bisect_left(rows, 1, key=_PART)
    # Decoded a slice at a time: the decoded facts beyond the budget stay bounded by the slice,
    # not by the group's history (the read's raw rows are all here already).
    for start in range(0, split, DECODE_SLICE):
        chunk = rows[start : min(start + DECODE_SLICE, split)]
        positions, states = list(map(_POSITION, chunk)), list(map(_STATE, chunk))
        recs = decode_states(positions, states)
        known.add_all(recs)
        cost = 2 * sum(map(len, states))
        if cost <= room:
            kept.update(zip(positions, recs, strict=True))
            room -= cost
        else:
            for position, state, rec in zip(positions, states, recs, strict=True):
                keep(position, state, rec)
        for rec in recs:
            kind = type(rec.fact)
            if kind in _NOTED:
                if kind in _OPENINGS and (ref := reference_key(rec.fact)) is not None:
                    refs.add(ref)
                if kind in _TICKET_TYPES:
                    ticketed.add(rec.position)
    # Then, in one more read of three parts: what refers to the facts' ids; every fact about the
    # tickets the contracts opened (an opening is under ``t:`` too, so this part brings it with its
    # ticket's facts, each once); the pinned holidays of the countries the group's business calendars
    # and support clocks name (known from its versions, all read by now: no later part holds one).
    tickets = sorted({ticket_key(r.fact.ticket) for _, position, state in rows[split:]
                      if isinstance((r := decode_state(position, state)).fact, TicketOpened)})
    countries = sorted({v.policy.calendar.holidays for vs in known.versions.values() for v in vs
                        if v.policy.calendar is not None and v.policy.calendar.holidays is not None}
                       | {country for cid in contracts for v in known.versions.get(cid, ())
                          for country in support_countries(v.policy)})
    if refs or tickets or countries:
        related = [(sorted(refs), ()), (tickets, ()), ([holidays_key(c) for c in countries], ())]
        for part, position, state in reader.read_key_parts_states(related, head):
            if part != 1 or position not in ticketed:
                take(position, state)
    evaluator = Evaluator(known, store_errors=getattr(reader, "store_errors", None))
    reports: list[Item] = []
    for cid, months in known.all_held().items():
        for m in months:
            positions = known.positions_for(cid, m)
            try:  # every fact kept (within the budget, nearly always): no read
                records = list(map(kept.__getitem__, positions))
            except KeyError:
                missing = [p for p in positions if p not in kept]
                fetched = {p: decode_state(p, s) for p, s in reader.read_position_states(missing)}
                records = [kept[p] if p in kept else fetched[p] for p in positions]
            reports.extend(evaluator.evaluate_or_failure((cid, m), head, records))
    return reports


def _start_workers(pool: ProcessPoolExecutor, workers: int) -> None:
    """Start the pool's processes (one no-op task each); a failure shows when their tasks run."""
    with suppress(Exception):
        for _ in range(workers):
            pool.submit(int)


_worker_ledger: list[LedgerLike] = []  # a worker process's own connection, opened once
_worker_view: list[ReportingView] = []  # and its view, opened when it first fills it


def _open_worker_ledger(reopen: Callable[[], LedgerLike], parent: int) -> None:
    # A fork server's child: its parent is the server, which ends when ``parent`` does
    # (``fork_server``), so the worker watches the server.
    server = os.getppid()
    _die_with_parent(server if server != parent and _parent_of(server) == parent else parent)
    ledger = reopen()
    ledger.recorder.serve_rebuild()  # its sessions run this rebuild's statements alone
    _worker_ledger.append(ledger)
    # A fork server's child ends with ``os._exit`` once the pool lets it go, after these finalizers;
    # a spawned one through the interpreter's exit, cut short by ``_leave_worker``.
    multiprocessing.util.Finalize(None, _close_worker_ledger, exitpriority=10)
    atexit.register(_leave_worker)


def _close_worker_ledger() -> None:
    with suppress(Exception):
        while _worker_ledger:
            _worker_ledger.pop().close()


def _leave_worker() -> None:
    """A spawned worker's exit without the interpreter's teardown: its ledger closed, then ``os._exit``.

    The rebuild waits for its workers to end before it returns; tearing down every module a
    worker imported took about 0.1-0.2 s of that wait (this runs after the pool's own exit
    handling, when the worker has nothing left to do).
    """
    _close_worker_ledger()
    with suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)


PARENT_POLL: Final = 0.5  # seconds between the watchdog's looks at the parent


def _die_with_parent(parent: int) -> None:
    """End this worker process as soon as ``parent`` dies, however it dies.

    A worker waits for tasks on a queue whose write end it holds itself, so it would
    never see its parent go: a rebuild killed with SIGKILL left its workers, and on
    PostgreSQL their server connections, alive for ever. Linux sends SIGKILL to the
    worker when the parent ends (PR_SET_PDEATHSIG); a watchdog thread checks the
    parent's pid too, where prctl is missing, and for a parent gone before the call.
    """
    killed_with_parent()
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watchdog", daemon=True).start()


def _parent_of(pid: int) -> int | None:
    """``pid``'s parent process (Linux: ``/proc``); None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2 :].split()[1])


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(1)  # orphaned: reparented to init or a subreaper


def _evaluate_groups(
    groups: Sequence[tuple[list[str], list[str]]], head: int, clock: datetime | None,
    target: str | None = None,
) -> list[tuple[int, bytes]]:
    """Worker process: evaluate some service groups as of ``head``.

    With a ``target``, write their rows into it (``ReportingView.fill``) and hand back their
    count alone: no encoding here, no decoding and writing in the parent, which then has nothing
    to do but wait (the rows of 1M events cost it about a second of CPU beside the workers').
    """
    ledger = _worker_ledger[0]
    if target is None:
        return _groups_reports(ledger, groups, head, clock)
    if not _worker_view:
        _worker_view.append(ledger.recorder.open_view())
    view = _worker_view[0]
    items: list[Item] = []
    with paused_gc():
        for services, contracts in groups:
            items.extend(_group_reports(ledger.recorder, services, contracts, head, clock))
        count = sum(1 for item in items if isinstance(item, Report))
        view.fill(target, view_rows(items, text=view.text))
    return [(count, b"")]
