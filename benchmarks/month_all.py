"""Issue 20's benchmark: every contract of a month in one call against one ``ledger report`` per contract.

``python -m benchmarks.month_all [--quick] [--command report|support] [--stores sqlite,postgres]
[--events 1000000] [--services 1000] [--sample 50] [--rounds 3] [--workdir DIR]``

The store holds ``--services`` contracts (one per service, the five policy
variants of ``benchmarks/generate.py``) and ``--events`` generated facts (1M:
two months of 1,000 services). For the first month:

- one call: ``ledger report --month M --format ndjson`` (every contract, one process);
- single calls: ``ledger report --contract C --month M --format json`` for a sample of
  ``--sample`` contracts spread evenly over the ids; the 1,000-call figure is the
  sample's total scaled by ``services / sample`` (every call is a new process with
  the same start-up and a report of the same size distribution, so the scaling is
  linear; stated on the line).

``--command support`` measures ``ledger support`` the same way (the generated
policies have no ``[support]``: each report still reads the contract's facts and
folds its downtime stretches, which is most of a support report's cost).

The two are alternated for ``--rounds`` rounds and the medians compared: target at
least 20 times faster in wall time (the verdict); the CPU times (user + system of
each process and its workers, from wait4) are printed on a second line, since wall
time on this shared machine stretches with the load.
Output identity: every sampled single call's stdout equals
its line of the one call's output byte for byte, and every contract's single
report (``Ledger.report``, what ``--contract`` prints, in process) equals its line.

This machine's environment sets PYTHONDONTWRITEBYTECODE=1, so every ``ledger``
process would compile the project from source; the script runs
``python -m compileall -q ledger projections cli`` first and runs every measured
process with that variable unset. One grep-able line per figure, PASS/FAIL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from benchmarks import generate
from benchmarks.measure import compile_project, load, timed
from benchmarks.run import pg_database, register_contracts

TARGET: Final = 20.0


def ledger_cmd(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", "--store", url, *args]


def fill(url: str, events: Path, contracts: list[Path]) -> tuple[float, float]:
    """Register every contract in one append, then import the file in process; seconds of each."""
    from ledger.bootstrap import open_ledger

    reg = register_contracts(url, contracts)
    t0 = time.perf_counter()
    led = open_ledger(url)
    try:
        with open(events, "rb") as f:
            led.import_file(f)
    finally:
        led.close()
    return reg, time.perf_counter() - t0


def check_identity(url: str, month: str, all_lines: list[bytes], command: str = "report") -> int:
    """Every contract's single report (what ``--contract C --format json`` prints) against its line."""
    from ledger.bootstrap import open_ledger
    from ledger.support_read import support_report
    from projections.model import to_json
    from projections.support_model import support_json

    led = open_ledger(url)
    try:
        ids = sorted(led.contracts())
        assert len(ids) == len(all_lines), f"{len(all_lines)} lines for {len(ids)} contracts"
        for cid, line in zip(ids, all_lines, strict=True):
            single = (support_json(support_report(led, cid, month)) if command == "support"
                      else to_json(led.report(cid, month).report))
            if single != line:
                raise AssertionError(f"{cid}: the one call's line differs from the single report")
    finally:
        led.close()
    return len(ids)


def measure(kind: str, url: str, month: str, services: int, sample: int, rounds: int,
            command: str = "report") -> bool:
    ids = [generate.contract_id(i) for i in range(services)]
    step = max(1, services // sample)
    chosen = ids[::step][:sample]
    one: list[float] = []
    one_cpu: list[float] = []
    singles: list[float] = []
    singles_cpu: list[float] = []
    out = b""
    for _ in range(rounds):
        s, c, out = timed(ledger_cmd(url, command, "--month", month, "--format", "ndjson"))
        one.append(s)
        one_cpu.append(c)
        lines = out.splitlines()
        total = total_cpu = 0.0
        for cid in chosen:
            s, c, single = timed(ledger_cmd(url, command, "--contract", cid, "--month", month,
                                          "--format", "json"))
            total += s
            total_cpu += c
            if single.rstrip(b"\n") != lines[ids.index(cid)]:
                raise AssertionError(f"{kind} {cid}: single call output differs from the one call's line")
        singles.append(total * services / len(chosen))
        singles_cpu.append(total_cpu * services / len(chosen))
    checked = check_identity(url, month, out.splitlines(), command)
    kind = kind if command == "report" else f"{kind} {command}"
    ok = True
    for what, a, b in (("wall", one, singles), ("cpu", one_cpu, singles_cpu)):
        med_one, med_single = statistics.median(a), statistics.median(b)
        ratio = med_single / med_one
        ok_here = ratio >= TARGET
        ok = ok and (ok_here or what == "cpu")
        print(f"month_all {kind} {what} {services} contracts month {month}: one call median {med_one:.2f} s "
              f"(runs {' '.join(f'{x:.2f}' for x in a)}), {services} single calls median {med_single:.1f} s "
              f"(scaled from {len(chosen)} a round: {' '.join(f'{x:.1f}' for x in b)}), x{ratio:.1f} faster, "
              f"target >= x{TARGET:g}: {'PASS' if ok_here else 'FAIL'}"
              + (f" ({load()})" if what == "wall" else ""),
              flush=True)
    print(f"month_all {kind} identical: {len(chosen)} sampled CLI outputs x {rounds} rounds and "
          f"{checked} in-process single reports equal their lines of the one call: PASS", flush=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.month_all",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 services, 12k events, SQLite, 1 round")
    ap.add_argument("--command", choices=["report", "support"], default="report")
    ap.add_argument("--stores", default="sqlite,postgres")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, help="keep the generated data here (default: a temporary one)")
    args = ap.parse_args(argv)
    if args.quick:
        args.stores, args.events, args.services, args.sample, args.rounds = "sqlite", 12_000, 20, 4, 1
    compile_project()
    ok = True
    with tempfile.TemporaryDirectory(prefix="month-all-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        events = work / f"events-s{args.seed}-svc{args.services}-n{args.events}.ndjson"
        if not events.exists():
            t0 = time.perf_counter()
            with open(events.with_suffix(".partial"), "w", encoding="ascii") as f:
                generate.write_events(f, args.events, args.services, args.seed)
            events.with_suffix(".partial").rename(events)
            print(f"# generated {args.events} events in {time.perf_counter() - t0:.1f} s", flush=True)
        contracts = generate.write_contracts(args.services, work / f"contracts-{args.services}")
        month = generate.month_names(args.events, args.services)[0]
        for kind in args.stores.split(","):
            if kind == "sqlite":
                db = Path(tmp) / "month-all.db"
                url = f"sqlite:///{db}"
                reg, imp = fill(url, events, contracts)
                print(f"# {kind}: {args.services} contracts in {reg:.1f} s, {args.events} events in "
                      f"{imp:.1f} s", flush=True)
                ok &= measure(kind, url, month, args.services, args.sample, args.rounds, args.command)
            else:
                with pg_database(f"bench_month_all_{os.getpid()}") as url:
                    reg, imp = fill(url, events, contracts)
                    print(f"# {kind}: {args.services} contracts in {reg:.1f} s, {args.events} events in "
                          f"{imp:.1f} s", flush=True)
                    ok &= measure(kind, url, month, args.services, args.sample, args.rounds, args.command)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
