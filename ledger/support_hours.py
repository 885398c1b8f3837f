"""Support calendars (INTERFACE.md section 6.2): when a support clock runs, and open-time arithmetic.

Everything here is pure. Instants are integers, microseconds since the Unix epoch
(UTC), so open time is summed exactly. Weekly spans, holidays and closures are
wall-clock in the calendar's zone; each wall-clock bound is turned into an
instant with ``ledger.calendar.local_instant`` (fold=0 in a DST gap or fold),
so a day that DST makes 23 or 25 hours long is open exactly as long as its
wall clock says.

Holidays come from a lookup ``(country, year) -> dates`` given with the
calendar: the package's dates (``package_holidays``) or pinned ones
(``holidays_pinned`` facts), decided by the caller.

Size: ``OpenTimeline`` answers the walk's questions (open time, deadlines) by
bisection and must visit exactly the weeks the walk visits; it is kept beside the
walk it mirrors.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

# HolidayBook and package_version live with the calendar (the availability fold uses them too,
# without importing this module); named here as well for the support fold.
from ledger.calendar import HolidayBook as HolidayBook
from ledger.calendar import holiday_dates, local_instant, wall_instant
from ledger.calendar import package_version as package_version
from ledger.errors import BadInput

DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DAY_MIN: Final = 24 * 60
WEEK_MIN: Final = 7 * DAY_MIN
US: Final = 1_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)
_DAY: Final = timedelta(days=1)
# How far ahead a deadline is searched for: past this the clock never gives that much open
# time (a calendar closed for a whole year), and the deadline is None (never).
MAX_WEEKS: Final = 60

HolidayLookup = Callable[[str, int], frozenset[date]]
Interval = tuple[int, int]

_DAY_RE: Final = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_CLOCK_RE: Final = "(?:[01][0-9]|2[0-4]):[0-5][0-9]"
_DAYS_RE: Final = re.compile(
    rf"({_DAY_RE}(?:-{_DAY_RE})?(?:,{_DAY_RE}(?:-{_DAY_RE})?)*) ({_CLOCK_RE})-({_CLOCK_RE})", re.ASCII
)
_SPAN_RE: Final = re.compile(rf"({_DAY_RE}) ({_CLOCK_RE}) ?- ?({_DAY_RE}) ({_CLOCK_RE})", re.ASCII)
_WINDOW_RE: Final = re.compile(rf"(-1 )?({_CLOCK_RE})-({_CLOCK_RE})", re.ASCII)


def to_us(instant: datetime) -> int:
    """Microseconds since the epoch of an aware instant."""
    return (instant - _EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    """The UTC instant ``us`` microseconds after the epoch."""
    return _EPOCH + timedelta(0, 0, us)  # positional: a keyword costs the parse a third more


def package_holidays(country: str, year: int) -> frozenset[date]:
    """The installed ``holidays`` package's dates for ``country`` ("CA", "CA-ON") in ``year``."""
    return holiday_dates(country, year)


def _minutes(text: str, field: str, *, end: bool) -> int:
    h, m = int(text[:2]), int(text[3:])
    if h == 24 and (m != 0 or not end):
        raise BadInput(f"field `{field}`: 24:00 only closes a span, got {text!r}")
    return h * 60 + m


def _day_list(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        a = DAYS.index(first)
        b = DAYS.index(last) if last else a
        n = (b - a) % 7 + 1  # "Sat-Mon" wraps over the week's end
        out += [(a + k) % 7 for k in range(n)]
    return out


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """The union of intervals, sorted, touching ones joined."""
    out: list[Interval] = []
    for s, e in sorted(intervals):
        if s >= e:
            continue
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def parse_hours(entries: Sequence[str], field: str = "support.hours") -> tuple[Interval, ...]:
    """Weekly open spans as minutes from Monday 00:00 ([start, end), merged); BadInput naming the entry."""
    if not entries:
        raise BadInput(f"field `{field}`: at least one span is required")
    spans: list[Interval] = []
    for i, entry in enumerate(entries):
        where = f"{field}[{i}]"
        if m := _DAYS_RE.fullmatch(entry):
            start = _minutes(m.group(2), where, end=False)
            stop = _minutes(m.group(3), where, end=True)
            if stop <= start:
                raise BadInput(f"field `{where}`: a day's span closes before it opens: {entry!r} "
                               "(a span across days is written \"Mon 05:00 - Fri 16:00\")")
            spans += [(d * DAY_MIN + start, d * DAY_MIN + stop) for d in _day_list(m.group(1))]
        elif m := _SPAN_RE.fullmatch(entry):
            start = DAYS.index(m.group(1)) * DAY_MIN + _minutes(m.group(2), where, end=False)
            stop = DAYS.index(m.group(3)) * DAY_MIN + _minutes(m.group(4), where, end=True)
            if stop == start:
                raise BadInput(f"field `{where}`: an empty span: {entry!r}")
            if stop > start:
                spans.append((start, stop))
            else:  # over the week's end: Fri 16:00 - Mon 05:00
                spans += [(start, WEEK_MIN), (0, stop)]
        else:
            raise BadInput(f"field `{where}`: expected \"Mon-Fri 08:00-17:00\" or \"Mon 05:00 - Fri 16:00\", "
                           f"got {entry!r}")
    return tuple(merge(spans))


def check_span_spelling(entries: Sequence[str], field: str = "support.hours") -> None:
    """Refuse a span across days not written as section 6.2 writes it: ``DAY HH:MM - DAY HH:MM``.

    For policies coming in (``ledger.policy_check``); ``parse_hours`` still reads a recorded
    policy's ``"Fri 16:00-Mon 05:00"`` or ``"Mon 08:00 -Fri 17:00"`` as the ledger always did.
    """
    for i, entry in enumerate(entries):
        m = _SPAN_RE.fullmatch(entry)
        spelled = f"{m[1]} {m[2]} - {m[3]} {m[4]}" if m is not None else entry
        if entry != spelled:
            raise BadInput(f"field `{field}[{i}]`: a span across days is written \"{spelled}\" "
                           f"(one space each side of the dash), got {entry!r}")


@dataclass(frozen=True, slots=True)
class Closure:
    """Closed during a window on (or from the day before) each holiday of ``country``."""

    country: str
    offset_days: int  # 0, or -1: the window starts the day before the holiday
    start: int  # minutes after the start day's local midnight
    end: int  # minutes after the same midnight; past 1440 it runs into the next day


def parse_window(country: str, window: str, field: str) -> Closure:
    """``"09:00-17:00"``, ``"-1 20:00-05:00"`` (an end at or before the start runs into the next day)."""
    m = _WINDOW_RE.fullmatch(window)
    if m is None:
        raise BadInput(f"field `{field}`: expected a window like \"09:00-17:00\" or \"-1 20:00-05:00\", "
                       f"got {window!r}")
    start = _minutes(m.group(2), field, end=False)
    stop = _minutes(m.group(3), field, end=True)
    if stop <= start:
        stop += DAY_MIN
    return Closure(country, -1 if m.group(1) else 0, start, stop)


@dataclass(frozen=True)
class SupportCalendar:
    """A support clock: weekly spans in ``timezone``, minus whole-day holidays, minus closures."""

    timezone: ZoneInfo
    spans: tuple[Interval, ...]  # minutes from Monday 00:00, merged (``parse_hours``)
    holidays: str | None = None
    closures: tuple[Closure, ...] = ()
    # Where holiday dates come from; part of the calendar's identity (pins differ per replay).
    lookup: HolidayLookup = field(default=package_holidays)

    def countries(self) -> tuple[str, ...]:
        """Every country whose holidays the clock depends on, sorted, once."""
        named = {c.country for c in self.closures}
        if self.holidays is not None:
            named.add(self.holidays)
        return tuple(sorted(named))


def _instant(day: date, minutes: int, tz: ZoneInfo) -> int:
    """The instant of ``minutes`` after local midnight of ``day`` (1440 and beyond: later days)."""
    days, rest = divmod(minutes, DAY_MIN)
    return to_us(local_instant(day + timedelta(days=days), time(rest // 60, rest % 60), tz))


def _holidays_between(cal: SupportCalendar, country: str, first: date, last: date) -> list[date]:
    out: list[date] = []
    for year in range(first.year, last.year + 1):
        out += [d for d in cal.lookup(country, year) if first <= d <= last]
    return sorted(out)


def _subtract(opens: list[Interval], closed: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    i = 0
    for s, e in opens:
        while i < len(closed) and closed[i][1] <= s:
            i += 1
        j, cur = i, s
        while j < len(closed) and closed[j][0] < e:
            cs, ce = closed[j]
            if cs > cur:
                out.append((cur, cs))
            cur = max(cur, ce)
            j += 1
        if cur < e:
            out.append((cur, e))
    return out


@lru_cache(maxsize=4096)
def week_open(cal: SupportCalendar, monday: date) -> tuple[Interval, ...]:
    """Open intervals of the local days ``monday`` .. ``monday + 6``, in order (cached per calendar-week)."""
    tz = cal.timezone
    opens: list[Interval] = []
    for k in range(7):
        day = monday + timedelta(days=k)
        lo, hi = k * DAY_MIN, (k + 1) * DAY_MIN
        for s, e in cal.spans:
            a, b = max(s, lo), min(e, hi)
            if a < b:
                opens.append((_instant(day, a - lo, tz), _instant(day, b - lo, tz)))
    opens = merge(opens)
    if not opens:
        return ()
    closed: list[Interval] = []
    first, last = monday - _DAY, monday + timedelta(days=8)  # closures reach a day either way
    if cal.holidays is not None:
        for d in _holidays_between(cal, cal.holidays, first, last):
            closed.append((_instant(d, 0, tz), _instant(d, DAY_MIN, tz)))
    for c in cal.closures:
        for d in _holidays_between(cal, c.country, first, last):
            start_day = d + timedelta(days=c.offset_days)
            closed.append((_instant(start_day, c.start, tz), _instant(start_day, c.end, tz)))
    return tuple(_subtract(opens, merge(closed)))


def _monday(us: int, tz: ZoneInfo) -> date:
    day = from_us(us).astimezone(tz).date()
    return day - timedelta(days=day.weekday())


def _weeks_from(cal: SupportCalendar, us: int, weeks: int = MAX_WEEKS) -> Iterable[Interval]:
    """Open intervals week by week from the week holding ``us`` (those ending after ``us``)."""
    monday = _monday(us, cal.timezone)
    for k in range(weeks):
        for s, e in week_open(cal, monday + timedelta(days=7 * k)):
            if e > us:
                yield s, e


def open_intervals(cal: SupportCalendar, start: int, end: int) -> list[Interval]:
    """The open pieces of [start, end), in order, merged."""
    out: list[Interval] = []
    if end <= start:
        return out
    monday = _monday(start, cal.timezone)
    while _instant(monday, 0, cal.timezone) < end:
        out += [(max(s, start), min(e, end)) for s, e in week_open(cal, monday) if e > start and s < end]
        monday += timedelta(days=7)
    return merge(out)


def open_time_between(cal: SupportCalendar, start: int, end: int) -> int:
    """Open time (microseconds) in [start, end); 0 when ``end <= start``."""
    return sum(e - s for s, e in open_intervals(cal, start, end))


def add_open_time(cal: SupportCalendar, start: int, duration: int) -> int | None:
    """The instant at which ``duration`` of open time has passed since ``start`` (None: not within a year)."""
    if duration <= 0:
        return start
    left = duration
    for s, e in _weeks_from(cal, start):
        s = max(s, start)
        if e - s >= left:
            return s + left
        left -= e - s
    return None


def next_open(cal: SupportCalendar, instant: int) -> int | None:
    """``instant`` if the clock runs then, else the next instant it opens (None: not within a year)."""
    for s, _ in _weeks_from(cal, instant):
        return max(s, instant)
    return None


def is_open(cal: SupportCalendar, instant: int) -> bool:
    """Whether the clock runs at ``instant``."""
    return next_open(cal, instant) == instant


def is_business_day(cal: SupportCalendar, day: date) -> bool:
    """Monday to Friday and not a whole-day holiday of the calendar's ``holidays``."""
    if day.weekday() >= 5:
        return False
    return cal.holidays is None or day not in cal.lookup(cal.holidays, day.year)


def add_business_days(cal: SupportCalendar, start: int, n: int) -> int | None:
    """Section 6.2's "N business days": from the next open instant, N business days on, same time of day.

    The result is moved to the next open instant if the clock is closed then (a
    closure on that day): a deadline never falls while support is closed.
    """
    return _business_days(cal, start, n, lambda t: next_open(cal, t))


def _business_days(cal: SupportCalendar, start: int, n: int, next_open_at: Callable[[int], int | None],
                   days: dict[tuple[date, int], date] | None = None) -> int | None:
    opened = next_open_at(start)
    if opened is None:
        return None
    local = from_us(opened).astimezone(cal.timezone)
    key = (local.date(), n)
    found = days.get(key) if days is not None else None
    if found is None:  # ``days``: the day N business days on, once per (day, N): the same lookups
        day, left = key
        while left:
            day += _DAY
            if is_business_day(cal, day):
                left -= 1
        if days is not None:
            days[key] = day
    else:
        day = found
    # The opening's time of day as it is: 23:59:59.999999 is not the sentinel for "24:00".
    due = to_us(wall_instant(day, local.time().replace(tzinfo=None, fold=0), cal.timezone))
    return next_open_at(due)


class OpenTimeline:
    """A calendar's open intervals over a run of consecutive weeks, with running sums of open time.

    ``open_time_between``, ``add_open_time``, ``next_open`` and ``add_business_days``
    by bisection instead of a walk over the weeks: the same answers, at a cost
    that does not grow with the number of tickets folded. Weeks are added to the
    run only when a question reaches them, exactly those the walk would visit, so
    the holiday lookups (which a ``HolidayBook`` remembers for the report and its
    digest) are the same; a question starting past the run's next week starts a
    new run, and one starting before the run is answered by the walk itself.
    """

    def __init__(self, cal: SupportCalendar) -> None:
        self.cal = cal
        self._first = date.min  # the first week of the next run
        self.mondays: list[date] = []
        self.week_starts: list[int] = []  # the instant each week of the run starts
        self.hi = 0  # where the run ends
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.through: list[int] = []  # open time from the run's start to the end of each interval
        self.days: dict[tuple[date, int], date] = {}  # (day, N) -> the day N business days on

    def _extend(self) -> None:
        tz = self.cal.timezone
        monday = self.mondays[-1] + timedelta(days=7) if self.mondays else self._first
        if not self.mondays:
            self.hi = _instant(monday, 0, tz)
        self.mondays.append(monday)
        self.week_starts.append(self.hi)
        total = self.through[-1] if self.through else 0
        for s, e in week_open(self.cal, monday):
            total += e - s
            self.starts.append(s)
            self.ends.append(e)
            self.through.append(total)
        self.hi = _instant(monday + timedelta(days=7), 0, self.cal.timezone)

    def _enter(self, instant: int) -> int | None:
        """Make the run hold ``instant``'s week; how many weeks the walk from it may reach (None: walk)."""
        if not self.mondays or instant >= self.hi:
            monday = _monday(instant, self.cal.timezone)
            if not self.mondays or monday != self.mondays[-1] + timedelta(days=7):
                self._first = monday
                self.mondays, self.week_starts = [], []
                self.starts, self.ends, self.through = [], [], []
            self._extend()
        elif instant < self.week_starts[0]:
            return None
        return bisect_right(self.week_starts, instant) - 1 + MAX_WEEKS

    def _before(self, instant: int) -> int:
        """Open time from the run's start to ``instant`` (inside the run)."""
        i = bisect_right(self.starts, instant) - 1
        if i < 0:
            return 0
        return self.through[i] - max(0, self.ends[i] - instant)

    def between(self, start: int, end: int) -> int:
        """``open_time_between``."""
        if end <= start:
            return 0
        if self._enter(start) is None:
            return open_time_between(self.cal, start, end)
        while self.hi < end:
            self._extend()
        return self._before(end) - self._before(start)

    def add(self, start: int, duration: int) -> int | None:
        """``add_open_time``."""
        if duration <= 0:
            return start
        reach = self._enter(start)
        if reach is None:
            return add_open_time(self.cal, start, duration)
        goal = self._before(start) + duration
        while not self.through or self.through[-1] < goal:
            if len(self.mondays) >= reach:
                return add_open_time(self.cal, start, duration)
            self._extend()
        i = bisect_left(self.through, goal)
        return self.ends[i] - (self.through[i] - goal)

    def next_open(self, instant: int) -> int | None:
        """``next_open``."""
        reach = self._enter(instant)
        if reach is None:
            return next_open(self.cal, instant)
        while not self.ends or self.ends[-1] <= instant:
            if len(self.mondays) >= reach:
                return next_open(self.cal, instant)
            self._extend()
        return max(self.starts[bisect_right(self.ends, instant)], instant)

    def add_business_days(self, start: int, n: int) -> int | None:
        """``add_business_days``."""
        return _business_days(self.cal, start, n, self.next_open, self.days)
