"""The month fold's prose: the auditor's walk-through of every figure and the words of its rules.

Kept apart from the arithmetic so that the figures can be read without the sentences;
the sentences only ever read figures the fold has already computed.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

import msgspec

from ledger.events import MaintenanceAnnounced
from ledger.policy import Policy, format_duration
from projections.credit import Ratio, lowest, percent_text
from projections.model import Step
from projections.timeline import from_us, seconds


def local_text(instant: datetime, policy: Policy) -> str:
    """An instant as people in the calendar's zone read it (minutes, zone abbreviation)."""
    try:
        return instant.astimezone(policy.calendar.timezone).strftime("%Y-%m-%d %H:%M %Z")
    except OverflowError:  # within hours of datetime's limits the zone's wall clock does not exist
        return instant.isoformat()


def ahead(notice: timedelta) -> str:
    """How far ahead a notice was given, or how late."""
    if notice < timedelta(0):
        return f"{format_duration(-notice)} after it started"
    return f"{format_duration(notice)} ahead"


def business_hours(policy: Policy) -> str:
    """The calendar's business hours and zone, as the policy file writes them."""
    cal = policy.calendar
    closes = "24:00" if cal.closes == time.max else f"{cal.closes:%H:%M}"
    return f"{cal.opens:%H:%M}-{closes} {cal.timezone.key}"


def late_text(mid: str, ann: MaintenanceAnnounced, ended: datetime) -> str:
    """The finding for a window announced after it started: which part of it counted for nothing."""
    said = f"maintenance {mid} was announced at {ann.announced_at.isoformat()}"
    if ann.announced_at >= ended:
        return (
            f"{said}, after its end at {ended.isoformat()}: a window only exists from its "
            "announcement, so none of it counted (outage in it is downtime unless excused otherwise)"
        )
    return (
        f"{said}, after it started at {ann.starts_at.isoformat()}: a window only exists from its "
        f"announcement, so its first {format_duration(ann.announced_at - ann.starts_at)} counted for "
        "nothing (outage then is downtime unless excused otherwise); the rest follows the maintenance clause"
    )


def probe_cause(policy: Policy, down: list[str]) -> str:
    """Why the probes in ``down`` make outage under the policy's outage_when."""
    names = ", ".join(down)
    noun = "probe" if len(down) == 1 else "probes"
    if policy.outage_when == "all":
        return f"{noun} {names} {'all ' if len(down) > 1 else ''}down (outage_when = all)"
    if policy.outage_when == "any":
        return f"{noun} {names} down (outage_when = any)"
    return f"{noun} {names} down ({len(down)} of {len(policy.probes)}; outage_when = {policy.outage_when})"


def probe_rule(policy: Policy) -> str:
    """The probes' outage rule without naming which are down (a wide interval cites them in events)."""
    return f"probe outage (outage_when = {policy.outage_when}), each down probe cited in events"


class Figures(msgspec.Struct, frozen=True):
    """What the walk-through reads: the month's bounds and figures, all computed already."""

    month_start: int
    month_end: int
    horizon: int
    maintenance: int
    excused: int
    downtime: int
    events: dict[str, set[int]]  # by interval kind: the facts behind each figure
    exact: Ratio  # A, exact, in lowest terms
    truncated: str  # A as reported
    formula: str  # the formula with the numbers put in
    target_met: bool


def _hours(us: int) -> str:
    """``us`` microseconds in hours as an exact fraction in lowest terms: "744", "1489/2"."""
    n, d = lowest(us, 3_600_000_000)
    return str(n) if d == 1 else f"{n}/{d}"


def _events(*sets: set[int]) -> tuple[int, ...]:
    return tuple(sorted(set().union(*sets)))


def walk_through(policy: Policy, f: Figures) -> list[Step]:
    """The auditor's steps from the month's bounds to the target verdict (the credit's follow)."""
    tz = policy.timezone
    t = f.month_end - f.month_start
    m, x, d = f.maintenance, f.excused, f.downtime
    outage = d + m + x
    horizon_note = (
        ""
        if f.horizon == f.month_end
        else f", outage with no recorded end cut at the replay point "
        f"{from_us(f.horizon).astimezone(tz).isoformat()}"
    )
    return [
        Step(
            figure="month",
            value=f"{from_us(f.month_start).astimezone(tz).isoformat()} .. "
            f"{from_us(f.month_end).astimezone(tz).isoformat()}",
            how=f"local midnight of the 1st to local midnight of the 1st of the next month in {tz.key}",
        ),
        Step(
            figure="T",
            value=f"{seconds(t)} s",
            how=f"{_hours(t)} h in the month (daylight saving included)",
        ),
        Step(
            figure="outage",
            value=f"{seconds(outage)} s",
            how=f"probe outage (outage_when = {policy.outage_when}, "
            f"probes {', '.join(policy.probes) or 'none'}) "
            f"united with impact-outage incidents, overlaps counted once, inside the month{horizon_note}",
            events=_events(*f.events.values()),
        ),
        Step(
            figure="M",
            value=f"{seconds(m)} s",
            how="outage inside maintenance windows that count as M",
            events=_events(f.events["maintenance"]),
        ),
        Step(
            figure="excused",
            value=f"{seconds(x)} s",
            how="outage inside excludable, unrevoked exclusions not already counted as maintenance",
            events=_events(f.events["excused"]),
        ),
        Step(
            figure="D",
            value=f"{seconds(d)} s",
            how=f"D = outage - M - excused = {seconds(outage)} - {seconds(m)} - {seconds(x)}",
            events=_events(f.events["downtime"]),
        ),
        Step(figure="formula", value=policy.formula, how=f.formula),
        Step(
            figure="A",
            value=f"{f.truncated} %",
            how=f"exact A = {f.exact[0]}/{f.exact[1]} %, truncated toward zero to 4 decimals",
        ),
        Step(
            figure="target",
            value="met" if f.target_met else "not met",
            how=f"exact A {'>=' if f.target_met else '<'} target {percent_text(policy.target)} %",
        ),
    ]
