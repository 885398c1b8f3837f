"""Service credits (INTERFACE.md sections 3 and 5): tier, long-outage credit, cap, claim.

Pure functions of the month's exact availability, its downtime stretches and the
claims on file. Money is carried as ``Fraction`` (fees are decimal strings, so
this is exact) and rounded half-up to 0.01 once, at the very end.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from math import floor
from zoneinfo import ZoneInfo

import msgspec

from ledger.calendar import first_of_next_month, local_midnight, parse_month
from ledger.policy import Policy, Tiers, format_duration
from projections.model import ClaimStatus, Credit, Finding, Step

_US_PER_DAY = 86_400 * 1_000_000


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


def fees(policy: Policy) -> tuple[Fraction, Fraction]:
    """Exact (monthly, annual) fee, derived from whichever the policy file states."""
    c = policy.source.contract
    # Policy.monthly_fee is annual / 12 in a 28-digit Decimal context: not exact. Re-derive.
    if c.monthly_fee is not None:
        monthly = Fraction(Decimal(c.monthly_fee))
        return monthly, monthly * 12
    annual = Fraction(Decimal(c.annual_fee or "0"))
    return annual / 12, annual


def money(value: Fraction) -> str:
    """A non-negative amount rounded half-up to 0.01, as "1200.00"."""
    if value < 0:
        raise ValueError("money amounts here are never negative")
    # floor(value * 100 + 1/2), half-up, exact: in integers (Fraction arithmetic cost more
    # than the rest of a busy month's credit).
    cents = (200 * value.numerator + value.denominator) // (2 * value.denominator)
    return f"{cents // 100}.{cents % 100:02d}"


def percent_text(value: Decimal) -> str:
    """A percentage without exponent or trailing zeros: "100", "25", "12.5", "0"."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def claim_deadline(month: str, tz: ZoneInfo, days: int) -> datetime:
    """Local midnight ending day ``days`` of the month after ``month`` (00:00 of day days+1), in UTC."""
    year, mon = parse_month(month)
    return local_midnight(first_of_next_month(year, mon) + timedelta(days=days), tz)


def choose_tier(availability: Fraction, tiers: tuple[Tiers, ...]) -> Tiers | None:
    """Among tiers with availability < below (exact), the one with the lowest ``below``."""
    matching = [t for t in tiers if availability < Fraction(t.below)]
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
    availability: Fraction,
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

    long_total = Fraction(0)
    if rules.long_outage_over is not None:
        over_us = rules.long_outage_over // timedelta(microseconds=1)
        daily = annual / 365
        for s in stretches:
            length = s.end_us - s.start_us
            if length <= over_us:
                continue
            days = credited_days(length, rules.long_outage_per_started_day)
            long_total += daily * days
            kind = "started" if rules.long_outage_per_started_day else "full"
            steps.append(
                Step(
                    figure="long outage",
                    value=money(daily * days),
                    how=(
                        f"downtime of {format_duration(timedelta(microseconds=length))} > "
                        f"{format_duration(rules.long_outage_over)}: {days} {kind} day(s) x daily rate "
                        f"{money(daily)} (annual fee {money(annual)} / 365)"
                    ),
                    events=s.events,
                )
            )
        if long_total == 0:
            steps.append(
                Step(
                    figure="long outage",
                    value="0.00",
                    how=f"no downtime stretch starting this month is longer than "
                    f"{format_duration(rules.long_outage_over)}",
                )
            )

    base = Fraction(pct) / 100 * monthly
    amount = base + long_total
    how = (
        f"{percent_text(pct)} % x monthly fee {money(monthly)} = {money(base)}"
        f" + long outage {money(long_total)}"
    )
    if rules.cap_percent is not None:
        cap = Fraction(rules.cap_percent) / 100 * monthly
        if amount > cap:
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
    payable = amount > 0 and status in ("automatic", "filed_in_time")
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


def float_free(value: Fraction, places: int = 6) -> str:
    """A Fraction shown truncated to ``places`` decimals, for explanations only (never compared)."""
    scaled = floor(value * 10**places)
    whole, frac = divmod(scaled, 10**places)
    return f"{whole}.{frac:0{places}d}"
