"""A maintenance window only exists from its announced_at (INTERFACE.md section 2): worked examples.

Outage before the announcement is never inside the window, whatever the rule: under
``nonconforming = "emergency"`` the part after the announcement is M, the part before is
downtime. The arithmetic is written next to each expectation, in UTC and in a DST zone.
"""

from __future__ import annotations

from projections.model import Evaluation
from tests.unit.factories import Ledger, kinds, outage, policy, run, ts

POLICY = """
[contract]
id = "c-late"
customer = "L"
service = "svc"
timezone = "{tz}"
currency = "EUR"
monthly_fee = "1000.00"

[availability]
target = "99.9"
formula = "downtime_over_total"
outage_when = "any"
probes = ["p1"]
excludable = ["force_majeure"]

[maintenance]
min_notice = "24h"
nonconforming = "{rule}"

[credits]
tiers = [{{ below = "99.9", percent = "10" }}]
cap_percent = "100"
"""
UTC_EMERGENCY = policy(POLICY.format(tz="UTC", rule="emergency"))
UTC_DOWNTIME = policy(POLICY.format(tz="UTC", rule="downtime"))
PARIS_EMERGENCY = policy(POLICY.format(tz="Europe/Paris", rule="emergency"))


def window(led: Ledger, announced: str, starts: str, ends: str, mid: str = "mw-1") -> int:
    return led.add(
        "maintenance_announced",
        service="svc",
        maintenance=mid,
        announced_at=announced,
        starts_at=starts,
        ends_at=ends,
    )


def figures(ev: Evaluation) -> tuple[int, int, int, int]:
    """(outage, M, excused, D) in whole seconds."""
    r = ev.report
    seconds = (r.outage_seconds, r.maintenance_seconds, r.excused_seconds, r.downtime_seconds)
    o, m, x, d = (int(s) for s in seconds)
    return o, m, x, d


def findings(ev: Evaluation, kind: str) -> list[str]:
    return [f.text for f in ev.explanation.findings if f.kind == kind]


def test_a_window_announced_ten_days_after_the_outage_excuses_nothing() -> None:
    led = Ledger()
    # Outage 5 Oct 10:00-12:00 UTC: 2 h = 7200 s.
    down = outage(led, "svc", ["p1"], "2026-10-05T10:00:00Z", "2026-10-05T12:00:00Z")
    # The "window" for it is announced on 15 October, ten days after it ended.
    ann = window(led, "2026-10-15T09:00:00Z", "2026-10-05T10:00:00Z", "2026-10-05T12:00:00Z")
    ev = run(led.records, UTC_EMERGENCY, "2026-10")
    # Emergency or not, the window did not exist then: M = 0, D = 7200.
    assert figures(ev) == (7200, 0, 0, 7200)
    assert kinds(ev) == [("2026-10-05T10:00:00+00:00", "2026-10-05T12:00:00+00:00", "downtime", 7200)]
    (interval,) = ev.report.intervals
    assert interval.reason.startswith(
        "maintenance mw-1 not yet announced (announced at 2026-10-15 09:00 UTC, 239 h after it started): "
        "a window only exists from its announcement, outage before it is downtime -- outage: probe p1 down"
    )
    assert interval.events == (*down, ann)
    (text,) = findings(ev, "announced_late")
    assert text.startswith(
        "maintenance mw-1 was announced at 2026-10-15T09:00:00+00:00, after its end at "
        "2026-10-05T12:00:00+00:00: a window only exists from its announcement, so none of it counted"
    )
    # A = (T - D) / T = (2678400 - 7200) / 2678400 = 99.7311...%: below 99.9, the tier applies.
    assert (ev.report.availability_percent, ev.report.credit.amount) == ("99.7311", "100.00")


def test_announced_in_the_middle_of_an_outage_utc() -> None:
    led = Ledger()
    # Window 10:00-14:00 UTC, announced at 11:30 (1 h 30 min after it started); outage 10:00-13:00.
    window(led, "2026-10-05T11:30:00Z", "2026-10-05T10:00:00Z", "2026-10-05T14:00:00Z")
    outage(led, "svc", ["p1"], "2026-10-05T10:00:00Z", "2026-10-05T13:00:00Z")
    ev = run(led.records, UTC_EMERGENCY, "2026-10")
    # 10:00-11:30 before the announcement: D = 5400. 11:30-13:00 emergency maintenance: M = 5400.
    assert figures(ev) == (10800, 5400, 0, 5400)
    assert kinds(ev) == [
        ("2026-10-05T10:00:00+00:00", "2026-10-05T11:30:00+00:00", "downtime", 5400),
        ("2026-10-05T11:30:00+00:00", "2026-10-05T13:00:00+00:00", "maintenance", 5400),
    ]
    before, after = (i.reason for i in ev.report.intervals)
    assert "not yet announced (announced at 2026-10-05 11:30 UTC, 1 h 30 min after it started)" in before
    assert after.startswith(
        "maintenance mw-1 announced 1 h 30 min after it started; 24 h required (non-conforming: emergency "
        "maintenance, counted in M); in force only from its announcement at 2026-10-05 11:30 UTC -- outage:"
    )
    (text,) = findings(ev, "announced_late")
    assert "so its first 1 h 30 min counted for nothing" in text
    assert findings(ev, "maintenance_refused")  # negative notice never conforms
    # Under nonconforming = "downtime" both parts are downtime, each with its own reason.
    strict = run(led.records, UTC_DOWNTIME, "2026-10")
    assert figures(strict) == (10800, 0, 0, 10800)
    assert [i.kind for i in strict.report.intervals] == ["downtime", "downtime"]
    assert "counted as downtime); in force only from its announcement" in strict.report.intervals[1].reason


def test_announced_in_the_middle_across_the_dst_change_in_paris() -> None:
    led = Ledger()
    # 25 October 2026: Paris goes from 03:00 CEST back to 02:00 CET. The window runs 01:30 CEST
    # (23:30 UTC on the 24th) to 04:00 CET (03:00 UTC) and is announced at 02:30 CET (01:30 UTC),
    # the second 02:30 of the night. Outage 01:00 CEST (23:00 UTC) to 03:30 CET (02:30 UTC).
    window(led, "2026-10-25T02:30:00+01:00", "2026-10-25T01:30:00+02:00", "2026-10-25T04:00:00+01:00")
    outage(led, "svc", ["p1"], "2026-10-25T01:00:00+02:00", "2026-10-25T03:30:00+01:00")
    ev = run(led.records, PARIS_EMERGENCY, "2026-10")
    # Before the window 23:00-23:30 UTC: 1800 s. Window not yet announced 23:30-01:30 UTC: 7200 s
    # (01:30 to 02:30 on the wall, but two real hours). Announced 01:30-02:30 UTC: M 3600 s.
    # outage = 1800 + 7200 + 3600 = 12600; D = 9000; M = 3600.
    assert figures(ev) == (12600, 3600, 0, 9000)
    assert kinds(ev) == [
        ("2026-10-24T23:00:00+00:00", "2026-10-24T23:30:00+00:00", "downtime", 1800),
        ("2026-10-24T23:30:00+00:00", "2026-10-25T01:30:00+00:00", "downtime", 7200),
        ("2026-10-25T01:30:00+00:00", "2026-10-25T02:30:00+00:00", "maintenance", 3600),
    ]
    plain, void, excused = ev.report.intervals
    assert plain.reason == "probe p1 down (outage_when = any)"
    assert "announced at 2026-10-25 02:30 CET, 2 h after it started" in void.reason
    assert "in force only from its announcement at 2026-10-25 02:30 CET" in excused.reason
    # Interval times are in the contract's zone with the offset of the moment.
    assert (void.start.isoformat(), void.end.isoformat()) == (
        "2026-10-25T01:30:00+02:00",
        "2026-10-25T02:30:00+01:00",
    )
    # October in Paris is 745 h = 2682000 s: A = (2682000 - 9000) / 2682000 = 99.6644...%.
    assert ev.report.availability_percent == "99.6644"


def test_an_exclusion_still_excuses_what_the_unannounced_part_does_not() -> None:
    led = Ledger()
    window(led, "2026-10-05T12:00:00Z", "2026-10-05T10:00:00Z", "2026-10-05T14:00:00Z")
    led.add(
        "force_majeure_declared",
        service="svc",
        declaration="fm-1",
        starts_at="2026-10-05T09:00:00Z",
        ends_at="2026-10-05T11:00:00Z",
        reason="flood",
    )
    outage(led, "svc", ["p1"], "2026-10-05T10:00:00Z", "2026-10-05T13:00:00Z")
    ev = run(led.records, UTC_EMERGENCY, "2026-10")
    # 10:00-11:00 force majeure: excused 3600. 11:00-12:00 not yet announced: D 3600.
    # 12:00-13:00 emergency maintenance: M 3600.
    assert figures(ev) == (10800, 3600, 3600, 3600)
    assert [i.kind for i in ev.report.intervals] == ["excused", "downtime", "maintenance"]


def test_zero_notice_is_no_late_announcement() -> None:
    # docs/examples/README.md: an interruption "without notice" announced when it starts is M.
    led = Ledger()
    window(led, "2026-10-05T10:00:00Z", "2026-10-05T10:00:00Z", "2026-10-05T11:00:00Z")
    outage(led, "svc", ["p1"], "2026-10-05T10:00:00Z", "2026-10-05T11:00:00Z")
    ev = run(led.records, UTC_EMERGENCY, "2026-10")
    assert figures(ev) == (3600, 3600, 0, 0)
    assert findings(ev, "announced_late") == []


def test_completion_before_the_announcement_leaves_nothing_to_excuse() -> None:
    led = Ledger()
    window(led, "2026-10-05T12:00:00Z", "2026-10-05T10:00:00Z", "2026-10-05T14:00:00Z")
    done = led.add("maintenance_completed", maintenance="mw-1", at="2026-10-05T11:00:00Z")
    outage(led, "svc", ["p1"], "2026-10-05T10:00:00Z", "2026-10-05T13:00:00Z")
    ev = run(led.records, UTC_EMERGENCY, "2026-10")
    # The window ended at 11:00 and was announced at 12:00: D = 10800, M = 0.
    assert figures(ev) == (10800, 0, 0, 10800)
    (finding,) = [f for f in ev.explanation.findings if f.kind == "announced_late"]
    assert "after its end at 2026-10-05T11:00:00+00:00" in finding.text
    assert done in finding.events


def test_a_late_reannouncement_supersedes_a_timely_one() -> None:
    # The latest announced_at is in force (docs/decisions.md): re-announcing a running window
    # voids its first part. Announce an extension under a new id instead.
    led = Ledger()
    window(led, "2026-10-01T09:00:00Z", "2026-10-05T10:00:00Z", "2026-10-05T12:00:00Z")
    window(led, "2026-10-05T11:00:00Z", "2026-10-05T10:00:00Z", "2026-10-05T13:00:00Z")
    outage(led, "svc", ["p1"], "2026-10-05T10:00:00Z", "2026-10-05T13:00:00Z")
    ev = run(led.records, UTC_EMERGENCY, "2026-10")
    # 10:00-11:00 before the re-announcement: D 3600; 11:00-13:00 M 7200.
    assert figures(ev) == (10800, 7200, 0, 3600)
    extended = Ledger()
    window(extended, "2026-10-01T09:00:00Z", "2026-10-05T10:00:00Z", "2026-10-05T12:00:00Z")
    window(extended, "2026-10-05T11:00:00Z", "2026-10-05T12:00:00Z", "2026-10-05T13:00:00Z", mid="mw-2")
    outage(extended, "svc", ["p1"], "2026-10-05T10:00:00Z", "2026-10-05T13:00:00Z")
    assert figures(run(extended.records, UTC_EMERGENCY, "2026-10")) == (10800, 10800, 0, 0)


def test_an_audit_before_the_announcement_sees_no_window_and_one_after_sees_it_cut() -> None:
    # Announced in the middle of the outage and recorded when announced: a replay point in
    # between knows nothing of it; after it, the window counts from its announcement only.
    led = Ledger()
    outage(led, "svc", ["p1"], "2026-10-05T10:00:00Z", None)
    before = run(led.records, UTC_EMERGENCY, "2026-10", replay_point=ts("2026-10-05T11:00:00Z"))
    assert figures(before) == (3600, 0, 0, 3600)
    window(led, "2026-10-05T11:30:00Z", "2026-10-05T10:00:00Z", "2026-10-05T14:00:00Z")
    led.add("probe_recovered", service="svc", probe="p1", at="2026-10-05T13:00:00Z")
    at_noon = run(led.records[:2], UTC_EMERGENCY, "2026-10", replay_point=ts("2026-10-05T12:00:00Z"))
    # Up to noon: 10:00-11:30 downtime (5400), 11:30-12:00 maintenance (1800).
    assert figures(at_noon) == (7200, 1800, 0, 5400)
    assert figures(run(led.records, UTC_EMERGENCY, "2026-10")) == (10800, 5400, 0, 5400)
