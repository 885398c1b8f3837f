"""The month read by keys equals the whole history with facts on the microsecond of a bound (helper hAT).

test_month_bounded.py draws whole minutes; the keys that bound a month's read spell instants
to the microsecond (an incident opened the microsecond before the month, a probe report on
the last microsecond of a UTC day, a window ending exactly at the month's start). Here every
instant is a local or UTC month bound, a local DST change or a UTC midnight, moved by nothing,
a microsecond either way or up to a day. SQLite and PostgreSQL.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.calendar import month_bounds
from tests.integration.test_month_bounded import MONTHS, ZONES, C, S, _check, _policy
from tests.pgserver import scratch_database
from tests.unit.calendar_edges import transitions

_US = 1
_H = 3_600_000_000


@st.composite
def _case(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]], list[str]]:
    zone = draw(st.sampled_from(ZONES))
    months = draw(st.lists(st.sampled_from(MONTHS), min_size=1, max_size=2, unique=True))
    anchors = sorted({b for m in months for b in month_bounds(m, ZoneInfo(zone))}
                     | {datetime(int(m[:4]), int(m[5:]), 1, tzinfo=UTC) for m in months}
                     | {t for y in (2025, 2026) for t in transitions(zone, y)})
    instant = st.builds(lambda a, d: (a + timedelta(microseconds=d)).isoformat(), st.sampled_from(anchors),
                        st.one_of(st.sampled_from([0, 0, -_US, _US, -_H]), st.integers(-26 * _H, 26 * _H)))
    spans = st.lists(instant, min_size=2, max_size=2, unique=True).map(
        lambda two: sorted(two, key=datetime.fromisoformat))
    out: list[dict[str, Any]] = []
    for probe in ("p1", "p2", "p3"):
        for _ in range(draw(st.integers(0, 4))):
            out.append({"type": draw(st.sampled_from(["probe_failed", "probe_recovered"])), "service": S,
                        "probe": probe, "at": draw(instant)})
    for i in range(draw(st.integers(0, 2))):
        out.append({"type": "incident_opened", "service": S, "incident": f"inc-{i}", "at": draw(instant),
                    "impact": draw(st.sampled_from(["outage", "outage", "degraded"]))})
        for _ in range(draw(st.integers(0, 1))):
            out.append({"type": "incident_resolved", "incident": f"inc-{i}", "at": draw(instant)})
    for i in range(draw(st.integers(0, 2))):
        a, b = draw(spans)
        announced = datetime.fromisoformat(a) - timedelta(hours=draw(st.sampled_from([24, 1])))
        out.append({"type": "maintenance_announced", "service": S, "maintenance": f"mw-{i}",
                    "announced_at": announced.isoformat(), "starts_at": a, "ends_at": b})
    for i in range(draw(st.integers(0, 1))):
        a, b = draw(spans)
        out.append({"type": "force_majeure_declared", "service": S, "declaration": f"fm-{i}",
                    "reason": "storm", "starts_at": a, "ends_at": b})
    for _ in range(draw(st.integers(0, 1))):
        out.append({"type": "credit_claim_filed", "contract": C, "month": draw(st.sampled_from(months)),
                    "at": draw(instant)})
    return zone, draw(st.permutations(out)), months


_SETTINGS = {"deadline": None,
             "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]}


@settings(max_examples=25, **_SETTINGS)  # type: ignore[arg-type]
@given(case=_case(), split=st.integers(0, 30), quorum=st.sampled_from(['"any"', "2"]))
def test_read_by_month_at_the_microsecond_sqlite(monkeypatch: pytest.MonkeyPatch,
                                                 case: tuple[str, list[dict[str, Any]], list[str]],
                                                 split: int, quorum: str) -> None:
    zone, lines, months = case
    with tempfile.TemporaryDirectory() as tmp:
        _check(f"sqlite:///{tmp}/l.db", _policy(zone, quorum, "downtime"), lines, split, months, 10**6,
               monkeypatch)


@settings(max_examples=5, **_SETTINGS)  # type: ignore[arg-type]
@given(case=_case(), split=st.integers(0, 30), quorum=st.sampled_from(['"any"', "2"]))
def test_read_by_month_at_the_microsecond_postgres(pg_admin_url: str, monkeypatch: pytest.MonkeyPatch,
                                                   case: tuple[str, list[dict[str, Any]], list[str]],
                                                   split: int, quorum: str) -> None:
    zone, lines, months = case
    with scratch_database(pg_admin_url) as url:
        _check(url, _policy(zone, quorum, "downtime"), lines, split, months, 10**6, monkeypatch)
