"""``ledger serve``'s reads, computed in worker processes: a report's fold never holds up a write.

A report, an audit, a support report, a contract list or a page of events is CPU
work in Python. On a thread of the server it would take the interpreter lock from
the event loop and the writer in slices of 5 ms, and every write would wait behind
the fold of every report being read (at 50 writing clients and one polling reader,
the reader's folds held the lock more than half of the time). The workers are
spawned by the server when it starts, each opens its own ledger (``Ledger.reopen``:
only the store's URL crosses) and computes the bytes the commands print with the
commands' own functions; they only read, at a lower CPU priority than the server (``lower``:
by default idle, a write's latency first, a report's throughput with what is left).
They ignore SIGINT (a Ctrl-C reaches the whole process group: the server stops
them once the requests in flight have had their answers) and die with the server
if it is killed. A worker that dies is replaced, and the reads it held are tried
again in the new one.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import multiprocessing.util
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import Any, Final, TypeVar

from ledger.application import Ledger
from ledger.events import export_line

T = TypeVar("T")

WORKERS: Final = 2  # processes computing reads: the machines this serves have 2 cores or more
PRIORITIES: Final = ("idle", "low", "normal")  # the workers' CPU priority against the server's (``lower``)

_opened: list[Ledger] = []  # the worker's own ledger, opened once


def lower(priority: str) -> None:
    """This process's CPU priority: ``idle`` (only CPU nothing else wants), ``low`` (nice 5), ``normal``.

    ``idle`` is Linux's SCHED_IDLE (nice 19 where there is no such class): a fold, however
    long, never keeps the server's threads from a core.
    """
    if priority not in PRIORITIES:
        raise ValueError(f"read priority {priority!r}: expected one of {', '.join(PRIORITIES)}")
    if priority == "idle" and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    elif priority != "normal":
        os.nice(19 if priority == "idle" else 5)


def _start(reopen: Callable[[], Ledger], parent: int, priority: str) -> None:
    from projections.tracked.rebuilding import _die_with_parent

    # SIGTERM keeps its default: the pool ends a broken pool's other workers with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    lower(priority)
    ledger = reopen()
    _opened.append(ledger)
    multiprocessing.util.Finalize(None, ledger.close, exitpriority=10)  # when the pool stops it


def _call(call: Callable[..., T], args: tuple[Any, ...]) -> T:
    return call(_opened[0], *args)


def _ready() -> int:
    return os.getpid()


class ReadPool:
    """The worker processes; ``run`` computes ``call(ledger, *args)`` in one of them."""

    def __init__(self, reopen: Callable[[], Ledger], workers: int = WORKERS, priority: str = "idle") -> None:
        self.workers = workers
        # Spawned, not forked: the server holds connections and threads.
        spawn = multiprocessing.get_context("spawn")
        self.new = functools.partial(ProcessPoolExecutor, workers, mp_context=spawn, initializer=_start,
                                     initargs=(reopen, os.getpid(), priority))
        self.executor = self.new()
        self.closed = False

    async def start(self) -> None:
        """Start every worker and open its ledger now, not at the first read."""
        started = [asyncio.wrap_future(self.executor.submit(_ready)) for _ in range(self.workers)]
        await asyncio.gather(*started)

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """``call(ledger, *args)`` in a worker: ``call`` a module-level function, ``args`` picklable.

        A worker that died (killed, out of memory) breaks the pool: it is replaced by a
        new one and the read is tried once more there (a read changes nothing).
        """
        executor = self.executor
        try:
            return await asyncio.wrap_future(executor.submit(_call, call, args))
        except BrokenProcessPool:
            if self.closed:
                raise
        if self.executor is executor:  # not replaced yet by another read that saw it broken
            executor.shutdown(wait=False)
            self.executor = self.new()
        return await asyncio.wrap_future(self.executor.submit(_call, call, args))

    def close(self) -> None:
        """Wait for the reads under way, then stop the workers (their ledgers close as they exit)."""
        self.closed = True
        self.executor.shutdown(wait=True)


# --- what the workers compute: the bytes the commands print ------------------------


def report_json(ledger: Ledger, contract: str, month: str, as_of: datetime | None, position: int | None
                ) -> bytes:
    """``ledger report --format json``, line break included (at a replay point: ``audit``'s report)."""
    from projections.model import to_json

    if as_of is None and position is None:
        return to_json(ledger.report(contract, month).report) + b"\n"
    return to_json(ledger.audit(contract, month, as_of=as_of, position=position).report) + b"\n"


def report_html(ledger: Ledger, contract: str, month: str, as_of: datetime | None, position: int | None
                ) -> bytes:
    """``ledger report --format html`` (at a replay point: ``ledger audit --format html``)."""
    from cli.output import audit_page, report_page

    if as_of is None and position is None:
        return report_page(ledger, ledger.report(contract, month)).encode()
    return audit_page(ledger, ledger.audit(contract, month, as_of=as_of, position=position)).encode()


def support_json(ledger: Ledger, contract: str, month: str, as_of: datetime | None, position: int | None
                 ) -> bytes:
    """``ledger support --format json``, line break included (at the replay point, if one)."""
    from ledger.support_read import support_report
    from projections.support_model import support_json as encoded

    return encoded(support_report(ledger, contract, month, as_of=as_of, position=position)) + b"\n"


def support_html(ledger: Ledger, contract: str, month: str, as_of: datetime | None, position: int | None
                 ) -> bytes:
    """``ledger support --format html`` (at the replay point, if one)."""
    from cli.support_html import support_page
    from ledger.support_read import support_view

    return support_page(support_view(ledger, contract, month, as_of=as_of, position=position)).encode()


def contract_list(ledger: Ledger) -> bytes:
    """``ledger contract list --format json``, line break included."""
    from cli.output import contracts_json

    return contracts_json(ledger.contracts()).encode() + b"\n"


def events_page(ledger: Ledger, start: int, stop: int) -> bytes:
    """``ledger events``'s lines for positions ``start`` to ``stop``."""
    return b"".join(export_line(rec) + b"\n" for rec in ledger.recorder.read_records(start, stop))
