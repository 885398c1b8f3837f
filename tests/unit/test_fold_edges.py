"""The month fold at the calendar's edges, against interval arithmetic written here (helper hAT).

test_fold_properties.py draws whole minutes in one zone and one month; here facts fall on
the microsecond either side of a month's local midnight (DST months, a 30-minute DST, no DST,
February of leap and other years, the ends of the accepted range), intervals touch and
overlap, an incident is declared twice, and facts arrive in any order. The model: outage is the
union of the incidents and the probe's down time; M is outage inside the window, excused is
outage inside the force majeure but not the window, D the rest; each month is clipped to its
local midnights, so adjacent months add up.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.calendar import month_bounds
from ledger.events import Recorded, fact_id
from ledger.policy import Policy
from projections.affected import add_months
from projections.timeline import from_us, to_us
from tests.unit.factories import fact, policy, run

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ZONES = ("Europe/Paris", "America/Toronto", "Australia/Sydney", "Australia/Lord_Howe", "Asia/Kolkata",
         "America/Santiago")
# (month before the bound, zone-independent): DST months, Februaries, a year's turn, range ends.
BOUNDS = ("2026-02", "2026-03", "2026-09", "2026-10", "2028-01", "2028-02", "2100-02", "2025-12",
          "1970-01", "2999-11", "2026-03")
Span = tuple[int, int]
US = timedelta(microseconds=1)


@cache
def make_policy(zone: str) -> Policy:
    return policy(f"""
[contract]
id = "c-1"
customer = "X"
service = "svc"
timezone = "{zone}"
currency = "EUR"
monthly_fee = "100.00"

[availability]
target = "99.9"
formula = "downtime_over_total"
outage_when = "any"
probes = ["p"]
excludable = ["force_majeure"]

[maintenance]
min_notice = "24h"
nonconforming = "downtime"

[credits]
tiers = [{{ below = "99.9", percent = "10" }}]
cap_percent = "100"
long_outage = {{ over = "2h", per_started_day = true }}
""")


def union(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        elif s < e:
            out.append((s, e))
    return out


def measure(spans: list[Span], lo: int, hi: int) -> int:
    return sum(max(0, min(e, hi) - max(s, lo)) for s, e in union(spans))


def cut(spans: list[Span], by: list[Span]) -> list[Span]:
    """``spans`` minus ``by`` (both unions)."""
    out: list[Span] = []
    for s, e in union(spans):
        cur = s
        for bs, be in union(by):
            if be <= cur or bs >= e:
                continue
            if bs > cur:
                out.append((cur, bs))
            cur = max(cur, be)
        if cur < e:
            out.append((cur, e))
    return out


def meet(spans: list[Span], by: list[Span]) -> list[Span]:
    return [(max(s, bs), min(e, be)) for s, e in union(spans) for bs, be in union(by)
            if max(s, bs) < min(e, be)]


@st.composite
def ledgers(draw: st.DrawFn) -> tuple[str, str, list[Recorded], dict[str, list[Span]]]:
    zone = draw(st.sampled_from(ZONES))
    month = draw(st.sampled_from(BOUNDS))
    bound = month_bounds(add_months(month, 1), ZoneInfo(zone))[0]
    near = st.one_of(st.sampled_from([0, -1, 1, -3_600_000_000, 3_600_000_000, -1800_000_000]),
                     st.integers(-3 * 86_400_000_000, 3 * 86_400_000_000),
                     st.integers(-40 * 86_400_000_000, 40 * 86_400_000_000))

    def span() -> tuple[datetime, datetime]:
        a, b = sorted(draw(st.lists(near, min_size=2, max_size=2, unique=True)))
        return bound + timedelta(microseconds=a), bound + timedelta(microseconds=b)

    facts, model = [], {"outage": [], "window": [], "fm": []}  # type: ignore[var-annotated]
    for k in range(draw(st.integers(0, 4))):  # incidents, touching and overlapping
        s, e = span()
        if k and draw(st.booleans()):  # starting where the previous one ends
            s = from_us(model["outage"][-1][1])
            e = max(e, s + timedelta(microseconds=1))
        facts.append(fact("incident_opened", service="svc", incident=f"I{k}", at=s, impact="outage"))
        if draw(st.booleans()):  # declared again while open (after its resolution it would reopen)
            facts.append(fact("incident_opened", service="svc", incident=f"I{k}", at=s + (e - s) / 2,
                              impact="outage"))
        facts.append(fact("incident_resolved", incident=f"I{k}", at=e))
        model["outage"].append((to_us(s), to_us(e)))
    if draw(st.booleans()):
        s, e = span()
        facts += [fact("probe_failed", service="svc", probe="p", at=s),
                  fact("probe_recovered", service="svc", probe="p", at=e)]
        model["outage"].append((to_us(s), to_us(e)))
    if draw(st.booleans()):
        s, e = span()
        facts.append(fact("maintenance_announced", service="svc", maintenance="W", title="w",
                          announced_at=s - timedelta(days=2), starts_at=s, ends_at=e))
        model["window"].append((to_us(s), to_us(e)))
    if draw(st.booleans()):
        s, e = span()
        facts.append(fact("force_majeure_declared", service="svc", declaration="F", reason="storm",
                          starts_at=s, ends_at=e))
        model["fm"].append((to_us(s), to_us(e)))
    order = draw(st.permutations(facts))  # arrival order is not time order
    records = [Recorded(position=i + 1, recorded_at=datetime(1969, 1, 1, tzinfo=UTC), id=fact_id(f), fact=f)
               for i, f in enumerate(order)]
    return zone, month, records, model


@SETTINGS
@given(case=ledgers())
def test_adjacent_months_are_the_interval_arithmetic(case: tuple[str, str, list[Recorded],
                                                                 dict[str, list[Span]]]) -> None:
    zone, month, records, model = case
    pol = make_policy(zone)
    outage, window, fm = model["outage"], model["window"], model["fm"]
    maintenance = meet(outage, window)
    excused = meet(cut(outage, window), fm)
    down = cut(cut(outage, window), fm)
    whole = [0, 0, 0, 0]
    for m in (month, add_months(month, 1)):
        lo, hi = (to_us(b) for b in month_bounds(m, ZoneInfo(zone)))
        report = run(records, pol, m).report
        us = Decimal("0.000001")
        got = [report.outage_seconds, report.maintenance_seconds, report.excused_seconds,
               report.downtime_seconds]
        want = [measure(x, lo, hi) for x in (outage, maintenance, excused, down)]
        assert got == [w * us for w in want], m
        assert report.total_seconds == (hi - lo) * us
        # A = (T - D) / T, truncated toward zero to 4 decimals.
        truncated = Decimal((hi - lo - want[3]) * 10**6 // (hi - lo)) / 10**4
        assert Decimal(report.availability_percent) == truncated
        assert sum((i.seconds for i in report.intervals if i.kind == "downtime"), Decimal(0)) == got[3]
        for i in report.intervals:
            assert lo <= to_us(i.start) < to_us(i.end) <= hi
        whole = [a + b for a, b in zip(whole, want, strict=True)]
        # Long outage: each unbroken stretch of D longer than 2 h that starts in the month, at its
        # whole length (past the month's end too), earns the daily rate (1200 / 365) per started day.
        days = sum(-(-(e - s) // 86_400_000_000) for s, e in union(down)
                   if lo <= s < hi and e - s > 7_200_000_000)
        assert Decimal(report.credit.long_outage_amount) == (Decimal(1200 * days) / 365).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP)
    lo = to_us(month_bounds(month, ZoneInfo(zone))[0])
    hi = to_us(month_bounds(add_months(month, 1), ZoneInfo(zone))[1])
    assert whole == [measure(x, lo, hi) for x in (outage, maintenance, excused, down)]


@cache
def claim_policy(zone: str, days: int) -> Policy:
    return policy(f"""
[contract]
id = "c-1"
customer = "X"
service = "svc"
timezone = "{zone}"
currency = "EUR"
monthly_fee = "100.00"

[availability]
target = "99.9"
probes = ["p"]

[credits]
tiers = [{{ below = "99.9", percent = "10" }}]
cap_percent = "100"
claim_deadline_days = {days}
""")


@SETTINGS
@given(zone=st.sampled_from(ZONES), month=st.sampled_from(BOUNDS), days=st.sampled_from([0, 1, 3, 27, 31]),
       delta=st.sampled_from([-1, 0, 1]))
def test_a_claim_is_in_time_up_to_the_midnight_ending_its_day(zone: str, month: str, days: int,
                                                               delta: int) -> None:
    tz = ZoneInfo(zone)
    lo, hi = month_bounds(month, tz)
    # The local midnight ending day ``days`` of the next month: the first instant of the day after.
    day = hi.astimezone(tz).date() + timedelta(days=days)
    deadline = datetime.combine(day, datetime.min.time(), tzinfo=tz).astimezone(UTC)
    assert deadline.astimezone(tz).date() == day
    assert (deadline - US).astimezone(tz).date() == day - timedelta(days=1)
    outage = [fact("probe_failed", service="svc", probe="p", at=lo),
              fact("probe_recovered", service="svc", probe="p", at=lo + timedelta(hours=9)),
              fact("credit_claim_filed", contract="c-1", month=month, at=deadline + delta * US)]
    records = [Recorded(position=i + 1, recorded_at=datetime(1969, 1, 1, tzinfo=UTC), id=fact_id(f), fact=f)
               for i, f in enumerate(outage)]
    credit = run(records, claim_policy(zone, days), month).report.credit
    assert credit.claim == ("late" if delta > 0 else "filed_in_time")
