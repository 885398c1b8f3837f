"""The month folds of a rebuild, counted against a baseline checkout in the same run (issue 17).

``python -m benchmarks.month_folds --store URL --baseline DIR [--groups 40] [--rounds 3]
[--no-callgrind]``

A rebuild's workers spend most of their time evaluating contract-months (issue 17: 0.70 s
per 100,000 events, 85 % of it in the tenth of the months with downtime). This captures,
from a store (e.g. the 1M-event benchmark store), what the workers fold for the first
``--groups`` service groups: each held month (most have no fact), with its records, contract
version and position, read as ``projections.tracked.rebuilding`` reads them. Then it folds them
(``Evaluator.evaluate_or_failure``: report, stretches, support) with this checkout's code and
with ``DIR``'s (another checkout: ``git archive <commit> | tar -x -C DIR``), each in a child
process, and prints:

- instructions (callgrind, deterministic: the machine is shared) of the folds alone: the
  child's whole run less the same run stopped after the first month (which imports the
  folds' modules and pays their first uses, as a worker's first month does);
- CPU seconds of the folds (``process_time`` in the child), alternated rounds, medians;
- whether both checkouts' view rows are identical (the figures, reasons, events, digests).
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent


def capture(url: str, groups: int, out: Path) -> tuple[int, int, int]:
    """Pickle the months of the first ``groups`` service groups: (months, months with facts, records)."""
    from ledger.bootstrap import open_ledger
    from projections.tracked import rebuilding as rb
    from projections.tracked.evaluator import Evaluator
    from projections.tracked.groups import service_groups

    ledger = open_ledger(url)
    head = ledger.recorder.last_position()
    clock = next((r.recorded_at for r in ledger.recorder.read_records(head, head)), None)
    chosen = [(sorted(s), sorted(c)) for s, c in service_groups(ledger.contracts(head))][:groups]
    months: list[tuple[Any, ...]] = []
    original = Evaluator.evaluate_or_failure

    def keep(self: Evaluator, pair: tuple[str, str], upto: int, records: Any = None) -> Any:
        months.append((pair, upto, self.known.version_in_force(*pair), records))
        return original(self, pair, upto, records)

    Evaluator.evaluate_or_failure = keep  # type: ignore[method-assign]
    try:
        for services, contracts in chosen:
            rb._group_reports(ledger.recorder, services, contracts, head, clock)
    finally:
        Evaluator.evaluate_or_failure = original  # type: ignore[method-assign]
        ledger.close()
    out.write_bytes(pickle.dumps(months, protocol=pickle.HIGHEST_PROTOCOL))
    # Records: those of the months counted (all but the first, which both runs fold).
    return len(months), sum(1 for m in months if m[3]), sum(len(m[3]) for m in months[1:])


def fold(inputs: Path, code: Path, *, dry: bool, rows: Path | None) -> None:
    """Child process: fold the captured months with ``code``'s modules; CPU seconds on stdout."""
    sys.path.insert(0, str(code))
    import msgspec

    from projections.tracked.evaluator import Evaluator

    months = pickle.loads(inputs.read_bytes())

    class Versions:
        """What the evaluator asks of a ``Known``: the version in force (captured)."""

        def __init__(self) -> None:
            self.version: Any = None

        def version_in_force(self, contract: str, month: str) -> Any:
            return self.version

    known = Versions()
    evaluator = Evaluator(known)  # type: ignore[arg-type]
    out = []
    # The first month in both runs: the folds' modules imported, first uses paid, as in a worker.
    for pair, upto, version, records in months[:1]:
        known.version = version
        out.append(evaluator.evaluate_or_failure(pair, upto, records))
    if dry:
        return
    t0 = time.process_time()
    for pair, upto, version, records in months[1:]:
        known.version = version
        out.append(evaluator.evaluate_or_failure(pair, upto, records))
    cpu = time.process_time() - t0
    print(f"{cpu:.4f}")
    if rows is not None:
        rows.write_bytes(msgspec.msgpack.encode(out))


def _child(inputs: Path, code: Path, *extra: str, callgrind: Path | None = None) -> str:
    cmd = [sys.executable, "-m", "benchmarks.month_folds", "--fold", str(inputs), "--code", str(code), *extra]
    if callgrind is not None:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={callgrind}", *cmd]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def instructions(inputs: Path, code: Path) -> int:
    """Callgrind instructions of the folds alone: the child's run less the same run stopped before them."""
    counts = []
    with tempfile.TemporaryDirectory() as tmp:
        for extra in ((), ("--dry",)):
            out = Path(tmp) / "cg.out"
            _child(inputs, code, *extra, callgrind=out)
            counts.append(next(int(line.split()[1]) for line in out.read_text().splitlines()
                               if line.startswith("summary:")))
    return counts[0] - counts[1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.month_folds", description=__doc__.split("\n")[0])
    ap.add_argument("--store", help="the store to capture the months from (a store URL)")
    ap.add_argument("--baseline", type=Path, help="another checkout of the project")
    ap.add_argument("--groups", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-callgrind", dest="callgrind", action="store_false")
    ap.add_argument("--fold", type=Path, help=argparse.SUPPRESS)  # child: the captured months
    ap.add_argument("--code", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--dry", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.fold is not None:
        fold(args.fold, args.code, dry=args.dry, rows=args.rows)
        return
    if args.store is None or args.baseline is None:
        ap.error("--store and --baseline are required")
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "months.pickle"
        n, busy, records = capture(args.store, args.groups, inputs)
        print(f"# {n} months ({busy} with facts), {records} records folded, {args.groups} service groups; "
              f"load average {os.getloadavg()}", flush=True)
        checkouts = {"this": ROOT, "baseline": args.baseline}
        same = [Path(tmp) / f"{name}.rows" for name in checkouts]
        for name, rows in zip(checkouts, same, strict=True):
            _child(inputs, checkouts[name], "--rows", str(rows))
        identical = same[0].read_bytes() == same[1].read_bytes()
        print(f"# view rows identical to the baseline's: {identical}", flush=True)
        if args.callgrind and shutil.which("valgrind"):
            this, base = instructions(inputs, ROOT), instructions(inputs, args.baseline)
            print(f"month-folds instructions: this {this / 1e6:.0f}M vs baseline {base / 1e6:.0f}M "
                  f"(same run): ratio {this / base:.3f}; per month {this / (n - 1) / 1e3:.0f}k vs "
                  f"{base / (n - 1) / 1e3:.0f}k, per record {this / records:.0f} vs {base / records:.0f}",
                  flush=True)
        cpus: dict[str, list[float]] = {"this": [], "baseline": []}
        for i in range(args.rounds):
            order = list(checkouts) if i % 2 == 0 else list(checkouts)[::-1]
            for name in order:
                cpus[name].append(float(_child(inputs, checkouts[name])))
        this_cpu, base_cpu = statistics.median(cpus["this"]), statistics.median(cpus["baseline"])
        print(f"month-folds cpu: this {this_cpu:.3f} s vs baseline {base_cpu:.3f} s (medians of "
              f"{args.rounds} alternated rounds): ratio {this_cpu / base_cpu:.3f}; "
              f"load average {os.getloadavg()}", flush=True)
        if not identical:
            raise SystemExit("the view rows differ from the baseline's")


if __name__ == "__main__":
    main()
