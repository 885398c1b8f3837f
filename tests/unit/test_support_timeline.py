"""``OpenTimeline`` (the support fold's fast clock): the walk's answers and the walk's holiday lookups."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import support_hours
from ledger.support_hours import (
    HolidayBook,
    OpenTimeline,
    SupportCalendar,
    add_business_days,
    add_open_time,
    next_open,
    open_time_between,
    parse_hours,
    parse_window,
    to_us,
)
from tests.unit.test_support_hours import TORONTO, ZURICH, H, fake, us

# Around a year's end, so that a week reaching into the next year is one more country-year looked up.
T0 = us("2026-12-08T00:00:00+00:00")
HOURS = (("Mon-Fri 08:00-17:00",), ("Mon 05:00 - Fri 16:00",), ("Mon-Fri 08:00-17:00", "Sat 02:00-03:30"),
         ("Fri 16:00 - Mon 05:00",))


def calendar(kind: int, hours: tuple[str, ...], lookup: HolidayBook) -> SupportCalendar:
    if kind == 0:
        return SupportCalendar(ZURICH, parse_hours(hours), holidays="CH", lookup=lookup)
    closures = (parse_window("CA", "09:00-17:00", "c"), parse_window("GB", "05:00-09:00", "c"),
                parse_window("AU", "-1 20:00-05:00", "c"))
    return SupportCalendar(TORONTO, parse_hours(hours), holidays="CA" if kind == 2 else None,
                           closures=closures, lookup=lookup)


def year_end_fake(country: str, year: int) -> frozenset[date]:
    return fake(country, year) | {date(year, 12, 25), date(year, 1, 1)}


op = st.sampled_from(["between", "add", "next", "business"])
# Mostly close together (runs grow), sometimes far apart (a new run), amounts short and long.
query = st.tuples(op, st.one_of(st.integers(0, 10 * 24 * H), st.integers(0, 60 * 24 * H)),
                  st.one_of(st.integers(0, 12 * H), st.integers(0, 5 * 24 * H), st.integers(0, 30 * 24 * H)))


@settings(max_examples=150, deadline=None)
@given(kind=st.integers(0, 2), hours=st.sampled_from(HOURS),
       queries=st.lists(query, max_size=25), ordered=st.booleans())
def test_same_answers_and_same_lookups_as_the_walk(
    kind: int, hours: tuple[str, ...], queries: list[tuple[str, int, int]], ordered: bool
) -> None:
    if ordered:  # the fold asks in opening order; any order must still give the walk's answers
        queries = sorted(queries, key=lambda q: q[1])
    walk_book = HolidayBook(package=year_end_fake, source="fake")
    fast_book = HolidayBook(package=year_end_fake, source="fake")
    walk, fast = calendar(kind, hours, walk_book), calendar(kind, hours, fast_book)
    clock = OpenTimeline(fast)
    touched: dict[int, set[date]] = {id(walk): set(), id(fast): set()}
    real = support_hours.week_open

    def spy(cal: SupportCalendar, monday: date) -> tuple[tuple[int, int], ...]:
        touched[id(cal)].add(monday)
        return real(cal, monday)

    with mock.patch.object(support_hours, "week_open", spy):
        for name, offset, amount in queries:
            ask(clock, walk, name, T0 + offset, amount)
            # Exactly the weeks the walk visits, so the same holiday lookups: the report names (and
            # its digest covers) every country-year looked up.
            assert touched[id(fast)] == touched[id(walk)]
            assert fast_book.used == walk_book.used


def ask(clock: OpenTimeline, walk: SupportCalendar, name: str, t: int, amount: int) -> None:
    if name == "between":
        assert clock.between(t, t + amount) == open_time_between(walk, t, t + amount)
    elif name == "add":
        assert clock.add(t, amount) == add_open_time(walk, t, amount)
    elif name == "next":
        assert clock.next_open(t) == next_open(walk, t)
    else:
        n = amount % 4
        assert clock.add_business_days(t, n) == add_business_days(walk, t, n)


def test_closed_for_longer_than_the_search_gives_none_like_the_walk() -> None:
    every = frozenset(date(2026, 1, 1) + timedelta(days=k) for k in range(800))

    def all_days(country: str, year: int) -> frozenset[date]:
        return frozenset(d for d in every if d.year == year)

    cal = SupportCalendar(ZURICH, parse_hours(["Mon-Fri 08:00-17:00"]), holidays="CH", lookup=all_days)
    start = to_us(datetime(2026, 3, 2, tzinfo=UTC))
    clock = OpenTimeline(cal)
    assert clock.add(start, H) is None
    assert clock.next_open(start) is None
    assert clock.add_business_days(start, 1) is None
    assert clock.between(start, start + 400 * 24 * H) == 0
