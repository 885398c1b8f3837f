"""The month fold (projections.availability.evaluate): worked examples, one per agreement, and edge cases.

Times are written in the contract's zone; the arithmetic is spelled out next to each expectation.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from ledger.events import Recorded
from projections.model import to_json
from tests.unit.factories import (
    SEED_A,
    SEED_B,
    SEED_C_EN,
    SEED_C_FR,
    SEED_D,
    Ledger,
    outage,
    policy,
    run,
    ts,
)

A_PROBES = ("paris", "frankfurt", "london")
C_PROBES = ("toronto", "brussels", "virginia")
D_PROBES = ("toronto", "london", "sydney")


def figures(led: Ledger, pol_text: str, month: str) -> tuple[int, int, int, int, int, str, bool]:
    """(T, outage, M, excused, D) in whole seconds, A and target_met."""
    r = led.evaluate(policy(pol_text), month).report
    return (
        int(r.total_seconds),
        int(r.outage_seconds),
        int(r.maintenance_seconds),
        int(r.excused_seconds),
        int(r.downtime_seconds),
        r.availability_percent,
        r.target_met,
    )


# --- worked examples, one per agreement -------------------------------------------------------


def test_seed_a_month_free_below_99_97() -> None:
    led = Ledger()
    # D1: all three probes down 14:00-14:20 -> 1200 s of downtime.
    d1 = outage(led, "workspace", A_PROBES, "2026-10-06T14:00:00+02:00", "2026-10-06T14:20:00+02:00")
    # Frankfurt alone down: not an outage, outage_when = all.
    outage(led, "workspace", ["frankfurt"], "2026-10-07T09:00:00+02:00", "2026-10-07T10:00:00+02:00")
    # mw-7 announced 17 h ahead, 24 h required: non-conforming, its 1800 s of outage is downtime.
    mw7 = led.add(
        "maintenance_announced",
        service="workspace",
        maintenance="mw-7",
        announced_at="2026-10-14T17:00:00+02:00",
        starts_at="2026-10-15T10:00:00+02:00",
        ends_at="2026-10-15T11:00:00+02:00",
    )
    outage(led, "workspace", A_PROBES, "2026-10-15T10:00:00+02:00", "2026-10-15T10:30:00+02:00")
    # Force majeure covers a 3600 s outage: excused.
    led.add(
        "force_majeure_declared",
        service="workspace",
        declaration="fm-1",
        starts_at="2026-10-20T00:00:00+02:00",
        ends_at="2026-10-20T06:00:00+02:00",
        reason="regional power grid failure",
    )
    outage(led, "workspace", A_PROBES, "2026-10-20T02:00:00+02:00", "2026-10-20T03:00:00+02:00")
    # mw-8 announced 40 h ahead (after the DST change): conforming, 1800 s of M.
    led.add(
        "maintenance_announced",
        service="workspace",
        maintenance="mw-8",
        announced_at="2026-10-25T09:00:00+01:00",
        starts_at="2026-10-27T01:00:00+01:00",
        ends_at="2026-10-27T02:00:00+01:00",
    )
    outage(led, "workspace", A_PROBES, "2026-10-27T01:00:00+01:00", "2026-10-27T01:30:00+01:00")
    claim = led.add("credit_claim_filed", contract="sla-a", month="2026-10", at="2026-11-03T23:59:00+01:00")

    ev = led.evaluate(policy(SEED_A), "2026-10")
    r = ev.report
    # T = 745 h (October in Paris, clocks go back) = 2,682,000 s.
    # outage = 1200 + 1800 + 3600 + 1800 = 8400; M = 1800; excused = 3600; D = 1200 + 1800 = 3000.
    # A = (2682000 - 3000) / 2682000 = 99.888143...% -> "99.8881" < 99.97: a month free.
    assert figures(led, SEED_A, "2026-10") == (2682000, 8400, 1800, 3600, 3000, "99.8881", False)
    assert (r.availability_percent, r.target_percent, r.target_met) == ("99.8881", "99.97", False)
    assert msgspec.to_builtins(r.credit) == {
        "percent": "100",
        "amount": "149.00",
        "long_outage_amount": "0.00",
        "currency": "EUR",
        "claim": "filed_in_time",
        "payable": True,
    }
    assert [i.kind for i in r.intervals] == ["downtime", "downtime", "excused", "maintenance"]
    assert r.intervals[0].events == tuple(d1)
    assert r.intervals[0].reason == "probes paris, frankfurt, london all down (outage_when = all)"
    assert r.intervals[1].reason.startswith(
        "maintenance mw-7 announced 17 h ahead; 24 h required (non-conforming, counted as downtime)"
    )
    assert mw7 in r.intervals[1].events
    assert r.intervals[2].reason.startswith("force majeure fm-1: regional power grid failure")
    steps = {s.figure: s for s in ev.explanation.steps}
    assert steps["formula"].how == "A = (T - D) / T = (2682000 - 3000) / 2682000"
    assert steps["claim"].events == (claim,)
    assert ev.explanation.findings[0].kind == "maintenance_refused"


def test_seed_b_automatic_credit_and_daily_rate_for_long_outage() -> None:
    led = Ledger()
    # ping down 10 Nov 08:00 -> 11 Nov 09:30, tcp-443 11 Nov 09:00 -> 10:00: with outage_when = any,
    # one stretch of 26 h = 93,600 s (the overlap counts once).
    outage(led, "biings", ["ping"], "2026-11-10T08:00:00+01:00", "2026-11-11T09:30:00+01:00")
    outage(led, "biings", ["tcp-443"], "2026-11-11T09:00:00+01:00", "2026-11-11T10:00:00+01:00")
    # A degraded incident is not outage.
    led.add(
        "incident_opened",
        service="biings",
        incident="INC-1",
        at="2026-11-12T09:00:00+01:00",
        impact="degraded",
    )
    led.add("incident_resolved", incident="INC-1", at="2026-11-12T12:00:00+01:00")
    r = led.evaluate(policy(SEED_B), "2026-11").report
    # T = 720 h = 2,592,000 s; A = (2592000 - 93600) / 2592000 = 96.3888...% < 99.5: tier 10 %.
    assert (int(r.total_seconds), int(r.downtime_seconds), r.availability_percent) == (
        2592000,
        93600,
        "96.3888",
    )
    # 10 % x 500.00 (6000 / 12) = 50.00; 26 h > 24 h: 2 started days x 6000 / 365 = 32.8767...
    # amount = 82.876712... -> 82.88 (rounded once), automatic, payable.
    c = r.credit
    assert (c.percent, c.amount, c.long_outage_amount, c.claim, c.payable) == (
        "10",
        "82.88",
        "32.88",
        "automatic",
        True,
    )
    assert [i.reason for i in r.intervals] == [
        "probe ping down (outage_when = any)",
        "probes ping, tcp-443 down (outage_when = any)",
        "probe tcp-443 down (outage_when = any)",
    ]


def test_seed_b_long_outage_counts_in_the_month_it_starts() -> None:
    led = Ledger()
    # 30 Nov 12:00 -> 2 Dec 00:00 Zurich: 36 h, of which 12 h in November and 24 h in December.
    outage(led, "biings", ["ping"], "2026-11-30T12:00:00+01:00", "2026-12-02T00:00:00+01:00")
    nov = led.evaluate(policy(SEED_B), "2026-11").report
    # November: D = 43,200 s; A = 98.3333 %; long outage: the whole 36 h -> 2 started days.
    assert (int(nov.downtime_seconds), nov.availability_percent) == (43200, "98.3333")
    assert (nov.credit.long_outage_amount, nov.credit.amount) == ("32.88", "82.88")
    dec = led.evaluate(policy(SEED_B), "2026-12").report
    # December: D = 86,400 s of 744 h; the stretch began in November, so no long-outage credit here.
    assert (int(dec.downtime_seconds), dec.availability_percent) == (86400, "96.7741")
    assert (dec.credit.long_outage_amount, dec.credit.amount) == ("0.00", "50.00")


def _seed_c_month(led: Ledger) -> None:
    # mw-1: announced Mon 2 Mar 10:00 EST; 5 business days -> Mon 9 Mar 10:00 EDT; starts 9 Mar
    # 18:00 EDT, after 17:30: conforming. 1 h of outage inside -> M 3600.
    led.add(
        "maintenance_announced",
        service="optimy",
        maintenance="mw-1",
        announced_at="2026-03-02T10:00:00-05:00",
        starts_at="2026-03-09T18:00:00-04:00",
        ends_at="2026-03-09T20:00:00-04:00",
    )
    outage(led, "optimy", ["toronto", "brussels"], "2026-03-09T18:00:00-04:00", "2026-03-09T19:00:00-04:00")
    # mw-2: announced the day before: emergency maintenance, still M (1800 s).
    led.add(
        "maintenance_announced",
        service="optimy",
        maintenance="mw-2",
        announced_at="2026-03-11T10:00:00-04:00",
        starts_at="2026-03-12T22:00:00-04:00",
        ends_at="2026-03-12T23:00:00-04:00",
    )
    outage(led, "optimy", ["toronto", "virginia"], "2026-03-12T22:00:00-04:00", "2026-03-12T22:30:00-04:00")
    # Two of three probes down 45 min: D 2700. Virginia alone the next day: not an outage.
    outage(led, "optimy", ["toronto", "brussels"], "2026-03-20T14:00:00-04:00", "2026-03-20T14:45:00-04:00")
    outage(led, "optimy", ["virginia"], "2026-03-21T14:00:00-04:00", "2026-03-21T18:00:00-04:00")
    # The customer's ISP: excused 1800 s.
    led.add(
        "exclusion_declared",
        service="optimy",
        exclusion="ex-1",
        category="customer_isp",
        starts_at="2026-03-25T10:00:00-04:00",
        ends_at="2026-03-25T11:00:00-04:00",
        reason="customer's ISP outage",
    )
    outage(led, "optimy", C_PROBES, "2026-03-25T10:00:00-04:00", "2026-03-25T10:30:00-04:00")


def test_seed_c_en_maintenance_out_of_total() -> None:
    led = Ledger()
    _seed_c_month(led)
    ev = led.evaluate(policy(SEED_C_EN), "2026-03")
    r = ev.report
    # T = 743 h (March in Toronto) = 2,674,800 s; M = 3600 + 1800; excused = 1800; D = 2700.
    # A = (T - M - D) / (T - M) = (2674800 - 5400 - 2700) / (2674800 - 5400) = 2666700 / 2669400
    #   = 99.89885...% -> "99.8988" < 99.90 (best efforts: no credit).
    assert figures(led, SEED_C_EN, "2026-03") == (2674800, 9900, 5400, 1800, 2700, "99.8988", False)
    assert msgspec.to_builtins(r.credit) == {
        "percent": "0",
        "amount": "0.00",
        "long_outage_amount": "0.00",
        "currency": "CAD",
        "claim": "none",
        "payable": False,
    }
    reasons = [i.reason for i in r.intervals]
    assert "(conforming, counted in M)" in reasons[0]
    assert "outside business hours 09:00-17:30 America/Toronto" in reasons[0]
    assert "(non-conforming: emergency maintenance, counted in M)" in reasons[1]
    assert reasons[2] == "probes toronto, brussels down (2 of 3; outage_when = 2)"
    assert reasons[3].startswith("exclusion ex-1 (customer_isp): customer's ISP outage")
    steps = {s.figure: s for s in ev.explanation.steps}
    assert steps["formula"].how == "A = (T - M - D) / (T - M) = (2674800 - 5400 - 2700) / (2674800 - 5400)"


def _window_over_national_days(led: Ledger) -> None:
    # Announced Fri 17 Jul 10:00 EDT for Fri 24 Jul 18:00-20:00 (after business hours).
    # Canada: Mon 20 .. Fri 24 are 5 business days -> due 24 Jul 10:00: conforming.
    # Belgium: Tue 21 July (National Day) is a holiday -> due Mon 27 Jul 10:00: emergency.
    led.add(
        "maintenance_announced",
        service="optimy",
        maintenance="mw-a",
        announced_at="2026-07-17T10:00:00-04:00",
        starts_at="2026-07-24T18:00:00-04:00",
        ends_at="2026-07-24T20:00:00-04:00",
    )
    outage(led, "optimy", C_PROBES, "2026-07-24T18:00:00-04:00", "2026-07-24T19:00:00-04:00")
    outage(led, "optimy", ["toronto", "virginia"], "2026-07-08T12:00:00-04:00", "2026-07-08T12:10:00-04:00")
    # mw-b falls in business hours (17:00-17:30 overlap): emergency whatever its notice.
    led.add(
        "maintenance_announced",
        service="optimy",
        maintenance="mw-b",
        announced_at="2026-07-01T10:00:00-04:00",
        starts_at="2026-07-29T17:00:00-04:00",
        ends_at="2026-07-29T18:00:00-04:00",
    )


def test_seed_c_fr_belgian_holidays() -> None:
    led = Ledger()
    _window_over_national_days(led)
    ev = led.evaluate(policy(SEED_C_FR), "2026-07")
    # T = 744 h = 2,678,400 s; M = 3600 (emergency, still M); D = 600.
    # A = (2678400 - 3600 - 600) / (2678400 - 3600) = 2674200 / 2674800 = 99.97756...% -> met.
    assert figures(led, SEED_C_FR, "2026-07") == (2678400, 4200, 3600, 0, 600, "99.9775", True)
    assert "emergency maintenance, counted in M" in ev.report.intervals[1].reason
    assert "runs to 2026-07-27 10:00 EDT" in ev.report.intervals[1].reason
    refused = {f.ref: f.text for f in ev.explanation.findings if f.kind == "maintenance_refused"}
    assert set(refused) == {"mw-a", "mw-b"}
    assert "overlaps business hours 09:00-17:30 America/Toronto on 2026-07-29 17:00 EDT" in refused["mw-b"]
    # Same month under the English version (Canadian holidays): mw-a conforms.
    en = led.evaluate(policy(SEED_C_EN), "2026-07")
    assert "(conforming, counted in M)" in en.report.intervals[1].reason
    assert en.report.availability_percent == "99.9775"


def test_seed_d_tiers_and_customer_side_exclusions() -> None:
    led = Ledger()
    # All probes down 10:00-12:00 (7200 s).
    outage(led, "better-impact", D_PROBES, "2026-06-15T10:00:00-04:00", "2026-06-15T12:00:00-04:00")
    # 10:00-11:00 the customer's ISP, declared for this contract: excused 3600.
    led.add(
        "exclusion_declared",
        service="better-impact",
        exclusion="ex-1",
        category="customer_isp",
        contract="sla-d",
        starts_at="2026-06-15T10:00:00-04:00",
        ends_at="2026-06-15T11:00:00-04:00",
        reason="customer ISP down",
    )
    # 11:00-11:30: declared for another contract only; 11:30-12:00: third_party is not excludable here.
    other = led.add(
        "exclusion_declared",
        service="better-impact",
        exclusion="ex-2",
        category="customer_isp",
        contract="someone-else",
        starts_at="2026-06-15T11:00:00-04:00",
        ends_at="2026-06-15T11:30:00-04:00",
        reason="other customer's ISP",
    )
    third = led.add(
        "exclusion_declared",
        service="better-impact",
        exclusion="ex-3",
        category="third_party",
        starts_at="2026-06-15T11:30:00-04:00",
        ends_at="2026-06-15T12:00:00-04:00",
        reason="CDN provider",
    )
    ev = led.evaluate(policy(SEED_D), "2026-06")
    # T = 720 h = 2,592,000 s; D = 3600; A = (2592000 - 3600) / 2592000 = 99.8611...%.
    # Below 99.95 and below 99.9, not below 99: the lowest matching threshold 99.9 -> 50 %.
    # 50 % x 300.00 (3600 / 12) = 150.00, issued without a claim.
    assert figures(led, SEED_D, "2026-06") == (2592000, 7200, 0, 3600, 3600, "99.8611", False)
    c = ev.report.credit
    assert (c.percent, c.amount, c.claim, c.payable) == ("50", "150.00", "automatic", True)
    refused = {f.ref: f for f in ev.explanation.findings if f.kind == "exclusion_refused"}
    assert refused["ex-2"].events == (other,)
    assert "applies to contract someone-else only" in refused["ex-2"].text
    assert refused["ex-3"].events == (third,)
    assert "category third_party is not excludable" in refused["ex-3"].text


def test_seed_d_exact_threshold_hits() -> None:
    # T = 2,592,000 s. A = 99.95 exactly when D = 0.05 % of T = 1296 s; 99.9 exactly when D = 2592 s.
    cases = [
        ("03:21:36", "99.9500", True, "0", "0.00", False),  # = target: met, no tier
        ("03:43:12", "99.9000", False, "25", "75.00", True),  # = 99.9: below 99.95 only -> 25 %
        ("03:43:13", "99.8999", False, "50", "150.00", True),  # one second more -> 50 %
    ]
    for end, a, met, pct, amount, payable in cases:
        led = Ledger()
        outage(led, "better-impact", D_PROBES, "2026-06-10T03:00:00-04:00", f"2026-06-10T{end}-04:00")
        r = led.evaluate(policy(SEED_D), "2026-06").report
        assert (r.availability_percent, r.target_met) == (a, met), end
        assert (r.credit.percent, r.credit.amount, r.credit.payable) == (pct, amount, payable), end


def test_seed_a_exact_target_to_the_microsecond() -> None:
    # 0.03 % of 2,682,000 s is 804.6 s: exactly 99.97 % meets the target, 1 µs more does not.
    for end, met, a in (("14:13:24.600000", True, "99.9700"), ("14:13:24.600001", False, "99.9699")):
        led = Ledger()
        outage(led, "workspace", A_PROBES, "2026-10-06T14:00:00+02:00", f"2026-10-06T{end}+02:00")
        r = led.evaluate(policy(SEED_A), "2026-10").report
        assert (r.target_met, r.availability_percent) == (met, a)
        assert r.downtime_seconds in (Decimal("804.6"), Decimal("804.600001"))
        assert r.credit.amount == ("0.00" if met else "149.00")


# --- month boundaries and daylight saving -------------------------------------------------------


def test_outage_across_midnight_of_the_first_splits_in_the_contract_zone() -> None:
    led = Ledger()
    # 31 Oct 23:30 -> 1 Nov 00:45, Paris (UTC+1): 30 min in October, 45 min in November,
    # split at 23:00Z (a UTC month boundary would put it all in October).
    outage(led, "workspace", A_PROBES, "2026-10-31T23:30:00+01:00", "2026-11-01T00:45:00+01:00")
    octo = led.evaluate(policy(SEED_A), "2026-10").report
    nov = led.evaluate(policy(SEED_A), "2026-11").report
    assert int(octo.downtime_seconds) == 1800
    assert int(nov.downtime_seconds) == 2700
    assert octo.intervals[0].end == ts("2026-11-01T00:00:00+01:00")
    assert nov.intervals[0].start == ts("2026-11-01T00:00:00+01:00")
    # November in Paris: 720 h. A = (2592000 - 2700) / 2592000 = 99.8958...%
    assert (int(nov.total_seconds), nov.availability_percent) == (2592000, "99.8958")


def test_dst_months_have_743_and_745_hours() -> None:
    led = Ledger()
    # Paris, 29 Mar: 01:30 CET -> 03:30 CEST is one real hour (02:00-03:00 does not exist).
    outage(led, "workspace", A_PROBES, "2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00")
    # Paris, 25 Oct: 02:30 CEST -> 02:30 CET is one real hour (the hour is repeated).
    outage(led, "workspace", A_PROBES, "2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00")
    assert figures(led, SEED_A, "2026-03")[:5] == (743 * 3600, 3600, 0, 0, 3600)
    assert figures(led, SEED_A, "2026-10")[:5] == (745 * 3600, 3600, 0, 0, 3600)
    # Toronto: March 743 h, November 721 h (30 days + the repeated hour).
    empty = Ledger()
    assert figures(empty, SEED_D, "2026-03")[0] == 743 * 3600
    assert figures(empty, SEED_D, "2026-11")[0] == 721 * 3600
    assert figures(empty, SEED_D, "2026-11")[5:] == ("100.0000", True)


# --- probes ----------------------------------------------------------------------------------


def test_probes_out_of_order_and_repeated_failures() -> None:
    led = Ledger()
    # For each probe, recorded newest first: a recovery while up (after), a second recovery, a repeated
    # failure while down, the failure, and a recovery while still up (before). Down 10:00-10:30.
    for p in A_PROBES:
        led.add("probe_recovered", service="workspace", probe=p, at="2026-10-06T10:40:00+02:00")
        led.add("probe_recovered", service="workspace", probe=p, at="2026-10-06T10:30:00+02:00")
        led.add("probe_failed", service="workspace", probe=p, at="2026-10-06T10:10:00+02:00", detail="again")
        led.add("probe_failed", service="workspace", probe=p, at="2026-10-06T10:00:00+02:00")
        led.add("probe_recovered", service="workspace", probe=p, at="2026-10-06T09:00:00+02:00")
    r = led.evaluate(policy(SEED_A), "2026-10").report
    assert int(r.downtime_seconds) == 1800
    assert len(r.intervals) == 1
    # The failures at 10:00 and the recoveries at 10:30 make it: positions 2 and 4 of each block of 5.
    assert r.intervals[0].events == (2, 4, 7, 9, 12, 14)


def test_failure_and_recovery_at_the_same_instant_is_a_blip() -> None:
    led = Ledger()
    for p in A_PROBES:
        led.add("probe_recovered", service="workspace", probe=p, at="2026-10-06T10:00:00+02:00")
        led.add("probe_failed", service="workspace", probe=p, at="2026-10-06T10:00:00+02:00")
    assert figures(led, SEED_A, "2026-10")[1] == 0


def test_quorum_n() -> None:
    led = Ledger()
    # outage_when = 2: a 10:00-11:00, b 10:30-11:30, c 10:45-10:50 -> two or more down 10:30-11:00.
    outage(led, "optimy", ["toronto"], "2026-03-10T10:00:00-04:00", "2026-03-10T11:00:00-04:00")
    outage(led, "optimy", ["brussels"], "2026-03-10T10:30:00-04:00", "2026-03-10T11:30:00-04:00")
    outage(led, "optimy", ["virginia"], "2026-03-10T10:45:00-04:00", "2026-03-10T10:50:00-04:00")
    r = led.evaluate(policy(SEED_C_EN), "2026-03").report
    assert int(r.outage_seconds) == 1800
    assert [int(i.seconds) for i in r.intervals] == [900, 300, 600]
    assert r.intervals[1].reason == "probes toronto, brussels, virginia down (3 of 3; outage_when = 2)"


def test_probe_without_recovery_runs_to_month_end_or_replay_point() -> None:
    led = Ledger()
    outage(led, "workspace", A_PROBES, "2026-10-31T22:00:00+01:00", None)
    assert figures(led, SEED_A, "2026-10")[4] == 7200
    ev = led.evaluate(policy(SEED_A), "2026-10", replay_point=ts("2026-10-31T22:30:00+01:00"))
    assert int(ev.report.downtime_seconds) == 1800
    assert ev.explanation.horizon == ts("2026-10-31T22:30:00+01:00")
    # A replay point before the month: nothing is known yet.
    early = led.evaluate(policy(SEED_A), "2026-10", replay_point=ts("2026-09-01T00:00:00+02:00"))
    assert int(early.report.outage_seconds) == 0


def test_probes_not_in_the_policy_and_other_services_are_ignored() -> None:
    led = Ledger()
    outage(led, "workspace", ["tokyo"], "2026-10-06T10:00:00+02:00", "2026-10-06T11:00:00+02:00")
    outage(led, "elsewhere", A_PROBES, "2026-10-06T10:00:00+02:00", "2026-10-06T11:00:00+02:00")
    ev = led.evaluate(policy(SEED_A), "2026-10")
    assert int(ev.report.outage_seconds) == 0
    assert [(f.kind, f.ref) for f in ev.explanation.findings] == [("ignored_probe", "tokyo")]


# --- incidents -------------------------------------------------------------------------------------


def test_overlapping_incidents_and_probe_outage_count_once() -> None:
    led = Ledger()
    led.add(
        "incident_opened",
        service="workspace",
        incident="INC-4",
        at="2026-10-06T10:00:00+02:00",
        impact="outage",
    )
    led.add("incident_resolved", incident="INC-4", at="2026-10-06T11:00:00+02:00")
    led.add(
        "incident_opened",
        service="workspace",
        incident="INC-5",
        at="2026-10-06T10:15:00+02:00",
        impact="outage",
    )
    led.add("incident_resolved", incident="INC-5", at="2026-10-06T10:45:00+02:00")
    outage(led, "workspace", A_PROBES, "2026-10-06T10:30:00+02:00", "2026-10-06T11:30:00+02:00")
    r = led.evaluate(policy(SEED_A), "2026-10").report
    # Union 10:00-11:30 = 5400 s, not 3600 + 1800 + 3600.
    assert int(r.outage_seconds) == 5400
    assert r.intervals[0].reason == "incident INC-4 (impact outage)"
    assert r.intervals[0].events == (1, 2)
    assert (
        r.intervals[2].reason == "probes paris, frankfurt, london all down (outage_when = all); "
        "incident INC-4 (impact outage); incident INC-5 (impact outage)"
    )


def test_incident_reopened_duplicated_and_resolved_twice() -> None:
    led = Ledger()
    opened = led.add(
        "incident_opened",
        service="workspace",
        incident="INC-1",
        at="2026-10-06T10:00:00+02:00",
        impact="outage",
    )
    led.add(
        "incident_opened",
        service="workspace",
        incident="INC-1",
        at="2026-10-06T10:10:00+02:00",
        impact="outage",
    )
    resolved = led.add("incident_resolved", incident="INC-1", at="2026-10-06T10:30:00+02:00")
    led.add("incident_resolved", incident="INC-1", at="2026-10-06T10:40:00+02:00")
    # Reopened as degraded, escalated to outage at 11:15, resolved at 11:30.
    led.add(
        "incident_opened",
        service="workspace",
        incident="INC-1",
        at="2026-10-06T11:00:00+02:00",
        impact="degraded",
    )
    led.add(
        "incident_opened",
        service="workspace",
        incident="INC-1",
        at="2026-10-06T11:15:00+02:00",
        impact="outage",
    )
    led.add("incident_resolved", incident="INC-1", at="2026-10-06T11:30:00+02:00")
    # A resolution for an incident never opened changes nothing.
    led.add("incident_resolved", incident="INC-404", at="2026-10-06T11:30:00+02:00")
    r = led.evaluate(policy(SEED_A), "2026-10").report
    assert [int(i.seconds) for i in r.intervals] == [1800, 900]
    assert r.intervals[0].events == (opened, resolved)


# --- maintenance ------------------------------------------------------------------------------------


def _window(
    led: Ledger, mid: str, starts: str, ends: str, announced: str = "2026-10-01T09:00:00+02:00"
) -> int:
    return led.add(
        "maintenance_announced",
        service="workspace",
        maintenance=mid,
        announced_at=announced,
        starts_at=starts,
        ends_at=ends,
    )


def test_cancelled_window_excuses_nothing() -> None:
    led = Ledger()
    ann = _window(led, "mw-1", "2026-10-15T10:00:00+02:00", "2026-10-15T11:00:00+02:00")
    cancel = led.add("maintenance_cancelled", maintenance="mw-1", at="2026-10-14T09:00:00+02:00")
    led.add("maintenance_cancelled", maintenance="mw-unknown", at="2026-10-14T09:00:00+02:00")
    outage(led, "workspace", A_PROBES, "2026-10-15T10:00:00+02:00", "2026-10-15T10:30:00+02:00")
    ev = led.evaluate(policy(SEED_A), "2026-10")
    assert int(ev.report.downtime_seconds) == 1800
    assert [(f.kind, f.events) for f in ev.explanation.findings if f.kind == "cancelled"] == [
        ("cancelled", (ann, cancel))
    ]


def test_window_completed_early_and_window_overrun() -> None:
    led = Ledger()
    # Completed early at 10:30 of a 10:00-12:00 window; outage 10:00-11:00 -> M 1800, D 1800.
    _window(led, "mw-1", "2026-10-15T10:00:00+02:00", "2026-10-15T12:00:00+02:00")
    done = led.add("maintenance_completed", maintenance="mw-1", at="2026-10-15T10:30:00+02:00")
    led.add("maintenance_completed", maintenance="mw-1", at="2026-10-15T10:45:00+02:00")  # later: no effect
    outage(led, "workspace", A_PROBES, "2026-10-15T10:00:00+02:00", "2026-10-15T11:00:00+02:00")
    # Overrun: window 10:00-11:00 on the 16th, outage until 12:00 -> M 3600, D 3600.
    _window(led, "mw-2", "2026-10-16T10:00:00+02:00", "2026-10-16T11:00:00+02:00")
    outage(led, "workspace", A_PROBES, "2026-10-16T10:00:00+02:00", "2026-10-16T12:00:00+02:00")
    ev = led.evaluate(policy(SEED_A), "2026-10")
    # outage 3600 + 7200; M 1800 + 3600; D 1800 + 3600.
    assert figures(led, SEED_A, "2026-10")[1:5] == (10800, 5400, 0, 5400)
    assert [i.kind for i in ev.report.intervals] == ["maintenance", "downtime", "maintenance", "downtime"]
    assert done in ev.report.intervals[0].events


def test_reannounced_window_latest_announcement_wins() -> None:
    led = Ledger()
    first = _window(led, "mw-1", "2026-10-15T10:00:00+02:00", "2026-10-15T11:00:00+02:00")
    # Re-announced the evening before with a longer window: 14 h notice, non-conforming.
    second = _window(
        led,
        "mw-1",
        "2026-10-15T10:00:00+02:00",
        "2026-10-15T12:00:00+02:00",
        announced="2026-10-14T20:00:00+02:00",
    )
    outage(led, "workspace", A_PROBES, "2026-10-15T10:00:00+02:00", "2026-10-15T10:30:00+02:00")
    # Recorded in the other order, the result is the same (content decides, not arrival).
    for records in (led.records, list(reversed(led.records))):
        ev = run(records, policy(SEED_A), "2026-10")
        assert int(ev.report.downtime_seconds) == 1800
        assert "announced 14 h ahead" in ev.report.intervals[0].reason
        sup = [f for f in ev.explanation.findings if f.kind == "superseded"]
        assert [f.events for f in sup] == [(first, second)]


def test_no_maintenance_clause_excuses_nothing() -> None:
    led = Ledger()
    led.add(
        "maintenance_announced",
        service="biings",
        maintenance="mw-1",
        announced_at="2026-11-01T09:00:00+01:00",
        starts_at="2026-11-15T10:00:00+01:00",
        ends_at="2026-11-15T11:00:00+01:00",
    )
    outage(led, "biings", ["ping"], "2026-11-15T10:00:00+01:00", "2026-11-15T11:00:00+01:00")
    ev = led.evaluate(policy(SEED_B), "2026-11")
    assert int(ev.report.downtime_seconds) == 3600
    assert any("no maintenance clause" in f.text for f in ev.explanation.findings)


def test_holiday_inside_business_day_notice() -> None:
    # Seed C terms, but non-conforming windows counted as downtime so that the holiday shows in D.
    text = SEED_C_EN.replace('nonconforming = "emergency"', 'nonconforming = "downtime"')
    led = Ledger()
    # Announced Tue 30 Jun 10:00 for Tue 7 Jul 18:00. Canada: 1 July is a holiday -> 5 business
    # days end Wed 8 Jul 10:00: too late, downtime. Belgium: 1 July is a working day -> due 7 Jul 10:00.
    led.add(
        "maintenance_announced",
        service="optimy",
        maintenance="mw-h",
        announced_at="2026-06-30T10:00:00-04:00",
        starts_at="2026-07-07T18:00:00-04:00",
        ends_at="2026-07-07T19:00:00-04:00",
    )
    outage(led, "optimy", C_PROBES, "2026-07-07T18:00:00-04:00", "2026-07-07T19:00:00-04:00")
    assert figures(led, text, "2026-07")[2:5] == (0, 0, 3600)
    assert figures(led, text.replace('holidays = "CA"', 'holidays = "BE"'), "2026-07")[2:5] == (3600, 0, 0)


def test_backdated_notice_is_flagged_but_counted_from_announced_at() -> None:
    # Says it was announced on 1 October, but the ledger learned of it on the 14th.
    led = Ledger()
    led.add(
        "maintenance_announced",
        recorded_at="2026-10-14T09:00:00+02:00",
        service="workspace",
        maintenance="mw-1",
        announced_at="2026-10-01T09:00:00+02:00",
        starts_at="2026-10-15T10:00:00+02:00",
        ends_at="2026-10-15T11:00:00+02:00",
    )
    outage(led, "workspace", A_PROBES, "2026-10-15T10:00:00+02:00", "2026-10-15T10:30:00+02:00")
    honest = Ledger()
    honest.add(
        "maintenance_announced",
        recorded_at="2026-10-01T09:00:00+02:00",
        service="workspace",
        maintenance="mw-1",
        announced_at="2026-10-01T09:00:00+02:00",
        starts_at="2026-10-15T10:00:00+02:00",
        ends_at="2026-10-15T11:00:00+02:00",
    )
    outage(honest, "workspace", A_PROBES, "2026-10-15T10:00:00+02:00", "2026-10-15T10:30:00+02:00")
    late = led.evaluate(policy(SEED_A), "2026-10")
    ok = honest.evaluate(policy(SEED_A), "2026-10")
    assert int(late.report.maintenance_seconds) == 1800
    assert [f.kind for f in late.explanation.findings] == ["backdated_notice"]
    assert ok.explanation.findings == ()
    assert late.report.digest == ok.report.digest


# --- exclusions ---------------------------------------------------------------------------------------


def test_revoked_exclusion_no_longer_excuses() -> None:
    led = Ledger()
    fm = led.add(
        "force_majeure_declared",
        service="workspace",
        declaration="fm-1",
        starts_at="2026-10-20T00:00:00+02:00",
        ends_at="2026-10-20T06:00:00+02:00",
        reason="storm",
    )
    outage(led, "workspace", A_PROBES, "2026-10-20T02:00:00+02:00", "2026-10-20T03:00:00+02:00")
    assert figures(led, SEED_A, "2026-10")[3:5] == (3600, 0)
    rev = led.add("exclusion_revoked", ref="fm-1", reason="the datacentre had power; our router failed")
    ev = led.evaluate(policy(SEED_A), "2026-10")
    assert (int(ev.report.excused_seconds), int(ev.report.downtime_seconds)) == (0, 3600)
    assert [(f.kind, f.events) for f in ev.explanation.findings] == [("revoked", (fm, rev))]


def test_maintenance_takes_precedence_over_exclusion() -> None:
    led = Ledger()
    _window(led, "mw-1", "2026-10-15T10:00:00+02:00", "2026-10-15T11:00:00+02:00")
    led.add(
        "force_majeure_declared",
        service="workspace",
        declaration="fm-1",
        starts_at="2026-10-15T10:30:00+02:00",
        ends_at="2026-10-15T12:00:00+02:00",
        reason="flood",
    )
    outage(led, "workspace", A_PROBES, "2026-10-15T10:00:00+02:00", "2026-10-15T12:00:00+02:00")
    # 10:00-11:00 maintenance (even where the flood overlaps), 11:00-12:00 excused, nothing twice.
    assert figures(led, SEED_A, "2026-10")[1:5] == (7200, 3600, 3600, 0)


def test_exclusion_for_this_contract_applies() -> None:
    led = Ledger()
    led.add(
        "exclusion_declared",
        service="better-impact",
        exclusion="ex-1",
        category="customer_action",
        contract="sla-d",
        starts_at="2026-06-15T10:00:00-04:00",
        ends_at="2026-06-15T11:00:00-04:00",
        reason="customer changed DNS",
    )
    outage(led, "better-impact", D_PROBES, "2026-06-15T10:00:00-04:00", "2026-06-15T11:00:00-04:00")
    assert figures(led, SEED_D, "2026-06")[3:5] == (3600, 0)


# --- claims ---------------------------------------------------------------------------------------------


def test_claim_one_minute_before_and_after_the_deadline_in_paris() -> None:
    # October 2026, 3 days: deadline 4 Nov 00:00 Paris = 3 Nov 23:00Z.
    # 00:01 Paris (23:01Z on the 3rd) would pass a UTC reading of "midnight"; it is late.
    for at, status, payable in (
        ("2026-11-03T23:59:00+01:00", "filed_in_time", True),
        ("2026-11-04T00:00:00+01:00", "filed_in_time", True),
        ("2026-11-04T00:01:00+01:00", "late", False),
    ):
        led = Ledger()
        outage(led, "workspace", A_PROBES, "2026-10-06T10:00:00+02:00", "2026-10-06T11:00:00+02:00")
        pos = led.add("credit_claim_filed", contract="sla-a", month="2026-10", at=at)
        led.add("credit_claim_filed", contract="sla-a", month="2026-09", at="2026-10-02T00:00:00+02:00")
        led.add("credit_claim_filed", contract="other", month="2026-10", at="2026-11-01T00:00:00+01:00")
        r = led.evaluate(policy(SEED_A), "2026-10").report
        assert (r.credit.claim, r.credit.payable, r.credit.amount) == (status, payable, "149.00"), at
        assert pos == 7


def test_no_claim_filed() -> None:
    led = Ledger()
    outage(led, "workspace", A_PROBES, "2026-10-06T10:00:00+02:00", "2026-10-06T11:00:00+02:00")
    r = led.evaluate(policy(SEED_A), "2026-10").report
    assert (r.credit.claim, r.credit.payable, r.credit.amount) == ("not_filed", False, "149.00")


# --- digest and determinism ------------------------------------------------------------------------------


def _renumbered(records: list[Recorded]) -> list[Recorded]:
    return [msgspec.structs.replace(r, position=i + 1) for i, r in enumerate(records)]


def test_digest_ignores_positions_recording_times_and_unrelated_facts() -> None:
    led = Ledger()
    _seed_c_month(led)
    pol = policy(SEED_C_EN)
    base = run(led.records, pol, "2026-03").report
    shuffled = _renumbered(list(reversed(led.records)))
    assert run(shuffled, pol, "2026-03").report.digest == base.digest
    moved = [msgspec.structs.replace(r, recorded_at=ts("2031-01-01T00:00:00Z")) for r in led.records]
    assert run(moved, pol, "2026-03").report.digest == base.digest
    other = Ledger()
    other.records = list(led.records)
    outage(other, "elsewhere", C_PROBES, "2026-03-10T10:00:00Z", "2026-03-10T11:00:00Z")
    assert run(other.records, pol, "2026-03").report.digest == base.digest
    # A different policy version or a changed fact is a different digest.
    assert run(led.records, pol, "2026-03").report.digest.startswith("sha256:")
    from projections.availability import evaluate

    assert evaluate(led.records, pol, 2, "2026-03", as_of_position=1).report.digest != base.digest
    changed = Ledger()
    changed.records = list(led.records)
    outage(changed, "optimy", C_PROBES, "2026-03-10T10:00:00Z", "2026-03-10T10:01:00Z")
    assert run(changed.records, pol, "2026-03").report.digest != base.digest


def test_replaying_twice_gives_byte_identical_json() -> None:
    led = Ledger()
    _seed_c_month(led)
    pol = policy(SEED_C_EN)
    assert to_json(run(led.records, pol, "2026-03").report) == to_json(
        run(led.records, pol, "2026-03").report
    )


def test_contract_facts_are_ignored() -> None:
    from ledger.events import ContractRegistered
    from ledger.policy_check import load_policy

    led = Ledger()
    outage(led, "workspace", A_PROBES, "2026-10-06T10:00:00+02:00", "2026-10-06T11:00:00+02:00")
    before = led.evaluate(policy(SEED_A), "2026-10").report
    f = ContractRegistered(policy=load_policy(SEED_A.encode()))
    led.records.append(Recorded(position=99, recorded_at=ts("2026-01-01T00:00:00Z"), id="c", fact=f))
    after = led.evaluate(policy(SEED_A), "2026-10").report
    assert msgspec.structs.replace(after, as_of_position=before.as_of_position) == before


# --- rules chosen where the spec is silent (docs/decisions.md) ----------------------------------


def test_nonconforming_downtime_window_does_not_block_an_exclusion() -> None:
    led = Ledger()
    # 2 h notice: non-conforming, counted as downtime; force majeure covers the same hour.
    _window(
        led, "mw-1", "2026-10-15T10:00:00+02:00", "2026-10-15T11:00:00+02:00", "2026-10-15T08:00:00+02:00"
    )
    led.add(
        "force_majeure_declared",
        service="workspace",
        declaration="fm-1",
        starts_at="2026-10-15T10:00:00+02:00",
        ends_at="2026-10-15T11:00:00+02:00",
        reason="flood",
    )
    outage(led, "workspace", A_PROBES, "2026-10-15T10:00:00+02:00", "2026-10-15T11:00:00+02:00")
    assert figures(led, SEED_A, "2026-10")[2:5] == (0, 3600, 0)


def test_window_across_the_month_boundary_is_clipped() -> None:
    led = Ledger()
    _window(led, "mw-1", "2026-10-31T23:00:00+01:00", "2026-11-01T02:00:00+01:00")
    outage(led, "workspace", A_PROBES, "2026-10-31T23:00:00+01:00", "2026-11-01T01:00:00+01:00")
    assert figures(led, SEED_A, "2026-10")[1:5] == (3600, 3600, 0, 0)
    assert figures(led, SEED_A, "2026-11")[1:5] == (3600, 3600, 0, 0)


def test_completed_before_it_started_excuses_nothing() -> None:
    led = Ledger()
    _window(led, "mw-1", "2026-10-15T10:00:00+02:00", "2026-10-15T11:00:00+02:00")
    led.add("maintenance_completed", maintenance="mw-1", at="2026-10-15T09:00:00+02:00")
    outage(led, "workspace", A_PROBES, "2026-10-15T10:00:00+02:00", "2026-10-15T10:30:00+02:00")
    assert figures(led, SEED_A, "2026-10")[2:5] == (0, 0, 1800)


def test_claim_recorded_after_the_deadline_is_flagged() -> None:
    led = Ledger()
    outage(led, "workspace", A_PROBES, "2026-10-06T10:00:00+02:00", "2026-10-06T11:00:00+02:00")
    pos = led.add(
        "credit_claim_filed",
        recorded_at="2026-11-10T09:00:00+01:00",
        contract="sla-a",
        month="2026-10",
        at="2026-11-02T09:00:00+01:00",
    )
    ev = led.evaluate(policy(SEED_A), "2026-10")
    assert ev.report.credit.claim == "filed_in_time"  # by its filing time, as the spec says
    assert [(f.kind, f.events) for f in ev.explanation.findings] == [("claim_recorded_late", (pos,))]
    assert "recorded at 2026-11-10T09:00:00+01:00" in ev.explanation.findings[0].text


def test_audit_replay_point_after_month_end_follows_the_long_stretch_only_as_far_as_recorded() -> None:
    led = Ledger()
    # Down from 30 Nov 12:00 Zurich, recovered 2 Dec 00:00 (36 h), but the recovery is recorded later.
    led.add("probe_failed", service="biings", probe="ping", at="2026-11-30T12:00:00+01:00")
    pol = policy(SEED_B)
    # Before the recovery is known: 12 h to month end, not over 24 h.
    audit = led.evaluate(pol, "2026-11", replay_point=ts("2026-12-01T18:00:00+01:00"))
    assert (int(audit.report.downtime_seconds), audit.report.credit.long_outage_amount) == (43200, "0.00")
    led.add("probe_recovered", service="biings", probe="ping", at="2026-12-02T00:00:00+01:00")
    assert led.evaluate(pol, "2026-11").report.credit.long_outage_amount == "32.88"


def test_maintenance_out_of_total_with_the_whole_month_in_maintenance() -> None:
    led = Ledger()
    led.add(
        "maintenance_announced",
        service="optimy",
        maintenance="mw-all",
        announced_at="2026-01-01T00:00:00-05:00",
        starts_at="2026-02-28T00:00:00-05:00",
        ends_at="2026-04-02T00:00:00-04:00",
    )
    outage(led, "optimy", C_PROBES, "2026-02-28T00:00:00-05:00", "2026-04-02T00:00:00-04:00")
    # Even a whole month of emergency maintenance: T - M = 0, nothing was due, A = 100 %.
    assert figures(led, SEED_C_EN, "2026-03") == (2674800, 2674800, 2674800, 0, 0, "100.0000", True)


def test_a_recovery_dated_after_the_replay_point_is_not_cited_yet() -> None:
    """Replayed to a point, a recovery recorded ahead of its `at` had not happened (helper hAW).

    The outage runs to the horizon as if the recovery were unknown, and the interval cites the
    failure only: the same figures, reasons and digest as a log without that recovery.
    """
    pol = policy(SEED_B)
    point = ts("2026-10-06T10:30:00+02:00")
    led = Ledger()
    led.add("probe_failed", service="biings", probe="ping", at="2026-10-06T10:00:00+02:00")
    led.add("incident_opened", service="biings", incident="I", at="2026-10-06T09:00:00+02:00",
            impact="outage")
    without = to_json(led.evaluate(pol, "2026-10", replay_point=point).report)
    led.add("probe_recovered", service="biings", probe="ping", at="2026-10-06T11:00:00+02:00")
    led.add("incident_resolved", incident="I", at="2026-10-06T10:45:00+02:00")
    ev = led.evaluate(pol, "2026-10", replay_point=point)
    assert [list(i.events) for i in ev.report.intervals] == [[2], [1, 2]]
    assert to_json(msgspec.structs.replace(ev.report, as_of_position=2)) == without


def test_a_claim_dated_after_the_replay_point_was_not_filed_yet() -> None:
    """Replayed to a point, a claim recorded ahead of its `at` is not filed yet (helper hAW)."""
    led = Ledger()
    outage(led, "workspace", A_PROBES, "2026-10-06T10:00:00+02:00", "2026-10-06T12:00:00+02:00")
    led.add("credit_claim_filed", contract="sla-a", month="2026-10", at="2026-11-02T12:00:00+01:00")
    pol = policy(SEED_A)
    claim = [led.evaluate(pol, "2026-10", replay_point=ts(t)).report.credit.claim
             for t in ("2026-11-02T11:59:59.999999+01:00", "2026-11-02T12:00:00+01:00")]
    assert claim == ["not_filed", "filed_in_time"]
