"""HTML pages of a month report and an audit (INTERFACE.md section 8): pure, structs in, one page out.

One self-contained page: inline CSS and SVG, no script, no external resource.
The template engine (Jinja2) escapes every value on the way out (autoescape on
for .html templates), so text that came from facts or policies (titles, reasons,
ids) is text in the page, never markup. This module only lays out: every figure
is the report's own; the timeline is the month's days in the contract's zone,
each as long as it really is (23 or 25 hours on daylight-saving days).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Any, Final
from zoneinfo import ZoneInfo

import jinja2
import markupsafe
import msgspec

from cli.render import hms
from cli.render import seconds as seconds_text
from ledger.calendar import local_midnight
from ledger.events import (
    FACT_TAGS,
    ExclusionDeclared,
    ForceMajeureDeclared,
    MaintenanceAnnounced,
    MaintenanceCompleted,
    Recorded,
    export_line,
)
from ledger.text import visible
from projections.model import Audit, Explanation, Report

HOUR_PX: Final = 36  # horizontal scale of the timeline: one hour
LEFT: Final = 118  # the day labels' column
ROW: Final = 22  # one day's row, gap included
BAR: Final = 14  # height of a mark
TOP: Final = 26  # the hour axis above the first day
MIN_MARK: Final = 1.5  # px: a mark of a few seconds stays visible
WIDTH: Final = LEFT + 25 * HOUR_PX + 16  # room for a 25-hour day

_ts_encoder: Final = msgspec.json.Encoder()


def instant(value: datetime) -> str:
    """An instant exactly as the JSON report writes it."""
    return _ts_encoder.encode(value).decode()[1:-1]


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Mark:
    """One interval of the report on the timeline (one rectangle per day it touches)."""

    n: int
    kind: str
    start: str
    end: str
    seconds: str
    reason: str
    rects: tuple[Rect, ...]


@dataclass(frozen=True)
class Band:
    """A maintenance window or an exclusion, drawn behind the outage it excuses."""

    kind: str  # maintenance | excused
    ref: str
    label: str
    start: str
    end: str
    position: int
    rects: tuple[Rect, ...]


@dataclass(frozen=True)
class Day:
    label: str
    date: str
    hours: str  # "24", "23", "25" (or fractions in zones that shift by less than an hour)
    y: float
    width: float
    ticks: tuple[float, ...]
    odd: bool  # not 24 hours long
    shift: tuple[float, str] | None  # where the clocks change that day, and how


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    days: tuple[Day, ...]
    axis: tuple[tuple[float, str], ...]
    marks: tuple[Mark, ...]
    bands: tuple[Band, ...]
    deadline: tuple[float, str, str] | None  # y of its row, local text, instant


@dataclass(frozen=True)
class Fact:
    position: int
    recorded_at: str
    type: str
    line: str


def _days(start: datetime, end: datetime, tz: ZoneInfo) -> list[tuple[date, datetime, datetime]]:
    """Every local day of [start, end) with its UTC bounds."""
    first = start.astimezone(tz).date()
    out = []
    d = first
    while True:
        lo, hi = local_midnight(d, tz), local_midnight(d + timedelta(days=1), tz)
        if lo >= end:
            break
        out.append((d, max(lo, start), min(hi, end)))
        d += timedelta(days=1)
    return out


def _x(offset: timedelta) -> float:
    return LEFT + offset.total_seconds() * HOUR_PX / 3600


def _rects(start: datetime, end: datetime, days: Sequence[tuple[date, datetime, datetime]],
           pad: float = 0.0) -> tuple[Rect, ...]:
    """The pieces of [start, end) on each day's row (UTC arithmetic: DST days are 23 or 25 h)."""
    out = []
    for i, (_, lo, hi) in enumerate(days):
        a, b = max(start, lo), min(end, hi)
        if a >= b:
            continue
        x0, x1 = _x(a - lo), _x(b - lo)
        y = TOP + i * ROW + (ROW - BAR) / 2 - pad
        out.append(Rect(round(x0, 2), round(y, 2), round(max(x1 - x0, MIN_MARK), 2), BAR + 2 * pad))
    return tuple(out)


_Window = tuple[str, str, str, datetime, datetime, int]


def _windows(report: Report, facts: dict[int, Recorded]) -> list[_Window]:
    """The windows and exclusions behind each excused interval: (kind, ref, label, start, end, position)."""
    completed: dict[str, datetime] = {}
    for held in facts.values():
        if isinstance(held.fact, MaintenanceCompleted):
            done = completed.get(held.fact.maintenance)
            completed[held.fact.maintenance] = held.fact.at if done is None else min(done, held.fact.at)
    out: dict[int, _Window] = {}
    for i in report.intervals:
        if i.kind == "downtime":
            continue
        for p in i.events:
            rec = facts.get(p)
            if rec is None or p in out:
                continue
            f = rec.fact
            if isinstance(f, MaintenanceAnnounced):
                end = min(f.ends_at, completed.get(f.maintenance, f.ends_at))
                out[p] = ("maintenance", f.maintenance, f"maintenance {f.maintenance}: {f.title or ''}",
                          f.starts_at, max(end, f.starts_at), p)
            elif isinstance(f, ForceMajeureDeclared):
                out[p] = ("excused", f.declaration, f"force majeure {f.declaration}: {f.reason}",
                          f.starts_at, f.ends_at, p)
            elif isinstance(f, ExclusionDeclared):
                out[p] = ("excused", f.exclusion, f"exclusion {f.exclusion} ({f.category}): {f.reason}",
                          f.starts_at, f.ends_at, p)
    return [out[p] for p in sorted(out)]


def _shift(lo: datetime, hi: datetime, tz: ZoneInfo) -> tuple[float, str] | None:
    """Where in [lo, hi) the zone's offset changes (to the minute), as x and "02:00 → 03:00"."""
    before = lo.astimezone(tz).utcoffset()
    if hi.astimezone(tz).utcoffset() == before and (hi - lo) == timedelta(hours=24):
        return None
    step = timedelta(minutes=1)
    t = lo
    while t < hi:
        nxt = min(t + timedelta(hours=1), hi)
        if nxt.astimezone(tz).utcoffset() != before:
            while (t + step).astimezone(tz).utcoffset() == before:
                t += step
            t += step  # the first instant of the new offset
            old, new = (t - step).astimezone(tz) + step, t.astimezone(tz)
            return round(_x(t - lo), 2), f"{old:%H:%M} → {new:%H:%M} {new:%Z}"
        t = nxt
    # The change is at a midnight: the day starts late (no 00:00 that day) or its midnight moved.
    first = lo.astimezone(tz)
    if first.time() != time(0):
        return LEFT, f"00:00 → {first:%H:%M} {first:%Z}"
    return round(_x(hi - lo), 2), "at midnight"


def timeline(report: Report, explanation: Explanation, facts: dict[int, Recorded],
             claim_deadline: datetime | None) -> Timeline:
    """The month drawn day by day in the contract's zone, with every interval and what excuses it."""
    tz = ZoneInfo(report.timezone)
    days = _days(explanation.month_start, explanation.month_end, tz)
    rows = []
    for i, (d, lo, hi) in enumerate(days):
        length = hi - lo
        hours = length / timedelta(hours=1)
        ticks = tuple(round(_x(timedelta(hours=h)), 2) for h in range(1, int(hours) + 1))
        rows.append(Day(label=f"{d:%a} {d.day}", date=d.isoformat(),
                        hours=f"{hours:g}", y=TOP + i * ROW, width=round(_x(length) - LEFT, 2),
                        ticks=ticks, odd=length != timedelta(hours=24), shift=_shift(lo, hi, tz)))
    marks = tuple(
        Mark(n=n, kind=i.kind, start=instant(i.start), end=instant(i.end), seconds=seconds_text(i.seconds),
             reason=i.reason, rects=_rects(i.start, i.end, days))
        for n, i in enumerate(report.intervals, 1)
    )
    bands = tuple(
        Band(kind=kind, ref=ref, label=label, start=instant(s), end=instant(e), position=p,
             rects=_rects(s, e, days, pad=3.0))
        for kind, ref, label, s, e, p in _windows(report, facts)
    )
    height = TOP + len(days) * ROW + 8
    deadline = None
    if claim_deadline is not None:
        local = claim_deadline.astimezone(tz)
        deadline = (float(height + 4), f"{local:%a %d %b %Y %H:%M} ({report.timezone})", instant(local))
        height += ROW + 12
    axis = tuple((round(_x(timedelta(hours=h)), 2), f"{h:02d}:00") for h in range(0, 25, 3))
    return Timeline(width=WIDTH, height=height, days=tuple(rows), axis=axis, marks=marks, bands=bands,
                    deadline=deadline)


def cited(report: Report, explanation: Explanation) -> list[int]:
    """Every position a figure, an interval or a finding of the page names, ascending."""
    found: set[int] = set()
    for i in report.intervals:
        found.update(i.events)
    for f in explanation.findings:
        found.update(f.events)
    for s in explanation.steps:
        found.update(s.events)
    return sorted(found)


def _facts(records: Iterable[Recorded]) -> list[Fact]:
    return [
        Fact(position=r.position, recorded_at=instant(r.recorded_at), type=FACT_TAGS[type(r.fact)],
             line=export_line(r).decode())
        for r in sorted(records, key=lambda r: r.position)
    ]


def _finalize(value: Any) -> Any:
    """Every value written into a page: text with its control and bidi characters shown escaped.

    Markup (what a macro returns) was finalized value by value inside it.
    """
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return visible(value)
    return value


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("cli", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default=True, default_for_string=True),
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _render(template: str, **values: Any) -> str:
    env = _environment()
    return env.get_template(template).render(hms=hms, seconds=seconds_text, instant=instant, **values)


def _page(report: Report, explanation: Explanation, records: Sequence[Recorded],
          claim_deadline: datetime | None, *, audit: Audit | None) -> str:
    facts = {r.position: r for r in records}
    known = set(facts)
    return _render(
        "month.html",
        r=report,
        e=explanation,
        audit=audit,
        as_of=instant(audit.as_of) if audit is not None and audit.as_of is not None else None,
        checkpoint=getattr(report, "checkpoint", None) or getattr(audit, "checkpoint", None),
        timeline=timeline(report, explanation, facts, claim_deadline),
        deadline=instant(claim_deadline.astimezone(ZoneInfo(report.timezone))) if claim_deadline else None,
        facts=_facts(records),
        known=known,
    )


def report_html(report: Report, explanation: Explanation, records: Sequence[Recorded],
                claim_deadline: datetime | None = None) -> str:
    """``ledger report --format html``: the month's figures, timeline, intervals and findings."""
    return _page(report, explanation, records, claim_deadline, audit=None)


def audit_html(audit: Audit, records: Sequence[Recorded], claim_deadline: datetime | None = None) -> str:
    """``ledger audit --format html``: the report page plus every step, linked to the facts as recorded."""
    return _page(audit.report, audit.explanation, records, claim_deadline, audit=audit)
