"""How one report's cost grows with the month's size and with the history behind it (issue 17).

``python -m benchmarks.report_scale [--small 10000] [--large 100000] [--history 12]
[--no-callgrind] [--no-store]``

Every figure is printed next to the baseline it was measured against, in the same run:

- history: a report of a ``--small``-event month with ``--history`` months of the same
  density before it, vs the same month with one month before it (SQLite store, through
  ``Ledger.report``: the read and the fold; CPU time, median of 7 runs alternated between
  the two stores, as wall time on a shared machine is noise; and, unless ``--no-callgrind``,
  callgrind instructions of one warm report from each store); target ratio <= 1.2;
- size: ``evaluate`` in-process on a ``--small`` vs a ``--large``-event month (callgrind
  instructions, deterministic, via ``--fold N``); target ratio <= 11x, and the large month
  under 1.5 s wall-clock in-process.

The month is one service's: three probes flapping and one of them down throughout,
outage incidents, maintenance windows that overlap several deep (some late or short of
notice) and force majeure; seeded, so every run folds the same facts.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ledger import events as ev
from ledger.events import Fact, Recorded, fact_id
from ledger.policy import Policy, resolve
from ledger.policy_check import load_policy

if TYPE_CHECKING:
    from ledger.application import Ledger

SERVICE: Final = "bench"
CONTRACT: Final = "bench-sla"
MONTH: Final = "2026-03"  # a DST change (Europe/Paris, 29 March) inside the month
POLICY: Final = f"""
[contract]
id = "{CONTRACT}"
customer = "Benchmark"
service = "{SERVICE}"
timezone = "Europe/Paris"
currency = "EUR"
monthly_fee = "1000.00"

[availability]
target = "99.9"
formula = "maintenance_out_of_total"
outage_when = "any"
probes = ["p1", "p2", "p3"]
excludable = ["force_majeure"]

[maintenance]
min_notice = "24h"
outside_business_hours = false
nonconforming = "downtime"

[credits]
tiers = [{{ below = "99.9", percent = "10" }}, {{ below = "99", percent = "25" }}]
cap_percent = "50"
long_outage = {{ over = "4h", per_started_day = true }}
claim_deadline_days = 10
"""


def policy() -> Policy:
    """The benchmark contract's resolved policy."""
    return resolve(load_policy(POLICY.encode()))


def _month_start(index: int) -> datetime:
    """UTC midnight of the 1st of the month ``index`` months before ``MONTH`` (0 = MONTH)."""
    year, mon = 2026, 3 - index
    while mon < 1:
        year, mon = year - 1, mon + 12
    return datetime(year, mon, 1, tzinfo=UTC)


def month_facts(n: int, index: int, seed: int = 17) -> list[Fact]:
    """About ``n`` facts about ``SERVICE`` in the month ``index`` months before ``MONTH``."""
    rnd = random.Random(seed * 1000 + index)
    start = _month_start(index)
    span = int((_month_start(index - 1) - start).total_seconds()) - 7200
    out: list[Fact] = []
    if index == 0:
        # One probe down throughout: failed before the month, never recovered.
        out.append(ev.ProbeFailed(service=SERVICE, probe="p1", at=start - timedelta(hours=3)))
    tag = f"{index}"
    k = 0
    while len(out) < n:
        k += 1
        at = start + timedelta(seconds=rnd.randrange(span), microseconds=rnd.randrange(1_000_000))
        roll = rnd.random()
        if roll < 0.7:  # a probe blip on p2 or p3: fail, recover a few minutes later
            probe = rnd.choice(("p2", "p3"))
            out.append(ev.ProbeFailed(service=SERVICE, probe=probe, at=at))
            out.append(ev.ProbeRecovered(service=SERVICE, probe=probe,
                                         at=at + timedelta(seconds=rnd.randrange(30, 900))))
        elif roll < 0.82:  # an outage incident, resolved within hours
            iid = f"inc-{tag}-{k}"
            out.append(ev.IncidentOpened(service=SERVICE, incident=iid, at=at, impact="outage"))
            out.append(ev.IncidentResolved(incident=iid, at=at + timedelta(minutes=rnd.randrange(5, 300))))
        elif roll < 0.97:  # a maintenance window of 1-8 h: windows overlap several deep
            notice = timedelta(hours=rnd.choice((2, 30, 48, 72)))
            out.append(ev.MaintenanceAnnounced(
                service=SERVICE, maintenance=f"mw-{tag}-{k}", announced_at=at - notice, starts_at=at,
                ends_at=at + timedelta(minutes=rnd.randrange(60, 480))))
        else:
            out.append(ev.ForceMajeureDeclared(
                service=SERVICE, declaration=f"fm-{tag}-{k}", reason="storm", starts_at=at,
                ends_at=at + timedelta(minutes=rnd.randrange(10, 120))))
    return out


def records(facts: list[Fact]) -> list[Recorded]:
    """The facts as recorded at positions 1.. (recorded long before the month)."""
    when = datetime(2020, 1, 1, tzinfo=UTC)
    return [Recorded(position=i, recorded_at=when, id=fact_id(f), fact=f) for i, f in enumerate(facts, 1)]


def fold(n: int, *, dry: bool = False) -> float:
    """Seconds ``evaluate`` takes on an ``n``-event month (facts built before the clock starts)."""
    from projections.availability import evaluate
    from projections.model import to_json

    recs = records(month_facts(n, 0))
    pol = policy()
    if dry:  # the baseline of the callgrind count: everything but the fold
        return 0.0
    t0 = time.perf_counter()
    result = evaluate(recs, pol, 1, MONTH, as_of_position=len(recs))
    elapsed = time.perf_counter() - t0
    size = len(to_json(result.report))
    print(f"fold {n} events: {elapsed:.3f} s, {len(result.report.intervals)} intervals, "
          f"report {size / 1e6:.2f} MB JSON", file=sys.stderr)
    return elapsed


def _callgrind(args: list[str]) -> int:
    """Instructions callgrind counts in a child ``python -m benchmarks.report_scale *args``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
             "benchmarks.report_scale", *args],
            check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        for line in out.read_text().splitlines():
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no summary")


def _instructions(n: int) -> int:
    """Callgrind instructions of ``evaluate`` alone on an ``n``-event month.

    Python functions are not symbols callgrind can toggle on, so: the whole run, less the
    same run that builds the facts and stops before the fold.
    """
    return _callgrind(["--fold", str(n)]) - _callgrind(["--fold", str(n), "--dry"])


def _store(workdir: Path, n: int, history: int) -> Ledger:
    """A SQLite store holding ``MONTH`` with ``history`` months before it, imported oldest first."""
    from ledger.bootstrap import open_ledger

    ledger = open_ledger(f"sqlite:///{workdir / f'h{history}.db'}")
    ledger.register_contract(load_policy(POLICY.encode()))
    for index in range(history, -1, -1):
        ledger.append_facts(month_facts(n, index))
    ledger.report(CONTRACT, MONTH)  # warm the page cache and the imports
    return ledger


def _report_times(ledger: Ledger) -> tuple[float, float]:
    """CPU and wall seconds of one ``Ledger.report`` on ``MONTH`` (the read and the fold, in-process)."""
    c0, w0 = time.process_time(), time.perf_counter()
    ledger.report(CONTRACT, MONTH)
    return time.process_time() - c0, time.perf_counter() - w0


def _reports(path: str, times: int) -> None:
    """``times`` reports of ``MONTH`` from the store at ``path`` (for callgrind: two less one is one warm)."""
    from ledger.bootstrap import open_ledger

    ledger = open_ledger(f"sqlite:///{path}")
    try:
        for _ in range(times):
            ledger.report(CONTRACT, MONTH)
    finally:
        ledger.close()


def _report_instructions(path: Path) -> int:
    """Callgrind instructions of one warm report (imports and caches of the first one left out)."""
    return _callgrind(["--report-at", str(path), "--times", "2"]) - _callgrind(["--report-at", str(path)])


def _history(workdir: Path, n: int, history: int, rounds: int = 7) -> tuple[list[float], list[float]]:
    """Medians (CPU, wall) of the report with one month of history and with ``history``, runs alternated."""
    one, many = _store(workdir, n, 1), _store(workdir, n, history)
    try:
        times: tuple[list[tuple[float, float]], list[tuple[float, float]]] = ([], [])
        for _ in range(rounds):  # alternated, so that a burst of load hits both alike
            times[0].append(_report_times(one))
            times[1].append(_report_times(many))
        return ([statistics.median(t[0] for t in times[0]), statistics.median(t[0] for t in times[1])],
                [statistics.median(t[1] for t in times[0]), statistics.median(t[1] for t in times[1])])
    finally:
        one.close()
        many.close()


def _lines(args: argparse.Namespace) -> Iterator[str]:
    if args.store:
        with tempfile.TemporaryDirectory() as tmp:
            (one, many), (one_wall, many_wall) = _history(Path(tmp), args.small, args.history)
            if args.callgrind and shutil.which("valgrind"):
                i_one = _report_instructions(Path(tmp) / "h1.db")
                i_many = _report_instructions(Path(tmp) / f"h{args.history}.db")
                ratio = i_many / i_one
                yield (f"report history (callgrind): {args.history} months of history {i_many / 1e6:.0f}M "
                       f"instructions vs 1 month {i_one / 1e6:.0f}M (baseline, same run; one warm report): "
                       f"ratio {ratio:.2f} (target <= 1.2) {'PASS' if ratio <= 1.2 else 'FAIL'}")
        ratio = many / one
        yield (f"report history: {args.small}-event month, {args.history} months of history "
               f"{many * 1000:.0f} ms CPU vs 1 month {one * 1000:.0f} ms (baseline, same run, median of 7 "
               f"alternated; wall {many_wall * 1000:.0f} vs {one_wall * 1000:.0f} ms): "
               f"ratio {ratio:.2f} (target <= 1.2) {'PASS' if ratio <= 1.2 else 'FAIL'}")
    if args.callgrind and shutil.which("valgrind"):
        small, large = _instructions(args.small), _instructions(args.large)
        ratio = large / small
        yield (f"report size: evaluate on {args.large} events {large / 1e6:.0f}M instructions vs "
               f"{args.small} events {small / 1e6:.0f}M (baseline, same run): ratio {ratio:.2f}x "
               f"(target <= 11x) {'PASS' if ratio <= 11 else 'FAIL'}")
    wall = min(fold(args.large) for _ in range(3))
    yield (f"report time: evaluate on {args.large} events in-process {wall:.3f} s best of 3 "
           f"(target < 1.5 s) {'PASS' if wall < 1.5 else 'FAIL'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=12)
    parser.add_argument("--no-callgrind", dest="callgrind", action="store_false")
    parser.add_argument("--no-store", dest="store", action="store_false")
    parser.add_argument("--fold", type=int, help=argparse.SUPPRESS)  # one fold, for callgrind
    parser.add_argument("--dry", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--report-at", help=argparse.SUPPRESS)  # reports from a store, for callgrind
    parser.add_argument("--times", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.report_at is not None:
        _reports(args.report_at, args.times)
        return
    if args.fold is not None:
        fold(args.fold, dry=args.dry)
        return
    for line in _lines(args):
        print(line, flush=True)


if __name__ == "__main__":
    main()
