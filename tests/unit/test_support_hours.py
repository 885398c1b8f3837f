"""Support calendars (INTERFACE.md 6.2): parsing, DST, closures, open-time arithmetic and its properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import BadInput
from ledger.support_hours import (
    DAY_MIN,
    HolidayBook,
    SupportCalendar,
    add_business_days,
    add_open_time,
    is_open,
    next_open,
    open_intervals,
    open_time_between,
    parse_hours,
    parse_window,
    to_us,
)

H = 3600 * 1_000_000
M = 60 * 1_000_000
ZURICH = ZoneInfo("Europe/Zurich")
TORONTO = ZoneInfo("America/Toronto")

# Fixed holiday tables: the properties must not depend on the installed package.
FAKE = {
    ("CH", 2026): frozenset({date(2026, 1, 1), date(2026, 4, 3), date(2026, 12, 25)}),
    ("CA", 2026): frozenset({date(2026, 4, 3), date(2026, 10, 12), date(2026, 11, 11)}),
    ("GB", 2026): frozenset({date(2026, 4, 3), date(2026, 4, 6), date(2026, 10, 26)}),
    ("AU", 2026): frozenset({date(2026, 4, 3), date(2026, 4, 6), date(2026, 11, 3)}),
}


def fake(country: str, year: int) -> frozenset[date]:
    return FAKE.get((country, year), frozenset())


def b_calendar(hours: tuple[str, ...] = ("Mon-Fri 08:00-17:00",)) -> SupportCalendar:
    return SupportCalendar(ZURICH, parse_hours(hours), holidays="CH", lookup=fake)


def d_calendar(hours: tuple[str, ...] = ("Mon 05:00 - Fri 16:00",)) -> SupportCalendar:
    closures = (parse_window("CA", "09:00-17:00", "c"), parse_window("GB", "05:00-09:00", "c"),
                parse_window("AU", "-1 20:00-05:00", "c"))
    return SupportCalendar(TORONTO, parse_hours(hours), closures=closures, lookup=fake)


def us(text: str) -> int:
    return to_us(datetime.fromisoformat(text))


def test_parse_hours_forms() -> None:
    week = tuple((d * DAY_MIN + 480, d * DAY_MIN + 1020) for d in range(5))
    assert parse_hours(["Mon-Fri 08:00-17:00"]) == week
    assert parse_hours(["Sat,Sun 00:00-24:00"]) == ((5 * DAY_MIN, 7 * DAY_MIN),)  # touching: joined
    assert parse_hours(["Sat-Mon 10:00-11:00"]) == ((600, 660), (5 * DAY_MIN + 600, 5 * DAY_MIN + 660),
                                                    (6 * DAY_MIN + 600, 6 * DAY_MIN + 660))
    # Continuous across days, and across the week's end.
    assert parse_hours(["Mon 05:00 - Fri 16:00"]) == ((300, 4 * DAY_MIN + 960),)
    assert parse_hours(["Fri 16:00-Mon 05:00"]) == ((0, 300), (4 * DAY_MIN + 960, 7 * DAY_MIN))


@pytest.mark.parametrize("bad", ["Mon-Fri 17:00-08:00", "Mon-Fri 8:00-17:00", "Fun 08:00-09:00",
                                 "Mon 24:00-24:00", "Mon 05:00 - Mon 05:00", "Mon-Fri 08:00-24:30", ""])
def test_parse_hours_refuses(bad: str) -> None:
    with pytest.raises(BadInput, match=r"field `support.hours\[0\]`"):
        parse_hours([bad])


def test_window_runs_into_next_day() -> None:
    c = parse_window("AU", "-1 20:00-05:00", "w")
    assert (c.offset_days, c.start, c.end) == (-1, 1200, DAY_MIN + 300)
    with pytest.raises(BadInput, match="field `w`"):
        parse_window("AU", "-2 20:00-05:00", "w")


def test_dst_end_day_is_a_25_hour_clock() -> None:
    # Sun 2026-10-25 Zurich falls back 03:00 CEST -> 02:00 CET: open all day is 25 h.
    cal = SupportCalendar(ZURICH, parse_hours(["Sun 00:00-24:00"]), lookup=fake)
    a, b = us("2026-10-24T22:00:00+00:00"), us("2026-10-25T23:00:00+00:00")
    assert open_intervals(cal, a - 10 * H, b + 10 * H) == [(a, b)]
    assert open_time_between(cal, a, b) == 25 * H


def test_holiday_closes_whole_day_and_b_weekend() -> None:
    cal = b_calendar()
    # Fri 2026-04-03 is a (fake) CH holiday: Thu 16:00 + 2 h -> Mon 09:00 (Sat, Sun closed).
    assert add_open_time(cal, us("2026-04-02T16:00:00+02:00"), 2 * H) == us("2026-04-06T09:00:00+02:00")


def test_d_good_friday_three_closures() -> None:
    cal = d_calendar()
    # 2026-04-03 is a holiday in CA, GB and AU. Closed: Thu 20:00 -> Fri 05:00 (AU, day before),
    # Fri 05:00-09:00 (GB), Fri 09:00-17:00 (CA; the span ends 16:00 anyway). So Thu 19:00 + 2 h:
    # 1 h to 20:00, then nothing until Mon 05:00 -- but Mon 04-06 is a GB holiday (05:00-09:00
    # closed) and an AU one (Sun 20:00 -> Mon 05:00): it opens 09:00, + 1 h -> Mon 10:00.
    assert add_open_time(cal, us("2026-04-02T19:00:00-04:00"), 2 * H) == us("2026-04-06T10:00:00-04:00")
    # Mon 2026-04-06: GB and AU holiday. AU closes Sun 20:00 -> Mon 05:00 (already closed),
    # GB closes 05:00-09:00: Mon opens at 09:00.
    assert next_open(cal, us("2026-04-04T12:00:00-04:00")) == us("2026-04-06T09:00:00-04:00")
    assert not is_open(cal, us("2026-04-06T08:59:59-04:00"))


def test_business_days_keep_time_of_day() -> None:
    cal = b_calendar()
    # Opened Fri 18:00 (closed) -> next open Mon 08:00 -> 1 business day -> Tue 08:00.
    assert add_business_days(cal, us("2026-10-23T18:00:00+02:00"), 1) == us("2026-10-27T08:00:00+01:00")
    # Over Good Friday (whole-day holiday): Thu 10:00 + 1 business day -> Mon 10:00.
    assert add_business_days(cal, us("2026-04-02T10:00:00+02:00"), 1) == us("2026-04-06T10:00:00+02:00")


def test_holiday_book_prefers_pins_and_remembers() -> None:
    book = HolidayBook({("CH", 2026): frozenset({date(2026, 8, 1)})}, package=fake, source="holidays 9.9")
    assert book("CH", 2026) == {date(2026, 8, 1)}
    assert book("CA", 2026) == FAKE[("CA", 2026)]
    assert book.used[("CH", 2026)][0] == "pinned"
    assert book.used[("CA", 2026)][0] == "holidays 9.9"


# --- properties ---------------------------------------------------------------

T0 = us("2026-01-01T00:00:00+00:00")
starts = st.integers(min_value=T0, max_value=T0 + 360 * 24 * H)
durations = st.integers(min_value=1, max_value=60 * H)
calendars = st.sampled_from([b_calendar(), d_calendar(),
                             b_calendar(("Mon-Fri 08:00-17:00", "Sat 02:00-03:30", "Sun 00:00-24:00"))])


@settings(max_examples=60, deadline=None)
@given(cal=calendars, start=starts, duration=durations)
def test_add_then_measure_gives_it_back(cal: SupportCalendar, start: int, duration: int) -> None:
    deadline = add_open_time(cal, start, duration)
    assert deadline is not None
    assert open_time_between(cal, start, deadline) == duration
    # Never inside a closure: the microsecond before the deadline was open time.
    assert open_time_between(cal, deadline - 1, deadline) == 1


@settings(max_examples=60, deadline=None)
@given(cal=calendars, a=starts, b=starts, d1=durations, d2=durations)
def test_monotone(cal: SupportCalendar, a: int, b: int, d1: int, d2: int) -> None:
    a, b = min(a, b), max(a, b)
    d1, d2 = min(d1, d2), max(d1, d2)
    x, y, z = add_open_time(cal, a, d1), add_open_time(cal, b, d1), add_open_time(cal, a, d2)
    assert x is not None
    assert y is not None
    assert z is not None
    assert x <= y
    assert x <= z
    assert open_time_between(cal, a, b) <= b - a
    # Monotone in N, not in the start: "N business days" keeps the time of day, so a later
    # start can be due earlier (Fri 16:59 + 1 is Mon 16:59; Sat 02:00 + 1 is Mon 02:00, open 08:00).
    bd1, bd2 = add_business_days(cal, a, 1), add_business_days(cal, a, 2)
    assert bd1 is not None
    assert bd2 is not None
    assert bd1 < bd2
    assert is_open(cal, bd1)


def test_a_later_start_can_be_due_earlier_in_business_days() -> None:
    # Found by helper hAT: test_monotone claimed the opposite for this calendar; INTERFACE.md 6.2
    # keeps the opening's time of day, so the Saturday opening is due first.
    cal = b_calendar(("Mon-Fri 08:00-17:00", "Sat 02:00-03:30", "Sun 00:00-24:00"))
    assert add_business_days(cal, us("2026-10-16T16:59:00+02:00"), 1) == us("2026-10-19T16:59:00+02:00")
    assert add_business_days(cal, us("2026-10-17T02:00:00+02:00"), 1) == us("2026-10-19T08:00:00+02:00")


@settings(max_examples=60, deadline=None)
@given(start=starts, duration=durations, extra=st.sampled_from(["Sat 09:00-12:00", "Mon-Sun 06:00-08:30",
                                                                "Wed 17:00 - Thu 08:00"]))
def test_more_open_hours_never_lengthen_a_response(start: int, duration: int, extra: str) -> None:
    base, more = b_calendar(), b_calendar(("Mon-Fri 08:00-17:00", extra))
    due_base, due_more = add_open_time(base, start, duration), add_open_time(more, start, duration)
    assert due_base is not None
    assert due_more is not None
    assert due_more <= due_base
    end = start + 30 * 24 * H
    assert open_time_between(more, start, end) >= open_time_between(base, start, end)


@settings(max_examples=40, deadline=None)
@given(cal=calendars, a=starts, cut=st.integers(0, 20 * 24 * H), length=st.integers(0, 40 * 24 * H))
def test_open_time_is_additive(cal: SupportCalendar, a: int, cut: int, length: int) -> None:
    m, b = a + min(cut, length), a + length
    assert open_time_between(cal, a, b) == open_time_between(cal, a, m) + open_time_between(cal, m, b)


def test_closed_forever_gives_no_deadline() -> None:
    # Every day a holiday: no open time within the search horizon.
    every = frozenset(date(2026, 1, 1) + timedelta(days=k) for k in range(800))

    def all_days(country: str, year: int) -> frozenset[date]:
        return frozenset(d for d in every if d.year == year)

    cal = SupportCalendar(ZURICH, parse_hours(["Mon-Fri 08:00-17:00"]), holidays="CH", lookup=all_days)
    start = to_us(datetime(2026, 3, 2, tzinfo=UTC))
    assert add_open_time(cal, start, H) is None
    assert add_business_days(cal, start, 1) is None
