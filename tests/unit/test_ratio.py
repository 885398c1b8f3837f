"""The credit and availability figures' integer ratios, held to ``fractions.Fraction``.

``projections.credit`` and ``projections.availability`` compute with (numerator, denominator)
pairs instead of ``Fraction`` (issue 17: importing ``fractions`` cost every report about 4M
instructions). Each formatting, rounding and threshold comparison they make is checked here
against the same figure computed with ``Fraction``, as the code did before.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from math import floor

from hypothesis import given
from hypothesis import strategies as st

from ledger.policy import Policy
from projections.availability import _availability, _truncate4
from projections.credit import (
    Stretch,
    below,
    choose_tier,
    credited_days,
    evaluate_credit,
    fees,
    float_free,
    money,
    percent_text,
)
from projections.explain import _hours
from tests.unit.factories import SEED_B, SEED_D, pair, policy

H = 3_600_000_000
naturals = st.integers(min_value=0, max_value=10**40)
positives = st.integers(min_value=1, max_value=10**40)
scales = st.integers(min_value=1, max_value=10**6)  # an unreduced pair: both terms times this
# Decimal strings as policy files hold them: up to 8 integer digits and 6 decimals.
decimals = st.builds(
    lambda whole, frac, places: Decimal(f"{whole}.{frac % 10**places:0{places}d}" if places else whole),
    st.integers(0, 10**8), st.integers(0, 999_999), st.sampled_from([0, 1, 2, 6]))


def _old_money(value: Fraction) -> str:
    cents = floor(value * 100 + Fraction(1, 2))
    return f"{cents // 100}.{cents % 100:02d}"


@given(naturals, positives, scales)
def test_money_is_fractions_half_up(n: int, d: int, k: int) -> None:
    assert money((n * k, d * k)) == _old_money(Fraction(n, d))


@given(naturals, positives, scales)
def test_truncations_are_fractions_floor(n: int, d: int, k: int) -> None:
    value = Fraction(n, d)
    scaled = floor(value * 10_000)
    assert _truncate4((n * k, d * k)) == f"{scaled // 10_000}.{scaled % 10_000:04d}"
    for places in (2, 6):
        whole, frac = divmod(floor(value * 10**places), 10**places)
        assert float_free((n * k, d * k), places) == f"{whole}.{frac:0{places}d}"


@given(naturals, positives, decimals)
def test_below_is_fractions_less_than(n: int, d: int, threshold: Decimal) -> None:
    assert below((n, d), threshold) is (Fraction(n, d) < Fraction(threshold))
    p, q = threshold.as_integer_ratio()  # the threshold itself and its neighbours
    assert below((p, q), threshold) is False
    assert below((p * 1000 - 1, q * 1000), threshold) is True


@given(st.integers(1, 10**12), st.integers(0, 10**12), st.integers(0, 10**12),
       st.sampled_from(["downtime_over_total", "downtime_over_committed"]))
def test_availability_is_fractions_in_lowest_terms(t: int, m: int, d: int, formula: str) -> None:
    m, d = min(m, t), min(d, t - min(m, t))
    pol = policy(SEED_B)
    pol = Policy(**{**{f: getattr(pol, f) for f in pol.__struct_fields__}, "formula": formula})
    got, _ = _availability(pol, t, m, d)
    if formula == "downtime_over_total":
        want = Fraction(100 * (t - d), t)
    else:
        want = Fraction(100) if t == m else Fraction(100 * (t - m - d), t - m)
    assert got == (want.numerator, want.denominator)


@given(st.integers(0, 10**16))
def test_hours_text_is_fractions_str(us: int) -> None:
    assert _hours(us) == str(Fraction(us, H))


def _old_credit(pol: Policy, availability: Fraction, stretches: list[Stretch]) -> tuple[str, str, str, str]:
    """percent, long-outage amount, cap step value, amount: the Fraction code this replaced."""
    rules = pol.credits
    assert rules is not None
    monthly, annual = (Fraction(*r) for r in fees(pol))
    matching = [t for t in rules.tiers if availability < Fraction(t.below)]
    tier = min(matching, key=lambda t: t.below) if matching else None
    pct = Decimal(0) if tier is None else tier.percent
    long_total = Fraction(0)
    if rules.long_outage_over is not None:
        over_us = rules.long_outage_over // timedelta(microseconds=1)
        for s in stretches:
            length = s.end_us - s.start_us
            if length > over_us:
                long_total += annual / 365 * credited_days(length, rules.long_outage_per_started_day)
    amount = Fraction(pct) / 100 * monthly + long_total
    if rules.cap_percent is not None:
        amount = min(amount, Fraction(rules.cap_percent) / 100 * monthly)
    return percent_text(pct), _old_money(long_total), _old_money(amount), _old_money(amount)


@given(naturals, positives, decimals, st.sampled_from(["10", "25", "12.5", "33.333"]),
       st.sampled_from(["100", "20", "7.5"]), st.booleans(),
       st.lists(st.tuples(st.integers(0, 10 * 24 * H), st.integers(0, 10 * 24 * H)), max_size=4))
def test_credit_is_fractions_arithmetic(n: int, d: int, fee: Decimal, pct: str, cap: str, started: bool,
                                        spans: list[tuple[int, int]]) -> None:
    seed = (SEED_B.replace('"6000.00"', f'"{fee}"').replace('percent = "10"', f'percent = "{pct}"')
            .replace('cap_percent = "100"', f'cap_percent = "{cap}"'))
    if not started:
        seed = seed.replace("per_started_day = true", "per_started_day = false")
    pol = policy(seed)
    availability = Fraction(n % (101 * d), d)  # 0 .. 100 %
    stretches = [Stretch(start, start + length, ()) for start, length in spans]
    out = evaluate_credit(pol, "2026-11", pair(availability), stretches, [])
    percent, long_amount, cap_value, amount = _old_credit(pol, availability, stretches)
    got = (out.credit.percent, out.credit.long_outage_amount, out.credit.amount)
    assert got == (percent, long_amount, amount)
    assert next(s.value for s in out.steps if s.figure == "cap") == cap_value


@given(naturals, positives, decimals)
def test_monthly_fee_credit_is_fractions_arithmetic(n: int, d: int, fee: Decimal) -> None:
    pol = policy(SEED_D.replace('annual_fee = "3600.00"', f'monthly_fee = "{fee}"'))
    availability = Fraction(n % (101 * d), d)
    out = evaluate_credit(pol, "2026-06", pair(availability), [], [])
    monthly, annual = (Fraction(*r) for r in fees(pol))
    assert (monthly, annual) == (Fraction(fee), 12 * Fraction(fee))
    rules = pol.credits
    assert rules is not None
    tier = choose_tier(pair(availability), rules.tiers)
    base = Fraction(tier.percent if tier else 0) / 100 * monthly
    if rules.cap_percent is not None:
        base = min(base, Fraction(rules.cap_percent) / 100 * monthly)
    assert out.credit.amount == _old_money(base)
