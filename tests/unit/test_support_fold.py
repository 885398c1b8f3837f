"""Properties of the support fold (pure): import order, earlier responses, replay horizons."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.calendar import month_bounds
from ledger.events import (
    Fact,
    Recorded,
    RecoveryPerformed,
    SupportEngaged,
    SupportTimeLogged,
    TicketClassified,
    TicketOpened,
    TicketResponded,
    TicketSeverityChanged,
    fact_id,
)
from ledger.policy import Policy, resolve
from ledger.policy_check import load_policy
from projections.credit import Stretch
from projections.support import evaluate_support
from projections.support_model import SupportReport, TicketLine
from projections.timeline import to_us
from tests.integration.test_support_examples import POLICY_B, POLICY_C, POLICY_D

MONTH = "2026-10"
START = datetime(2026, 9, 28, tzinfo=UTC)
SPAN_MIN = 40 * 24 * 60
POLICIES = {"B": resolve(load_policy(POLICY_B)), "D": resolve(load_policy(POLICY_D))}
SEVERITIES = {"B": ["production_down", "moderate", "limited", "unknown"], "D": ["level1", "level2", "level3"]}


def _at(minutes: int) -> datetime:
    return START + timedelta(minutes=minutes)


@st.composite
def histories(draw: st.DrawFn) -> tuple[str, list[Fact]]:
    """A policy and the facts of a few tickets: openings, changes, responses, one classification, logs."""
    which = draw(st.sampled_from(sorted(POLICIES)))
    contract = POLICIES[which].contract_id
    facts: list[Fact] = []
    for i in range(draw(st.integers(1, 6))):
        t = f"T-{i}"
        opened = draw(st.integers(0, SPAN_MIN))
        sev = st.sampled_from(SEVERITIES[which])
        facts.append(TicketOpened(contract=contract, ticket=t, at=_at(opened), severity=draw(sev)))
        if draw(st.booleans()):
            facts.append(TicketSeverityChanged(ticket=t, at=_at(opened + draw(st.integers(0, 600))),
                                               severity=draw(sev)))
        for _ in range(draw(st.integers(0, 2))):
            facts.append(TicketResponded(ticket=t, at=_at(opened + draw(st.integers(0, 5000)))))
        if draw(st.booleans()):
            facts.append(TicketClassified(ticket=t, kind=draw(st.sampled_from(["account", "bug"]))))
        if draw(st.booleans()):
            facts.append(SupportTimeLogged(ticket=t, at=_at(opened + 30), seconds=draw(st.integers(1, 9000))))
    return which, facts


def _records(facts: list[Fact]) -> list[Recorded]:
    at = datetime(2026, 11, 2, tzinfo=UTC)
    return [Recorded(position=i + 1, recorded_at=at, id=fact_id(f), fact=f) for i, f in enumerate(facts)]


def _run(policy: Policy, facts: list[Fact], **kw: Any) -> SupportReport:
    return evaluate_support(_records(facts), policy, 1, MONTH, as_of_position=len(facts), **kw)


def _without_positions(report: SupportReport) -> Any:
    raw = msgspec.to_builtins(report)
    for t in raw["tickets"]:
        del t["events"]
    return raw


@settings(max_examples=40, deadline=None)
@given(history=histories(), seed=st.integers(0, 2**32))
def test_import_order_changes_nothing(history: tuple[str, list[Fact]], seed: int) -> None:
    which, facts = history
    shuffled = list(facts)
    random.Random(seed).shuffle(shuffled)
    a, b = _run(POLICIES[which], facts), _run(POLICIES[which], shuffled)
    assert _without_positions(a) == _without_positions(b)
    assert a.digest == b.digest


@settings(max_examples=40, deadline=None)
@given(history=histories(), earlier=st.integers(1, 3000))
def test_an_earlier_response_never_turns_met_into_breached(history: tuple[str, list[Fact]],
                                                           earlier: int) -> None:
    which, facts = history
    policy = POLICIES[which]
    before = {t.ticket: t for t in _run(policy, facts).tickets}
    opened = {f.ticket: f.at for f in facts if isinstance(f, TicketOpened)}
    moved = [
        msgspec.structs.replace(f, at=max(opened[f.ticket], f.at - timedelta(minutes=earlier)))
        if isinstance(f, TicketResponded) else f
        for f in facts
    ]
    after = {t.ticket: t for t in _run(policy, moved).tickets}
    for ticket, line in before.items():
        # Same severity in force (a change between the two response instants can change the
        # target itself): compare like with like.
        if line.status == "met" and ticket in after and after[ticket].severity == line.severity:
            assert after[ticket].status == "met"
            assert after[ticket].response_seconds <= line.response_seconds


@settings(max_examples=30, deadline=None)
@given(history=histories(), cut=st.integers(0, SPAN_MIN))
def test_an_earlier_replay_point_never_shows_more(history: tuple[str, list[Fact]], cut: int) -> None:
    which, facts = history
    point = _at(cut)
    policy = POLICIES[which]
    report = _run(policy, facts, replay_point=point)
    ms, me = month_bounds(MONTH, policy.timezone)
    horizon = max(ms, min(me, point))
    for t in report.tickets:
        _check_line(t, horizon)


def _check_line(t: TicketLine, horizon: datetime) -> None:
    if t.responded_at is None and t.deadline is not None and t.deadline >= horizon:
        assert t.status == "pending"
    if t.status == "pending":
        assert t.responded_at is None


@settings(max_examples=40, deadline=None)
@given(history=histories(), cut=st.integers(0, SPAN_MIN))
def test_a_fact_dated_after_the_replay_point_had_not_happened(history: tuple[str, list[Fact]],
                                                             cut: int) -> None:
    """Replayed to a point, facts recorded ahead of their `at` count as not yet happened (helper hAW).

    As availability's outage stops at the horizon: a response dated after the point does not
    answer the ticket yet, a ticket opened after it is not listed, time logged after it is not
    drawn. So the replay equals the replay of only the facts dated up to the point.
    """
    which, facts = history
    point = _at(cut)
    policy = POLICIES[which]
    known = [f for f in facts if getattr(f, "at", point) <= point]
    a = _run(policy, facts, replay_point=point)
    b = evaluate_support(_records(known), policy, 1, MONTH, as_of_position=len(facts), replay_point=point)
    assert _without_positions(a) == _without_positions(b)
    assert a.digest == b.digest


def test_an_engagement_or_recovery_dated_after_the_replay_point_had_not_happened() -> None:
    """The stretch's engagement is still due (its seconds run to the point), the recovery unlisted."""
    d, c = resolve(load_policy(POLICY_D)), resolve(load_policy(POLICY_C))
    down = to_us(_at(4 * 24 * 60))
    stretch = Stretch(down, down + 3_600_000_000, (1,))
    engaged = [SupportEngaged(service="bi", level="level3", at=_at(4 * 24 * 60 + 5))]
    recovered = [RecoveryPerformed(service="optimy", recovery="r", at=_at(4 * 24 * 60 + 5),
                                   restored_to=_at(4 * 24 * 60))]
    for point, status, secs in ((_at(4 * 24 * 60 + 4), "pending", 240), (_at(4 * 24 * 60 + 5), "met", 300)):
        e = _run(d, engaged, stretches=[stretch], replay_point=point).engagements
        assert e is not None
        assert [(x.status, x.seconds) for x in e] == [(status, secs)]
        r = _run(c, recovered, replay_point=point).recoveries
        assert r is not None
        assert len(r) == (status == "met")
