"""The tracked projection: folds new facts into an index and rewrites the contract-months they change.

``ReportingProjection`` processes notifications one at a time (``process_event``,
what the library's ``ProjectionRunner`` calls) or a page at a time (``catch_up``):
fold the new facts into an in-memory index (``projections.affected.Known``), ask
which contract-months they can change, recompute each of those once, write rows
and tracking together. Several workers may run against one PostgreSQL: the
tracking row only moves forward, so a worker that lost the race for a position
gets an IntegrityError from the library, rolls back, and skips ahead.

The index of a service group is loaded when a page first touches it, as a window of its
history (``tracked.groups.page_floor``); a group whose changes reach before its window
(``affected.BeforeFloor``) is loaded again from further back and its part of the page done again.

Size: over 400 lines because a page's path (groups loaded as windows and again when short, the
months recomputed and walked back, the rows deferred behind the head) is one sequence, read top
to bottom.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import datetime
from functools import singledispatchmethod
from typing import Any, Final, Protocol

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.projection import Projection

from ledger.contracts import ContractVersion
from ledger.events import Recorded, decode_state
from ledger.persistence.keys import CONTRACT, index_keys
from ledger.persistence.notifications import LedgerEvent
from ledger.persistence.port import (
    APP_NAME,
    PAGE,
    PROJECTION,
    LedgerRecorder,
    ProjectionError,
    ReportingView,
)
from projections.affected import Affected, BeforeFloor, Known, Pair, affected, walk_back
from projections.model import Report
from projections.tracked.evaluator import Evaluator
from projections.tracked.groups import (
    Directory,
    FollowerState,
    Group,
    GroupKey,
    load_groups,
    page_floor,
    window_start,
)
from projections.tracked.rows import Failed, Item, SupportRows, view_rows


class LedgerLike(Protocol):
    """What the commands need of the ledger application (``ledger.application.Ledger``)."""

    recorder: LedgerRecorder
    reopen: Callable[[], Any] | None

    def contracts(self, upto: int | None = None) -> dict[str, list[ContractVersion]]: ...

    def close(self) -> None: ...


def open_view(recorder: LedgerRecorder) -> ReportingView:
    """The reporting view in the same database as ``recorder`` (tables created if needed and allowed)."""
    return recorder.open_view()


class ReportingProjection(Projection[Any]):
    """Keeps the report tables up to date, one notification or one page at a time."""

    name = PROJECTION
    topics = ()

    def __init__(self, view: ReportingView, state: FollowerState | None = None) -> None:
        """``state``: what another projection carried up to at most the view's position, to go on from."""
        super().__init__(view)
        self.reader = view.ledger_recorder()
        # Positions only, and only of the service groups pages touch (``groups``): each
        # month's facts are read again when it is evaluated.
        self.state = FollowerState() if state is None else state
        self._policies: dict[tuple[str, int], Any] = {}  # resolved policies, shared by the groups' evaluators
        self._pending: _Pending | None = None  # pages folded whose rows are not written yet (``catch_up``)

    @property
    def position(self) -> int:
        """The last position this projection has folded."""
        return self.state.position

    @property
    def tracked(self) -> int:
        """The view's tracked position (0: nothing yet)."""
        return int(self.view.max_tracking_id(APP_NAME) or 0)

    def _reset(self, position: int) -> None:
        """Go on from ``position`` (the view's): every contract's versions and the clock, no group loaded."""
        state = self.state
        state.position = position
        self._pending = None  # computed on a view that has moved since
        state.groups.clear()
        state.directory = Directory()
        state.whole = not hasattr(self.reader, "read_keyed_states") or getattr(
            self.reader, "read_names", lambda _: None)([WHOLE_PROBE]) is None
        clock = next((r.recorded_at for r in self.reader.read_records(position, position)), None) \
            if position else None
        if not state.whole:
            state.directory.load(self.reader.read_key_prefix(CONTRACT, position) if position else (), clock)
        state.loaded = True

    def load(self) -> None:
        """Every contract's versions and the clock, as of the view's position (once; else the first page)."""
        if not self.state.loaded:
            self._reset(self.tracked)

    def _groups(self, keys: Sequence[GroupKey], upto: int, clock: datetime | None,
                floors: dict[GroupKey, int | None]) -> list[Group]:
        """The groups ``keys``; those not loaded, or whose window starts after ``floors`` says it must,
        are loaded now, together, as of ``upto`` (``clock``)."""
        state = self.state
        missing = [key for key in keys if (g := state.groups.loaded.get(key)) is None
                   or (g.floor is not None and ((need := floors.get(key)) is None or need < g.floor))]
        if missing:
            if state.whole:
                known = Known()
                known.add_all(self.reader.read_records(1, upto) if upto else ())
                state.groups.put(WHOLE, Group(frozenset(), frozenset(), known, upto))
            else:
                for key, loaded in load_groups(self.reader, state.directory, missing, upto, clock,
                                               floors).items():
                    state.groups.put(key, loaded)
        out = []
        for key in keys:
            group = state.groups.get(key)
            assert group is not None  # just loaded, and nothing is evicted before the chunk is done
            out.append(group)
        return out

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Anything but a ledger event: nothing to project."""

    @process_event.register
    def _(self, domain_event: LedgerEvent, tracking: Tracking) -> None:
        """One notification: recompute what it changes, with tracking, in one transaction."""
        self.load()
        position = tracking.notification_id
        if position <= self.state.position:
            return  # folded already: written by the batch path, or skipped as someone else's
        if position - 1 > self.state.position:
            self._reset(position - 1)
        record = domain_event.record
        self.apply([record])

    def catch_up(self, page: int = PAGE, stop: threading.Event | None = None, upto: int | None = None) -> int:
        """The batch path: pages until the ledger's head (or ``stop``, or ``upto``); returns the position."""
        self.load()
        try:
            while stop is None or not stop.is_set():  # a stop waits for one page at most, not the backlog
                # Another worker (or a rebuild) may be ahead: skip to where the view is.
                tracked = self.tracked
                if tracked > self.state.position:
                    self._reset(tracked)
                end = self.state.position + page if upto is None else min(self.state.position + page, upto)
                if end <= self.state.position:
                    break
                batch = list(self.reader.read_records(self.state.position + 1, end))
                if not batch:
                    break
                # Behind the head, a page's rows wait for the next ones' (``_Pending``): one write for
                # several pages, and pages go on being folded while an import holds SQLite's write lock.
                self.apply(batch, write=False)
                pending = self._pending
                if pending is not None and (pending.last - pending.base >= DEFER_PAGES * page
                                            or len(pending.items) >= DEFER_PAIRS):
                    self._flush()
            self._flush()
        finally:
            self._pending = None  # unwritten (an error): the view's tracking says where to go on from
        return self.state.position

    def apply(self, batch: Sequence[Recorded], *, write: bool = True) -> bool:
        """Fold ``batch`` (the next positions) and write what it changes; False if another worker did.

        ``write=False``: keep the rows with the earlier pages' not written yet (``_flush`` writes them).
        """
        if not batch:
            return False
        state = self.state
        first, last = batch[0].position, batch[-1].position
        if not state.loaded:
            self._reset(first - 1)  # go on from just before the batch
        if first != state.position + 1:
            raise ProjectionError(f"expected position {state.position + 1}, got {first}")
        before = first - 1
        directory, groups = state.directory, state.groups
        clock = max(rec.recorded_at for rec in batch)
        clock_before = directory.clock  # a group loaded for this batch is loaded as it was before it
        if state.whole:
            routed: dict[GroupKey, list[Recorded]] = {WHOLE: list(batch)}
            refs: dict[GroupKey, list[str]] = {}
            touched = [WHOLE]
        else:
            for key in directory.add_contracts(batch):
                groups.drop(key)  # its versions changed: loaded again, as the rebuild would read it
            for key in [k for k in groups.loaded if k not in directory.members]:
                groups.drop(key)  # joined to another by a new version
            names = self.reader.read_names(directory.names_wanted(batch)) or {}
            routed, refs = directory.route(batch, names, last)
            directory.see_clock(clock)
            # The clock entered a month: every contract gains it, each group is looked at once.
            touched = sorted(directory.members) if directory.clock_moved() else sorted(routed)
        state.position = last
        tracked = self.tracked
        if tracked >= last:
            groups.clear()  # another worker wrote these positions; groups are loaded again as needed
            self._pending = None  # and the pages before them
            return False
        written = self._pending.base if self._pending is not None else before  # where the view should be
        if tracked < written:
            raise ProjectionError(
                f"the reporting view is at position {tracked} but this worker at {written}: "
                "run `ledger projections rebuild`"
            )
        reports: dict[Pair, Report] = {}
        failed: dict[Pair, Failed] = {}
        support: dict[Pair, SupportRows] = {}
        in_batch = {rec.position: rec for rec in batch}
        # Where each group's window must start for this page (a group whose window starts later is
        # loaded again): the months its facts can reach, and the clock's (``page_floor``).
        floors = {key: page_floor(routed.get(key, ()), clock) for key in touched}
        retried: set[GroupKey] = set()
        i, size = 0, self._chunk(touched)
        while i < len(touched):
            chunk = touched[i : i + size]
            i += len(chunk)
            todo: Sequence[GroupKey] = chunk
            while todo:
                size, short = self._apply_chunk(todo, routed, refs, floors, (before, last),
                                                (clock_before, clock), in_batch, (reports, failed, support))
                # A change reached before a group's window (a long outage, a correction of an old fact):
                # that group holds this page's facts already; it is loaded again from further back (its
                # whole history the second time) and its part of the page done again.
                for key, at in short.items():
                    groups.drop(key)
                    floor = floors.get(key)
                    deeper = window_start(at) if floor is not None and key not in retried else None
                    floors[key] = deeper if deeper is not None and floor is not None and deeper < floor \
                        else None
                    retried.add(key)
                todo = sorted(short)
            groups.evict()
        pending = self._pending
        if pending is None:
            pending = self._pending = _Pending(before, last)
        pending.last = last
        for pair, report in reports.items():  # a later page's rows of a month replace an earlier page's
            pending.items[pair] = [report] if pair not in support else [report, support[pair]]
        for pair, failure in failed.items():
            pending.items[pair] = [failure]
        return self._flush() if write else True

    def _apply_chunk(self, chunk: Sequence[GroupKey], routed: dict[GroupKey, list[Recorded]],
                     refs: dict[GroupKey, list[str]], floors: dict[GroupKey, int | None],
                     span: tuple[int, int], clocks: tuple[datetime | None, datetime],
                     in_batch: dict[int, Recorded],
                     out: tuple[dict[Pair, Report], dict[Pair, Failed], dict[Pair, SupportRows]],
                     ) -> tuple[int, dict[GroupKey, int]]:
        """Fold one chunk of groups' facts and recompute what they change: how many groups to take
        next, and the groups whose window was too short (``BeforeFloor``), with the instant asked about.

        The other groups' work is complete whatever happened to those: a short group's months are
        left for its next load (what was computed of them meanwhile is right, only incomplete).
        """
        (before, last), (clock_before, clock) = span, clocks
        groups = self.state.groups
        work: list[tuple[Known, Affected]] = []
        loaded = list(zip(chunk, self._groups(chunk, before, clock_before, floors), strict=True))
        # As many groups next as half the budget holds at this chunk's facts per group: a month's
        # turn loads every group, and a long history makes each one larger.
        per = max(1, sum(g.facts for _, g in loaded) // len(loaded))
        size = max(1, min(GROUP_CHUNK, groups.budget // 2 // per))
        self._earlier_references(loaded, refs, before)
        short: dict[GroupKey, int] = {}
        for key, group in loaded:
            known = group.known
            known.settle()  # the rows as they were before this batch
            known.mark()  # and each touched service's quiet instants: how far a change reaches
            known.see_clock(clock)
            recs = routed.get(key, [])
            known.add_all(recs)
            groups.grew(group, len(recs))
            try:
                work.append((known, affected(recs, known, known.settle())))
            except BeforeFloor as too_short:
                short[key] = too_short.at
        key_of = {id(g.known): key for key, g in loaded}
        for known_id, at in self._recompute(work, last, in_batch, *out).items():
            short.setdefault(key_of[known_id], at)
        return size, short

    def _flush(self) -> bool:
        """Write the pending pages' rows with their last position; False if another worker wrote it first."""
        pending, self._pending = self._pending, None
        if pending is None:
            return True
        try:
            items = [item for items in pending.items.values() for item in items]
            rows = view_rows(items, text=self.view.text)
            self.view.replace(list(pending.items), rows, Tracking(APP_NAME, pending.last))
        except IntegrityError:
            return False  # another worker wrote this position first: its rows are as good as ours
        return True

    def _wall_to_wall(self, pairs: Collection[Pair]) -> set[Pair]:
        """``ReportingView.wall_to_wall`` as the view will be once the pending rows are written."""
        pending = self._pending
        view: ReportingView = self.view
        if pending is None:
            return view.wall_to_wall(pairs)
        unwritten = [p for p in pairs if p not in pending.items]
        out = view.wall_to_wall(unwritten) if unwritten else set()
        text = self.view.text
        for pair in pairs:
            items = pending.items.get(pair)
            if items is None:
                continue
            first = items[0]
            if isinstance(first, Failed) or (isinstance(first, Report) and (
                    str(first.downtime_seconds) == str(first.total_seconds) if text  # as the column compares
                    else first.downtime_seconds == first.total_seconds)):
                out.add(pair)
        return out

    def _chunk(self, touched: Sequence[GroupKey]) -> int:
        """How many of ``touched`` to load first: half the budget at the loaded groups' facts per group
        (``FIRST_CHUNK`` groups with none loaded, or when they are all loaded already)."""
        groups = self.state.groups
        if not groups.loaded or all(key in groups.loaded for key in touched):
            return GROUP_CHUNK if groups.loaded else FIRST_CHUNK
        per = max(1, groups.facts // len(groups.loaded))
        return max(1, min(GROUP_CHUNK, groups.budget // 2 // per))

    def _earlier_references(self, groups: Sequence[tuple[GroupKey, Group]], refs: dict[GroupKey, list[str]],
                            upto: int) -> None:
        """Fold into each group the corrections recorded up to ``upto`` that name ids this batch uses
        first (``refs``: the keys they are filed under), read together."""
        wanted: dict[str, list[GroupKey]] = {}
        for key, _ in groups:
            for ref in refs.get(key, ()):
                wanted.setdefault(ref, []).append(key)
        if not wanted:
            return
        by_key = dict(groups)
        for position, state in self.reader.read_keyed_states(sorted(wanted), upto):
            rec = decode_state(position, state)
            for k in index_keys(rec.fact):
                for key in dict.fromkeys(wanted.get(k, ())):
                    by_key[key].known.add(rec)
                    self.state.groups.grew(by_key[key], 1)

    def _recompute(
        self, work: Sequence[tuple[Known, Affected]], upto: int, in_batch: dict[int, Recorded],
        reports: dict[Pair, Report], failed: dict[Pair, Failed], support: dict[Pair, SupportRows],
    ) -> dict[int, int]:
        """Reports for the groups' pairs and for the earlier months whose downtime stretch may reach them.

        New rows that no fact reaches (``fresh``: months the clock or a widened span added)
        start no walk: no other month's figures depend on whether a row exists. A month the
        fold fails on is returned as failed; the others go on. The facts of a round of months
        are read in one go, whatever their group (``in_batch``'s own are in memory already).
        A month's support figures come with its report, from the same facts. A group whose window
        is too short for one of its months (``BeforeFloor``) is left there: returned (by its
        ``Known``'s id) with the instant asked about.
        """
        short: dict[int, int] = {}
        known_of: dict[str, Known] = {cid: known for known, _ in work for cid in known.versions}
        evaluators = {id(known): Evaluator(known, self.reader, policies=self._policies) for known, _ in work}
        changed = {p for _, pairs in work for p in pairs.changed}
        fresh = {p for _, pairs in work for p in pairs.fresh}
        # What the view held before the batch, looked up by key: the months asked about only.
        old = self._wall_to_wall(changed) if changed else set()
        asked: set[Pair] = set(changed)
        done: set[Pair] = set()
        todo = changed | fresh
        while todo:
            for pair, records in self._facts(sorted(todo), in_batch, known_of, short):
                for out in evaluators[id(known_of[pair[0]])].evaluate_or_failure(pair, upto, records):
                    if isinstance(out, Failed):
                        failed[pair] = out
                    elif isinstance(out, SupportRows):
                        support[pair] = out
                    else:
                        reports[pair] = out
            done |= todo

            def full(pair: Pair) -> bool:
                # A failed month's downtime is unknown: taken as whole, which recomputes more, never less.
                if pair not in asked:  # a month the walk reached: one more lookup by key
                    asked.add(pair)
                    old.update(self._wall_to_wall([pair]))
                r = reports.get(pair)
                return pair in old or pair in failed or (
                    r is not None and r.downtime_seconds == r.total_seconds)

            seeds: dict[int, tuple[Known, set[Pair]]] = {}
            for pair in todo - fresh:
                known = known_of[pair[0]]
                if id(known) not in short:
                    seeds.setdefault(id(known), (known, set()))[1].add(pair)
            todo = set()
            for known, mine in seeds.values():
                todo |= walk_back(mine, known, full, done)
        return short

    def _facts(
        self, pairs: Sequence[Pair], in_batch: dict[int, Recorded], known_of: dict[str, Known],
        short: dict[int, int],
    ) -> Iterator[tuple[Pair, list[Recorded]]]:
        """Each pair with the facts its fold needs, read for a chunk of pairs at a time; the pairs of a
        group whose window does not reach back far enough are left out, the group noted in ``short``."""
        for i in range(0, len(pairs), FETCH_PAIRS):
            wanted = []
            for pair in pairs[i : i + FETCH_PAIRS]:
                known = known_of[pair[0]]
                if id(known) in short:
                    continue
                try:
                    wanted.append((pair, known.positions_for(*pair)))
                except BeforeFloor as too_short:
                    short[id(known)] = too_short.at
            wanted = [(pair, ps) for pair, ps in wanted if id(known_of[pair[0]]) not in short]
            missing = sorted({p for _, ps in wanted for p in ps if p not in in_batch})
            fetched = {r.position: r for r in self.reader.read_positions(missing)} if missing else {}
            for pair, positions in wanted:
                yield pair, [in_batch[p] if p in in_batch else fetched[p] for p in positions]


class _Pending:
    """Pages folded whose rows are not written yet: each pair's latest rows, from ``base`` + 1 to ``last``."""

    def __init__(self, base: int, last: int) -> None:
        self.base = base  # the view's position when the first of them was folded
        self.last = last
        self.items: dict[Pair, list[Item]] = {}


WHOLE: Final[GroupKey] = ("*",)  # the one group of a projection whose reader cannot read by key
WHOLE_PROBE: Final = CONTRACT  # a name asked about to learn whether the store keeps the names table
GROUP_CHUNK: Final = 500  # groups loaded and evaluated together at most (bounded memory on a month's turn)
# Pages' rows kept unwritten behind the head: up to this many pages, or rows of this many months.
DEFER_PAGES: Final = 4
DEFER_PAIRS: Final = 20_000
FIRST_CHUNK: Final = 50  # groups loaded first when none is loaded to tell how large they are
FETCH_PAIRS: Final = 200  # contract-months whose facts are read in one go (bounded memory, few round trips)
