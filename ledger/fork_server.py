"""Imported by the rebuild's fork server alone (``ledger.workers``): it ends with the
process that started it, and its exit skips the interpreter's teardown.

The server's children (the workers) hold its "alive" pipe too, so it would not see that process
go while they run, nor would they, which watch their parent (``rebuilding._die_with_parent``):
Linux sends SIGKILL to the server when that process ends (``PR_SET_PDEATHSIG``), and then to each
worker. The server is stopped at the rebuild's end (``ledger.workers.stop_fork_server``), which waits
for it: tearing down every module it imported for the workers would take about as long as importing
them. Its children do not run these hooks: a fork server's child ends with ``os._exit``.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
from contextlib import suppress
from typing import Final

PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h

with suppress(OSError, AttributeError):
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
atexit.register(os._exit, 0)
