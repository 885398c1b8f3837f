"""Group commit for ``ledger serve``: the requests queued while a write is in flight share one transaction.

A write request's facts are validated and prepared before it queues (a bad one never
reaches the writer); the one writer task then takes what is queued, in order, and
appends it in one transaction, answering each request with what its own facts did,
exactly what it would have got written alone after the ones before it. One commit
(one fsync on SQLite, one round of locks on PostgreSQL) then serves many requests,
which is what keeps a write's latency flat under many concurrent clients.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Final

import anyio
import anyio.to_thread

from ledger.application import Ledger
from ledger.persistence.append import append_prepared
from ledger.persistence.port import AppendResult
from ledger.persistence.rows import Prepared

GROUP_ROWS: Final = 10_000  # rows of one group commit at most (a larger request is written alone)


class Job:
    """A write waiting for the writer: rows prepared (grouped with others), or a call of its own."""

    def __init__(self, batches: list[list[Prepared]], label: str,
                 alone: Callable[[Ledger], AppendResult] | None = None) -> None:
        self.batches = batches
        self.label = label  # how its errors name a row when it is written alone ("line 3: ...")
        self.alone = alone
        self.rows = sum(len(b) for b in batches)
        self.result: AppendResult | None = None
        self.error: Exception | None = None
        self.done = anyio.Event()

    def write(self, ledger: Ledger) -> None:
        """Append this job in a transaction of its own, keeping its answer or its error."""
        try:
            if self.alone is not None:
                self.result = self.alone(ledger)
            else:
                self.result = append_prepared(ledger.recorder, self.batches, ledger.clock, label=self.label)
        except Exception as exc:  # answered to its own request, as if it had run there
            self.error = exc


def _merged(results: list[AppendResult]) -> AppendResult:
    """One request's answer from what each of its batches did (positions contiguous, in order)."""
    firsts = [r.first_position for r in results if r.first_position is not None]
    lasts = [r.last_position for r in results if r.last_position is not None]
    return AppendResult(sum(r.appended for r in results), sum(r.skipped for r in results),
                        firsts[0] if firsts else None, lasts[-1] if lasts else None,
                        [c for r in results for c in r.conflicts])


def write_group(ledger: Ledger, jobs: list[Job]) -> None:
    """Append ``jobs`` in one transaction, each answered with what its own rows did.

    The same as appending them one after another in this order (a fact repeated in a
    later job is already recorded for it), in one commit. If the transaction fails,
    something one job holds may be the cause (a name another fact took, a contract
    version): nothing was kept, and each job is written again alone, so a bad one
    fails by itself with its own message.
    """
    if len(jobs) == 1:
        jobs[0].write(ledger)
        return
    if _disjoint(jobs):
        rows = [row for job in jobs for batch in job.batches for row in batch]
        try:
            total = append_prepared(ledger.recorder, [rows], ledger.clock)
        except Exception:
            for job in jobs:
                job.write(ledger)
            return
        _answer(ledger, jobs, total)  # committed: an error here is each request's, nothing written twice
        return
    per_job: list[list[AppendResult]] = [[] for _ in jobs]
    current = 0

    def batches() -> Iterator[list[Prepared]]:
        nonlocal current
        for n, job in enumerate(jobs):
            current = n  # the batches that follow are this job's, until the next
            yield from job.batches

    try:
        append_prepared(ledger.recorder, batches(), ledger.clock, each=lambda r: per_job[current].append(r))
    except Exception:
        for job in jobs:
            job.write(ledger)
        return
    for job, results in zip(jobs, per_job, strict=True):
        job.result = _merged(results)


def _disjoint(jobs: list[Job]) -> bool:
    """No id in two jobs, and no fact that names something or versions a contract (the common webhook)."""
    seen: set[str] = set()
    for job in jobs:
        if job.alone is not None:
            return False
        ids = set()
        for batch in job.batches:
            for row in batch:
                if row.claim is not None:
                    return False
                ids.add(row.id)
        if ids & seen:
            return False
        seen |= ids
    return True


def _answer(ledger: Ledger, jobs: list[Job], total: AppendResult) -> None:
    """Each of disjoint ``jobs``' answer, their rows having been appended as one batch.

    Disjoint jobs (``_disjoint``) are appended as one batch: one duplicate check and
    one insert for the whole group, where batch by batch a server store took about
    five round trips per request (its check, its rows, its tree nodes) and a group of
    single-alert webhooks spent most of its transaction waiting on them. No id is in
    two jobs, so what a job's rows did does not depend on the others': a row was
    appended if its id is among the positions the group took (read back once
    committed: positions never change) and it is the first of that id in its job; a
    conflict is the job's that holds its id; the rest were already recorded.
    """
    taken: dict[str, int] = {}
    try:
        if total.first_position is not None and total.last_position is not None:
            taken = {r.id: r.position for r in ledger.recorder.read_records(total.first_position,
                                                                              total.last_position)}
    except Exception as exc:  # written, but not known how: said to each, as a lost answer would be
        for job in jobs:
            job.error = exc
        return
    for job in jobs:
        ids = [row.id for batch in job.batches for row in batch]
        positions = [taken[i] for i in dict.fromkeys(ids) if i in taken]
        mine = set(ids)
        conflicts = [c for c in total.conflicts if c.id in mine]
        job.result = AppendResult(len(positions), len(ids) - len(positions) - len(conflicts),
                                  min(positions, default=None), max(positions, default=None), conflicts)


class Writer:
    """The one writer: takes the queued jobs, in order, a group per transaction."""

    def __init__(self) -> None:
        self.queue: deque[Job] = deque()
        self.wake = anyio.Event()
        self.thread = anyio.CapacityLimiter(1)  # its own: never waits behind requests being prepared

    async def submit(self, job: Job) -> AppendResult:
        self.queue.append(job)
        self.wake.set()
        # The job is written even if this request is abandoned: it is in the queue.
        await job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None, "a job done has its result or its error"
        return job.result

    def _take(self) -> list[Job]:
        """The next group: a job with a call of its own alone, else queued jobs up to GROUP_ROWS rows."""
        group = [self.queue.popleft()]
        if group[0].alone is not None:
            return group
        rows = group[0].rows
        while self.queue and self.queue[0].alone is None and rows + self.queue[0].rows <= GROUP_ROWS:
            job = self.queue.popleft()
            rows += job.rows
            group.append(job)
        return group

    async def run(self, ledger: Ledger) -> None:
        """Write what is queued, group after group, until cancelled (at shutdown, with nothing queued)."""
        while True:
            await self.wake.wait()
            self.wake = anyio.Event()
            while self.queue:
                group = self._take()
                # Shielded: a group once taken is written whole and its requests answered.
                with anyio.CancelScope(shield=True):
                    try:
                        await anyio.to_thread.run_sync(write_group, ledger, group, limiter=self.thread)
                    finally:
                        for job in group:
                            if job.result is None and job.error is None:
                                job.error = RuntimeError("the write was not done")
                            job.done.set()
