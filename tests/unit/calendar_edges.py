"""Hypothesis strategies biased to the edges of calendar arithmetic (helper hAT).

Instants near a zone's DST transitions (the microsecond either side, inside gaps and folds),
at local 00:00 and 23:59:59.999999, either side of a month's bound, in leap and non-leap
years and near the ends of the accepted range; holidays that fall anywhere, weekends
included. The transitions are found by scanning the zone, not taken from the code under test.
"""

from __future__ import annotations

import calendar as stdcal
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

US = timedelta(microseconds=1)
LAST = time(23, 59, 59, 999_999)
# Whole-hour DST (Paris, Zurich, Toronto, Sydney), a 30-minute DST (Lord Howe), a gap at
# midnight (Santiago; Tehran in 2021 and Cairo, on weekdays; Cairo repeats a Thursday hour), and zones
# without DST (Kolkata, UTC).
ZONES = ("Europe/Paris", "Europe/Zurich", "America/Toronto", "Australia/Sydney", "Australia/Lord_Howe",
         "America/Santiago", "Asia/Tehran", "Africa/Cairo", "Asia/Kolkata", "UTC")
# Leap (2024, 2028), a century that is not (2100), the first and last accepted years, and
# years whose zones changed rules (Tehran 2021).
YEARS = (1970, 2021, 2024, 2026, 2028, 2100, 2999)
_STEP = timedelta(hours=6)


@cache
def transitions(zone: str, year: int) -> tuple[datetime, ...]:
    """The UTC instants in ``year`` at which ``zone``'s offset changes, to the microsecond."""
    tz = ZoneInfo(zone)
    out: list[datetime] = []
    t = datetime(year, 1, 1, tzinfo=UTC) - _STEP
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    while t < end:
        u = t + _STEP
        if t.astimezone(tz).utcoffset() != u.astimezone(tz).utcoffset():
            lo, hi = t, u  # offset(lo) differs from offset(hi): bisect to the first instant of the new one
            while hi - lo > US:
                mid = lo + (hi - lo) // 2 // US * US
                if mid.astimezone(tz).utcoffset() == lo.astimezone(tz).utcoffset():
                    lo = mid
                else:
                    hi = mid
            out.append(hi)
        t = u
    return tuple(out)


def last_day(year: int, month: int) -> int:
    return stdcal.monthrange(year, month)[1]


@st.composite
def local_days(draw: st.DrawFn, years: tuple[int, ...] = YEARS) -> date:
    """A day, biased to the first and last of a month, 28/29 February, 31 December and 1 January."""
    year = draw(st.sampled_from(years))
    month = draw(st.integers(1, 12))
    n = last_day(year, month)
    day = draw(st.one_of(st.sampled_from([1, n, min(28, n), min(29, n), min(30, n)]), st.integers(1, n)))
    return date(year, month, day)


CLOCKS = st.one_of(
    st.just(LAST),
    st.just(time(0)),
    st.sampled_from([time(0, 0, 0, 1), time(23, 59, 59), time(12), time(1, 30), time(2), time(2, 15),
                     time(2, 30), time(2, 59, 59, 999_999), time(3)]),
    st.times(),
)


@st.composite
def edge_instants(draw: st.DrawFn, zone: str, years: tuple[int, ...] = YEARS) -> datetime:
    """A UTC instant at an edge of ``zone``'s calendar (see the module docstring)."""
    tz = ZoneInfo(zone)
    kind = draw(st.integers(0, 5))  # 0-1: near a DST change, 2-4: a wall time on an edge day, 5: anywhere
    if kind <= 1:
        year = draw(st.sampled_from(years))
        found = transitions(zone, year)
        if found:
            base = draw(st.sampled_from(found))
            delta = draw(st.one_of(st.sampled_from([0, -1, 1, -1800_000_000, 1800_000_000, -3600_000_000]),
                                   st.integers(-3 * 3600_000_000, 3 * 3600_000_000)))
            return base + delta * US
    if kind <= 4:  # a local wall time on an edge day, either occurrence in a fold
        wall = datetime.combine(draw(local_days(years)), draw(CLOCKS), tzinfo=tz)
        wall = wall.replace(fold=draw(st.integers(0, 1)))
        return wall.astimezone(UTC) + draw(st.sampled_from([0, 0, 0, -1, 1])) * US
    year = draw(st.sampled_from(years))  # anywhere in the year
    return datetime(year, 1, 1, tzinfo=UTC) + draw(st.integers(0, 365 * 86400 * 10**6)) * US


def exists(day: date, clock: time, tz: ZoneInfo) -> bool:
    """Whether the wall time is read back as itself (False inside a gap)."""
    wall = datetime.combine(day, clock)
    return wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall


def first_occurrence(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The earliest UTC instant whose wall clock in ``tz`` is ``day`` ``clock`` (it must exist)."""
    wall = datetime.combine(day, clock)
    return min(wall.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1))


def holiday_sets(around: date) -> st.SearchStrategy[frozenset[date]]:
    """Holidays within weeks of ``around``, weekends included, runs of consecutive ones likely."""
    return st.frozensets(st.integers(-3, 45), max_size=12).map(
        lambda ks: frozenset(around + timedelta(days=k) for k in ks))
