"""One line per ticket saying how its deadline and status came about (issue 18), as ``ledger audit`` does.

"opened Fri 2 Oct 18:00, clock closed until Mon 5 Oct 08:00, 1 business day -> Tue 6 Oct 08:00;
answered Tue 6 Oct 07:59 after 23h59m of open time: met"

Pure: the records and policy the support fold took, and its report, go in; the
same calendar arithmetic (``ledger.support_hours.OpenTimeline`` with the same
holiday dates: pinned ones where recorded, else the package's) gives the
steps. Instants are written in the support clock's zone with weekday names.
Nothing here changes a figure: the report's deadline and status are quoted,
and the explanation only shows the steps that lead to them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from ledger.calendar import month_bounds
from ledger.events import Recorded
from ledger.policy import Policy, SupportTarget
from ledger.support_hours import HolidayBook, HolidayLookup, OpenTimeline, from_us, package_holidays, to_us
from projections.support import _collect, calendar_of
from projections.support_model import SupportReport, TicketLine


def when(instant: datetime, tz: ZoneInfo) -> str:
    """``Fri 2 Oct 18:00`` in ``tz`` (seconds, and microseconds, only when there are some)."""
    local = instant.astimezone(tz)
    text = f"{local:%a} {local.day} {local:%b %H:%M}"
    if local.second or local.microsecond:
        text += f":{local.second:02d}"
        if local.microsecond:
            text += f".{local.microsecond:06d}".rstrip("0")
    return text


def span(secs: Decimal) -> str:
    """A length of open time: ``0m``, ``45m``, ``2h``, ``23h59m``, ``1h0m30s``, ``0m0.5s``."""
    whole = int(secs)
    frac = secs - whole
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    minutes = f"{m}m" if m or s or frac or not h else ""
    text = (f"{h}h" if h else "") + minutes
    if s or frac:
        text += f"{Decimal(s) + frac}s"
    return text


def explain_ticket(line: TicketLine, target: SupportTarget, clock: OpenTimeline,
                   changes: Iterable[tuple[datetime, str, str]] = ()) -> str:
    """The steps from ``line``'s opening to its status (``changes``: (at, from, to) before the response)."""
    tz = clock.cal.timezone
    opened = to_us(line.opened_at)
    parts = [f"opened {when(line.opened_at, tz)}"]
    starts = clock.next_open(opened)
    if starts is not None and starts != opened:
        parts.append(f"clock closed until {when(from_us(starts), tz)}")
    for at, old, new in changes:
        parts.append(f"{old} -> {new} at {when(at, tz)}")
    if target.business_days is not None:
        n = target.business_days
        rule = f"{n} business day{'s' if n != 1 else ''}"
    else:
        rule = f"{target.text} of open time"
        if target.kind == "mean":
            rule += " (counts toward the month's mean)"
    due = when(line.deadline, tz) if line.deadline is not None else "never within a year"
    parts.append(f"{rule} -> {due}")
    head = ", ".join(parts)
    took = span(line.response_seconds)
    if line.responded_at is not None:
        return f"{head}; answered {when(line.responded_at, tz)} after {took} of open time: {line.status}"
    return f"{head}; no response recorded, {took} of open time so far: {line.status}"


def explain_tickets(records: Iterable[Recorded], policy: Policy, report: SupportReport,
                    replay_point: datetime | None = None,
                    package: HolidayLookup = package_holidays) -> dict[str, str]:
    """Each ticket line of ``report`` (the fold's result on the same records, policy and replay point)."""
    rules = policy.support
    if rules is None or not report.tickets:
        return {}
    ms, me = (to_us(b) for b in month_bounds(report.month, policy.timezone))
    horizon = max(ms, min(me, to_us(replay_point))) if replay_point is not None else me
    facts = _collect(records, policy)
    book = HolidayBook({k: v[1] for k, v in facts.pins.items()}, package, "")
    clock = OpenTimeline(calendar_of(rules, book))
    targets = {t.severity: t for t in rules.targets}
    out: dict[str, str] = {}
    for line in report.tickets:
        t = facts.tickets[line.ticket]
        # The severity changes the fold applied: those up to the first response (or the horizon).
        upto = to_us(line.responded_at) if line.responded_at is not None else horizon
        changes: list[tuple[datetime, str, str]] = []
        severity = min(t.opened)[1]
        for at, new, _ in sorted(t.changes):
            if at <= upto and new != severity:
                changes.append((from_us(at), severity, new))
                severity = new
        out[line.ticket] = explain_ticket(line, targets[line.severity], clock, changes)
    return out
