"""Business days and hours are total near the limits of time (ledger.calendar), and so is the fold.

Input is bounded (years 1970-2999, notice at most 366 business days), but a fold must never
raise on what it was given: a notice that runs past the end of datetime's calendar is simply
never enough, and business hours that cannot be written as a datetime lie outside any window.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from ledger.calendar import add_business_days, business_intervals
from ledger.policy import CalendarRules
from tests.unit.factories import Ledger, outage, policy, run

KIRITIMATI = ZoneInfo("Pacific/Kiritimati")  # UTC+14: its wall clock runs out before UTC's
NIUE = ZoneInfo("Pacific/Niue")  # UTC-11: its wall clock starts after UTC's


def cal(tz: ZoneInfo, holidays: str | None = "CA") -> CalendarRules:
    return CalendarRules(timezone=tz, holidays=holidays, opens=time(9), closes=time(17))


def test_the_last_accepted_year_plus_the_longest_notice_is_a_real_instant() -> None:
    # 31 December 2999 (a Tuesday) + 366 business days, Canadian holidays: a date in 3001.
    due = add_business_days(datetime(2999, 12, 31, 10, tzinfo=UTC), 366, cal(ZoneInfo("America/Toronto")))
    assert due is not None
    assert due.year == 3001
    assert due.astimezone(ZoneInfo("America/Toronto")).time() == time(5)  # 10:00 UTC, EST kept


@pytest.mark.parametrize("tz", [ZoneInfo("UTC"), KIRITIMATI, NIUE])
def test_a_notice_past_the_end_of_the_calendar_is_never_reached(tz: ZoneInfo) -> None:
    near_end = datetime(9999, 12, 27, 12, tzinfo=UTC)
    assert add_business_days(near_end, 10, cal(tz)) is None
    assert add_business_days(near_end, 10**9, cal(tz)) is None  # no day-by-day walk to find out
    # Within hours of the very end, even the local wall clock of +14 does not exist.
    assert add_business_days(datetime(9999, 12, 31, 20, tzinfo=UTC), 0, cal(KIRITIMATI)) is None


@pytest.mark.parametrize("tz", [ZoneInfo("UTC"), KIRITIMATI, NIUE])
def test_business_hours_near_the_limits_of_datetime(tz: ZoneInfo) -> None:
    end = datetime.max.replace(tzinfo=UTC)
    pieces = list(business_intervals(datetime(9999, 12, 29, tzinfo=UTC), end, cal(tz, None)))
    assert pieces  # 29-31 December 9999 are a Wednesday to a Friday
    assert all(datetime(9999, 12, 29, tzinfo=UTC) <= lo < hi <= end for lo, hi in pieces)
    start = datetime.min.replace(tzinfo=UTC)
    early = list(business_intervals(start, datetime(1, 1, 4, tzinfo=UTC), cal(tz, None)))
    assert all(start <= lo < hi <= datetime(1, 1, 4, tzinfo=UTC) for lo, hi in early)
    # An offset that puts the instant past UTC's last day: compared, never converted.
    beyond = datetime(9999, 12, 31, 23, tzinfo=timezone(-timedelta(hours=12)))
    assert next(business_intervals(datetime(9999, 12, 30, 12, tzinfo=UTC), beyond, cal(tz, None)), None)


def test_a_window_at_the_end_of_time_does_not_stop_the_fold() -> None:
    # Seed C's terms (5 business days of notice, outside business hours) on Kiritimati time:
    # a window announced on 28 December 9999 is refused, and this month's report is unaffected.
    text = f"""
[contract]
id = "c-end"
customer = "E"
service = "svc"
timezone = "UTC"
currency = "EUR"
monthly_fee = "100.00"

[availability]
target = "99.9"
outage_when = "any"
probes = ["p1"]

[maintenance]
min_notice = "5 business days"
outside_business_hours = true
nonconforming = "emergency"

[calendar]
timezone = "{KIRITIMATI.key}"
holidays = "CA"
business_hours = "09:00-17:00"
"""
    led = Ledger()
    led.add(
        "maintenance_announced",
        service="svc",
        maintenance="mw-end",
        announced_at=datetime(9999, 12, 28, tzinfo=UTC),
        starts_at=datetime(9999, 12, 30, tzinfo=UTC),
        ends_at=datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
    )
    outage(led, "svc", ["p1"], "2026-10-05T10:00:00Z", "2026-10-05T11:00:00Z")
    pol = policy(text)
    assert int(run(led.records, pol, "2026-10").report.downtime_seconds) == 3600
    last = run(led.records, pol, "9998-12")
    assert last.report.intervals == ()
    # The month the window touches is past what a report answers for; the verdict itself is
    # worked out all the same (every window is judged), and says why it fails.
    from projections.sources import _verdict

    ann = led.records[0].fact
    ok, label = _verdict("mw-end", ann, pol)  # type: ignore[arg-type]
    assert not ok
    assert "runs past the end of the calendar" in label


def test_the_calendar_still_counts_ordinary_days() -> None:
    # The guards change nothing away from the limits: Friday 10:00 + 1 business day = Monday 10:00.
    got = add_business_days(datetime(2026, 10, 2, 8, tzinfo=UTC), 1, cal(ZoneInfo("Europe/Paris"), None))
    assert got == datetime(2026, 10, 5, 8, tzinfo=UTC)
    assert date(2026, 10, 5).weekday() == 0
