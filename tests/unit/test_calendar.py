"""Month bounds, business days and business hours (ledger.calendar)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from ledger.calendar import (
    add_business_days,
    business_intervals,
    holiday_dates,
    is_business_day,
    month_bounds,
)
from ledger.policy import CalendarRules
from tests.unit.factories import ts

TORONTO = ZoneInfo("America/Toronto")
PARIS = ZoneInfo("Europe/Paris")


def cal(
    holidays: str | None = "CA", tz: ZoneInfo = TORONTO, hours: tuple[time, time] | None = None
) -> CalendarRules:
    opens, closes = hours or (time(9), time(17, 30))
    return CalendarRules(timezone=tz, holidays=holidays, opens=opens, closes=closes)


@pytest.mark.parametrize(
    ("month", "zone", "hours", "start"),
    [
        ("2026-03", "Europe/Paris", 743, "2026-02-28T23:00:00+00:00"),  # spring forward Mar 29
        ("2026-10", "Europe/Paris", 745, "2026-09-30T22:00:00+00:00"),  # fall back Oct 25
        ("2026-03", "America/Toronto", 743, "2026-03-01T05:00:00+00:00"),  # spring forward Mar 8
        ("2026-11", "America/Toronto", 721, "2026-11-01T04:00:00+00:00"),  # 30 days + 1 h (Nov 1)
        ("2026-10", "America/Toronto", 744, "2026-10-01T04:00:00+00:00"),  # no change in October
        ("2028-02", "UTC", 696, "2028-02-01T00:00:00+00:00"),  # leap February
        ("2026-12", "Europe/Paris", 744, "2026-11-30T23:00:00+00:00"),  # year end
    ],
)
def test_month_bounds_are_local_midnights(month: str, zone: str, hours: int, start: str) -> None:
    lo, hi = month_bounds(month, ZoneInfo(zone))
    assert lo == datetime.fromisoformat(start)
    assert lo.tzinfo is UTC
    assert hi.tzinfo is UTC
    assert hi - lo == timedelta(hours=hours)
    assert hi.astimezone(ZoneInfo(zone)).time() == time(0)


def test_month_bounds_reject_bad_months() -> None:
    with pytest.raises(ValueError, match="not a month"):
        month_bounds("2026-13", PARIS)


def test_business_days_skip_weekends_and_holidays() -> None:
    # Thursday 2 April 2026, 10:00 EDT; Friday 3 April is Good Friday (a Canadian holiday).
    start = ts("2026-04-02T10:00:00-04:00")
    assert add_business_days(start, 1, cal("CA")) == ts("2026-04-06T10:00:00-04:00")
    # Belgium works on Good Friday but not on Easter Monday 6 April.
    assert add_business_days(start, 1, cal("BE")) == ts("2026-04-03T10:00:00-04:00")
    assert add_business_days(start, 2, cal("BE")) == ts("2026-04-07T10:00:00-04:00")
    # No holiday calendar: weekends only.
    assert add_business_days(start, 1, cal(None)) == ts("2026-04-03T10:00:00-04:00")


def test_zero_business_days_is_the_instant_itself() -> None:
    start = ts("2026-04-04T10:00:00-04:00")  # a Saturday
    assert add_business_days(start, 0, cal()) == start


def test_business_days_from_a_weekend_start_on_monday() -> None:
    assert add_business_days(ts("2026-03-14T12:00:00-04:00"), 1, cal()) == ts("2026-03-16T12:00:00-04:00")


def test_business_days_keep_wall_clock_time_across_dst() -> None:
    # Friday 6 March 10:00 EST (15:00Z) + 1 business day = Monday 9 March 10:00 EDT (14:00Z).
    got = add_business_days(ts("2026-03-06T10:00:00-05:00"), 1, cal())
    assert got == ts("2026-03-09T14:00:00+00:00")
    assert got.astimezone(TORONTO).time() == time(10)


def test_subdivision_holidays() -> None:
    # Family Day (16 Feb 2026) is an Ontario holiday, not a national one.
    assert is_business_day(datetime(2026, 2, 16).date(), cal("CA"))
    assert not is_business_day(datetime(2026, 2, 16).date(), cal("CA-ON"))


def test_wall_time_in_a_gap_moves_forward_by_the_gap() -> None:
    # Tehran skipped 00:00-01:00 on Monday 22 March 2021 (a weekday transition).
    tehran = cal(None, tz=ZoneInfo("Asia/Tehran"))
    got = add_business_days(datetime(2021, 3, 19, 0, 30, tzinfo=ZoneInfo("Asia/Tehran")), 1, tehran)
    assert got == ts("2021-03-22T01:30:00+04:30")


def test_wall_time_in_a_fold_is_its_first_occurrence() -> None:
    # Tehran repeated 23:00-24:00 on Tuesday 21 September 2021.
    tehran = cal(None, tz=ZoneInfo("Asia/Tehran"))
    got = add_business_days(datetime(2021, 9, 20, 23, 30, tzinfo=ZoneInfo("Asia/Tehran")), 1, tehran)
    assert got == ts("2021-09-21T19:00:00+00:00")  # 23:30 +04:30, not 23:30 +03:30


def _overlaps(start: datetime, end: datetime, calendar: CalendarRules) -> bool:
    return next(business_intervals(start, end, calendar), None) is not None


def test_business_hours_overlap() -> None:
    c = cal()
    # Tuesday 10 March 2026, business hours 09:00-17:30 EDT.
    assert not _overlaps(ts("2026-03-10T17:30:00-04:00"), ts("2026-03-10T22:00:00-04:00"), c)
    assert _overlaps(ts("2026-03-10T17:29:00-04:00"), ts("2026-03-10T22:00:00-04:00"), c)
    assert not _overlaps(ts("2026-03-10T06:00:00-04:00"), ts("2026-03-10T09:00:00-04:00"), c)
    assert _overlaps(ts("2026-03-10T06:00:00-04:00"), ts("2026-03-10T09:01:00-04:00"), c)
    # A whole weekend, and a holiday (Good Friday), are outside business hours.
    assert not _overlaps(ts("2026-03-14T00:00:00-04:00"), ts("2026-03-16T09:00:00-04:00"), c)
    assert not _overlaps(ts("2026-04-03T09:00:00-04:00"), ts("2026-04-03T17:30:00-04:00"), c)
    # Given in another zone: 23:00 Paris is 18:00 in Toronto.
    assert not _overlaps(ts("2026-03-10T23:00:00+01:00"), ts("2026-03-11T01:00:00+01:00"), c)


def test_business_intervals_pieces() -> None:
    c = cal()
    got = list(business_intervals(ts("2026-03-13T17:00:00-04:00"), ts("2026-03-16T10:00:00-04:00"), c))
    assert got == [
        (ts("2026-03-13T17:00:00-04:00"), ts("2026-03-13T17:30:00-04:00")),
        (ts("2026-03-16T09:00:00-04:00"), ts("2026-03-16T10:00:00-04:00")),
    ]


def test_business_day_closing_at_24_00() -> None:
    c = cal(None, hours=(time(9), time.max))
    assert _overlaps(ts("2026-03-10T23:59:00-04:00"), ts("2026-03-11T00:00:00-04:00"), c)
    assert list(business_intervals(ts("2026-03-10T22:00:00-04:00"), ts("2026-03-11T03:00:00-04:00"), c)) == [
        (ts("2026-03-10T22:00:00-04:00"), ts("2026-03-11T00:00:00-04:00"))
    ]


def test_holiday_calendars_are_cached_per_code_and_year() -> None:
    holiday_dates("BE", 2031)
    before = holiday_dates.cache_info().hits
    for _ in range(3):
        holiday_dates("BE", 2031)
    assert holiday_dates.cache_info().hits == before + 3


def test_a_start_in_a_fold_lands_on_the_first_occurrence_like_the_support_clock() -> None:
    # Found by helper hAT: Cairo repeats Thursday 23:00-24:00 at the end of October. 23:30 the
    # second time (EET) + 260 business days is Thursday 30 October 2025 23:30, which the rule
    # (fold=0) reads as its first occurrence (EEST, 20:30Z); the start's fold gave 21:30Z.
    cairo = ZoneInfo("Africa/Cairo")
    start = datetime(2024, 10, 31, 23, 30, tzinfo=cairo, fold=1)
    assert add_business_days(start, 260, cal(None, tz=cairo)) == ts("2025-10-30T20:30:00+00:00")
    assert add_business_days(start, 0, cal(None, tz=cairo)) == ts("2024-10-31T21:30:00+00:00")  # itself
