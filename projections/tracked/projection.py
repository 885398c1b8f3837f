"""The tracked projection: folds new facts into an index and rewrites the contract-months they change.

``ReportingProjection`` processes notifications one at a time (``process_event``,
what the library's ``ProjectionRunner`` calls) or a page at a time (``catch_up``):
fold the new facts into an in-memory index (``projections.affected.Known``), ask
which contract-months they can change, recompute each of those once, write rows
and tracking together. Several workers may run against one PostgreSQL: the
tracking row only moves forward, so a worker that lost the race for a position
gets an IntegrityError from the library, rolls back, and skips ahead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from functools import singledispatchmethod
from typing import Any, Final, Protocol

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.projection import Projection

from ledger.contracts import ContractVersion
from ledger.events import Recorded
from ledger.persistence.notifications import LedgerEvent
from ledger.persistence.port import (
    APP_NAME,
    PAGE,
    PROJECTION,
    LedgerRecorder,
    ProjectionError,
    ReportingView,
)
from projections.affected import Affected, Known, Pair, affected, walk_back
from projections.model import Report
from projections.tracked.evaluator import Evaluator
from projections.tracked.rows import Failed, SupportRows, view_rows


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
        self.known.mark()  # and each touched service's quiet instants: how far a change reaches
        self.known.add_all(batch)
        tracked = self.tracked
        if tracked >= last:
            return False
        if tracked < first - 1:
            raise ProjectionError(
                f"the reporting view is at position {tracked} but this worker at {first - 1}: "
                "run `ledger projections rebuild`"
            )
        pairs = affected(batch, self.known, self.known.settle())
        reports, failed, support = self._recompute(pairs, last, batch)
        try:
            rows = view_rows([*reports.values(), *support.values(), *failed.values()], text=self.view.text)
            self.view.replace([*reports, *failed], rows, Tracking(APP_NAME, last))
        except IntegrityError:
            return False  # another worker wrote this position first: its rows are as good as ours
        return True

    def _recompute(
        self, pairs: Affected, upto: int, batch: Sequence[Recorded] = ()
    ) -> tuple[dict[Pair, Report], dict[Pair, Failed], dict[Pair, SupportRows]]:
        """Reports for ``pairs`` and for the earlier months whose downtime stretch may reach them.

        New rows that no fact reaches (``fresh``: months the clock or a widened span added)
        start no walk: no other month's figures depend on whether a row exists. A month the
        fold fails on is returned as failed; the others go on. The facts of a round of months
        are read in one go (``batch``'s own are in memory already). A month's support figures
        come with its report, from the same facts.
        """
        # What the view held before the batch, looked up by key: the months asked about only.
        old = self.view.wall_to_wall(pairs.changed) if pairs.changed else set()
        asked: set[Pair] = set(pairs.changed)
        reports: dict[Pair, Report] = {}
        failed: dict[Pair, Failed] = {}
        support: dict[Pair, SupportRows] = {}
        in_batch = {rec.position: rec for rec in batch}
        todo = pairs.changed | pairs.fresh
        while todo:
            for pair, records in self._facts(sorted(todo), in_batch):
                for out in self.evaluator.evaluate_or_failure(pair, upto, records):
                    if isinstance(out, Failed):
                        failed[pair] = out
                    elif isinstance(out, SupportRows):
                        support[pair] = out
                    else:
                        reports[pair] = out

            def full(pair: Pair) -> bool:
                # A failed month's downtime is unknown: taken as whole, which recomputes more, never less.
                if pair not in asked:  # a month the walk reached: one more lookup by key
                    asked.add(pair)
                    old.update(self.view.wall_to_wall([pair]))
                r = reports.get(pair)
                return pair in old or pair in failed or (
                    r is not None and r.downtime_seconds == r.total_seconds)

            todo = walk_back(todo - pairs.fresh, self.known, full, reports.keys() | failed.keys())
        return reports, failed, support

    def _facts(
        self, pairs: Sequence[Pair], in_batch: dict[int, Recorded]
    ) -> Iterator[tuple[Pair, list[Recorded]]]:
        """Each pair with the facts its fold needs, read for a chunk of pairs at a time."""
        for i in range(0, len(pairs), FETCH_PAIRS):
            chunk = pairs[i : i + FETCH_PAIRS]
            wanted = [(pair, self.known.positions_for(*pair)) for pair in chunk]
            missing = sorted({p for _, ps in wanted for p in ps if p not in in_batch})
            fetched = {r.position: r for r in self.reader.read_positions(missing)} if missing else {}
            for pair, positions in wanted:
                yield pair, [in_batch[p] if p in in_batch else fetched[p] for p in positions]


FETCH_PAIRS: Final = 200  # contract-months whose facts are read in one go (bounded memory, few round trips)
