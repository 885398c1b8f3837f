"""What a new policy must meet to be recorded (``check_policy``); the TOML file's reader (``load_policy``).

They apply where a policy comes in (``ledger contract``, and a contract fact on import or
append), never to a policy read back from the ledger: ``ledger.policy.resolve`` stays as loose
as the ledger ever was, so a version recorded before a rule existed still resolves and its
months still evaluate. Apart from ``ledger.policy``: a read imports none of this (issue 17).
"""

import re
from typing import Final

import msgspec

from ledger.calendar import check_month
from ledger.errors import BadInput
from ledger.policy import (
    _DECIMAL,
    _DECIMAL_RE,
    _STRICT_BUSINESS_RE,
    MAX_DAYS,
    Policy,
    PolicyFile,
    SupportSection,
    _bounded_duration,
    resolve,
)
from ledger.text import bom_or

MAX_PROBES: Final = 100
MAX_TIERS: Final = 100
# Canonical JSON of a whole policy; far below ``ledger.ingest.MAX_LINE``, so a contract
# fact always exports to a line that import accepts.
MAX_POLICY_BYTES: Final = 64 * 1024
_NAME_CONTROL: Final = r"[\x00-\x1f\x7f-\x9f]"
_TEXT_CONTROL: Final = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_CURRENCY_RE: Final = r"[A-Z]{3}"
_HOURS_RE: Final = r"[0-2][0-9]:[0-5][0-9]-[0-2][0-9]:[0-5][0-9]"
_HOLIDAYS_RE: Final = r"[A-Z]{2}(?:-[A-Z0-9]{1,3})?"
_MONTH_DAY_RE: Final = r"[0-9]{2}-[0-9]{2}"
_HOLIDAYS: Final = 'a country code like "CA" or "CA-ON"'
_policy_encoder: Final = msgspec.json.Encoder(order="sorted")


def _name(value: str, field: str) -> None:
    if re.search(_NAME_CONTROL, value):
        raise BadInput(f"field `{field}`: must not contain control characters")


def _text(value: str, field: str) -> None:
    if re.search(_TEXT_CONTROL, value):
        raise BadInput(f"field `{field}`: must not contain control characters other than tab, "
                       "line feed and carriage return")


def _whole(pattern: str, value: str | None, field: str, what: str) -> None:
    if value is not None and not re.fullmatch(pattern, value):
        raise BadInput(f"field `{field}`: expected {what}, got {value!r}")


def check_policy(pf: PolicyFile) -> Policy:
    """The rules a policy must meet to be recorded, then ``resolve``; BadInput names the field."""
    c, a, m, cal, cr = pf.contract, pf.availability, pf.maintenance, pf.calendar, pf.credits
    # Counts and size first: they bound the work of every other check.
    if len(a.probes) > MAX_PROBES:
        raise BadInput(f"field `availability.probes`: at most {MAX_PROBES} probes, got {len(a.probes)}")
    if cr is not None and len(cr.tiers) > MAX_TIERS:
        raise BadInput(f"field `credits.tiers`: at most {MAX_TIERS} tiers, got {len(cr.tiers)}")
    size = len(_policy_encoder.encode(pf))
    if size > MAX_POLICY_BYTES:
        raise BadInput(f"the policy is {size} bytes as JSON, at most {MAX_POLICY_BYTES}")
    for value, field in ((c.id, "contract.id"), (c.service, "contract.service"),
                         (c.timezone, "contract.timezone"),
                         (cal.timezone if cal else None, "calendar.timezone")):
        if value is not None:
            _name(value, field)
    for i, probe in enumerate(a.probes):
        _name(probe, f"availability.probes[{i}]")
    _text(c.customer, "contract.customer")
    _whole(_CURRENCY_RE, c.currency, "contract.currency", "three capital letters (ISO 4217)")
    for value, field in ((c.monthly_fee, "contract.monthly_fee"), (c.annual_fee, "contract.annual_fee"),
                         (a.target, "availability.target"),
                         (cr.cap_percent if cr else None, "credits.cap_percent")):
        _whole(_DECIMAL_RE, value, field, _DECIMAL)
    if c.effective_from is not None:
        check_month(c.effective_from, "field `contract.effective_from`")
    if len(set(a.excludable)) != len(a.excludable):
        raise BadInput("field `availability.excludable`: a category is listed twice")
    if m is not None:
        notice = re.fullmatch(_STRICT_BUSINESS_RE, m.min_notice)
        if notice is None:
            _bounded_duration(m.min_notice, "maintenance.min_notice")
        elif int(notice.group(1)) > MAX_DAYS:
            raise BadInput(f"field `maintenance.min_notice`: at most {MAX_DAYS} business days, "
                           f"got {m.min_notice!r}")
        # Business days and business hours are the calendar's: a policy that relies on them
        # says which (zone, hours, holidays) rather than get 09:00-17:00 without holidays.
        if cal is None and notice is not None:
            raise BadInput("field `maintenance.min_notice`: a notice in business days needs a "
                           "[calendar] section (business hours and holidays)")
        if cal is None and m.outside_business_hours:
            raise BadInput("field `maintenance.outside_business_hours`: needs a [calendar] section "
                           "(business hours and holidays)")
    if cal is not None:
        _whole(_HOURS_RE, cal.business_hours, "calendar.business_hours", 'hours like "09:00-17:00"')
        _whole(_HOLIDAYS_RE, cal.holidays, "calendar.holidays", _HOLIDAYS)
    if cr is not None:
        for i, t in enumerate(cr.tiers):
            _whole(_DECIMAL_RE, t.below, f"credits.tiers[{i}].below", _DECIMAL)
            _whole(_DECIMAL_RE, t.percent, f"credits.tiers[{i}].percent", _DECIMAL)
        if cr.long_outage is not None:
            _bounded_duration(cr.long_outage.over, "credits.long_outage.over")
    if pf.support is not msgspec.UNSET:
        _check_support(pf.support)
    return resolve(pf)


def _check_support(sec: SupportSection) -> None:
    """The [support] section's names and codes, before ``resolve`` reads them."""
    from ledger.support_hours import check_span_spelling

    if sec.timezone is not None:
        _name(sec.timezone, "support.timezone")
    check_span_spelling(sec.hours)
    _whole(_HOLIDAYS_RE, sec.holidays, "support.holidays", _HOLIDAYS)
    for i, c in enumerate(sec.closures):
        _whole(_HOLIDAYS_RE, c.holidays, f"support.closures[{i}].holidays", _HOLIDAYS)
    for i, t in enumerate(sec.targets):
        _name(t.severity, f"support.targets[{i}].severity")
    if sec.engagement is not None:
        _name(sec.engagement.level, "support.engagement.level")
    if sec.quota is not None:  # its hours_per: ``resolve`` checks the shape, for every policy
        _whole(_MONTH_DAY_RE, sec.quota.year_starts, "support.quota.year_starts", 'a day "MM-DD"')


def load_policy(data: bytes, source: str = "policy") -> PolicyFile:
    """Decode and validate a policy TOML file; raises BadInput naming the field."""
    try:
        pf = msgspec.toml.decode(data, type=PolicyFile)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        m = re.search(r"`\$\.([^`]*)`", msg)
        if m:
            msg = f"field `{m.group(1)}`: " + re.sub(r"\s*-\s*at `\$\.[^`]*`", "", msg)
        raise BadInput(f"{source}: {msg}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{source}: {bom_or(data, 'TOML', f'not valid TOML: {exc}', 'line 1: ')}") from None
    except RecursionError:  # the TOML reader recurses once per level of nested arrays or tables
        raise BadInput(f"{source}: not valid TOML: arrays or tables nested too deeply") from None
    try:
        check_policy(pf)
    except BadInput as exc:
        raise BadInput(f"{source}: {exc}") from None
    return pf
