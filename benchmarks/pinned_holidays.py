"""Issue 18 (hB): what pinned holidays cost the availability fold.

``python -m benchmarks.pinned_holidays [--windows 2000] [--runs 7]``

One contract on a Canadian business calendar (notice in business days, outside
business hours), a month of N maintenance windows with the probe down in each. The
fold (``projections.availability.evaluate``, in process, records decoded beforehand)
is timed with its holidays from the package (the baseline: the path every report took
before pins were read) and with a ``holidays_pinned`` fact of the same dates among its
records, alternated run by run; CPU time (``time.process_time``), medians. The figures
and digests of both must be equal (checked). The machine is shared, so the figures are
noisy; the ratio is what to read. Target: the pinned fold within 1.10 of the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

from ledger.calendar import holiday_dates
from ledger.events import HolidaysPinned, MaintenanceAnnounced, ProbeFailed, ProbeRecovered, Recorded, fact_id
from ledger.policy import resolve
from ledger.policy_check import load_policy
from projections.availability import evaluate

POLICY = """
[contract]
id = "bench"
customer = "B"
service = "web"
timezone = "America/Toronto"
currency = "CAD"
monthly_fee = "1000.00"

[availability]
target = "99.9"
formula = "maintenance_out_of_total"
outage_when = "any"
probes = ["p"]

[maintenance]
min_notice = "5 business days"
outside_business_hours = true
nonconforming = "downtime"

[calendar]
holidays = "CA"
business_hours = "09:00-17:00"
"""


def records(windows: int, pinned: bool) -> list[Recorded]:
    """N windows in July 2026 (a few minutes each, the probe down in each), and the pin if asked."""
    facts: list[object] = []
    start = datetime(2026, 7, 1, 4, tzinfo=UTC)
    step = timedelta(days=30) / windows
    for i in range(windows):
        s = start + i * step
        e = s + min(step / 2, timedelta(minutes=20))
        announced = s - timedelta(days=3 + i % 9)
        facts += [MaintenanceAnnounced(service="web", maintenance=f"w{i}", announced_at=announced,
                                       starts_at=s, ends_at=e),
                  ProbeFailed(service="web", probe="p", at=s), ProbeRecovered(service="web", probe="p", at=e)]
    if pinned:
        facts.append(HolidaysPinned(country="CA", year=2026,
                                    dates=tuple(d.isoformat() for d in sorted(holiday_dates("CA", 2026)))))
    at = datetime(2026, 6, 1, tzinfo=UTC)
    return [Recorded(position=i, recorded_at=at, id=fact_id(f), fact=f)  # type: ignore[arg-type]
            for i, f in enumerate(facts, 1)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    policy = resolve(load_policy(POLICY.encode()))
    cases = {"package": records(args.windows, False), "pinned": records(args.windows, True)}
    times: dict[str, list[float]] = {k: [] for k in cases}
    digests = {}
    for _ in range(args.runs):
        for name, recs in cases.items():  # alternated: A, B, A, B ...
            t0 = time.process_time()
            ev = evaluate(recs, policy, 1, "2026-07", as_of_position=0)
            times[name].append(time.process_time() - t0)
            digests[name] = (ev.report.digest, ev.report.downtime_seconds, ev.report.maintenance_seconds)
    assert digests["package"] == digests["pinned"], digests
    base, pin = statistics.median(times["package"]), statistics.median(times["pinned"])
    print(f"fold, {args.windows} windows, holidays from the package (baseline): {base * 1000:.1f} ms CPU "
          f"(median of {args.runs})")
    ratio = pin / base
    print(f"fold, {args.windows} windows, holidays pinned: {pin * 1000:.1f} ms CPU, "
          f"ratio {ratio:.3f} to the baseline: {'PASS' if ratio <= 1.10 else 'FAIL'} (target <= 1.10)")


if __name__ == "__main__":
    main()
