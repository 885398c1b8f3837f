"""Properties of the month fold, on random ledgers (hypothesis).

The month is March 2026 in Europe/Paris (a 743 h month); facts are spread from a few days
before it to a few days after, so month boundaries and the DST change are exercised.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.events import Fact, MaintenanceAnnounced, Recorded, fact_id
from ledger.policy import Policy
from projections.model import Evaluation, Report
from tests.unit.factories import fact, policy, run

MONTH = "2026-03"
BASE = datetime(2026, 2, 26, tzinfo=UTC)
SPAN_MIN = 36 * 24 * 60  # minutes covered by generated facts
PROBES = ("paris", "frankfurt", "london")
RECORDED = datetime(2026, 1, 1, tzinfo=UTC)

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def make_policy(outage_when: str, formula: str, maintenance: str, excludable: tuple[str, ...]) -> Policy:
    clause = (
        ""
        if maintenance == "none"
        else f'[maintenance]\nmin_notice = "24h"\nnonconforming = "{maintenance}"\n'
    )
    quoted = ", ".join(f'"{e}"' for e in excludable)
    return policy(
        f"""
[contract]
id = "c-1"
customer = "X"
service = "svc"
timezone = "Europe/Paris"
currency = "EUR"
monthly_fee = "100.00"

[availability]
target = "99.9"
formula = "{formula}"
outage_when = {outage_when}
probes = ["paris", "frankfurt", "london"]
excludable = [{quoted}]

{clause}
[credits]
tiers = [{{ below = "99.9", percent = "10" }}, {{ below = "99", percent = "50" }}]
cap_percent = "100"
claim_deadline_days = 3
long_outage = {{ over = "2h", per_started_day = true }}
"""
    )


policies = st.builds(
    make_policy,
    st.sampled_from(['"any"', '"all"', "2"]),
    st.sampled_from(["downtime_over_total", "maintenance_out_of_total"]),
    st.sampled_from(["downtime", "emergency", "none"]),
    st.sampled_from([(), ("force_majeure",), ("force_majeure", "customer_isp", "third_party")]),
)

minutes = st.integers(min_value=0, max_value=SPAN_MIN)


def at(m: int) -> datetime:
    return BASE + timedelta(minutes=m)


def _probe(kind: str, probe: str, m: int, service: str) -> Fact:
    return fact(kind, service=service, probe=probe, at=at(m))


def _window(mid: str, notice_h: int, m: int, dur: int) -> Fact:
    return fact(
        "maintenance_announced",
        service="svc",
        maintenance=mid,
        announced_at=at(m) - timedelta(hours=notice_h),
        starts_at=at(m),
        ends_at=at(m + dur),
    )


def _exclusion(xid: str, category: str, contract: str | None, m: int, dur: int) -> Fact:
    if category == "force_majeure":
        return fact(
            "force_majeure_declared",
            service="svc",
            declaration=xid,
            starts_at=at(m),
            ends_at=at(m + dur),
            reason="storm",
        )
    return fact(
        "exclusion_declared",
        service="svc",
        exclusion=xid,
        category=category,
        contract=contract,
        starts_at=at(m),
        ends_at=at(m + dur),
        reason="isp",
    )


durations = st.integers(min_value=1, max_value=12_000)
probe_facts = st.builds(
    _probe,
    st.sampled_from(["probe_failed", "probe_recovered"]),
    st.sampled_from([*PROBES, "tokyo"]),
    minutes,
    st.sampled_from(["svc", "svc", "svc", "other"]),
)
facts = st.one_of(
    probe_facts,
    probe_facts,
    probe_facts,
    st.builds(
        lambda i, m, impact: fact("incident_opened", service="svc", incident=i, at=at(m), impact=impact),
        st.sampled_from(["I1", "I2"]),
        minutes,
        st.sampled_from(["outage", "outage", "degraded"]),
    ),
    st.builds(
        lambda i, m: fact("incident_resolved", incident=i, at=at(m)), st.sampled_from(["I1", "I2"]), minutes
    ),
    # Negative notice: announced after the window started, up to after it ended.
    st.builds(_window, st.sampled_from(["m1", "m2", "m3"]), st.integers(-250, 72), minutes, durations),
    st.builds(
        lambda i, m: fact("maintenance_cancelled", maintenance=i, at=at(m)),
        st.sampled_from(["m1", "m3"]),
        minutes,
    ),
    st.builds(
        lambda i, m: fact("maintenance_completed", maintenance=i, at=at(m)),
        st.sampled_from(["m1", "m2"]),
        minutes,
    ),
    st.builds(
        _exclusion,
        st.sampled_from(["x1", "x2", "x3"]),
        st.sampled_from(["force_majeure", "customer_isp", "internet_failure"]),
        st.sampled_from([None, "c-1", "c-2"]),
        minutes,
        durations,
    ),
    st.builds(lambda ref: fact("exclusion_revoked", ref=ref, reason="wrong"), st.sampled_from(["x1", "x2"])),
    st.builds(lambda m: fact("credit_claim_filed", contract="c-1", month=MONTH, at=at(m)), minutes),
)


def recorded(fs: list[Fact]) -> list[Recorded]:
    return [Recorded(position=i + 1, recorded_at=RECORDED, id=fact_id(f), fact=f) for i, f in enumerate(fs)]


ledgers = st.lists(facts, min_size=6, max_size=40).map(recorded)


def figures(r: Report) -> dict[str, Any]:
    """The report without what depends on positions (interval events, as_of_position)."""
    out = msgspec.to_builtins(r)
    out.pop("as_of_position")
    for i in out["intervals"]:
        i.pop("events")
    return out  # type: ignore[no-any-return]


def check_invariants(ev: Evaluation) -> None:
    r = ev.report
    a = Decimal(r.availability_percent)
    assert Decimal(0) <= a <= Decimal(100)
    assert r.downtime_seconds + r.maintenance_seconds + r.excused_seconds == r.outage_seconds
    lo, hi = ev.explanation.month_start.astimezone(UTC), ev.explanation.month_end.astimezone(UTC)
    assert r.total_seconds == Decimal((hi - lo) // timedelta(microseconds=1)) / 1_000_000
    sums = {"downtime": Decimal(0), "maintenance": Decimal(0), "excused": Decimal(0)}
    prev_end = lo
    for i in r.intervals:
        assert prev_end <= i.start.astimezone(UTC) < i.end.astimezone(UTC) <= hi
        assert i.seconds == Decimal((i.end - i.start) // timedelta(microseconds=1)) / 1_000_000
        assert list(i.events) == sorted(set(i.events))
        sums[i.kind] += i.seconds
        prev_end = i.end.astimezone(UTC)
    assert sums == {
        "downtime": r.downtime_seconds,
        "maintenance": r.maintenance_seconds,
        "excused": r.excused_seconds,
    }


@SETTINGS
@given(policies, ledgers, st.randoms(use_true_random=False))
def test_arrival_order_changes_nothing(pol: Policy, recs: list[Recorded], rnd: Any) -> None:
    base = run(recs, pol, MONTH)
    check_invariants(base)
    shuffled = list(recs)
    rnd.shuffle(shuffled)
    again = run(shuffled, pol, MONTH)
    assert again == base  # same positions: everything identical, explanation included
    # Imported in another order into a fresh store (new positions): same figures and digest.
    renumbered = [msgspec.structs.replace(r, position=i + 1) for i, r in enumerate(shuffled)]
    assert figures(run(renumbered, pol, MONTH).report) == figures(base.report)
    # Recorded later (every notice now looks backdated, every claim recorded late): same figures, digest.
    later = [msgspec.structs.replace(r, recorded_at=datetime(2027, 1, 1, tzinfo=UTC)) for r in recs]
    assert run(later, pol, MONTH).report == base.report


@SETTINGS
@given(policies, ledgers, st.lists(st.booleans(), min_size=40, max_size=40))
def test_two_batches_equal_one(pol: Policy, recs: list[Recorded], split: list[bool]) -> None:
    first = [r for r, s in zip(recs, split, strict=False) if s]
    second = [r for r, s in zip(recs, split, strict=False) if not s]
    assert run(itertools.chain(first, second), pol, MONTH) == run(recs, pol, MONTH)


@SETTINGS
@given(policies, ledgers, minutes, durations)
def test_an_excludable_exclusion_never_increases_downtime(
    pol: Policy, recs: list[Recorded], m: int, dur: int
) -> None:
    category = sorted(pol.excludable)[0] if pol.excludable else None
    if category is None:
        pol = make_policy('"any"', "downtime_over_total", "downtime", ("force_majeure",))
        category = "force_majeure"
    before = run(recs, pol, MONTH).report
    added = recorded([r.fact for r in recs] + [_exclusion("x-new", category, None, m, dur)])
    after = run(added, pol, MONTH)
    check_invariants(after)
    assert after.report.downtime_seconds <= before.downtime_seconds
    assert after.report.outage_seconds == before.outage_seconds
    assert Decimal(after.report.availability_percent) >= Decimal(before.availability_percent)


@SETTINGS
@given(policies, ledgers, minutes, durations)
def test_a_conforming_window_never_increases_downtime(
    pol: Policy, recs: list[Recorded], m: int, dur: int
) -> None:
    if pol.maintenance is None:
        pol = make_policy('"all"', "maintenance_out_of_total", "downtime", ())
    before = run(recs, pol, MONTH).report
    added = recorded([r.fact for r in recs] + [_window("m-new", 48, m, dur)])
    after = run(added, pol, MONTH)
    check_invariants(after)
    assert after.report.downtime_seconds <= before.downtime_seconds
    assert after.report.outage_seconds == before.outage_seconds


@SETTINGS
@given(policies, ledgers, minutes, durations, st.integers(-250, 72), st.integers(1, 300))
def test_announcing_a_window_later_never_decreases_downtime(
    pol: Policy, recs: list[Recorded], m: int, dur: int, notice_h: int, delay_h: int
) -> None:
    # Less notice can only make a window non-conforming, and a later announcement only
    # leaves more of it before its announcement, where it does not exist.
    if pol.maintenance is None:
        pol = make_policy('"any"', "downtime_over_total", "emergency", ("force_majeure",))
    facts = [r.fact for r in recs]
    sooner = run(recorded([*facts, _window("m-new", notice_h, m, dur)]), pol, MONTH)
    later = run(recorded([*facts, _window("m-new", notice_h - delay_h, m, dur)]), pol, MONTH)
    check_invariants(later)
    assert later.report.downtime_seconds >= sooner.report.downtime_seconds
    assert later.report.outage_seconds == sooner.report.outage_seconds


@SETTINGS
@given(policies, ledgers, minutes, durations, st.integers(0, 300))
def test_a_window_announced_after_its_end_excuses_nothing(
    pol: Policy, recs: list[Recorded], m: int, dur: int, after_h: int
) -> None:
    # Announced at or after its end: the window never existed, so every figure is as without
    # it (only reasons name it), under either rule for non-conforming windows.
    if pol.maintenance is None:
        pol = make_policy('"all"', "maintenance_out_of_total", "emergency", ())
    facts = [r.fact for r in recs]
    late = fact(
        "maintenance_announced",
        service="svc",
        maintenance="m-new",
        announced_at=at(m + dur) + timedelta(hours=after_h),
        starts_at=at(m),
        ends_at=at(m + dur),
    )
    without = run(recorded(facts), pol, MONTH).report
    ev = run(recorded([*facts, late]), pol, MONTH)
    check_invariants(ev)
    r = ev.report
    assert (r.outage_seconds, r.maintenance_seconds, r.excused_seconds, r.downtime_seconds) == (
        without.outage_seconds,
        without.maintenance_seconds,
        without.excused_seconds,
        without.downtime_seconds,
    )
    assert (r.availability_percent, r.credit) == (without.availability_percent, without.credit)
    assert isinstance(late, MaintenanceAnnounced)
    if ev.explanation.month_start <= late.starts_at < ev.explanation.month_end:
        assert any(f.kind == "announced_late" and f.ref == "m-new" for f in ev.explanation.findings)
