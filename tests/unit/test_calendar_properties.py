"""Properties of ledger.calendar at its edges (helper hAT): business days, business hours, months.

Each property is checked against a brute-force reading of INTERFACE.md written here (a walk
over days, a wall-clock test of one instant, the local date either side of a bound), on
instants biased to DST gaps and folds, local 00:00 and 23:59:59.999999, month bounds, leap
years and the ends of the accepted range (``tests.unit.calendar_edges``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from itertools import pairwise
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ledger.calendar import (
    CalendarRules,
    HolidayLookup,
    add_business_days,
    business_intervals,
    first_of_next_month,
    local_instant,
    local_midnight,
    month_bounds,
    rfc3339,
    wall_instant,
)
from ledger.persistence.keys import utc_day, utc_instant, utc_month, utc_months
from projections.affected import add_months, month_of
from projections.credit import claim_deadline
from projections.support import year_bounds_us
from projections.timeline import clock_for, from_us, local_at, to_us
from tests.unit.calendar_edges import (
    LAST,
    US,
    ZONES,
    edge_instants,
    exists,
    first_occurrence,
    holiday_sets,
    last_day,
    transitions,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HOURS = ((time(9), time(17, 30)), (time(0), time.max), (time(0), time(12)), (time(12), time.max),
         (time(8, 15), time(20)))


def rules(zone: str, hours: tuple[time, time] = (time(9), time(17, 30))) -> CalendarRules:
    return CalendarRules(timezone=ZoneInfo(zone), holidays="XX", opens=hours[0], closes=hours[1])


def lookup_of(days: frozenset[date]) -> HolidayLookup:
    return lambda code, year: frozenset(d for d in days if d.year == year)


def business(day: date, holidays: frozenset[date]) -> bool:
    return day.weekday() < 5 and day not in holidays


@st.composite
def zone_and_instant(draw: st.DrawFn) -> tuple[str, datetime]:
    zone = draw(st.sampled_from(ZONES))
    return zone, draw(edge_instants(zone))


# --- N business days -----------------------------------------------------------------------


@SETTINGS
@given(zi=zone_and_instant(), n=st.integers(0, 12), data=st.data())
@example(zi=("Europe/Paris", datetime(2026, 12, 4, 22, 59, 59, 999_999, tzinfo=UTC)), n=1,
         data=None)  # Friday 23:59:59.999999 local: Monday 23:59:59.999999 (bc6d72d)
@example(zi=("Europe/Paris", datetime(2026, 10, 25, 1, 30, tzinfo=UTC)), n=0,
         data=None)  # 02:30 local, the second time that day (CET): zero days keep it as it is
@example(zi=("Africa/Cairo", datetime(2024, 10, 31, 21, 30, tzinfo=UTC)), n=260,
         data=None)  # Thu 23:30 the second time (EET) + 260 days: Thu 30 Oct 2025 23:30, the first time
def test_business_days_walk_the_days_and_keep_the_time(zi: tuple[str, datetime], n: int,
                                                       data: st.DataObject | None) -> None:
    zone, start = zi
    tz = ZoneInfo(zone)
    local = start.astimezone(tz)
    holidays = data.draw(holiday_sets(local.date())) if data is not None else frozenset()
    got = add_business_days(start, n, rules(zone), lookup_of(holidays))
    assert got is not None
    if n == 0:  # moved by nothing: the instant itself, whichever occurrence of its wall time
        assert got == start
        return
    day, left = local.date(), n  # the model: day by day, skipping weekends and holidays
    while left:
        day += timedelta(days=1)
        left -= business(day, holidays)
    clock = local.time().replace(tzinfo=None)
    back = got.astimezone(tz)
    if exists(day, clock, tz):  # the same time of day, its first occurrence in a fold
        assert (back.date(), back.time()) == (day, clock)
        assert got == first_occurrence(day, clock, tz)
    else:  # inside a gap: as far past the gap's end as it was into the gap, never earlier
        wall = datetime.combine(day, clock)
        assert back.replace(tzinfo=None) > wall
        change = max(t for y in (got.year - 1, got.year) for t in transitions(zone, y) if t <= got)
        before = (change - US).astimezone(tz).utcoffset()
        assert before is not None
        assert back.replace(tzinfo=None) - wall == back.utcoffset() - before  # type: ignore[operator]
        assert got - change < back.utcoffset() - before  # type: ignore[operator]


@SETTINGS
@given(zi=zone_and_instant(), n=st.integers(0, 10))
def test_one_more_business_day_is_always_later(zi: tuple[str, datetime], n: int) -> None:
    zone, start = zi
    a = add_business_days(start, n, rules(zone), lookup_of(frozenset()))
    b = add_business_days(start, n + 1, rules(zone), lookup_of(frozenset()))
    assert a is not None
    assert b is not None
    assert start <= a < b


# --- business hours ------------------------------------------------------------------------


def open_at(t: datetime, tz: ZoneInfo, hours: tuple[time, time], holidays: frozenset[date]) -> bool:
    """The model: a business day's wall clock between opening and closing ("24:00": all evening)."""
    local = t.astimezone(tz)
    clock = local.time().replace(tzinfo=None)
    closed = hours[1] != time.max and clock >= hours[1]
    return business(local.date(), holidays) and hours[0] <= clock and not closed


@SETTINGS
@given(zone=st.sampled_from(ZONES), hours=st.sampled_from(HOURS), data=st.data())
def test_business_hours_are_the_wall_clock_model(zone: str, hours: tuple[time, time],
                                                 data: st.DataObject) -> None:
    tz = ZoneInfo(zone)
    a, b = sorted(data.draw(st.lists(edge_instants(zone), min_size=2, max_size=2)))
    b = min(b, a + timedelta(days=40))
    holidays = data.draw(holiday_sets(a.astimezone(tz).date() - timedelta(days=2)))
    pieces = list(business_intervals(a, b, rules(zone, hours), lookup_of(holidays)))
    for i, (lo, hi) in enumerate(pieces):
        assert a <= lo < hi <= b
        assert i + 1 == len(pieces) or hi <= pieces[i + 1][0]
        assert lo.tzinfo is UTC
    inside = [lo for lo, _ in pieces] + [hi - US for _, hi in pieces]
    outside = [lo - US for lo, _ in pieces] + [hi for _, hi in pieces]
    probes = data.draw(st.lists(st.integers(0, max(0, (b - a) // US - 1)), max_size=8))
    for t in inside + [t for t in outside if a <= t < b] + [a + k * US for k in probes if a < b]:
        covered = any(lo <= t < hi for lo, hi in pieces)
        assert covered == open_at(t, tz, hours, holidays), t
    # Pieces meet only where a business day closes and the next one opens (24:00 then 00:00).
    for (_, hi), (lo, _) in pairwise(pieces):
        assert hi < lo or hours == (time(0), time.max)


@SETTINGS
@given(zone=st.sampled_from(ZONES), hours=st.sampled_from(HOURS), data=st.data())
def test_business_hours_add_up_over_adjacent_intervals(zone: str, hours: tuple[time, time],
                                                       data: st.DataObject) -> None:
    a, m, b = sorted(data.draw(st.lists(edge_instants(zone), min_size=3, max_size=3)))
    b = min(b, a + timedelta(days=30))
    m = min(m, b)
    cal = rules(zone, hours)
    look = lookup_of(data.draw(holiday_sets(a.date() - timedelta(days=2))))

    def total(x: datetime, y: datetime) -> timedelta:
        return sum((hi - lo for lo, hi in business_intervals(x, y, cal, look)), timedelta())

    assert total(a, b) == total(a, m) + total(m, b)


# --- months --------------------------------------------------------------------------------


@st.composite
def months(draw: st.DrawFn) -> str:
    year = draw(st.sampled_from([1970, 2021, 2024, 2026, 2028, 2100, 2999]))
    return f"{year:04d}-{draw(st.integers(1, 12)):02d}"


@SETTINGS
@given(zone=st.sampled_from(ZONES), month=st.one_of(months(), st.just("1969-12"), st.just("3000-01")))
def test_a_month_is_its_local_days_and_months_tile(zone: str, month: str) -> None:
    tz = ZoneInfo(zone)
    lo, hi = month_bounds(month, tz)
    year, mon = int(month[:4]), int(month[5:])
    first, after = date(year, mon, 1), first_of_next_month(year, mon)
    # Each bound is the first instant of its local day: the microsecond before is the day before.
    assert lo.astimezone(tz).date() == first
    assert (lo - US).astimezone(tz).date() == first - timedelta(days=1)
    assert hi.astimezone(tz).date() == after
    assert (hi - US).astimezone(tz).date() == date(year, mon, last_day(year, mon))
    assert month_bounds(add_months(month, 1), tz)[0] == hi
    for t in (lo, hi - US):
        assert month_of(to_us(t), tz) == month
    assert month_of(to_us(lo - US), tz) == add_months(month, -1)
    assert month_of(to_us(hi), tz) == add_months(month, 1)
    # A month's length in hours: its days, give or take the DST change inside it.
    shift = hi.astimezone(tz).utcoffset() - lo.astimezone(tz).utcoffset()  # type: ignore[operator]
    wall = hi.astimezone(tz).replace(tzinfo=None) - lo.astimezone(tz).replace(tzinfo=None)
    assert hi - lo == wall - shift
    assert abs(wall - timedelta(days=last_day(year, mon))) < timedelta(hours=2)


@SETTINGS
@given(zone=st.sampled_from(ZONES), month=months(), days=st.integers(0, 31))
def test_a_claim_deadline_is_the_midnight_ending_its_day(zone: str, month: str, days: int) -> None:
    tz = ZoneInfo(zone)
    deadline = claim_deadline(month, tz, days)
    day = month_bounds(month, tz)[1].astimezone(tz).date() + timedelta(days=days)
    assert deadline.astimezone(tz).date() == day
    assert (deadline - US).astimezone(tz).date() == day - timedelta(days=1)


@SETTINGS
@given(month=months(), a=st.integers(-40, 40), b=st.integers(-40, 40))
def test_month_arithmetic_adds_up(month: str, a: int, b: int) -> None:
    assert add_months(add_months(month, a), b) == add_months(month, a + b)
    assert add_months(add_months(month, a), -a) == month


# --- wall clocks ---------------------------------------------------------------------------


@SETTINGS
@given(zi=zone_and_instant())
def test_a_wall_clock_read_off_an_instant_gives_it_back(zi: tuple[str, datetime]) -> None:
    zone, t = zi
    tz = ZoneInfo(zone)
    local = t.astimezone(tz)
    back = wall_instant(local.date(), local.time().replace(tzinfo=None), tz)
    # Itself, or (the second time a fold shows that wall clock) its first occurrence.
    assert back == t if local.fold == 0 or back == t else back < t
    assert back.astimezone(tz).replace(tzinfo=None) == local.replace(tzinfo=None)
    if local.time() == LAST:  # 23:59:59.999999 is a time of day, not the "24:00" sentinel
        assert back.astimezone(tz).date() == local.date()
    assert local_instant(local.date(), time.max, tz) == local_midnight(local.date() + timedelta(days=1), tz)
    # The fold's local clock (cached per hour) reads every edge instant as ``astimezone`` does.
    got, want = clock_for(tz)(to_us(t)), local_at(to_us(t), tz)
    assert (got.isoformat(), got.fold) == (want.isoformat(), want.fold)


# --- the quota's year and the UTC buckets a month is read from -------------------------------


@SETTINGS
@given(zi=zone_and_instant(), starts=st.sampled_from([(1, 1), (3, 1), (2, 28), (3, 15), (10, 31), (12, 31)]))
def test_a_quota_year_holds_the_instant_and_years_tile(zi: tuple[str, datetime],
                                                       starts: tuple[int, int]) -> None:
    zone, t = zi
    tz = ZoneInfo(zone)
    policy = SimpleNamespace(timezone=tz, support=SimpleNamespace(quota=SimpleNamespace(year_starts=starts)))
    lo, hi = year_bounds_us(policy, to_us(t))  # type: ignore[arg-type]
    assert lo <= to_us(t) < hi
    for bound in (lo, hi):  # local midnight of MM-DD: the microsecond before is the day before
        day = from_us(bound).astimezone(tz).date()
        assert (day.month, day.day) == starts
        assert from_us(bound - 1).astimezone(tz).date() == day - timedelta(days=1)
    assert year_bounds_us(policy, hi)[0] == hi  # type: ignore[arg-type]
    assert year_bounds_us(policy, lo - 1)[1] == lo  # type: ignore[arg-type]


@SETTINGS
@given(zone=st.sampled_from(ZONES), month=months())
def test_a_month_is_read_from_the_utc_months_it_touches(zone: str, month: str) -> None:
    lo, hi = month_bounds(month, ZoneInfo(zone))
    got = utc_months(lo, hi)
    assert got[0] == utc_month(lo)
    assert got[-1] == utc_month(hi - US)
    assert all(add_months(a, 1) == b for a, b in pairwise(got))
    assert len(got) <= 2


@SETTINGS
@given(data=st.data(), zone=st.sampled_from(ZONES))
def test_keys_spell_instants_in_their_order(data: st.DataObject, zone: str) -> None:
    # Range reads by key rely on it: a key's instant text sorts as the instant does.
    a, b = data.draw(st.lists(edge_instants(zone), min_size=2, max_size=2))
    assert (utc_instant(a) < utc_instant(b)) == (a < b)
    assert (utc_instant(a) == utc_instant(b)) == (a == b)
    assert (utc_day(a) <= utc_day(b)) == (a.astimezone(UTC).date() <= b.astimezone(UTC).date())
    assert utc_day(a) == utc_instant(a)[:10]
    assert utc_month(a) == utc_instant(a)[:7]


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.none() | st.builds(lambda m: timezone(timedelta(minutes=m)),
                                                    st.integers(-(24 * 60 - 1), 24 * 60 - 1))))
def test_rfc3339_reads_back_what_isoformat_writes(at: datetime) -> None:
    """The instant and its offset (or none: naive) come back to the microsecond (RFC 3339 offsets are
    whole minutes; a zone's local mean time of seconds, Lord Howe's +10:36:20, has no spelling)."""
    got = rfc3339(at.isoformat())
    assert got == at
    assert got is not None
    assert got.utcoffset() == at.utcoffset()


@given(st.text(max_size=40))
def test_rfc3339_is_none_for_what_is_no_timestamp(text: str) -> None:
    got = rfc3339(text)
    assert got is None or got.isoformat()[:10] == text[:10]

