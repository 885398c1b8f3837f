"""Credits: tiers, long outage, cap, rounding and claims (projections.credit)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from ledger.policy import Tiers
from projections.credit import (
    Claim,
    Stretch,
    choose_tier,
    claim_deadline,
    claim_status,
    credited_days,
    evaluate_credit,
    fees,
    money,
    percent_text,
)
from tests.unit.factories import SEED_A, SEED_B, SEED_C_EN, SEED_D, pair, policy, ts

H = 3_600_000_000  # one hour in microseconds
D_TIERS = (
    Tiers(below=Decimal("99.95"), percent=Decimal("25")),
    Tiers(below=Decimal("99.9"), percent=Decimal("50")),
    Tiers(below=Decimal("99"), percent=Decimal("100")),
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Fraction(1, 200), "0.01"),  # exactly half a cent rounds up
        (Fraction(4999, 1_000_000), "0.00"),
        (Fraction(2675, 1000), "2.68"),  # the float trap: 2.675 is below half in binary
        (Fraction(0), "0.00"),
        (Fraction(1200), "1200.00"),
        (Fraction(1000, 12) / 4, "20.83"),
    ],
)
def test_money_rounds_half_up_exactly(value: Fraction, text: str) -> None:
    assert money(pair(value)) == text


@pytest.mark.parametrize(("value", "text"), [("100", "100"), ("25.00", "25"), ("0", "0"), ("12.50", "12.5")])
def test_percent_text_has_no_exponent(value: str, text: str) -> None:
    assert percent_text(Decimal(value)) == text


@pytest.mark.parametrize(
    ("availability", "percent"),
    [
        (Fraction("99.95"), None),  # exactly the target: no tier
        (Fraction("99.9499999"), Decimal(25)),
        (Fraction("99.9"), Decimal(25)),  # exactly the 99.9 threshold: not below it
        (Fraction("99.8999999"), Decimal(50)),
        (Fraction(99), Decimal(50)),
        (Fraction("98.99"), Decimal(100)),
        (Fraction(0), Decimal(100)),
    ],
)
def test_lowest_matching_threshold_wins(availability: Fraction, percent: Decimal | None) -> None:
    tier = choose_tier(pair(availability), D_TIERS)
    assert (tier.percent if tier else None) == percent
    # Order of the tiers in the file does not matter.
    tier = choose_tier(pair(availability), tuple(reversed(D_TIERS)))
    assert (tier.percent if tier else None) == percent


def test_started_and_full_days() -> None:
    assert credited_days(24 * H + 1, per_started_day=True) == 2
    assert credited_days(24 * H + 1, per_started_day=False) == 1
    assert credited_days(48 * H, per_started_day=True) == 2
    assert credited_days(47 * H, per_started_day=False) == 1


def test_claim_deadline_is_local_midnight_ending_day_n() -> None:
    # October 2026 in Paris, 3 days: 00:00 on 4 November, CET (UTC+1).
    assert claim_deadline("2026-10", ZoneInfo("Europe/Paris"), 3) == ts("2026-11-03T23:00:00+00:00")
    # 0 days: the month's own end; December rolls into the next year.
    assert claim_deadline("2026-12", ZoneInfo("America/Toronto"), 0) == ts("2027-01-01T05:00:00+00:00")
    # More days than the next month has: plain day arithmetic.
    assert claim_deadline("2026-01", ZoneInfo("UTC"), 30) == ts("2026-03-03T00:00:00+00:00")


def test_claim_status_earliest_in_time_claim_wins() -> None:
    deadline = ts("2026-11-03T23:00:00+00:00")
    late = Claim(at=ts("2026-11-05T10:00:00+00:00"), recorded_at=ts("2026-11-05T10:00:00+00:00"), position=9)
    early = Claim(
        at=ts("2026-11-03T22:59:00+00:00"), recorded_at=ts("2026-11-03T22:59:00+00:00"), position=12
    )
    assert claim_status([late, early], deadline) == ("filed_in_time", early)
    assert claim_status([late], deadline) == ("late", late)
    assert claim_status([], deadline) == ("not_filed", None)


def test_exact_fees_from_annual_fee() -> None:
    # 3600 / 12 = 300 exactly; policy.monthly_fee would be a 28-digit Decimal for 1000 / 12.
    assert tuple(Fraction(*r) for r in fees(policy(SEED_D))) == (Fraction(300), Fraction(3600))
    pol = policy(SEED_D.replace('"3600.00"', '"1000.00"'))
    assert tuple(Fraction(*r) for r in fees(pol)) == (Fraction(1000, 12), Fraction(1000))
    out = evaluate_credit(pol, "2026-06", pair(Fraction("99.94")), [], [])
    assert out.credit.amount == "20.83"  # 25 % of 83.333... rounded once


def test_no_credits_section_is_best_efforts() -> None:
    out = evaluate_credit(policy(SEED_C_EN), "2026-03", pair(Fraction(50)), [], [])
    c = out.credit
    assert (c.percent, c.amount, c.long_outage_amount, c.claim, c.payable) == (
        "0",
        "0.00",
        "0.00",
        "none",
        False,
    )
    assert c.currency == "CAD"


def test_long_outage_daily_rate_per_started_day() -> None:
    pol = policy(SEED_B)  # annual 6000 CHF: daily rate 6000 / 365 = 16.4383...
    stretches = [Stretch(0, 26 * H, (1, 2)), Stretch(30 * H, 54 * H, (3, 4)), Stretch(60 * H, 61 * H, (5,))]
    out = evaluate_credit(pol, "2026-11", pair(Fraction("96.3888")), stretches, [])
    # 26 h -> 2 started days; exactly 24 h is not "over 24 h"; 1 h is short.
    # 10 % x 500 = 50 + 2 x 6000/365 = 32.8767... -> 82.876712... -> 82.88
    assert out.credit.long_outage_amount == "32.88"
    assert out.credit.amount == "82.88"
    assert (out.credit.claim, out.credit.payable) == ("automatic", True)


def test_long_outage_full_days_only() -> None:
    pol = policy(SEED_B.replace("per_started_day = true", "per_started_day = false"))
    out = evaluate_credit(pol, "2026-11", pair(Fraction(100)), [Stretch(0, 47 * H, ())], [])
    assert out.credit.long_outage_amount == "16.44"  # one full day: 16.438356...
    assert out.credit.percent == "0"
    assert out.credit.amount == "16.44"


def test_cap_applies_before_the_single_rounding() -> None:
    pol = policy(SEED_B.replace('cap_percent = "100"', 'cap_percent = "20"'))
    out = evaluate_credit(pol, "2026-11", pair(Fraction(90)), [Stretch(0, 100 * H, ())], [])
    # 10 % x 500 + 5 x 16.438... = 132.19 > cap 20 % x 500 = 100
    assert out.credit.amount == "100.00"
    assert out.credit.long_outage_amount == "82.19"


def test_late_claim_keeps_the_entitlement_but_is_not_payable() -> None:
    pol = policy(SEED_A)
    claim = Claim(at=ts("2026-11-04T00:01:00+01:00"), recorded_at=ts("2026-11-04T00:01:00+01:00"), position=3)
    out = evaluate_credit(pol, "2026-10", pair(Fraction("99.9")), [], [claim])
    assert (out.credit.percent, out.credit.amount, out.credit.claim, out.credit.payable) == (
        "100",
        "149.00",
        "late",
        False,
    )
    assert out.claim_events == (3,)
    assert [f.kind for f in out.findings] == ["claim"]


def test_nothing_owed_is_not_payable_even_when_automatic() -> None:
    out = evaluate_credit(policy(SEED_D), "2026-06", pair(Fraction(100)), [], [])
    assert (out.credit.amount, out.credit.claim, out.credit.payable) == ("0.00", "automatic", False)
