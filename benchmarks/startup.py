"""A typical report through the CLI, counted in instructions (callgrind), against baselines of the same run.

``python -m benchmarks.startup [--store URL --contract ID --month YYYY-MM] [--out FILE.json]``

Without ``--store`` a demo store is made in a temporary directory (``ledger demo``)
and ``report --contract sla-a-2026 --month 2026-10 --format json`` is counted.
Every process runs under ``valgrind --tool=callgrind`` from start to exit: the
interpreter's start-up, the imports, the store, the fold and the output. Baselines
in the same run: ``python -c pass``, ``python -c "import click"`` and ``import click,
msgspec`` (what any command of this CLI costs before a line of the ledger runs), and
"the report's modules": a process importing exactly the modules the report loads (found
by a probe run, not counted) and ending as the console script ends (``os._exit``), so
that the report minus it is the command's own work (store, fold, output).

Bytecode is cached as an installed package has it (``PYTHONPYCACHEPREFIX`` in the
temporary directory, filled by a first run that is not counted), and so is the
holiday cache (``LEDGER_CACHE_DIR``); the "cold holiday cache" line counts the run
that fills the latter (the ``holidays`` package imported once). Instruction counts
are deterministic to a few parts in a thousand; the target (issue 17) is printed as
PASS/FAIL.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
TARGET: Final = 250_000_000  # issue 17: a typical report through the CLI, whole process
_COLLECTED: Final = re.compile(rb"Collected : ([0-9]+)")


def instructions(args: list[str], env: dict[str, str]) -> int:
    """Instructions the whole process ``args`` executes under callgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("benchmarks.startup: valgrind is not installed")
    proc = subprocess.run([valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *args],
                          cwd=ROOT, env=env, capture_output=True, check=False)
    found = _COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"benchmarks.startup: {' '.join(args)} failed: {proc.stderr[-500:].decode()}")
    return int(found.group(1))


# Imports the modules named on the command line in order, then ends as ``cli.main.main`` does; the
# cyclic GC paused as the CLI's own process pauses it while importing (``cli/__init__.py``).
_IMPORT_ONLY: Final = ("import gc; gc.disable()\n"
                       "import importlib, os, sys, warnings\nwarnings.simplefilter('ignore')\n"
                       "for m in sys.argv[1:]: importlib.import_module(m)\n"
                       "sys.stdout.flush(); os._exit(0)")
# Runs the CLI in-process and prints the modules it loaded (``cli.main.main`` would skip the exit).
_PROBE: Final = ("import sys; before = set(sys.modules); from cli.main import cli\n"
                 "try: cli.main(sys.argv[1:], prog_name='ledger')\nexcept SystemExit: pass\n"
                 "print(' '.join(m for m in sys.modules if m not in before), file=sys.stderr)")


def _modules(py: str, command: list[str], env: dict[str, str]) -> list[str]:
    """The modules ``command`` (``python -m cli.main ...``) loads beyond the interpreter's start, in order."""
    proc = subprocess.run([py, "-c", _PROBE, *command[3:]], cwd=ROOT, env=env, capture_output=True,
                          check=True)
    return [m for m in proc.stderr.decode().split() if m != "__main__"]


def main() -> None:
    """Parse arguments, count, print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="a store URL (default: a demo store made for the run)")
    parser.add_argument("--contract", default="sla-a-2026")
    parser.add_argument("--month", default="2026-10")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    opts = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="ledger-startup-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {"PYTHONPYCACHEPREFIX": os.path.join(tmp, "pycache"),
                "LEDGER_CACHE_DIR": os.path.join(tmp, "cache")}
        store = opts.store or f"sqlite:///{tmp}/demo.db"
        if opts.store is None:
            subprocess.run([py, "-m", "cli.main", "--store", store, "demo"], cwd=ROOT, env=env, check=True,
                           capture_output=True)
        report = [py, "-m", "cli.main", "--store", store, "report", "--contract", opts.contract, "--month",
                  opts.month, "--format", "json"]
        baselines = {"python -c pass": [py, "-c", "pass"],
                     "python -c 'import click'": [py, "-c", "import click"],
                     "python -c 'import click, msgspec'": [py, "-c", "import click, msgspec"]}
        for args in baselines.values():  # bytecode compiled and cached, not counted
            subprocess.run(args, cwd=ROOT, env=env, check=True)
        subprocess.run([py, "-m", "cli.main", "--store", store, "contract", "list"], cwd=ROOT, env=env,
                       check=True, capture_output=True)  # the CLI's own modules compiled too
        baselines["the report's modules, imported"] = [py, "-c", _IMPORT_ONLY, *_modules(py, report, env)]
        figures = {name: instructions(args, env) for name, args in baselines.items()}
        shutil.rmtree(env["LEDGER_CACHE_DIR"], ignore_errors=True)  # `demo` filled it
        figures["ledger report (cold holiday cache)"] = instructions(report, env)
        figures["ledger report"] = instructions(report, env)
    bare, click = figures["python -c pass"], figures["python -c 'import click'"]
    for name, count in figures.items():
        print(f"startup: {name}: {count / 1e6:.1f}M instructions ({count / bare:.2f}x python -c pass, "
              f"{count / click:.2f}x import click)")
    got, floor = figures["ledger report"], figures["python -c 'import click, msgspec'"]
    own = figures["the report's modules, imported"]
    verdict = "PASS" if got <= TARGET else "FAIL"
    print(f"startup: target ledger report <= {TARGET / 1e6:.0f}M instructions: {got / 1e6:.1f}M {verdict}; "
          f"above python -c pass: {(got - bare) / 1e6:.1f}M, above import click, msgspec: "
          f"{(got - floor) / 1e6:.1f}M, the command's own work (report minus its modules imported): "
          f"{(got - own) / 1e6:.1f}M")
    if opts.out is not None:
        result = {"instructions": figures, "target": TARGET, "verdict": verdict}
        opts.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
