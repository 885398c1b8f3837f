"""What the support reporting tables cost a rebuild of a ledger without tickets: one line per figure.

``python -m benchmarks.support_tables [--stores sqlite,postgres] [--events 200000] [--services 100]
[--rounds 5] [--callgrind-events 20000] [--baseline REV] [--variants without,with]``

The baseline is the same command from the tree at ``--baseline`` (default: where this
branch left ``main``), extracted with ``git archive`` and run with the same interpreter on
the same store. For each store, two ledgers of the same generated events (no ticket): one
whose contracts have no ``[support]`` section (the benchmark's contracts as they are: the
support tables get no row), one whose contracts all have one (a target row per target and
month, from a fold over no ticket). ``ledger projections rebuild`` runs as a subprocess,
baseline and this tree alternated, ``--rounds`` times each; the medians of wall and CPU
time (``wait4``: the command and its worker processes) are printed with their ratio.
Wall times on a shared 2-core machine are noisy (the load is printed); the CPU figure
and the callgrind count are the ones to read. Callgrind: instructions of an in-process
``rebuild(workers=1)`` of a ``--callgrind-events`` SQLite ledger, start-up included, both trees.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from benchmarks import generate
from benchmarks.measure import ROOT, load, measured_env

SUPPORT: Final = """
[support]
hours = ["Mon-Fri 08:00-17:00"]
holidays = "CH"
targets = [
  { severity = "production_down", first_response = "1h" },
  { severity = "moderate", first_response = "1 business day" },
  { severity = "level1", mean_first_response = "15m" },
]
engagement = { level = "level3", within = "10m" }
recovery = { max_data_loss = "24h" }
quota = { hours_per = "1000", year_starts = "01-01", exempt = ["bug"], warn_below = "2h" }
"""
REBUILD_CHILD: Final = """
import sys
from ledger.bootstrap import open_ledger
from projections.tracked import rebuild
ledger = open_ledger(sys.argv[1])
try:
    rebuild(ledger, workers=1)
finally:
    ledger.close()
"""


def timed_in(tree: Path, cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (``wait4``: the command and its children) of ``cmd`` run in ``tree``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tree, env=measured_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        assert proc.stderr is not None
        raise RuntimeError(f"{' '.join(cmd)} in {tree} failed: {proc.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_utime + usage.ru_stime


def baseline_tree(rev: str, into: Path) -> Path:
    """The tree at ``rev``, extracted (no checkout: the worktree stays as it is), bytecode compiled."""
    tree = into / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    for where in (tree, ROOT):
        subprocess.run([sys.executable, "-m", "compileall", "-q", "ledger", "projections", "cli"],
                       cwd=where, check=True, env=measured_env())
    return tree


def contracts(directory: Path, services: int, *, support: bool) -> list[Path]:
    paths = generate.write_contracts(services, directory)
    if support:
        for p in paths:
            p.write_text(p.read_text() + SUPPORT)
    return paths


@contextmanager
def store(kind: str, work: Path, name: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{work / (name + '.db')}"
        return
    from benchmarks.run import pg_database

    with pg_database(f"bench_support_{name}_{os.getpid()}") as url:
        yield url


def fill(url: str, events: Path, policies: list[Path]) -> None:
    from benchmarks.run import register_contracts
    from ledger.bootstrap import open_ledger

    register_contracts(url, policies)
    led = open_ledger(url)
    try:
        with open(events, "rb") as f:
            led.import_file(f)
    finally:
        led.close()


Timings = list[tuple[float, float]]  # (wall, cpu) seconds of each run


def alternate(base: Path, url: str, rounds: int) -> tuple[Timings, Timings]:
    """``rounds`` rebuilds from each tree, alternated (which one goes first alternates too)."""
    cmd = [sys.executable, "-m", "cli.main", "--store", url, "projections", "rebuild"]
    timed_in(ROOT, cmd)  # warm the caches and make the view (this tree's tables) once
    old: Timings = []
    new: Timings = []
    for i in range(rounds):
        order = [(base, old), (ROOT, new)] if i % 2 == 0 else [(ROOT, new), (base, old)]
        for tree, out in order:
            out.append(timed_in(tree, cmd))
    return old, new


def instructions(tree: Path, url: str) -> int:
    """Callgrind's instruction count of an in-process, single-worker rebuild run in ``tree``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c",
                        REBUILD_CHILD, url], cwd=tree, check=True, capture_output=True, env=measured_env())
        for line in out.read_text().splitlines():
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no summary")


def _median(xs: Timings, i: int) -> float:
    return statistics.median(x[i] for x in xs)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stores", default="sqlite")
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--services", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--callgrind-events", type=int, default=20_000, help="0: no callgrind count")
    p.add_argument("--baseline", default=None, help="git revision (default: git merge-base HEAD main)")
    p.add_argument("--variants", default="without,with", help="contracts without and/or with [support]")
    a = p.parse_args(argv)
    rev = a.baseline or subprocess.run(["git", "merge-base", "HEAD", "main"], cwd=ROOT, check=True,
                                       capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="support-tables-bench-") as tmp:
        work = Path(tmp)
        base = baseline_tree(rev, work)
        sizes = [("rebuild", a.events, a.stores.split(","))] if a.rounds else []  # --rounds 0: callgrind only
        if a.callgrind_events:
            sizes.append(("callgrind", a.callgrind_events, ["sqlite"]))
        for what, events, kinds in sizes:
            data = work / f"events-{events}.ndjson"
            with open(data, "w", encoding="utf-8") as f:
                generate.write_events(f, events, a.services, seed=18)
            for support in [v == "with" for v in a.variants.split(",")]:
                label = "with [support], no ticket" if support else "no [support], no ticket"
                policies = contracts(work / f"c-{what}-{support}", a.services, support=support)
                for kind in kinds:
                    with store(kind, work, f"{what}_{kind}_{int(support)}") as url:
                        fill(url, data, policies)
                        if what == "callgrind":
                            old_i, new_i = instructions(base, url), instructions(ROOT, url)
                            print(f"support_tables callgrind {kind} {events} events {label}: rebuild "
                                  f"{new_i:,} instructions vs baseline {old_i:,} ({rev[:9]}): "
                                  f"ratio {new_i / old_i:.4f}", flush=True)
                            continue
                        old, new = alternate(base, url, a.rounds)
                        print(f"support_tables rebuild {kind} {events} events {label}: "
                              f"wall {_median(new, 0):.2f} s vs baseline {_median(old, 0):.2f} s "
                              f"(ratio {_median(new, 0) / _median(old, 0):.3f}); "
                              f"cpu {_median(new, 1):.2f} s vs {_median(old, 1):.2f} s "
                              f"(ratio {_median(new, 1) / _median(old, 1):.3f}); "
                              f"medians of {a.rounds} alternated runs, baseline {rev[:9]}; {load()}",
                              flush=True)


if __name__ == "__main__":
    main()
