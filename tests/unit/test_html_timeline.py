"""The HTML timeline's calendar (pure): local days of a month, and where a stretch of time is drawn."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from cli.html import BAR, HOUR_PX, LEFT, MIN_MARK, ROW, TOP, _days, _rects, _shift
from ledger.calendar import month_bounds

ZONES = ("Europe/Zurich", "America/Toronto", "Australia/Lord_Howe", "Asia/Kolkata", "UTC", "America/Santiago")
MONTHS = [f"{y}-{m:02d}" for y in (2025, 2026, 2027) for m in range(1, 13)]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ZONES), st.sampled_from(MONTHS))
def test_days_tile_the_month_in_local_days(zone: str, month: str) -> None:
    tz = ZoneInfo(zone)
    start, end = month_bounds(month, tz)
    days = _days(start, end, tz)
    assert days[0][1] == start
    assert days[-1][2] == end
    for (d, _, hi), (d2, lo2, _) in itertools.pairwise(days):
        assert hi == lo2  # contiguous, no gap, no overlap
        assert d2 == d + timedelta(days=1)
    assert sum(((hi - lo) for _, lo, hi in days), timedelta()) == end - start
    assert len(days) in (28, 29, 30, 31)
    for d, lo, hi in days:
        assert lo.astimezone(tz).date() == d
        assert timedelta(hours=22) <= hi - lo <= timedelta(hours=26)
        same = lo.astimezone(tz).utcoffset() == hi.astimezone(tz).utcoffset()
        assert (_shift(lo, hi, tz) is None) == (hi - lo == timedelta(hours=24) and same)


def test_dst_days_are_23_and_25_hours_long() -> None:
    tz = ZoneInfo("Europe/Zurich")
    march = {d.isoformat(): hi - lo for d, lo, hi in _days(*month_bounds("2026-03", tz), tz)}
    october = {d.isoformat(): hi - lo for d, lo, hi in _days(*month_bounds("2026-10", tz), tz)}
    day = timedelta(hours=24)
    assert {k: v for k, v in march.items() if v != day} == {"2026-03-29": timedelta(hours=23)}
    assert {k: v for k, v in october.items() if v != day} == {"2026-10-25": timedelta(hours=25)}
    _, lo, hi = next(x for x in _days(*month_bounds("2026-10", tz), tz) if x[0].day == 25)
    # The clocks go back at 03:00 CEST, 3 real hours after midnight.
    assert _shift(lo, hi, tz) == (LEFT + 3 * HOUR_PX, "03:00 → 02:00 CET")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ZONES), st.sampled_from(MONTHS), st.integers(0, 31 * 86400), st.integers(1, 3 * 86400))
def test_a_stretch_is_drawn_once_at_its_length(zone: str, month: str, offset: int, length: int) -> None:
    tz = ZoneInfo(zone)
    start, end = month_bounds(month, tz)
    days = _days(start, end, tz)
    a = start + timedelta(seconds=offset)
    b = a + timedelta(seconds=length)
    rects = _rects(a, b, days)
    inside = max(timedelta(), min(b, end) - max(a, start))
    assert (not rects) == (inside == timedelta())
    # Each piece sits on its own day's row, rows in order, each within its day.
    rows = [round((r.y - TOP - (ROW - BAR) / 2) / ROW) for r in rects]
    assert rows == sorted(set(rows))
    drawn = 0.0
    for r, i in zip(rects, rows, strict=True):
        _, lo, hi = days[i]
        assert LEFT - 0.01 <= r.x <= LEFT + (hi - lo).total_seconds() * HOUR_PX / 3600 + 0.01
        drawn += r.w
    if rects:
        exact = inside.total_seconds() * HOUR_PX / 3600
        assert exact - 0.01 * len(rects) <= drawn <= exact + (MIN_MARK + 0.01) * len(rects)


def test_a_stretch_across_the_spring_change_is_one_hour_wide() -> None:
    tz = ZoneInfo("Europe/Zurich")
    days = _days(*month_bounds("2026-03", tz), tz)
    # 01:30 CET to 03:30 CEST on 29 March: one real hour.
    (r,) = _rects(datetime(2026, 3, 29, 0, 30, tzinfo=UTC), datetime(2026, 3, 29, 1, 30, tzinfo=UTC), days)
    assert (r.x, r.w) == (LEFT + 1.5 * HOUR_PX, HOUR_PX)
