"""Measuring ``ledger`` processes: bytecode cached, wall and CPU time from ``wait4``, the machine's load.

This machine's environment sets PYTHONDONTWRITEBYTECODE=1, so every ``ledger`` process
would compile the project from source; ``compile_project`` writes the bytecode once and
measured processes run with that variable unset (and a fixed hash seed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent


def measured_env() -> dict[str, str]:
    """The environment of measured processes: bytecode may be read, hashing is seeded."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONHASHSEED"] = "0"
    return env


def compile_project() -> None:
    """Write the project's bytecode, so that measured processes do not compile it."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "ledger", "projections", "cli"],
                   cwd=ROOT, check=True, env=measured_env())


def timed(cmd: list[str]) -> tuple[float, float, bytes]:
    """Wall seconds, CPU seconds (user + system, the child's and its children's: wait4) and stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=measured_env(), stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {err.read().decode()[-2000:]}")
        return seconds, usage.ru_utime + usage.ru_stime, out.read()


def load() -> str:
    """The machine's load (a shared machine: wall times stretch with it, CPU times do not)."""
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
