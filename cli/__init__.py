"""The ``ledger`` command line.

Start-up (issue 17): when this process is the CLI itself (the ``ledger`` console script,
or ``python -m cli.main``), the cyclic garbage collector is paused from this, the
package's first line, and ``cli.main.main`` resumes it (``resume_gc``) before the command runs, after
``gc.freeze()`` has moved everything the imports made (modules, classes, functions: all
alive until exit) into the generation it never scans. Collecting during the imports
finds nothing to free, and the command's later full collections would otherwise walk
every object of every module: together about 8M instructions of a 300M report. Any
other process importing ``cli`` (tests, tools, an embedding server) keeps its collector
as it was: ``sys.argv[0]`` is ``-m`` only while the parents of a ``-m`` module import.

The CLI's process also imports ``zoneinfo`` first, with its search path read from the
disk cache instead of ``sysconfig`` (``ledger.tzpath``).
"""

import gc
import os
import sys

_paused = bool(sys.argv) and (sys.argv[0] == "-m"
                              or os.path.basename(sys.argv[0]).removesuffix(".exe") == "ledger")
if _paused:
    gc.disable()
    from ledger.tzpath import import_zoneinfo

    import_zoneinfo()  # before any module imports zoneinfo (ledger/tzpath.py)


def resume_gc() -> None:
    """Freeze the start-up's objects and resume the collector, if this module paused it."""
    global _paused
    if _paused:
        gc.freeze()
        gc.enable()
        _paused = False
