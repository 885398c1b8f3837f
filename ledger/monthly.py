"""Every contract of a month in one call (``ledger report --month M``, INTERFACE.md section 8).

Each contract's report is the single report's own computation (``Ledger.evaluate``
at one head for all of them: the same facts read through the key index, the same
fold), so the output is the single reports' byte for byte. What one call saves is
the process start-up and the reading of every contract per process; on a large
ledger the contracts are shared out among worker processes started the rebuild's
way (spawned, dying with the parent: ``projections.tracked.rebuilding``).

Measured (benchmarks/month_all.py, docs/decisions.md "Issue 20"): the rebuild's
own group evaluation (a ``Known`` index over each service's whole history, then
the month's positions) cost 9.5 ms a contract against 8 ms for the single path,
because it indexes every month to report one.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Final

import msgspec

from ledger.application import Ledger
from ledger.calendar import check_month
from ledger.contracts import find
from projections.model import Report

# Below this many events or contracts, starting worker processes (each imports the
# folds: about 0.4 s of CPU) costs more than it saves.
PARALLEL_FROM_EVENTS: Final = 50_000
PARALLEL_FROM_CONTRACTS: Final = 40
CONTRACTS_PER_TASK: Final = 25

_worker: list[Ledger] = []  # a worker process's own connection, opened once


def month_reports(ledger: Ledger, month: str, contracts: Sequence[str] = (), *,
                  workers: int | None = None) -> list[Report]:
    """The month's report of each contract named (none: every registered contract), in contract id order.

    ``workers``: how many processes evaluate them (default: one per core on a large
    ledger, else this process alone).
    """
    check_month(month, "--month")
    head = ledger.recorder.last_position()
    versions = ledger.contracts(head)
    wanted = sorted(set(contracts)) if contracts else sorted(versions)
    for cid in wanted:
        find(versions, cid)  # an unknown contract: NotFound before any work
    if workers is None:
        large = head >= PARALLEL_FROM_EVENTS and len(wanted) >= PARALLEL_FROM_CONTRACTS
        workers = min(os.cpu_count() or 1, 8) if large else 1
    checkpoint = ledger.log_checkpoint(head)  # the single reports' own: every one names this log
    if workers <= 1 or ledger.reopen is None:
        return [msgspec.structs.replace(ledger.evaluate(cid, month, upto=head).report, checkpoint=checkpoint)
                for cid in wanted]
    # Tasks of up to CONTRACTS_PER_TASK, at least four per worker: none waits long on the last.
    size = max(1, min(CONTRACTS_PER_TASK, -(-len(wanted) // (4 * workers))))
    chunks = [wanted[i : i + size] for i in range(0, len(wanted), size)]
    context = multiprocessing.get_context("spawn")  # no fork: the parent holds connections
    with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=context, initializer=_open_worker,
                             initargs=(ledger.reopen, os.getpid())) as pool:
        out: list[Report] = []
        for part in pool.map(_evaluate, chunks, [month] * len(chunks), [head] * len(chunks)):
            out.extend(msgspec.structs.replace(r, checkpoint=checkpoint) for r in part)
        return out


def _open_worker(reopen: Callable[[], Ledger], parent: int) -> None:
    from projections.tracked.rebuilding import _die_with_parent

    _die_with_parent(parent)
    _worker.append(reopen())


def _evaluate(contracts: Sequence[str], month: str, head: int) -> list[Report]:
    """Worker process: the contracts' reports at ``head``.

    Pickled to the parent as they are: msgpack, as the rebuild sends its reports, would
    bring the instants back in UTC, not in the contract's zone the JSON shows.
    """
    led = _worker[0]
    return [led.evaluate(cid, month, upto=head).report for cid in contracts]
