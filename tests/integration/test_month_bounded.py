"""Month-bounded availability reads (issue 17): a report read by month equals, byte for byte, a full replay.

``ledger.month_read`` reads a contract-month's service facts by UTC month buckets, walks
back per probe to its latest recovery, reads every incident opening, the windows touching
the month and, when an outage runs to the horizon, what follows the month. The property
compares the report and the audit (walk-through, findings, digest, citations) with the same
commands over every fact up to the position, on both stores: probes down across many months
(and never recovered), quorum rules, long-outage credit, windows announced ahead, re-announced,
cancelled or completed, exclusions revoked, incidents never resolved, facts in any order
and split over two imports, DST zones, replay positions. ``ledger verify`` holds throughout.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger.ingest.lines as lines_module
import ledger.month_read as month_read
from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.events import (
    ExclusionDeclared,
    ForceMajeureDeclared,
    IncidentOpened,
    IncidentResolved,
    MaintenanceAnnounced,
    ProbeFailed,
    ProbeRecovered,
    Recorded,
)
from ledger.persistence.keys import index_keys
from ledger.persistence.port import LedgerRecorder
from ledger.policy import Policy
from ledger.policy_check import load_policy
from ledger.verify import verify
from projections.model import to_json
from tests.conftest import StepClock
from tests.lines import import_lines
from tests.pgserver import scratch_database

C = "web-sla"
S = "web"
BASE = datetime(2025, 1, 1, tzinfo=UTC)
MONTHS = ("2025-06", "2025-12", "2026-01", "2026-03", "2026-04")
ZONES = ("Europe/Paris", "Pacific/Auckland", "America/Los_Angeles", "UTC")
POLICY = """
[contract]
id = "web-sla"
customer = "Example"
service = "web"
timezone = "{zone}"
currency = "EUR"
monthly_fee = "1000.00"

[availability]
target = "99.9"
formula = "maintenance_out_of_total"
outage_when = {quorum}
probes = ["p1", "p2", "p3"]
excludable = ["force_majeure", "third_party"]

[maintenance]
min_notice = "24h"
outside_business_hours = false
nonconforming = "{nonconforming}"

[credits]
tiers = [{{ below = "99.9", percent = "10" }}, {{ below = "99", percent = "25" }}]
cap_percent = "50"
long_outage = {{ over = "4h", per_started_day = true }}
claim_deadline_days = 10
"""


def _month_start(index: int) -> datetime:
    return datetime(2025 + index // 12, index % 12 + 1, 1, tzinfo=UTC)


# Instants over 18 months (minutes from BASE), with a bias to the ends of months in UTC and
# in the zones (where UTC months and local months part) and to the first minute of a month.
_SPAN = 18 * 31 * 24 * 60
_EDGES = sorted({
    int((_month_start(i) - BASE).total_seconds() // 60) + 60 * h + d
    for i in range(1, 18) for h in (-13, -12, -2, -1, 0, 7, 8) for d in (-1, 0, 1)
})
_minutes = st.one_of(st.integers(0, _SPAN), st.sampled_from(_EDGES))


def _at(minutes: int) -> str:
    return (BASE + timedelta(minutes=minutes)).isoformat()


# An id that extends another with "@" and an instant: unescaped, its resolution keys would
# fall in the other's range and close it.
_INCIDENTS = ("inc-0", "inc-0@2025-06-01T00:00:00.000000Z", "inc/2", "inc-3")


@st.composite
def _facts(draw: st.DrawFn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for probe in ("p1", "p2", "p3", "px"):
        for _ in range(draw(st.integers(0, 5))):
            kind = draw(st.sampled_from(["probe_failed", "probe_recovered"]))
            service = S if draw(st.integers(0, 6)) else "other"
            out.append({"type": kind, "service": service, "probe": probe, "at": _at(draw(_minutes))})
    for i in range(draw(st.integers(0, 3))):
        iid = _INCIDENTS[i]
        for _ in range(draw(st.integers(1, 2))):
            out.append({"type": "incident_opened", "service": S, "incident": iid,
                        "at": _at(draw(_minutes)),
                        "impact": draw(st.sampled_from(["outage", "outage", "degraded", "none"]))})
        for _ in range(draw(st.integers(0, 2))):
            out.append({"type": "incident_resolved", "incident": iid, "at": _at(draw(_minutes))})
    for i in range(draw(st.integers(0, 3))):
        mid = f"mw-{i}"
        for _ in range(draw(st.integers(1, 2))):  # re-announced: the latest announced_at wins
            start = draw(_minutes)
            length = draw(st.one_of(st.integers(1, 3000), st.integers(3000, 80000), st.just(600000)))
            notice = draw(st.integers(-120, 6000))
            out.append({"type": "maintenance_announced", "service": S, "maintenance": mid,
                        "announced_at": _at(start - notice), "starts_at": _at(start),
                        "ends_at": _at(start + length)})
        extra = draw(st.sampled_from(["", "", "maintenance_cancelled", "maintenance_completed"]))
        if extra:
            out.append({"type": extra, "maintenance": mid, "at": _at(draw(_minutes))})
    for i in range(draw(st.integers(0, 3))):
        start, length = draw(_minutes), draw(st.one_of(st.integers(1, 5000), st.just(700000)))
        if draw(st.booleans()):
            fact = {"type": "force_majeure_declared", "service": S, "declaration": f"fm-{i}",
                    "reason": "storm"}
        else:
            fact = {"type": "exclusion_declared", "service": S, "exclusion": f"fm-{i}", "reason": "isp",
                    "category": draw(st.sampled_from(["third_party", "customer_isp"]))}
            if draw(st.booleans()):
                fact["contract"] = draw(st.sampled_from([C, "someone-else"]))
        out.append({**fact, "starts_at": _at(start), "ends_at": _at(start + length)})
        if not draw(st.integers(0, 3)):
            out.append({"type": "exclusion_revoked", "ref": f"fm-{i}", "reason": "not so"})
    for _ in range(draw(st.integers(0, 2))):
        out.append({"type": "credit_claim_filed", "contract": C, "month": draw(st.sampled_from(MONTHS)),
                    "at": _at(draw(_minutes))})
    return draw(st.permutations(out))  # any order: positions are not in time order


def _whole_history(recorder: LedgerRecorder, policy: Policy, month: str, upto: int,
                   replay_point: datetime | None = None) -> list[Recorded]:
    """Every fact up to ``upto``: what the read by month must give the same report as."""
    return list(recorder.read_records(1, upto))


def _outputs(led: Ledger, month: str, position: int) -> tuple[bytes, bytes]:
    return to_json(led.report(C, month).report), msgspec.json.encode(led.audit(C, month, position=position))


def _same(led: Ledger, monkeypatch: pytest.MonkeyPatch, month: str, position: int) -> None:
    bounded = _outputs(led, month, position)
    with monkeypatch.context() as m:
        m.setattr(month_read, "month_records", _whole_history)
        whole = _outputs(led, month, position)
    assert bounded[0] == whole[0]
    assert bounded[1] == whole[1]


def _policy(zone: str, quorum: str, nonconforming: str) -> bytes:
    return POLICY.format(zone=zone, quorum=quorum, nonconforming=nonconforming).encode()


def _check(url: str, policy: bytes, lines: list[dict[str, Any]], split: int, months: list[str],
           position: int, monkeypatch: pytest.MonkeyPatch) -> None:
    led = open_ledger(url, clock=StepClock())
    try:
        led.register_contract(load_policy(policy))
        data = [json.dumps(x).encode() for x in lines]
        split = min(split, len(data))
        import_lines(led, data[:split])
        import_lines(led, data[split:])
        result = verify(led.recorder)
        assert result.ok, result.problem
        assert month_read.is_bucketed(led.recorder, S, led.recorder.last_position())
        last = led.recorder.last_position()
        for month in months:
            _same(led, monkeypatch, month, min(position, last))
    finally:
        led.close()


_CASE = {"zone": st.sampled_from(ZONES), "quorum": st.sampled_from(['"any"', '"all"', "2"]),
         "nonconforming": st.sampled_from(["downtime", "emergency"]), "lines": _facts(),
         "split": st.integers(0, 60), "months": st.lists(st.sampled_from(MONTHS), min_size=1, max_size=2,
                                                          unique=True),
         "position": st.integers(1, 70)}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(**_CASE)
def test_read_by_month_equals_full_replay_sqlite(monkeypatch: pytest.MonkeyPatch, zone: str, quorum: str,
                                                 nonconforming: str, lines: list[dict[str, Any]], split: int,
                                                 months: list[str], position: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _check(f"sqlite:///{tmp}/l.db", _policy(zone, quorum, nonconforming), lines, split, months, position,
               monkeypatch)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(**_CASE)
def test_read_by_month_equals_full_replay_postgres(pg_admin_url: str, monkeypatch: pytest.MonkeyPatch,
                                                   zone: str, quorum: str, nonconforming: str,
                                                   lines: list[dict[str, Any]], split: int, months: list[str],
                                                   position: int) -> None:
    with scratch_database(pg_admin_url) as url:
        _check(url, _policy(zone, quorum, nonconforming), lines, split, months, position, monkeypatch)


def _probe(kind: type[ProbeFailed] | type[ProbeRecovered], probe: str,
           at: datetime) -> ProbeFailed | ProbeRecovered:
    return kind(service=S, probe=probe, at=at)


@contextmanager
def _counting(recorder: LedgerRecorder) -> Iterator[list[int]]:
    """The positions the recorder's keyed and range reads return, while inside."""
    seen: list[int] = []
    keyed, ranged = recorder.read_keyed_states, recorder.read_key_range_states

    def counted_keyed(keys: Any, upto: int) -> Iterator[tuple[int, bytes]]:
        for row in keyed(keys, upto):
            seen.append(row[0])
            yield row

    def counted_range(lo: str, hi: str, upto: int) -> Iterator[tuple[int, bytes]]:
        for row in ranged(lo, hi, upto):
            seen.append(row[0])
            yield row

    recorder.read_keyed_states = counted_keyed  # type: ignore[method-assign]
    recorder.read_key_range_states = counted_range  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        recorder.read_keyed_states = keyed  # type: ignore[method-assign]
        recorder.read_key_range_states = ranged  # type: ignore[method-assign]


def test_a_month_reads_its_month(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """A year of blips before the month is not read; a probe down since years ago and its failure are."""
    ledger.register_contract(load_policy(_policy("Europe/Paris", '"any"', "downtime")))
    facts: list[Any] = [_probe(ProbeFailed, "p1", datetime(2022, 5, 1, tzinfo=UTC))]  # never recovered
    for month in range(1, 13):
        for day in range(1, 21):
            at = datetime(2025, month, day, 10, tzinfo=UTC)
            facts += [_probe(ProbeFailed, "p2", at), _probe(ProbeRecovered, "p2", at + timedelta(minutes=5))]
    facts += [_probe(ProbeFailed, "p2", datetime(2026, 3, 3, tzinfo=UTC)),
              _probe(ProbeRecovered, "p2", datetime(2026, 3, 3, 1, tzinfo=UTC))]
    ledger.append_facts(facts)
    with _counting(ledger.recorder) as seen:
        report = ledger.report(C, "2026-03").report
    # The contract (1), p1's failure of 2022 (2), March's two facts, and p2's reports of
    # 20 December 2025, its latest day with a recovery before the month (which starts on
    # 28 February in UTC, in Paris). Nothing else of the year of blips.
    assert sorted(set(seen)) == [1, 2, 481, 482, 483, 484], sorted(set(seen))
    assert report.downtime_seconds > 0
    _same(ledger, monkeypatch, "2026-03", ledger.recorder.last_position())


def test_every_append_route_files_the_month_keys(ledger: Ledger) -> None:
    """``append``, the checking import and the child's packed import all file the bucket keys."""
    at = datetime(2026, 3, 5, tzinfo=UTC)
    facts = [
        ProbeFailed(service=S, probe="p1", at=at),
        IncidentOpened(service=S, incident="i1", at=at, impact="outage"),
        MaintenanceAnnounced(service=S, maintenance="m1", announced_at=at, starts_at=at + timedelta(days=2),
                             ends_at=at + timedelta(days=40)),
        ForceMajeureDeclared(service=S, declaration="f1", reason="x", starts_at=at,
                             ends_at=at + timedelta(days=800)),
        ExclusionDeclared(service=S, exclusion="e1", category="third_party", reason="x", starts_at=at,
                          ends_at=at + timedelta(hours=1)),
    ]
    ledger.append_facts(facts[:2])
    import_lines(ledger, [msgspec.json.encode(f) for f in facts[2:3]])
    packed = b"".join(msgspec.json.encode(f) + b"\n" for f in facts[3:])
    ledger.import_file(io.BytesIO(packed), parallel_from=1)
    rec = ledger.recorder
    assert [r.position for r in rec.read_keyed(["p:web/p1@2026-03-05"], 99)] == [1]
    assert [r.position for r in rec.read_keyed(["n:web/2026-03-05T00:00:00.000000Z/i1"], 99)] == [2]
    assert [r.position for r in rec.read_keyed(["a:m1"], 99)] == [3]
    assert [r.position for r in rec.read_keyed(["w:web@2026-04"], 99)] == [3]
    assert [r.position for r in rec.read_keyed(["w:web"], 99)] == [4]  # 27 months: the long key
    assert [r.position for r in rec.read_keyed(["w:web@2026-03"], 99)] == [3, 5]
    assert [r.position for r in rec.read_keyed(["s:web"], 99)] == [2, 3, 4, 5]  # a probe report: p: alone
    assert index_keys(facts[0]) == ("p:web/p1@2026-03-05",)
    assert index_keys(IncidentResolved(incident="i1", at=at)) == ("i:i1", "r:i1@2026-03-05T00:00:00.000000Z")
    odd = ProbeFailed(service="a/b@", probe="c%", at=at)
    assert index_keys(odd) == ("p:a%2Fb%40/c%25@2026-03-05",)
    odd_opened = IncidentOpened(service="a/b", incident="i@2", at=at, impact="outage")
    assert index_keys(odd_opened)[1] == "n:a%2Fb/2026-03-05T00:00:00.000000Z/i%402"
    assert index_keys(IncidentResolved(incident="i@2", at=at))[1] == "r:i%402@2026-03-05T00:00:00.000000Z"
    result = verify(rec)
    assert result.ok, result.problem


@contextmanager
def _earlier_keys() -> Iterator[None]:
    """Appends file service facts as the version before month buckets did (``s:<service>`` alone)."""
    table = lines_module._TAG_AND_KEY
    kinds = (ProbeFailed, ProbeRecovered, IncidentOpened, MaintenanceAnnounced, ForceMajeureDeclared,
             ExclusionDeclared)
    saved: dict[type, Any] = {cls: table[cls] for cls in kinds}
    for cls in kinds:
        table[cls] = (saved[cls][0], lambda f: "s:" + f.service, saved[cls][2])
    saved[IncidentResolved] = table[IncidentResolved]
    table[IncidentResolved] = (saved[IncidentResolved][0], lambda f: "i:" + f.incident, None)
    try:
        yield
    finally:
        table.update(saved)


def _old_facts() -> list[Any]:
    return [
        _probe(ProbeFailed, "p1", datetime(2025, 2, 1, tzinfo=UTC)),
        IncidentOpened(service=S, incident="old", at=datetime(2025, 6, 1, tzinfo=UTC), impact="outage"),
        _probe(ProbeFailed, "p2", datetime(2026, 3, 2, tzinfo=UTC)),
    ]


def test_a_store_written_before_reads_the_service_whole(ledger: Ledger,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Service facts under ``s:`` alone: that service is read whole, as then; new facts join; verify holds."""
    ledger.register_contract(load_policy(_policy("Europe/Paris", '"any"', "downtime")))
    with _earlier_keys():
        import_lines(ledger, [msgspec.json.encode(f) for f in _old_facts()])
    assert [r.position for r in ledger.recorder.read_keyed(["p:web/p1@2025-02-01"], 99)] == []
    ledger.append_facts([_probe(ProbeRecovered, "p2", datetime(2026, 3, 2, 5, tzinfo=UTC))])
    last = ledger.recorder.last_position()
    assert not month_read.is_bucketed(ledger.recorder, S, last)
    result = verify(ledger.recorder)
    assert result.ok, result.problem
    report = ledger.report(C, "2026-03").report
    assert report.downtime_seconds == report.total_seconds  # p1 down since 2025, the incident open
    _same(ledger, monkeypatch, "2026-03", last)


def test_a_resolution_filed_before_still_closes(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resolution under ``i:`` alone (written before), its incident opened since: the opening is
    read (no ``r:`` key says it was closed), and the resolution through its reference key."""
    ledger.register_contract(load_policy(_policy("Europe/Paris", '"any"', "downtime")))
    with _earlier_keys():
        ledger.append_facts([IncidentResolved(incident="late", at=datetime(2026, 2, 10, tzinfo=UTC))])
    ledger.append_facts([
        IncidentOpened(service=S, incident="late", at=datetime(2026, 2, 1, tzinfo=UTC), impact="outage"),
        IncidentOpened(service=S, incident="open", at=datetime(2026, 3, 10, tzinfo=UTC), impact="outage"),
    ])
    last = ledger.recorder.last_position()
    assert month_read.is_bucketed(ledger.recorder, S, last)
    result = verify(ledger.recorder)
    assert result.ok, result.problem
    for month in ("2026-02", "2026-03"):
        _same(ledger, monkeypatch, month, last)
    assert ledger.report(C, "2026-02").report.downtime_seconds == 9 * 86400


def test_an_incident_id_extending_another_does_not_close_it(ledger: Ledger,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``x`` open since 2025; ``x@<instant>``'s resolution sorts, unescaped, inside ``x``'s range."""
    ledger.register_contract(load_policy(_policy("UTC", '"any"', "downtime")))
    other = "x@2025-06-01T00:00:00.000000Z"
    ledger.append_facts([
        IncidentOpened(service=S, incident="x", at=datetime(2025, 1, 5, tzinfo=UTC), impact="outage"),
        IncidentOpened(service=S, incident=other, at=datetime(2025, 7, 1, tzinfo=UTC), impact="outage"),
        IncidentResolved(incident=other, at=datetime(2025, 7, 2, tzinfo=UTC)),
    ])
    report = ledger.report(C, "2026-03").report
    assert report.downtime_seconds == report.total_seconds
    _same(ledger, monkeypatch, "2026-03", ledger.recorder.last_position())


def test_verify_names_a_wrong_month_key(ledger: Ledger) -> None:
    """A probe report filed under another month (or the earlier way after this way): reported."""
    ledger.append_facts([_probe(ProbeFailed, "p1", datetime(2026, 3, 1, tzinfo=UTC))])
    table = lines_module._TAG_AND_KEY
    saved = table[ProbeFailed]
    table[ProbeFailed] = (saved[0], lambda f: f"p:{f.service}/{f.probe}@2026-03-01", saved[2])
    fact = _probe(ProbeFailed, "p1", datetime(2026, 3, 2, tzinfo=UTC))
    try:
        import_lines(ledger, [msgspec.json.encode(fact)])
    finally:
        table[ProbeFailed] = saved
    result = verify(ledger.recorder)
    assert not result.ok
    assert result.position == 1
    assert "position 2: key index row altered (filed under 'p:web/p1@2026-03-01'" in (result.problem or "")


def test_verify_refuses_the_earlier_keys_after_the_month_keys(ledger: Ledger) -> None:
    """This version never files a service fact under ``s:`` alone: one after a bucketed one is reported."""
    ledger.append_facts([_probe(ProbeFailed, "p1", datetime(2026, 3, 1, tzinfo=UTC))])
    with _earlier_keys():
        import_lines(ledger, [msgspec.json.encode(_old_facts()[0])])
    result = verify(ledger.recorder)
    assert not result.ok
    assert "position 2: key index row missing (filed the earlier way, after the service fact at position 1" \
        in (result.problem or "")
