"""Support clocks (ledger.support_hours) against a wall-clock model, at the calendar's edges (helper hAT).

The model reads INTERFACE.md 6.2 directly: an instant is open when its local wall clock lies
in a weekly span, its local date is no whole-day holiday, and it lies in no closure window
(wall clock, from the window's start on the holiday or the day before). Instants are biased
to DST gaps and folds (whole hours and Lord Howe's half hour), local 00:00 and
23:59:59.999999 and month bounds (``tests.unit.calendar_edges``).
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ledger.errors import BadInput
from ledger.support_hours import (
    DAY_MIN,
    OpenTimeline,
    SupportCalendar,
    add_business_days,
    add_open_time,
    from_us,
    is_business_day,
    next_open,
    open_intervals,
    open_time_between,
    parse_hours,
    parse_window,
    to_us,
)
from tests.unit.calendar_edges import edge_instants, exists, first_occurrence, holiday_sets

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Zones whose changes fall at 02:00/03:00, at midnight (Cairo: a Friday gap, a Thursday fold) or
# none: no span or window below starts or ends inside one.
ZONES = ("Europe/Zurich", "America/Toronto", "Australia/Sydney", "Australia/Lord_Howe", "Africa/Cairo",
         "Asia/Kolkata")
YEARS = (2024, 2026, 2028, 2100)
HOURS = (("Mon-Fri 08:00-17:00",), ("Mon 05:00 - Fri 16:00",), ("Mon-Sun 00:00-24:00",),
         ("Fri 16:00 - Mon 05:00", "Wed 00:00-24:00"), ("Sat,Sun 00:00-24:00", "Mon-Fri 23:00-24:00"))
WINDOWS = ("09:00-17:00", "05:00-09:00", "-1 20:00-05:00", "00:00-24:00", "22:00-06:00")


@st.composite
def calendars(draw: st.DrawFn) -> tuple[SupportCalendar, datetime]:
    """A calendar (its holidays near the instant drawn with it) and an edge instant."""
    zone = draw(st.sampled_from(ZONES))
    start = draw(edge_instants(zone, YEARS))
    near = start.astimezone(ZoneInfo(zone)).date() - timedelta(days=3)
    tables = {c: draw(holiday_sets(near)) for c in ("AA", "BB")}

    def lookup(country: str, year: int) -> frozenset[date]:
        return frozenset(d for d in tables[country] if d.year == year)

    closures = tuple(parse_window("BB", w, "w") for w in draw(st.lists(st.sampled_from(WINDOWS), max_size=2)))
    cal = SupportCalendar(ZoneInfo(zone), parse_hours(draw(st.sampled_from(HOURS))),
                          holidays=draw(st.sampled_from(["AA", None])), closures=closures, lookup=lookup)
    return cal, start


def open_at(cal: SupportCalendar, us: int) -> bool:
    """The model, one instant at a time."""
    local = from_us(us).astimezone(cal.timezone).replace(tzinfo=None, fold=0)
    day = local.date()
    minute = (local - datetime.combine(day, time(0))) / timedelta(minutes=1)  # exact enough: < 1 µs
    week = day.weekday() * DAY_MIN + minute
    if not any(s <= week < e for s, e in cal.spans):
        return False
    if cal.holidays is not None and day in cal.lookup(cal.holidays, day.year):
        return False
    for c in cal.closures:
        for d in (day - timedelta(days=1), day, day + timedelta(days=1)):
            if d in cal.lookup(c.country, d.year):
                begin = datetime.combine(d + timedelta(days=c.offset_days), time(0))
                if begin + timedelta(minutes=c.start) <= local < begin + timedelta(minutes=c.end):
                    return False
    return True


@SETTINGS
@given(cs=calendars(), length=st.integers(0, 9 * 86_400 * 10**6), data=st.data())
def test_open_intervals_are_the_wall_clock_model(cs: tuple[SupportCalendar, datetime], length: int,
                                                 data: st.DataObject) -> None:
    cal, start = cs
    a = to_us(start)
    b = a + length
    pieces = open_intervals(cal, a, b)
    for i, (lo, hi) in enumerate(pieces):
        assert a <= lo < hi <= b
        assert i + 1 == len(pieces) or hi < pieces[i + 1][0]  # merged: touching pieces are one
    edges = [t for lo, hi in pieces for t in (lo - 1, lo, hi - 1, hi)]
    probes = [a + k for k in data.draw(st.lists(st.integers(0, max(0, length - 1)), max_size=6))]
    for t in [t for t in edges if a <= t < b] + (probes if length else []):
        assert any(lo <= t < hi for lo, hi in pieces) == open_at(cal, t), from_us(t)


@SETTINGS
@given(cs=calendars(), n=st.integers(1, 6))
@example(cs=(SupportCalendar(ZoneInfo("Europe/Zurich"), parse_hours(["Mon-Sun 00:00-24:00"])),
             datetime(2026, 12, 4, 22, 59, 59, 999_999, tzinfo=UTC)), n=1)  # Fri 23:59:59.999999
def test_business_days_keep_the_time_of_day(cs: tuple[SupportCalendar, datetime], n: int) -> None:
    cal, start = cs
    tz = cal.timezone
    opened = next_open(cal, to_us(start))
    got = add_business_days(cal, to_us(start), n)
    if opened is None:
        assert got is None
        return
    local = from_us(opened).astimezone(tz)
    day, left = local.date(), n  # the model: the days walked, then the clock's next opening
    while left:
        day += timedelta(days=1)
        left -= day.weekday() < 5 and (cal.holidays is None or day not in cal.lookup(cal.holidays, day.year))
    clock = local.time().replace(tzinfo=None, fold=0)
    due = to_us(first_occurrence(day, clock, tz) if exists(day, clock, tz)
                else datetime.combine(day, clock, tzinfo=tz).astimezone(UTC))  # in a gap: as the fold=0 rule
    if got is None:  # closed for the rest of the search horizon
        assert next_open(cal, due) is None
        return
    assert open_at(cal, got)
    if exists(day, clock, tz):
        assert got >= due
        assert open_time_between(cal, due, got) == 0  # nothing open between the due time and it
        if open_at(cal, due):
            assert got == due
    assert OpenTimeline(cal).add_business_days(to_us(start), n) == got


@SETTINGS
@given(cs=calendars(), duration=st.one_of(st.sampled_from([1, 60 * 10**6, 3600 * 10**6]),
                                          st.integers(1, 40 * 3600 * 10**6)))
def test_open_time_added_is_open_time_measured(cs: tuple[SupportCalendar, datetime], duration: int) -> None:
    cal, start = cs
    a = to_us(start)
    due = add_open_time(cal, a, duration)
    if due is None:
        return
    assert open_time_between(cal, a, due) == duration
    assert open_at(cal, due - 1)  # the last microsecond counted was open
    timeline = OpenTimeline(cal)
    assert timeline.add(a, duration) == due
    assert timeline.between(a, due) == duration


def test_is_business_day_is_weekdays_without_holidays() -> None:
    cal = SupportCalendar(ZoneInfo("UTC"), parse_hours(["Mon-Sun 00:00-24:00"]), holidays="AA",
                          lookup=lambda c, y: frozenset({date(2026, 12, 5), date(2026, 12, 7)}))
    assert [is_business_day(cal, date(2026, 12, d)) for d in range(4, 9)] == [True, False, False, False, True]


@SETTINGS
@given(cs=calendars(), data=st.data())
def test_one_timeline_answers_a_run_of_edge_questions_as_the_walk(cs: tuple[SupportCalendar, datetime],
                                                                  data: st.DataObject) -> None:
    cal, start = cs
    zone = cal.timezone.key
    clock = OpenTimeline(cal)  # reused: runs grow, restart, and are asked behind their start
    for _ in range(data.draw(st.integers(1, 8))):
        t = to_us(data.draw(edge_instants(zone, YEARS))) if data.draw(st.booleans()) else to_us(start)
        amount = data.draw(st.one_of(st.sampled_from([0, 1, 3600 * 10**6]),
                                     st.integers(0, 9 * 86_400 * 10**6)))
        op = data.draw(st.integers(0, 3))
        if op == 0:
            assert clock.between(t, t + amount) == open_time_between(cal, t, t + amount)
        elif op == 1:
            assert clock.add(t, amount) == add_open_time(cal, t, amount)
        elif op == 2:
            assert clock.next_open(t) == next_open(cal, t)
        else:
            assert clock.add_business_days(t, amount % 4) == add_business_days(cal, t, amount % 4)


DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
clock_minutes = st.one_of(st.sampled_from([0, 1, 1439, 1440, 720]), st.integers(0, 1440))


def _clock(m: int) -> str:
    return f"{m // 60:02d}:{m % 60:02d}"


@st.composite
def entries(draw: st.DrawFn) -> tuple[str, object]:
    """One ``hours`` entry and the model of its minutes of the week."""
    if draw(st.booleans()):
        groups = draw(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=3))
        text = ",".join(DAY_NAMES[a] if a == b else f"{DAY_NAMES[a]}-{DAY_NAMES[b]}" for a, b in groups)
        days = {(a + k) % 7 for a, b in groups for k in range((b - a) % 7 + 1)}
        lo, hi = sorted(draw(st.lists(clock_minutes, min_size=2, max_size=2, unique=True)))
        lo = min(lo, 1439)
        return f"{text} {_clock(lo)}-{_clock(hi)}", lambda w: w // DAY_MIN in days and lo <= w % DAY_MIN < hi
    d1, d2 = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    m1, m2 = min(draw(clock_minutes), 1439), draw(clock_minutes)
    start, stop = d1 * DAY_MIN + m1, d2 * DAY_MIN + m2
    text = f"{DAY_NAMES[d1]} {_clock(m1)} - {DAY_NAMES[d2]} {_clock(m2)}"
    if stop == start:  # "Sat 00:00 - Fri 24:00" too: empty, refused ("Mon 00:00 - Sun 24:00" is all week)
        return text, None
    return text, (lambda w: start <= w < stop) if stop > start else (lambda w: w >= start or w < stop)


@SETTINGS
@given(parts=st.lists(entries(), min_size=1, max_size=3), data=st.data())
def test_weekly_spans_are_what_their_text_says(parts: list[tuple[str, object]], data: st.DataObject) -> None:
    texts = [t for t, _ in parts]
    if any(model is None for _, model in parts):
        with pytest.raises(BadInput, match="empty span"):
            parse_hours(texts)
        return
    spans = parse_hours(texts)
    assert all(a < b for a, b in spans)
    assert all(b < c for (_, b), (c, _) in itertools.pairwise(spans))  # merged: apart, in order
    week = 7 * DAY_MIN
    probes = {x for s, e in spans for x in (s - 1, s, e - 1, e)}
    probes |= set(data.draw(st.lists(st.integers(0, week - 1))))
    for w in sorted(p for p in probes if 0 <= p < week):
        want = any(model(w) for _, model in parts)  # type: ignore[operator]
        assert any(s <= w < e for s, e in spans) == want, (texts, w)
