"""The HTML page of a support month (INTERFACE.md sections 6 and 8): pure, a report's view in, one page out.

The same rules as the month report's page (``cli/html.py``, whose day rows,
escaping and fact listing it reuses): inline CSS and SVG, no script, nothing
fetched; every figure is the report's own, written as its JSON writes it. The
strip draws each local day of the month (contract zone, 23 or 25 hours on DST
days) with the support clock's open hours behind, and each ticket from its
opening to its first response (or the horizon) over the span it was allowed
(opening to deadline), its deadline marked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

from cli.html import LEFT, WIDTH, Fact, _days, _facts, _render, _shift, _x, instant
from cli.render import hms
from ledger.calendar import month_bounds
from ledger.support_read import SupportView
from projections.support_model import SupportReport, support_encoder

ROW: Final = 34  # one day's row, gap included
TOP: Final = 26  # the hour axis above the first day
LANES: Final = 4  # tickets overlapping on a row are drawn one under the other, up to this many
LANE: Final = 6  # px per lane
MIN_MARK: Final = 2.0  # px: a ticket answered within seconds stays visible
_TICK: Final = timedelta(microseconds=1)


def number(value: Decimal | int) -> str:
    """A figure exactly as the JSON report writes it."""
    return support_encoder.encode(value).decode()


def duration(value: Decimal | int) -> str:
    """Seconds for people ("1 h 02 min 3 s"), negative too (a quota overdrawn)."""
    exact = Decimal(value)
    return f"−{hms(-exact)}" if exact < 0 else hms(exact)


@dataclass(frozen=True)
class Piece:
    x: float
    y: float
    w: float


@dataclass(frozen=True)
class TicketMark:
    """One ticket on the strip: its span (opening to response or horizon), its allowance and its deadline."""

    n: int
    ticket: str
    status: str
    severity: str
    opened: str
    end: str
    responded: bool
    deadline: str | None
    lane: int
    bar: tuple[Piece, ...]
    allowed: tuple[Piece, ...]
    due: Piece | None  # where the deadline falls, if within the month


@dataclass(frozen=True)
class Row:
    label: str
    date: str
    hours: str
    y: float
    width: float
    ticks: tuple[float, ...]
    odd: bool
    shift: tuple[float, str] | None
    open: tuple[Piece, ...]


@dataclass(frozen=True)
class Strip:
    width: int
    height: int
    rows: tuple[Row, ...]
    axis: tuple[tuple[float, str], ...]
    tickets: tuple[TicketMark, ...]


Days = list[tuple[date, datetime, datetime]]


def _pieces(start: datetime, end: datetime, days: Days, *, min_width: float = 0.0) -> list[tuple[int, Piece]]:
    """[start, end) cut at each day's bounds: (row, piece) with x and width (y left to the caller)."""
    out = []
    for i, (_, lo, hi) in enumerate(days):
        a, b = max(start, lo), min(end, hi)
        if a >= b:
            continue
        x0, x1 = _x(a - lo), _x(b - lo)
        out.append((i, Piece(round(x0, 2), TOP + i * ROW, round(max(x1 - x0, min_width), 2))))
    return out


def _at(when: datetime, days: Days) -> Piece | None:
    """Where an instant falls on the strip (its row's top), if within the month."""
    for i, (_, lo, hi) in enumerate(days):
        if lo <= when < hi:
            return Piece(round(_x(when - lo), 2), TOP + i * ROW + 4, 0)
    return None


def _lanes(spans: list[tuple[datetime, datetime]]) -> list[int]:
    """Greedy lanes: each span on the first lane free at its start (more than LANES overlap: they share)."""
    ends: list[datetime] = []
    out = []
    for s, e in spans:
        lane = next((k for k, last in enumerate(ends) if last <= s), None)
        if lane is None:
            lane = len(ends)
            ends.append(e)
        else:
            ends[lane] = e
        out.append(lane % LANES)
    return out


def strip(view: SupportView) -> Strip:
    """The month day by day in the contract's zone: open hours behind, each ticket in front."""
    r = view.report
    tz = ZoneInfo(r.timezone)
    start, end = month_bounds(r.month, tz)
    horizon = min(end, view.replay_point) if view.replay_point is not None else end
    days = _days(start, end, tz)
    open_by_row: dict[int, list[Piece]] = {}
    for a, b in view.open_hours:
        for i, p in _pieces(a, b, days):
            open_by_row.setdefault(i, []).append(Piece(p.x, p.y + 4, p.w))
    rows = []
    for i, (d, lo, hi) in enumerate(days):
        length = hi - lo
        hours = length / timedelta(hours=1)
        rows.append(Row(label=f"{d:%a} {d.day}", date=d.isoformat(), hours=f"{hours:g}", y=TOP + i * ROW,
                        width=round(_x(length) - LEFT, 2),
                        ticks=tuple(round(_x(timedelta(hours=h)), 2) for h in range(1, int(hours) + 1)),
                        odd=length != timedelta(hours=24), shift=_shift(lo, hi, tz),
                        open=tuple(open_by_row.get(i, ()))))
    spans = []
    for t in r.tickets:
        stop = min(t.responded_at or horizon, end)
        stop = max(stop, t.opened_at)
        allowed_end = min(t.deadline, end) if t.deadline is not None else stop
        spans.append((t.opened_at, stop, max(allowed_end, t.opened_at)))
    lanes = _lanes([(s, max(e, a)) for s, e, a in spans])
    marks = []
    for n, (t, (s, e, a), lane) in enumerate(zip(r.tickets, spans, lanes, strict=True), 1):
        dy = 7 + lane * LANE

        def placed(pieces: list[tuple[int, Piece]], dy: float = dy) -> tuple[Piece, ...]:
            return tuple(Piece(p.x, p.y + dy, p.w) for _, p in pieces)

        due = _at(t.deadline, days) if t.deadline is not None else None
        marks.append(TicketMark(
            n=n, ticket=t.ticket, status=t.status, severity=t.severity, opened=instant(t.opened_at),
            end=instant(e.astimezone(tz)), responded=t.responded_at is not None,
            deadline=instant(t.deadline) if t.deadline is not None else None,
            lane=lane, bar=placed(_pieces(s, max(e, s + _TICK), days, min_width=MIN_MARK)),
            allowed=placed(_pieces(s, a, days)), due=due))
    axis = tuple((round(_x(timedelta(hours=h)), 2), f"{h:02d}:00") for h in range(0, 25, 3))
    return Strip(width=WIDTH, height=TOP + len(days) * ROW + 8, rows=tuple(rows), axis=axis,
                 tickets=tuple(marks))


def _counts(r: SupportReport) -> dict[str, int]:
    return {s: sum(1 for t in r.tickets if t.status == s) for s in ("met", "breached", "pending")}


def support_page(view: SupportView) -> str:
    """``ledger support --contract C --month M --format html``."""
    r = view.report
    facts: list[Fact] = _facts(view.facts)
    return _render(
        "support.html",
        r=r,
        v=view,
        number=number,
        duration=duration,
        as_of=instant(view.replay_point) if view.replay_point is not None else None,
        counts=_counts(r),
        strip=strip(view),
        facts=facts,
        known={f.position for f in facts},
    )
