"""The follower's incremental rows equal the full fold, with facts on the microsecond of an edge (helper hAT).

test_affected.py draws whole hours; which contract-months a fact touches is decided at month
bounds, DST changes and claim deadlines, so here every instant is one of those (Paris and
Toronto local midnights of each month, the two DST changes of March 2026, the claim deadlines
of each month) moved by nothing, a microsecond either way, or up to a few days. Facts arrive in
any order, some twice; the projection is fed in random batches, with restarts.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.calendar import month_bounds
from ledger.events import Fact, Recorded, fact_id
from projections.affected import add_months
from projections.credit import claim_deadline
from projections.tracked import ReportingProjection
from tests.unit.factories import fact
from tests.unit.test_affected import AMEND_1, MONTHS, RECORDED, REGISTER_1, REGISTER_2, MemoryView, full

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ANCHORS = sorted({b for z in ("Europe/Paris", "America/Toronto") for m in (*MONTHS, "2026-05")
                  for b in month_bounds(m, ZoneInfo(z))}
                 | {claim_deadline(m, ZoneInfo(z), 3) for z in ("Europe/Paris", "America/Toronto")
                    for m in MONTHS}
                 | {datetime(2026, 3, 8, 7, tzinfo=UTC), datetime(2026, 3, 29, 1, tzinfo=UTC)})
US = 1
H = 3_600_000_000
instants = st.builds(lambda a, d: (a + timedelta(microseconds=d)).isoformat(), st.sampled_from(ANCHORS),
                     st.one_of(st.sampled_from([0, 0, -US, US, -H, H]), st.integers(-72 * H, 72 * H)))


@st.composite
def spans(draw: st.DrawFn) -> tuple[str, str]:
    a, b = sorted(draw(st.lists(instants, min_size=2, max_size=2, unique=True)),
                  key=datetime.fromisoformat)
    return a, b


@st.composite
def one_fact(draw: st.DrawFn) -> Fact:
    kind = draw(st.integers(0, 6))
    if kind <= 1:
        return fact(draw(st.sampled_from(["probe_failed", "probe_recovered"])), service="svc",
                    probe=draw(st.sampled_from(["p1", "p2"])), at=draw(instants))
    if kind == 2:
        i = draw(st.sampled_from(["i1", "i2"]))
        if draw(st.booleans()):
            return fact("incident_opened", service="svc", incident=i, impact="outage", at=draw(instants))
        return fact("incident_resolved", incident=i, at=draw(instants))
    if kind == 3:
        s, e = draw(spans())
        notice = timedelta(hours=draw(st.sampled_from([24, 48, -1])),
                           microseconds=draw(st.sampled_from([0, 1, -1])))
        return fact("maintenance_announced", service="svc", maintenance=draw(st.sampled_from(["m1", "m2"])),
                    announced_at=(datetime.fromisoformat(s) - notice).isoformat(), starts_at=s, ends_at=e)
    if kind == 4:
        s, e = draw(spans())
        return fact("exclusion_declared", service="svc", exclusion=draw(st.sampled_from(["x1", "x2"])),
                    category=draw(st.sampled_from(["customer_isp", "third_party"])),
                    contract=draw(st.sampled_from([None, "c-paris"])), starts_at=s, ends_at=e, reason="isp")
    if kind == 5:
        return fact("maintenance_completed", maintenance=draw(st.sampled_from(["m1", "m2"])),
                    at=draw(instants))
    month = draw(st.sampled_from(MONTHS))
    deadline = claim_deadline(month, ZoneInfo("Europe/Paris"), 3)
    at = draw(st.one_of(instants, st.sampled_from([deadline, deadline - timedelta(microseconds=1)])
                        .map(datetime.isoformat)))
    return fact("credit_claim_filed", contract=draw(st.sampled_from(["c-paris", "c-toronto"])),
                month=month if draw(st.booleans()) else add_months(month, 1), at=at)


@st.composite
def ledgers(draw: st.DrawFn) -> tuple[list[Recorded], list[int]]:
    facts: list[Fact] = draw(st.lists(one_fact(), min_size=1, max_size=24))
    for again in draw(st.lists(st.sampled_from(facts), max_size=3)):  # duplicates
        facts.insert(draw(st.integers(0, len(facts))), again)
    for contract_fact in (REGISTER_2, REGISTER_1):
        facts.insert(draw(st.integers(0, len(facts))), contract_fact)
    if draw(st.booleans()):
        facts.insert(draw(st.integers(facts.index(REGISTER_1) + 1, len(facts))), AMEND_1)
    # A fact sent again under an id of its own (the store keeps both: ids differ, content is one).
    gaps = draw(st.lists(st.sampled_from([1, 3600, 2 * 86400, 6 * 86400]), min_size=len(facts),
                         max_size=len(facts)))
    clock = list(itertools.accumulate(gaps))
    records = [Recorded(position=i, recorded_at=RECORDED + timedelta(seconds=clock[i - 1]),
                        id=f"{fact_id(f)}-{i}", fact=f)
               for i, f in enumerate(facts, 1)]
    cuts = sorted(set(draw(st.lists(st.integers(1, len(records)), max_size=6))) | {len(records)})
    return records, cuts


@SETTINGS
@given(ledgers())
def test_incremental_rows_equal_the_full_fold_at_the_edges(ledger: tuple[list[Recorded], list[int]]) -> None:
    records, cuts = ledger
    view = MemoryView(records)
    projection = ReportingProjection(view)  # type: ignore[arg-type]
    start = 0
    for i, cut in enumerate(cuts):
        if i % 2:  # restarted: catches up from the view's position
            view.reader.records = records[:cut]
            projection = ReportingProjection(view)  # type: ignore[arg-type]
            assert projection.catch_up() == cut
            view.reader.records = records
        else:
            projection.apply(records[start:cut])
        start = cut
        assert view.figures == full(records[:cut])
