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
import os

from ledger.runtime import killed_with_parent

killed_with_parent()
atexit.register(os._exit, 0)
