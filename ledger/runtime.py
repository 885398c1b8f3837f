"""Process-level switches the ledger's hot paths share."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Final

from ledger.errors import StoreError

PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h


def killed_with_parent() -> None:
    """Ask Linux to send this process SIGKILL when the thread that started it ends (``PR_SET_PDEATHSIG``).

    For helper processes that would not see their parent go (a rebuild's workers, their fork server);
    nothing where ``prctl`` is missing. ``ctypes`` is imported here, not by every command that
    imports this module (issue 17's start-up).
    """
    if sys.platform != "linux":
        return
    import ctypes
    import signal

    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Cyclic garbage collection off for the block (restored after, as it was).

    For code that builds many objects and no reference cycles (decoded facts, their
    indexes, a fold's intervals): reference counting frees them all, and each
    collection pass over them finds nothing and costs time. Measured: about 15 %
    of a rebuild worker's time, and 20-25 ms of a `ledger report` on a service
    with 10,000 facts.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# How long the ledger's own sessions wait or idle before giving up (seconds; see
# docs/reliability.md, "Roles and locks"). Read when a store is opened.
LOCK_WAIT: Final = ("LEDGER_LOCK_WAIT", 120.0)  # a writer waiting for the append lock, both stores
IDLE_TIMEOUT: Final = ("LEDGER_IDLE_TIMEOUT", 600.0)  # PostgreSQL: a session idle inside a transaction


def env_seconds(setting: tuple[str, float]) -> float:
    """The setting's value in seconds from its environment variable, else its default."""
    name, default = setting
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 10**7:
        raise StoreError(f"{name}={raw!r}: expected a number of seconds greater than 0")
    return value
