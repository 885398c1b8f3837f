"""Worker processes forked from a fork server that has imported what they run (a rebuild's, issue 17).

Spawned, each of a rebuild's workers imported the rebuild, the store's modules and their
libraries itself (about 0.25 CPU s a worker); a fork server (``multiprocessing``'s ``forkserver``:
a fresh interpreter started by this process, holding none of its connections) imports them once,
and a worker's fork takes a few milliseconds. Workers are not forked from the parent itself: it
holds connections (a child's copy of one would end the parent's session when freed) and threads.

``start_fork_server`` may run before the store is opened (the CLI's rebuild, so that the server's
imports overlap the parent's); ``stop_fork_server`` ends it and waits for it, so that the workers'
CPU, reaped by the server, counts as this process's children's (``wait4``, ``RUSAGE_CHILDREN``) and
no process is left behind. This module imports nothing heavy: the CLI calls it first.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
from contextlib import suppress
from multiprocessing.context import BaseContext
from typing import Final

from ledger.urls import SQLITE_PREFIX

FORK_SERVER: Final = "ledger.fork_server"  # imported by the server alone: it ends with this process
# What a rebuild's worker runs, imported once by the server (a module missing there is skipped: the
# worker imports it then), the store's recorder module added.
REBUILD_MODULES: Final = ("projections.tracked.rebuilding", "ledger.bootstrap", "projections.availability")
_RECORDERS: Final = {True: "ledger.persistence.sqlite.recorder",
                     False: "ledger.persistence.postgres.recorder"}


def recorder_module(url: str) -> str:
    """The module of the recorder ``ledger.bootstrap`` opens for the store at ``url``."""
    return _RECORDERS[url.startswith(SQLITE_PREFIX)]


def rebuild_modules(recorder: str) -> list[str]:
    """What a rebuild's fork server imports, for a store whose recorder is in module ``recorder``."""
    return [FORK_SERVER, *REBUILD_MODULES, recorder]


def worker_context(preload: list[str]) -> BaseContext:
    """The fork server's context, its server importing ``preload`` (where it does not run yet); spawn
    where the server's end with this process is not assured (``fork_server``: Linux only)."""
    if sys.platform != "linux":
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(preload)
    return context


def start_fork_server(preload: list[str]) -> None:
    """Start the fork server now (it imports ``preload`` while this process goes on).

    From a thread that lives as long as the server is used: the server ends when the thread that
    started it does (``PR_SET_PDEATHSIG``).
    """
    if sys.platform == "linux":
        worker_context(preload)
        multiprocessing.forkserver.ensure_running()


def fork_server_running() -> bool:
    return _server_pid() is not None


_stopped: list[bool] = []  # whether this process stopped a fork server it had started


def ended() -> bool:
    """Whether this process stopped its fork server and has no worker process left (a command may
    then end without the interpreter's teardown: ``cli.main._leave``)."""
    return bool(_stopped) and not fork_server_running() and not multiprocessing.active_children()


def stop_fork_server(*, unused: bool = False) -> None:
    """End the fork server and wait for it; ``unused``: it forked nothing, so it is killed at once
    (it may still be importing, and would see its end only after)."""
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    pid = _server_pid()
    if server is None or pid is None:
        return
    if unused:
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with suppress(Exception):
        server._stop()  # the standard library's own (used by its tests): closes its pipe, waits
    _stopped.append(True)


def _server_pid() -> int | None:
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    pid = getattr(server, "_forkserver_pid", None)
    return pid if isinstance(pid, int) else None
