"""What the support page draws beside the report: the clock's open hours in the month, the facts cited.

Pure: the same records and policy the support fold took go in, so the open hours
use the same holiday dates (pinned ones from their position, else the package's)
as the report's deadlines.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ledger.calendar import month_bounds
from ledger.events import Recorded
from ledger.policy import Policy
from ledger.support_hours import HolidayBook, HolidayLookup, from_us, open_intervals, package_holidays, to_us
from projections.support import _collect, calendar_of
from projections.support_model import SupportReport


def month_open_hours(records: Iterable[Recorded], policy: Policy, month: str,
                     package: HolidayLookup = package_holidays) -> tuple[tuple[datetime, datetime], ...]:
    """The support clock's open pieces of the month (contract zone), in order; none without [support]."""
    rules = policy.support
    if rules is None:
        return ()
    pins = _collect(records, policy).pins
    book = HolidayBook({k: v[1] for k, v in pins.items()}, package, "")
    start, end = month_bounds(month, policy.timezone)
    cal = calendar_of(rules, book)
    return tuple((from_us(a), from_us(b)) for a, b in open_intervals(cal, to_us(start), to_us(end)))


def cited_positions(report: SupportReport) -> list[int]:
    """Every position a ticket, engagement or recovery line of the report names, ascending."""
    found: set[int] = set()
    for t in report.tickets:
        found.update(t.events)
    for e in report.engagements or ():
        found.update(e.events)
    for r in report.recoveries or ():
        found.update(r.events)
    return sorted(found)
