"""Rebuild against a baseline checkout, alternated on the same stores: ``ledger projections rebuild``.

``python -m benchmarks.rebuild --baseline DIR --store URL [--baseline-store URL] [--rounds 5]``

``DIR`` holds another checkout of the project (``git archive <commit> | tar -x -C DIR``):
its rebuild runs with the same interpreter and packages, from that directory. Each round
runs the baseline, then this checkout (or the other way round on odd rounds), each in a
subprocess timed from outside (start-up included), on the same store unless
``--baseline-store`` names a copy (a PostgreSQL view the baseline cannot read, e.g. after a
layout change: ``CREATE DATABASE copy TEMPLATE store``). It prints every run, the medians,
their ratio, the load average before and after, and the verdict against ``run.REBUILD_MIN``
(events as the command counts them: every position of the log). After each run it hashes the view's
rows: both checkouts must leave the same view (on PostgreSQL, with ``--baseline-store``, the copy's).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from benchmarks.run import REBUILD_MIN
from ledger.persistence.port import ROW_TABLES

ROOT: Final = Path(__file__).resolve().parent.parent
_LINE: Final = re.compile(rb"rebuilt reporting: (\d+) contract-months from (\d+) events")


def rebuild_once(checkout: Path, url: str) -> tuple[float, float, float, int, int]:
    """(wall seconds, CPU seconds, peak RSS MiB, contract-months, events) of one rebuild from ``checkout``.

    CPU: the command's and its worker processes' (not a database server's).
    """
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "--store", url, "projections", "rebuild"],
                                cwd=checkout, env=env, stdout=out_file, stderr=err_file)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        seconds = time.perf_counter() - t0
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"rebuild from {checkout} failed: {err.decode()[-2000:]}")
    found = _LINE.search(out)
    if found is None:
        raise RuntimeError(f"no rebuild line from {checkout}: {out!r}")
    cpu = usage.ru_utime + usage.ru_stime  # with the workers it waited for
    return seconds, cpu, usage.ru_maxrss / 1024, int(found[1]), int(found[2])


def view_digest(url: str) -> str:
    """A SHA-256 over every row of the view's tables, in key order (values as the store gives them)."""
    digest = hashlib.sha256()
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///"):])
        try:
            for table in ROW_TABLES:
                for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3"):  # noqa: S608
                    digest.update(repr(row).encode())
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(url) as pg:
            for table in ROW_TABLES:
                for row in pg.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3"):  # noqa: S608
                    digest.update(repr(row).encode())
    return digest.hexdigest()[:16]


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.rebuild", description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", type=Path, required=True, help="another checkout of the project")
    ap.add_argument("--store", required=True, help="the store both rebuild (a store URL)")
    ap.add_argument("--baseline-store", help="a copy of the store for the baseline (default: --store)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    base_url = args.baseline_store or args.store
    print(f"# load average before: {os.getloadavg()}", flush=True)
    runs: dict[str, list[float]] = {"baseline": [], "this": []}
    cpus: dict[str, list[float]] = {"baseline": [], "this": []}
    counted: set[tuple[int, int]] = set()
    views: dict[str, set[str]] = {}  # the view's rows after each run, hashed
    for i in range(args.rounds):
        order = [("baseline", args.baseline, base_url), ("this", ROOT, args.store)]
        for name, checkout, url in order if i % 2 == 0 else order[::-1]:
            seconds, cpu, rss, pairs, events = rebuild_once(checkout, url)
            counted.add((pairs, events))
            views.setdefault(name, set()).add(view_digest(url))
            runs[name].append(seconds)
            cpus[name].append(cpu)
            print(f"round {i + 1} {name}: {seconds:.2f} s ({events / seconds:,.0f} ev/s) "
                  f"cpu {cpu:.1f} s peak {rss:.0f} MiB load {os.getloadavg()[0]:.1f}", flush=True)
    if len(counted) != 1:
        raise SystemExit(f"the two rebuilds counted differently: {sorted(counted)}")
    if len({d for found in views.values() for d in found}) != 1:
        raise SystemExit(f"the two rebuilds wrote different views: {views}")
    print(f"# the view's rows after every run: identical ({views['this'].pop()})", flush=True)
    (pairs, events), = counted
    base, this = statistics.median(runs["baseline"]), statistics.median(runs["this"])
    ok = events / this >= REBUILD_MIN
    cpu_base, cpu_this = statistics.median(cpus["baseline"]), statistics.median(cpus["this"])
    print(f"rebuild-ab {events} events {pairs} contract-months: "
          f"this {this:.2f} s {events / this:,.0f} ev/s | "
          f"baseline {base:.2f} s {events / base:,.0f} ev/s | ratio {base / this:.2f} | "
          f"cpu {cpu_this:.1f} s against {cpu_base:.1f} s "
          f"(medians of {args.rounds} alternated rounds) (target >= {REBUILD_MIN:,.0f} ev/s) "
          f"{'PASS' if ok else 'FAIL'}", flush=True)
    print(f"# load average after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
