"""Contract policies: the TOML file as recorded (``PolicyFile``) and its resolved form (``Policy``).

``PolicyFile`` mirrors INTERFACE.md section 3 field for field; it is what the
``contract_registered`` / ``contract_amended`` events carry, so a policy
round-trips through the ledger unchanged. ``resolve`` turns it into ``Policy``,
with Decimals, durations and time zones, which is what projections use.

Size: the policy file's msgspec types and their resolution into rules are one format,
read together (house style, as ledger/events.py); what a new policy must meet is
``ledger.policy_check``.
"""

# No ``from __future__ import annotations``: msgspec reads these structs' annotations to build
# the fact decoder every command needs, and strings cost a compile and an eval each (issue 17).
import re
from datetime import date, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from ledger.calendar import CalendarRules, supported_holidays
from ledger.errors import BadInput

if TYPE_CHECKING:
    from ledger.support_hours import Closure  # only the type: the support clocks are not imported

# The types say what a recorded policy may hold, and recorded policies are read back with
# them; the shape of a new policy's strings (a decimal, a month, hours, a currency, a country
# code, no control character in a name) is checked where policies come in, matched whole
# (``ledger.policy_check.check_policy``), not by msgspec patterns: those are compiled when
# this module is imported (about 2.9M instructions of every report, issue 17), and their `$`
# lets a trailing newline through.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
# Decimal strings, never floats: "99.97", "1200.00".
DecimalStr = Annotated[str, msgspec.Meta(max_length=64)]
MonthStr = Annotated[str, msgspec.Meta(max_length=64)]
DurationStr = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
HoursStr = Annotated[str, msgspec.Meta(max_length=64)]

HolidaysCode = Annotated[str, msgspec.Meta(max_length=64)]  # "CA", "CA-ON"

Formula = Literal["downtime_over_total", "maintenance_out_of_total"]
Nonconforming = Literal["downtime", "emergency"]
Excludable = Literal[
    "force_majeure",
    "customer_isp",
    "customer_equipment",
    "customer_action",
    "third_party",
    "internet_failure",
]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class ContractSection(_Section, frozen=True):
    id: Name
    customer: Annotated[str, msgspec.Meta(max_length=1000)]
    service: Name
    timezone: Name
    currency: Annotated[str, msgspec.Meta(max_length=64)]
    monthly_fee: DecimalStr | None = None
    annual_fee: DecimalStr | None = None
    effective_from: MonthStr | None = None


class AvailabilitySection(_Section, frozen=True):
    target: DecimalStr
    formula: Formula = "downtime_over_total"
    outage_when: Literal["any", "all"] | Annotated[int, msgspec.Meta(ge=1)] = "any"
    probes: tuple[Name, ...] = ()
    excludable: tuple[Excludable, ...] = ()


class MaintenanceSection(_Section, frozen=True):
    min_notice: DurationStr
    outside_business_hours: bool = False
    nonconforming: Nonconforming = "downtime"


class CalendarSection(_Section, frozen=True):
    timezone: Name | None = None
    holidays: HolidaysCode | None = None
    business_hours: HoursStr = "09:00-17:00"


class Tier(_Section, frozen=True):
    below: DecimalStr
    percent: DecimalStr


class LongOutageSection(_Section, frozen=True):
    over: DurationStr
    per_started_day: bool = True


class CreditsSection(_Section, frozen=True):
    tiers: tuple[Tier, ...] = ()
    cap_percent: DecimalStr | None = None
    claim_deadline_days: Annotated[int, msgspec.Meta(ge=0, le=366)] | None = None
    long_outage: LongOutageSection | None = None


TicketKind = Literal["account", "bug", "global_issue"]


class SupportClosureSection(_Section, frozen=True):
    holidays: HolidaysCode
    window: Annotated[str, msgspec.Meta(max_length=64)]


class SupportTargetSection(_Section, frozen=True):
    severity: Name
    first_response: DurationStr | None = None
    mean_first_response: DurationStr | None = None


class SupportEngagementSection(_Section, frozen=True):
    level: Name
    within: DurationStr


class SupportRecoverySection(_Section, frozen=True):
    max_data_loss: DurationStr


class SupportQuotaSection(_Section, frozen=True):
    hours_per: DecimalStr
    year_starts: Annotated[str, msgspec.Meta(max_length=64)] = "01-01"
    exempt: tuple[TicketKind, ...] = ()
    warn_below: DurationStr | None = None


class SupportSection(_Section, frozen=True):
    """INTERFACE.md section 6.2: the support clock and what is promised on it."""

    hours: tuple[Annotated[str, msgspec.Meta(max_length=64)], ...]
    timezone: Name | None = None  # absent: the contract's zone
    holidays: HolidaysCode | None = None
    closures: tuple[SupportClosureSection, ...] = ()
    targets: tuple[SupportTargetSection, ...] = ()
    engagement: SupportEngagementSection | None = None
    recovery: SupportRecoverySection | None = None
    quota: SupportQuotaSection | None = None


class PolicyFile(_Section, frozen=True):
    """A policy TOML file, as written and as recorded in the ledger."""

    contract: ContractSection
    availability: AvailabilitySection
    maintenance: MaintenanceSection | None = None
    calendar: CalendarSection | None = None
    credits: CreditsSection | None = None
    # UNSET, not None: a policy without [support] encodes as it did before the section
    # existed, so recorded contract facts, their ids and their digests stay the same.
    support: SupportSection | msgspec.UnsetType = msgspec.UNSET


# --- resolved form -----------------------------------------------------------


class Notice(msgspec.Struct, frozen=True):
    """Minimum notice for maintenance: a fixed duration or N business days."""

    fixed: timedelta | None = None
    business_days: int | None = None

    def describe(self) -> str:
        if self.business_days is not None:
            n = self.business_days
            return f"{n} business day{'s' if n != 1 else ''}"
        assert self.fixed is not None
        return format_duration(self.fixed)


class MaintenanceRules(msgspec.Struct, frozen=True):
    min_notice: Notice
    outside_business_hours: bool
    nonconforming: Nonconforming


class Tiers(msgspec.Struct, frozen=True):
    below: Decimal
    percent: Decimal


class CreditRules(msgspec.Struct, frozen=True):
    tiers: tuple[Tiers, ...]
    cap_percent: Decimal | None
    claim_deadline_days: int | None
    long_outage_over: timedelta | None
    long_outage_per_started_day: bool


class SupportTarget(msgspec.Struct, frozen=True):
    """A response target: per ticket (``first_response``) or over the month (``mean_first_response``)."""

    severity: str
    text: str  # as the policy writes it: "1h", "1 business day"
    kind: Literal["per_ticket", "mean"]
    open_time: timedelta | None  # a duration of open time
    business_days: int | None  # or N business days (per ticket only)


class QuotaRules(msgspec.Struct, frozen=True):
    hours_per: Decimal
    year_starts: tuple[int, int]  # (month, day)
    exempt: frozenset[str]
    warn_below: timedelta


class SupportRules(msgspec.Struct, frozen=True):
    timezone: ZoneInfo
    hours: tuple[tuple[int, int], ...]  # weekly spans, minutes from Monday 00:00 (ledger.support_hours)
    holidays: str | None
    closures: tuple["Closure", ...]
    targets: tuple[SupportTarget, ...]
    engagement_level: str | None
    engagement_within: timedelta | None
    max_data_loss: timedelta | None
    quota: QuotaRules | None


class Policy(msgspec.Struct, frozen=True):
    """A policy version resolved for computation."""

    contract_id: str
    customer: str
    service: str
    timezone: ZoneInfo
    currency: str
    monthly_fee: Decimal
    annual_fee: Decimal
    effective_from: str | None
    target: Decimal
    formula: Formula
    outage_when: Literal["any", "all"] | int
    probes: tuple[str, ...]
    excludable: frozenset[str]
    maintenance: MaintenanceRules | None
    calendar: CalendarRules
    credits: CreditRules | None
    source: PolicyFile
    support: SupportRules | None = None


_DURATION = r"\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*"
_BUSINESS = r"\s*(\d+)\s+business\s+days?\s*"
# What recorded policies are read with (``resolve``): as loose as the ledger ever accepted. Compiled
# when first used (``re``'s cache), not by every command's start-up (issue 17); a notice is only
# tried as business days when it says "business" (the pattern's one literal word: the same match).
_DURATION_RE: Final = _DURATION  # what ``duration_groups`` matches by hand
_BUSINESS_RE: Final = _BUSINESS
# What a new policy must match (``check_policy``): ASCII digits and spaces only (\d would take
# full-width digits), matched whole. This and the checks' patterns below are compiled when first
# used (``re``'s cache): only registering a contract needs them, every command imports this module.
_STRICT_DURATION_RE: Final = "(?a)" + _DURATION
_STRICT_BUSINESS_RE: Final = "(?a)" + _BUSINESS
# The longest notice, long-outage threshold or claim deadline a policy may set: a year. It
# keeps every deadline computed from an accepted instant representable (see ledger.calendar).
MAX_DAYS: Final = 366
MAX_SPAN: Final = timedelta(days=MAX_DAYS)


def parse_duration(text: str, field: str) -> timedelta:
    """Parse "24h", "90m", "1h30m", "2d" into an exact timedelta."""
    groups = duration_groups(text)
    if groups is None or not any(groups):
        raise BadInput(f"field `{field}`: expected a duration like \"24h\" or \"90m\", got {text!r}")
    d, h, mi, s = (int(g) if g else 0 for g in groups)
    try:
        return timedelta(days=d, hours=h, minutes=mi, seconds=s)
    except OverflowError:
        raise BadInput(f"field `{field}`: duration too long: {text!r}") from None


def duration_groups(text: str) -> tuple[str | None, ...] | None:
    """``re.fullmatch(_DURATION_RE, text).groups()`` (None where it does not match), read by hand.

    Compiling the pattern cost each report 1.4M instructions (its policy's notice, issue 17).
    The pattern has one way to match: each number is followed by its unit (``\\d`` is
    ``str.isdecimal``, ``\\s`` is ``str.isspace``), the units at most once each, in order.
    """
    groups: list[str | None] = [None, None, None, None]
    i, n, after = 0, len(text), 0
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i == n:
            return tuple(groups)
        j = i
        while j < n and text[j].isdecimal():
            j += 1
        k = j
        while k < n and text[k].isspace():
            k += 1
        unit = _UNITS.find(text[k], after) if j > i and k < n else -1
        if unit < 0:
            return None
        groups[unit] = text[i:j]
        i, after = k + 1, unit + 1


_UNITS: Final = "dhms"  # the pattern's units, in its order


def parse_notice(text: str, field: str) -> Notice:
    """Parse a notice: a duration, or "N business days"."""
    m = re.fullmatch(_BUSINESS_RE, text) if "business" in text else None
    if m:
        return Notice(business_days=int(m.group(1)))
    return Notice(fixed=parse_duration(text, field))


def _bounded_duration(text: str, field: str) -> timedelta:
    """A duration of a new policy: ASCII, at most ``MAX_DAYS`` days."""
    if not re.fullmatch(_STRICT_DURATION_RE, text):
        raise BadInput(f"field `{field}`: expected a duration like \"24h\" or \"90m\", got {text!r}")
    # Each number is bounded by the 64 characters of the field: no int() of a huge string.
    span = parse_duration(text, field)
    if span > MAX_SPAN:
        raise BadInput(f"field `{field}`: at most {MAX_DAYS} days, got {text!r}")
    return span


def format_duration(d: timedelta) -> str:
    """Short human form: "24 h", "90 min", "1 h 30 min"."""
    total = int(d.total_seconds())
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    parts = []
    if h:
        parts.append(f"{h} h")
    if m:
        parts.append(f"{m} min")
    if s or not parts:
        parts.append(f"{s} s")
    return " ".join(parts)


def _zone(name: str, field: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, IsADirectoryError):
        raise BadInput(f"field `{field}`: unknown time zone {name!r}") from None


def _clock(text: str, field: str) -> time:
    h, m = (int(p) for p in text.split(":"))
    if h == 24 and m == 0:
        return time.max
    if h > 23:
        raise BadInput(f"field `{field}`: hour out of range in {text!r}")
    return time(h, m)


def _percent(text: str, field: str) -> Decimal:
    value = Decimal(text)
    if value > 100:
        raise BadInput(f"field `{field}`: a percentage must be between 0 and 100, got {text}")
    return value


def resolve(pf: PolicyFile) -> Policy:
    """Check a policy file's cross-field rules and resolve it for computation."""
    c, a = pf.contract, pf.availability
    tz = _zone(c.timezone, "contract.timezone")
    if (c.monthly_fee is None) == (c.annual_fee is None):
        raise BadInput("field `contract.monthly_fee`: give exactly one of monthly_fee and annual_fee")
    if c.monthly_fee is not None:
        monthly = Decimal(c.monthly_fee)
        annual = monthly * 12
    else:
        annual = Decimal(str(c.annual_fee))
        monthly = annual / 12
    if len(set(a.probes)) != len(a.probes):
        raise BadInput("field `availability.probes`: a probe is listed twice")
    if isinstance(a.outage_when, int) and a.outage_when > len(a.probes):
        raise BadInput(
            f"field `availability.outage_when`: quorum {a.outage_when} exceeds the "
            f"{len(a.probes)} probes listed"
        )
    maintenance = None
    if pf.maintenance is not None:
        maintenance = MaintenanceRules(
            min_notice=parse_notice(pf.maintenance.min_notice, "maintenance.min_notice"),
            outside_business_hours=pf.maintenance.outside_business_hours,
            nonconforming=pf.maintenance.nonconforming,
        )
    cal = pf.calendar or CalendarSection()
    opens_s, closes_s = cal.business_hours.split("-")
    opens = _clock(opens_s, "calendar.business_hours")
    closes = _clock(closes_s, "calendar.business_hours")
    if closes <= opens:
        raise BadInput(f"field `calendar.business_hours`: closes before it opens: {cal.business_hours!r}")
    if cal.holidays is not None:
        _check_holidays(cal.holidays)
    calendar = CalendarRules(
        timezone=_zone(cal.timezone, "calendar.timezone") if cal.timezone else tz,
        holidays=cal.holidays,
        opens=opens,
        closes=closes,
    )
    credits = None
    if pf.credits is not None:
        cr = pf.credits
        if not cr.tiers:
            raise BadInput("field `credits.tiers`: at least one tier is required")
        tiers = tuple(
            Tiers(
                below=_percent(t.below, f"credits.tiers[{i}].below"),
                percent=_percent(t.percent, f"credits.tiers[{i}].percent"),
            )
            for i, t in enumerate(cr.tiers)
        )
        if len({t.below for t in tiers}) != len(tiers):
            raise BadInput("field `credits.tiers`: two tiers have the same `below` threshold")
        lo = cr.long_outage
        credits = CreditRules(
            tiers=tiers,
            cap_percent=(
                _percent(cr.cap_percent, "credits.cap_percent") if cr.cap_percent is not None else None
            ),
            claim_deadline_days=cr.claim_deadline_days,
            long_outage_over=parse_duration(lo.over, "credits.long_outage.over") if lo else None,
            long_outage_per_started_day=lo.per_started_day if lo else True,
        )
    support = _support(pf.support, tz) if isinstance(pf.support, SupportSection) else None
    return Policy(
        contract_id=c.id,
        customer=c.customer,
        service=c.service,
        timezone=tz,
        currency=c.currency,
        monthly_fee=monthly,
        annual_fee=annual,
        effective_from=c.effective_from,
        target=_percent(a.target, "availability.target"),
        formula=a.formula,
        outage_when=a.outage_when,
        probes=a.probes,
        excludable=frozenset(a.excludable),
        maintenance=maintenance,
        calendar=calendar,
        credits=credits,
        source=pf,
        support=support,
    )


def _support(sec: SupportSection, contract_tz: ZoneInfo) -> SupportRules:
    """The [support] section resolved; BadInput naming the field (``support.…``)."""
    from ledger.support_hours import parse_hours, parse_window

    tz = _zone(sec.timezone, "support.timezone") if sec.timezone is not None else contract_tz
    hours = parse_hours(sec.hours, "support.hours")
    if sec.holidays is not None:
        _check_holidays(sec.holidays, "support.holidays")
    closures = []
    for i, c in enumerate(sec.closures):
        _check_holidays(c.holidays, f"support.closures[{i}].holidays")
        closures.append(parse_window(c.holidays, c.window, f"support.closures[{i}].window"))
    targets = []
    seen: set[str] = set()
    for i, t in enumerate(sec.targets):
        field = f"support.targets[{i}]"
        if t.severity in seen:
            raise BadInput(f"field `{field}.severity`: {t.severity!r} has a target already")
        seen.add(t.severity)
        if (t.first_response is None) == (t.mean_first_response is None):
            raise BadInput(f"field `{field}`: give exactly one of first_response and mean_first_response")
        if t.first_response is not None:
            m = re.fullmatch(_STRICT_BUSINESS_RE, t.first_response)
            if m is not None:
                n = int(m.group(1))
                if not 1 <= n <= MAX_DAYS:
                    raise BadInput(f"field `{field}.first_response`: 1 to {MAX_DAYS} business days, "
                                   f"got {t.first_response!r}")
                targets.append(SupportTarget(t.severity, t.first_response, "per_ticket", None, n))
            else:
                span = _positive(t.first_response, f"{field}.first_response")
                targets.append(SupportTarget(t.severity, t.first_response, "per_ticket", span, None))
        else:
            assert t.mean_first_response is not None
            span = _positive(t.mean_first_response, f"{field}.mean_first_response")
            targets.append(SupportTarget(t.severity, t.mean_first_response, "mean", span, None))
    e, r, q = sec.engagement, sec.recovery, sec.quota
    quota = None
    if q is not None:
        # The shape first: the types no longer hold it (no msgspec pattern), and Decimal reads more.
        if not re.fullmatch(_DECIMAL_RE, q.hours_per):
            raise BadInput(f"field `support.quota.hours_per`: expected {_DECIMAL}, got {q.hours_per!r}")
        if Decimal(q.hours_per) <= 0:
            raise BadInput(f"field `support.quota.hours_per`: must be above 0, got {q.hours_per!r}")
        mon, day = int(q.year_starts[:2]), int(q.year_starts[3:])
        try:
            date(2001, mon, day)  # not a leap year: "02-29" starts no year every year
        except ValueError:
            raise BadInput(f"field `support.quota.year_starts`: not a day of every year (MM-DD): "
                           f"{q.year_starts!r}") from None
        if len(set(q.exempt)) != len(q.exempt):
            raise BadInput("field `support.quota.exempt`: a kind is listed twice")
        warn = (_bounded_duration(q.warn_below, "support.quota.warn_below") if q.warn_below is not None
                else timedelta(0))
        quota = QuotaRules(Decimal(q.hours_per), (mon, day), frozenset(q.exempt), warn)
    return SupportRules(
        timezone=tz,
        hours=hours,
        holidays=sec.holidays,
        closures=tuple(closures),
        targets=tuple(targets),
        engagement_level=e.level if e is not None else None,
        engagement_within=_bounded_duration(e.within, "support.engagement.within") if e is not None else None,
        max_data_loss=(_bounded_duration(r.max_data_loss, "support.recovery.max_data_loss")
                       if r is not None else None),
        quota=quota,
    )


def _positive(text: str, field: str) -> timedelta:
    span = _bounded_duration(text, field)
    if span <= timedelta(0):
        raise BadInput(f"field `{field}`: must be longer than 0, got {text!r}")
    return span


def _check_holidays(code: str, field: str = "calendar.holidays") -> None:
    country, _, subdiv = code.partition("-")
    supported = supported_holidays()
    if country not in supported:
        raise BadInput(f"field `{field}`: no public-holiday calendar for {country!r}")
    if subdiv and subdiv not in supported[country]:
        raise BadInput(f"field `{field}`: {country} has no subdivision {subdiv!r}")


# A decimal as a new policy writes it (``ledger.policy_check``, and a [support] quota here). The
# patterns of the msgspec types end in `$`, which lets a trailing newline through: matched whole.
_DECIMAL_RE: Final = r"[0-9]{1,15}(?:\.[0-9]{1,12})?"
_DECIMAL: Final = 'a decimal string like "99.97"'
