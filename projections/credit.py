"""Service credits (INTERFACE.md sections 3 and 5): tier, long-outage credit, cap, claim.

Pure functions of the month's exact availability, its downtime stretches and the
claims on file. Exact numbers are carried as integer pairs (``Ratio``: numerator,
denominator): fees and percentages are decimal strings, so each amount is exact, and
money is rounded half-up to 0.01 once, at the very end. Not ``fractions.Fraction``:
importing it compiles its string-parsing pattern, 4M instructions of every report's
start-up (issue 17), and a month's figures need only products, one sum, comparisons and
decimal text, each written out below (held to ``Fraction`` by ``tests/unit/test_ratio.py``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from math import gcd
from zoneinfo import ZoneInfo

import msgspec

from ledger.calendar import first_of_next_month, local_midnight, parse_month
from ledger.policy import Policy, Tiers, format_duration
from projections.model import ClaimStatus, Credit, Finding, Step

_US_PER_DAY = 86_400 * 1_000_000
Ratio = tuple[int, int]  # an exact number: (numerator, denominator), the denominator > 0


def lowest(n: int, d: int) -> Ratio:
    """n / d in lowest terms (the explanation prints it), for d > 0."""
    g = gcd(n, d)
    return n // g, d // g


class Stretch(msgspec.Struct, frozen=True):
    """A maximal unbroken stretch of downtime (microseconds since the epoch), with its evidence."""

    start_us: int
    end_us: int
    events: tuple[int, ...]


class Claim(msgspec.Struct, frozen=True):
    """A ``credit_claim_filed`` for the contract and month being evaluated."""

    at: datetime
    recorded_at: datetime
    position: int


class CreditOutcome(msgspec.Struct, frozen=True):
    """The credit block of the report plus how it was reached."""

    credit: Credit
    steps: tuple[Step, ...]
    findings: tuple[Finding, ...]
    claim_events: tuple[int, ...]  # the claim the status rests on (the digest covers it)


def below(value: Ratio, threshold: Decimal) -> bool:
    """``value < threshold``, exactly (a Decimal is the ratio of two integers)."""
    p, q = threshold.as_integer_ratio()
    return value[0] * q < p * value[1]


def fees(policy: Policy) -> tuple[Ratio, Ratio]:
    """Exact (monthly, annual) fee, derived from whichever the policy file states."""
    c = policy.source.contract
    # Policy.monthly_fee is annual / 12 in a 28-digit Decimal context: not exact. Re-derive.
    if c.monthly_fee is not None:
        n, d = Decimal(c.monthly_fee).as_integer_ratio()
        return (n, d), (12 * n, d)
    n, d = Decimal(c.annual_fee or "0").as_integer_ratio()
    return (n, 12 * d), (n, d)


def money(value: Ratio) -> str:
    """A non-negative amount rounded half-up to 0.01, as "1200.00"."""
    n, d = value
    if n < 0:
        raise ValueError("money amounts here are never negative")
    cents = (200 * n + d) // (2 * d)  # floor(value * 100 + 1/2): half-up, exact
    return f"{cents // 100}.{cents % 100:02d}"


def percent_text(value: Decimal) -> str:
    """A percentage without exponent or trailing zeros: "100", "25", "12.5", "0"."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def claim_deadline(month: str, tz: ZoneInfo, days: int) -> datetime:
    """Local midnight ending day ``days`` of the month after ``month`` (00:00 of day days+1), in UTC."""
    year, mon = parse_month(month)
    return local_midnight(first_of_next_month(year, mon) + timedelta(days=days), tz)


def choose_tier(availability: Ratio, tiers: tuple[Tiers, ...]) -> Tiers | None:
    """Among tiers with availability < below (exact), the one with the lowest ``below``."""
    matching = [t for t in tiers if below(availability, t.below)]
    return min(matching, key=lambda t: t.below) if matching else None


def credited_days(length_us: int, per_started_day: bool) -> int:
    """Days a downtime stretch earns: started days (ceil) or whole days only (floor)."""
    whole, rest = divmod(length_us, _US_PER_DAY)
    return whole + (1 if per_started_day and rest else 0)


def claim_status(claims: list[Claim], deadline: datetime) -> tuple[ClaimStatus, Claim | None]:
    """filed_in_time (earliest claim at or before the deadline), late, or not_filed."""
    ordered = sorted(claims, key=lambda c: (c.at, c.position))
    in_time = [c for c in ordered if c.at <= deadline]
    if in_time:
        return "filed_in_time", in_time[0]
    if ordered:
        return "late", ordered[0]
    return "not_filed", None


def evaluate_credit(
    policy: Policy,
    month: str,
    availability: Ratio,
    stretches: list[Stretch],
    claims: list[Claim],
) -> CreditOutcome:
    """The month's credit: tier percent x monthly fee + long-outage credit, capped, rounded once."""
    rules = policy.credits
    currency = policy.currency
    if rules is None:
        credit = Credit(
            percent="0",
            amount="0.00",
            long_outage_amount="0.00",
            currency=currency,
            claim="none",
            payable=False,
        )
        step = Step(
            figure="credit", value="none", how="the policy has no [credits] section (best-efforts SLA)"
        )
        return CreditOutcome(credit=credit, steps=(step,), findings=(), claim_events=())

    monthly, annual = fees(policy)
    steps: list[Step] = []
    findings: list[Finding] = []
    a_text = f"{float_free(availability)} %"

    tier = choose_tier(availability, rules.tiers)
    if tier is None:
        pct = Decimal(0)
        steps.append(Step(figure="tier", value="none", how=f"A = {a_text} is not below any tier threshold"))
    else:
        pct = tier.percent
        steps.append(
            Step(
                figure="tier",
                value=f"< {percent_text(tier.below)} % -> {percent_text(pct)} %",
                how=f"A = {a_text} < {percent_text(tier.below)} %, the lowest matching threshold",
            )
        )

    # The long-outage credit is the daily rate (annual / 365) times the days all stretches earn.
    daily = (annual[0], annual[1] * 365)
    long_days = 0
    if rules.long_outage_over is not None:
        over_us = rules.long_outage_over // timedelta(microseconds=1)
        for s in stretches:
            length = s.end_us - s.start_us
            if length <= over_us:
                continue
            days = credited_days(length, rules.long_outage_per_started_day)
            long_days += days
            kind = "started" if rules.long_outage_per_started_day else "full"
            steps.append(
                Step(
                    figure="long outage",
                    value=money((daily[0] * days, daily[1])),
                    how=(
                        f"downtime of {format_duration(timedelta(microseconds=length))} > "
                        f"{format_duration(rules.long_outage_over)}: {days} {kind} day(s) x daily rate "
                        f"{money(daily)} (annual fee {money(annual)} / 365)"
                    ),
                    events=s.events,
                )
            )
        if long_days * annual[0] == 0:
            steps.append(
                Step(
                    figure="long outage",
                    value="0.00",
                    how=f"no downtime stretch starting this month is longer than "
                    f"{format_duration(rules.long_outage_over)}",
                )
            )

    long_total = (daily[0] * long_days, daily[1])
    p, q = pct.as_integer_ratio()
    base = (p * monthly[0], q * 100 * monthly[1])  # pct / 100 x monthly
    # base + long_total over the product of their denominators
    amount = (base[0] * long_total[1] + long_total[0] * base[1], base[1] * long_total[1])
    how = (
        f"{percent_text(pct)} % x monthly fee {money(monthly)} = {money(base)}"
        f" + long outage {money(long_total)}"
    )
    if rules.cap_percent is not None:
        p, q = rules.cap_percent.as_integer_ratio()
        cap = (p * monthly[0], q * 100 * monthly[1])  # cap_percent / 100 x monthly
        if amount[0] * cap[1] > cap[0] * amount[1]:  # amount > cap
            how += f", capped at {percent_text(rules.cap_percent)} % of the monthly fee = {money(cap)}"
            amount = cap
        else:
            how += f" (cap {percent_text(rules.cap_percent)} % = {money(cap)} not reached)"
    steps.append(Step(figure="cap", value=money(amount), how=how))

    claim_events: tuple[int, ...] = ()
    status: ClaimStatus
    if rules.claim_deadline_days is None:
        status = "automatic"
        steps.append(Step(figure="claim", value=status, how="no claim deadline: the credit is automatic"))
    else:
        deadline = claim_deadline(month, policy.timezone, rules.claim_deadline_days)
        local_deadline = deadline.astimezone(policy.timezone).isoformat()
        status, used = claim_status(claims, deadline)
        if used is not None:
            claim_events = (used.position,)
        steps.append(
            Step(
                figure="claim",
                value=status,
                how=f"claims count if filed at or before {local_deadline} "
                f"(local midnight ending day {rules.claim_deadline_days} of the next month)",
                events=claim_events,
            )
        )
        for c in sorted(claims, key=lambda c: (c.at, c.position)):
            if c.at > deadline:
                findings.append(
                    Finding(
                        kind="claim",
                        ref=month,
                        text=f"claim filed at {c.at.isoformat()} is after the deadline {local_deadline}",
                        events=(c.position,),
                    )
                )
            elif c.recorded_at > deadline:
                # Filed in time by its own date, but the ledger only learned it later: flag it.
                findings.append(
                    Finding(
                        kind="claim_recorded_late",
                        ref=month,
                        text=f"claim filed at {c.at.isoformat()} was recorded at "
                        f"{c.recorded_at.isoformat()}, after the deadline {local_deadline}; "
                        "counted by its filing time",
                        events=(c.position,),
                    )
                )

    amount_text = money(amount)
    payable = amount[0] > 0 and status in ("automatic", "filed_in_time")
    steps.append(
        Step(
            figure="amount",
            value=f"{amount_text} {currency}",
            how=f"rounded half-up once; payable = {str(payable).lower()} (claim {status})",
        )
    )
    credit = Credit(
        percent=percent_text(pct),
        amount=amount_text,
        long_outage_amount=money(long_total),
        currency=currency,
        claim=status,
        payable=payable,
    )
    return CreditOutcome(
        credit=credit, steps=tuple(steps), findings=tuple(findings), claim_events=claim_events
    )


def float_free(value: Ratio, places: int = 6) -> str:
    """A ratio shown truncated to ``places`` decimals, for explanations only (never compared)."""
    scaled = value[0] * 10**places // value[1]  # floor: the denominator is positive
    whole, frac = divmod(scaled, 10**places)
    return f"{whole}.{frac:0{places}d}"
