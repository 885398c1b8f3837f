"""``zoneinfo`` imported with the interpreter's own time-zone search path, read from the disk cache.

Importing ``zoneinfo`` sets its search path (``zoneinfo.TZPATH``) from ``$PYTHONTZPATH``,
else from the interpreter's compile-time ``TZPATH``, which ``sysconfig`` reads by loading
the whole build configuration: about 4.1M instructions of a 250M report (issue 17). The
CLI calls ``import_zoneinfo`` first, before any module imports ``zoneinfo``: the
compile-time value is read from ``ledger.cache`` when it was read before from the same
configuration file (its device, inode, size and modification time are the cache key, so a
reinstalled or rebuilt interpreter reads it afresh), handed to ``zoneinfo`` through
``$PYTHONTZPATH`` for the import alone, and the variable removed again: the search path is
exactly the one ``zoneinfo`` would have set itself, and child processes inherit nothing.

Nothing is done, and ``zoneinfo`` sets its path the usual way, when it is already imported,
when ``$PYTHONTZPATH`` is set (it wins anyway), when there is no cache, or when the
configuration file is not where CPython keeps it (another interpreter, a cross build).
"""

from __future__ import annotations

import os
import sys
from typing import Final

from ledger.cache import cache_root, cached_text

_ENV: Final = "PYTHONTZPATH"


def build_config_file() -> str | None:
    """The module ``sysconfig`` reads the compile-time configuration from (None: not this layout)."""
    if (sys.implementation.name != "cpython" or os.name != "posix"
            or "_PYTHON_SYSCONFIGDATA_NAME" in os.environ):
        return None
    multiarch = getattr(sys.implementation, "_multiarch", "")
    name = f"_sysconfigdata_{sys.abiflags}_{sys.platform}_{multiarch}.py"
    return os.path.join(os.path.dirname(os.__file__), name)


def cache_file() -> str | None:
    """Where the compile-time ``TZPATH`` of this interpreter is cached (None: not cached)."""
    root, config = cache_root(), build_config_file()
    if root is None or config is None:
        return None
    try:
        st = os.stat(config)
    except OSError:
        return None
    # The file's identity on this machine (device, inode) and its version (size, modification
    # time): no two configuration files, and no two contents of one, share a name.
    return os.path.join(root, f"tzpath-{st.st_dev}-{st.st_ino}-{st.st_size}-{st.st_mtime_ns}")


def compile_time_tzpath() -> str:
    """The interpreter's compile-time ``TZPATH`` as ``sysconfig`` gives it ("" when it has none)."""
    import sysconfig

    return sysconfig.get_config_var("TZPATH") or ""


def import_zoneinfo() -> None:
    """Import ``zoneinfo`` with its search path from the cache, where that is safe (module docstring)."""
    if "zoneinfo" in sys.modules or _ENV in os.environ:
        return
    path = cache_file()
    if path is None:
        return
    value = cached_text(path, compile_time_tzpath)
    try:
        os.environ[_ENV] = value
    except ValueError:  # a value the environment cannot hold: let zoneinfo read it itself
        return
    try:
        import zoneinfo  # noqa: F401  (imported for its search path)
    finally:
        del os.environ[_ENV]
