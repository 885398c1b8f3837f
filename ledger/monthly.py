"""Every contract of a month in one call (``report`` and ``support --month M``, INTERFACE.md section 8).

Each contract's report is the single report's own computation (``Ledger.evaluate``
at one head for all of them: the same facts read through the key index, the same
fold; for support, ``support_read.support_at`` at one replay point), so the output
is the single reports' byte for byte. What one call saves is
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
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ledger.application import Ledger
from ledger.calendar import check_month
from ledger.month_read import unregistered
from projections.model import Report

if TYPE_CHECKING:
    from projections.support_model import SupportReport

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
    wanted = _wanted(ledger, head, contracts)
    checkpoint = ledger.log_checkpoint(head)  # the single reports' own: every one names this log
    reports: list[Report] = _shared(ledger, "report", wanted, month, head, None, workers)
    return [msgspec.structs.replace(r, checkpoint=checkpoint) for r in reports]


def month_support(ledger: Ledger, month: str, contracts: Sequence[str] = (), *,
                  as_of: datetime | None = None, position: int | None = None,
                  workers: int | None = None) -> list[SupportReport]:
    """``ledger support --month M`` for each contract named (none: every one registered at the replay point).

    Every report is ``support_at`` at one replay point read before any of them: the
    single ``ledger support --contract C`` report, byte for byte.
    """
    from ledger.support_read import replay_upto

    check_month(month, "--month")
    upto, point = replay_upto(ledger, as_of, position)
    return _shared(ledger, "support", _wanted(ledger, upto, contracts), month, upto, point, workers)


def month_support_explained(ledger: Ledger, month: str, contracts: Sequence[str] = (), *,
                            as_of: datetime | None = None, position: int | None = None,
                            ) -> list[tuple[SupportReport, dict[str, str]]]:
    """``month_support`` (in this process), each report with one line per ticket saying how it came about."""
    from ledger.support_read import explained_at, replay_upto

    check_month(month, "--month")
    upto, point = replay_upto(ledger, as_of, position)
    return [explained_at(ledger, cid, month, upto, point) for cid in _wanted(ledger, upto, contracts)]


def _wanted(ledger: Ledger, upto: int, contracts: Sequence[str]) -> list[str]:
    """The contracts named, deduplicated, in id order (none: every one registered up to ``upto``)."""
    versions = ledger.contracts(upto)
    wanted = sorted(set(contracts)) if contracts else sorted(versions)
    for cid in wanted:
        if cid not in versions:  # an unknown contract: NotFound before any work
            raise unregistered(ledger.recorder, cid, upto)
    return wanted


def _shared(ledger: Ledger, kind: str, wanted: list[str], month: str, upto: int, point: datetime | None,
            workers: int | None) -> list[Any]:
    """``_evaluate`` over ``wanted`` here, or shared among spawned workers on a large ledger; order kept."""
    if workers is None:
        large = upto >= PARALLEL_FROM_EVENTS and len(wanted) >= PARALLEL_FROM_CONTRACTS
        workers = min(os.cpu_count() or 1, 8) if large else 1
    if workers <= 1 or ledger.reopen is None:
        return _evaluate_with(ledger, kind, wanted, month, upto, point)
    # Tasks of up to CONTRACTS_PER_TASK, at least four per worker: none waits long on the last.
    size = max(1, min(CONTRACTS_PER_TASK, -(-len(wanted) // (4 * workers))))
    chunks = [wanted[i : i + size] for i in range(0, len(wanted), size)]
    context = multiprocessing.get_context("spawn")  # no fork: the parent holds connections
    n = len(chunks)
    with ProcessPoolExecutor(min(workers, n), mp_context=context, initializer=_open_worker,
                             initargs=(ledger.reopen, os.getpid())) as pool:
        out: list[Any] = []
        for part in pool.map(_evaluate, [kind] * n, chunks, [month] * n, [upto] * n, [point] * n):
            out.extend(part)
        return out


def _open_worker(reopen: Callable[[], Ledger], parent: int) -> None:
    from projections.tracked.rebuilding import _die_with_parent

    _die_with_parent(parent)
    _worker.append(reopen())


def _evaluate(kind: str, contracts: Sequence[str], month: str, upto: int,
              point: datetime | None) -> list[Any]:
    """Worker process: the contracts' reports (``kind``: report or support) at ``upto``.

    Pickled to the parent as they are: msgpack, as the rebuild sends its reports, would
    bring the instants back in UTC, not in the contract's zone the JSON shows.
    """
    return _evaluate_with(_worker[0], kind, contracts, month, upto, point)


def _evaluate_with(led: Ledger, kind: str, contracts: Sequence[str], month: str, upto: int,
                   point: datetime | None) -> list[Any]:
    if kind == "support":
        from ledger.support_read import support_at

        return [support_at(led, cid, month, upto, point) for cid in contracts]
    return [led.evaluate(cid, month, upto=upto).report for cid in contracts]
