"""Pinned holidays in the availability fold (issue 18): maintenance notice in business days and
business hours use ``holidays_pinned`` dates where the facts hold a pin, the package's otherwise.

Canada 2026 in the installed package: 1 January, 3 April, 1 July (a Wednesday), 7 September,
25 December. The contract wants 2 business days of notice, in Toronto time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.calendar import holiday_dates, package_version
from ledger.events import ContractRegistered, Fact, Recorded, fact_id
from ledger.policy import Policy
from ledger.policy_check import load_policy
from projections.affected import Known, affected
from projections.model import Evaluation, Report, to_json
from projections.tracked import ReportingProjection
from tests.unit.factories import Ledger, fact, policy
from tests.unit.test_affected import MemoryView, full

POLICY = """
[contract]
id = "pin-2026"
customer = "ACME"
service = "web"
timezone = "America/Toronto"
currency = "CAD"
monthly_fee = "1000.00"

[availability]
target = "99.9"
formula = "maintenance_out_of_total"
outage_when = "any"
probes = ["p"]

[maintenance]
min_notice = "{notice}"
outside_business_hours = {hours}
nonconforming = "downtime"

[calendar]
holidays = "CA"
business_hours = "09:00-17:00"
"""
CA_2026 = sorted(holiday_dates("CA", 2026))
assert date(2026, 7, 1) in CA_2026  # the scenarios below rest on it


def _policy(notice: str = "2 business days", hours: bool = False) -> Policy:
    return policy(POLICY.format(notice=notice, hours="true" if hours else "false"))


def _window(led: Ledger, announced: str, starts: str, ends: str, mid: str = "w1") -> None:
    """A window with the probe down throughout it: maintenance if it conforms, downtime if not."""
    led.add("maintenance_announced", service="web", maintenance=mid, announced_at=announced,
            starts_at=starts, ends_at=ends)
    led.add("probe_failed", service="web", probe="p", at=starts)
    led.add("probe_recovered", service="web", probe="p", at=ends)


def _pin(led: Ledger, year: int, dates: list[date]) -> int:
    return led.add("holidays_pinned", country="CA", year=year, dates=tuple(d.isoformat() for d in dates))


def _split(ev: Evaluation) -> tuple[int, int]:
    r = ev.report
    return int(r.maintenance_seconds), int(r.downtime_seconds)


def _sources(r: Report) -> list[tuple[str, int, str]]:
    return [(h.country, h.year, h.source) for h in r.holidays]


def test_a_pin_without_a_holiday_makes_the_notice_enough() -> None:
    # Announced Mon 29 June 10:00; 2 business days: Tue 30 June, (Wed 1 July: Canada Day), Thu 2 July
    # 10:00. The window starts Wed 1 July 12:00: too early with the package's dates.
    led, pol = Ledger(), _policy()
    _window(led, "2026-06-29T10:00:00-04:00", "2026-07-01T12:00:00-04:00", "2026-07-01T13:00:00-04:00")
    before = led.evaluate(pol, "2026-07")
    assert _split(before) == (0, 3600)
    assert _sources(before.report) == [("CA", 2026, package_version())]
    assert "runs to 2026-07-02 10:00 EDT" in before.report.intervals[0].reason

    # Pinned without 1 July: Tue 30 June, Wed 1 July -> due Wed 1 July 10:00, before the start.
    _pin(led, 2026, [d for d in CA_2026 if d != date(2026, 7, 1)])
    after = led.evaluate(pol, "2026-07")
    assert _split(after) == (3600, 0)
    assert _sources(after.report) == [("CA", 2026, "pinned")]
    assert "runs to 2026-07-01 10:00 EDT" in after.report.intervals[0].reason
    assert after.report.digest != before.report.digest


def test_a_pin_with_one_more_holiday_makes_the_notice_short() -> None:
    # Announced Mon 6 July 10:00: Tue 7, Wed 8 -> due Wed 8 July 10:00; the window starts at 12:00.
    led, pol = Ledger(), _policy()
    _window(led, "2026-07-06T10:00:00-04:00", "2026-07-08T12:00:00-04:00", "2026-07-08T13:00:00-04:00")
    before = led.evaluate(pol, "2026-07")
    assert _split(before) == (3600, 0)
    # Pinned with Tue 7 July as a holiday too: Wed 8, Thu 9 -> due Thu 9 July 10:00.
    _pin(led, 2026, sorted([*CA_2026, date(2026, 7, 7)]))
    after = led.evaluate(pol, "2026-07")
    assert _split(after) == (0, 3600)
    assert after.report.digest != before.report.digest


def test_business_hours_read_the_pinned_holidays() -> None:
    # Canada Day is no business day: a window on it at noon is outside business hours, unless a
    # pin says 1 July is an ordinary day.
    led, pol = Ledger(), _policy(notice="24h", hours=True)
    _window(led, "2026-06-01T10:00:00-04:00", "2026-07-01T12:00:00-04:00", "2026-07-01T13:00:00-04:00")
    assert _split(led.evaluate(pol, "2026-07")) == (3600, 0)
    _pin(led, 2026, [d for d in CA_2026 if d != date(2026, 7, 1)])
    after = led.evaluate(pol, "2026-07")
    assert _split(after) == (0, 3600)
    assert "overlaps business hours" in after.report.intervals[0].reason


def test_the_latest_pin_wins_and_other_years_or_countries_are_not_read() -> None:
    led, pol = Ledger(), _policy()
    _window(led, "2026-06-29T10:00:00-04:00", "2026-07-01T12:00:00-04:00", "2026-07-01T13:00:00-04:00")
    _pin(led, 2026, [d for d in CA_2026 if d != date(2026, 7, 1)])
    _pin(led, 2026, CA_2026)  # pinned again, later: Canada Day is back
    led.add("holidays_pinned", country="BE", year=2026, dates=())
    _pin(led, 2027, [])
    ev = led.evaluate(pol, "2026-07")
    assert _split(ev) == (0, 3600)
    assert _sources(ev.report) == [("CA", 2026, "pinned")]


def test_a_replay_before_the_pin_uses_the_package() -> None:
    led, pol = Ledger(), _policy()
    _window(led, "2026-06-29T10:00:00-04:00", "2026-07-01T12:00:00-04:00", "2026-07-01T13:00:00-04:00")
    pin = _pin(led, 2026, [d for d in CA_2026 if d != date(2026, 7, 1)])
    prefix = [r for r in led.records if r.position < pin]
    from tests.unit.factories import run

    assert _split(run(prefix, pol, "2026-07")) == (0, 3600)
    assert _split(run(led.records, pol, "2026-07")) == (3600, 0)


def test_a_month_that_reads_no_holiday_names_none_and_keeps_its_digest() -> None:
    # A fixed notice reads no calendar: no holidays listed, and the digest is the one a ledger
    # without pins gives (the digest's payload only gains holidays when some were read).
    led, pol = Ledger(), _policy(notice="24h")
    _window(led, "2026-06-29T10:00:00-04:00", "2026-07-01T12:00:00-04:00", "2026-07-01T13:00:00-04:00")
    before = led.evaluate(pol, "2026-07")
    _pin(led, 2026, [])
    after = led.evaluate(pol, "2026-07")
    assert before.report.holidays == after.report.holidays == ()
    assert after.report.digest == before.report.digest


# --- properties ---------------------------------------------------------------------------

BASE = datetime(2025, 12, 1, 10, 0, tzinfo=UTC)


@st.composite
def windows(draw: st.DrawFn) -> tuple[Ledger, Policy, str]:
    """Windows around the turn of 2025-2026 and 2026-2027, notice in business days, the probe down in each."""
    led = Ledger()
    month = draw(st.sampled_from(["2025-12", "2026-01", "2026-06", "2026-07", "2026-12", "2027-01"]))
    year, mon = int(month[:4]), int(month[5:])
    for i in range(draw(st.integers(1, 3))):
        start = datetime(year, mon, draw(st.integers(1, 28)), draw(st.integers(0, 23)), tzinfo=UTC)
        notice = timedelta(hours=draw(st.integers(-24, 24 * 12)))
        length = timedelta(hours=draw(st.integers(1, 30)))
        _window(led, (start - notice).isoformat(), start.isoformat(), (start + length).isoformat(), f"w{i}")
    pol = _policy(notice=f"{draw(st.integers(0, 6))} business days", hours=draw(st.booleans()))
    return led, pol, month


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _figures(r: Report) -> bytes:
    """The report without the holidays' sources and the position (what a pin may change)."""
    import msgspec

    return to_json(msgspec.structs.replace(r, holidays=(), as_of_position=0))


@PROPERTY
@given(windows(), st.sets(st.sampled_from([2025, 2026, 2027])))
def test_pinning_the_package_dates_changes_no_figure_and_no_digest(
    case: tuple[Ledger, Policy, str], years: set[int]
) -> None:
    led, pol, month = case
    before = led.evaluate(pol, month).report
    for y in sorted(years):
        _pin(led, y, sorted(holiday_dates("CA", y)))
    after = led.evaluate(pol, month).report
    assert _figures(after) == _figures(before)
    assert after.digest == before.digest
    assert [(h.country, h.year) for h in after.holidays] == [(h.country, h.year) for h in before.holidays]
    assert all(h.source == ("pinned" if h.year in years else package_version()) for h in after.holidays)


@PROPERTY
@given(windows(), st.sets(st.dates(date(2026, 1, 1), date(2026, 12, 31)), max_size=12))
def test_pinned_dates_are_the_dates_used_whatever_their_source(
    case: tuple[Ledger, Policy, str], dates: set[date]
) -> None:
    """A pin gives the figures and digest of a package holding those dates: the source is not hashed."""
    led, pol, month = case
    records = list(led.records)
    _pin(led, 2026, sorted(dates))
    pinned = led.evaluate(pol, month).report

    def package(country: str, year: int) -> frozenset[date]:
        return frozenset(dates) if (country, year) == ("CA", 2026) else holiday_dates(country, year)

    from projections.availability import evaluate

    same = evaluate(records, pol, 1, month, as_of_position=len(led.records), package=package,
                    package_source="a package").report
    assert _figures(same) == _figures(pinned)
    assert same.digest == pinned.digest
    assert [(h.country, h.year) for h in same.holidays] == [(h.country, h.year) for h in pinned.holidays]
    if any(h.year == 2026 for h in pinned.holidays):
        assert ("CA", 2026, "pinned") in _sources(pinned)


# --- the reporting view follows a pin ---------------------------------------------------------

REGISTER = ContractRegistered(policy=load_policy(POLICY.format(notice="2 business days",
                                                               hours="false").encode()))
OTHER = ContractRegistered(policy=load_policy(
    POLICY.format(notice="2 business days", hours="false").replace('"pin-2026"', '"other"')
    .replace('service = "web"', 'service = "api"').replace('holidays = "CA"', 'holidays = "BE"').encode()))
RECORDED = datetime(2026, 6, 1, tzinfo=UTC)


def _records(facts: list[Fact]) -> list[Recorded]:
    return [Recorded(position=i, recorded_at=RECORDED + timedelta(seconds=i), id=fact_id(f), fact=f)
            for i, f in enumerate(facts, 1)]


def _announce(mid: str, service: str, announced: str, starts: str, ends: str) -> list[Fact]:
    return [
        fact("maintenance_announced", service=service, maintenance=mid, announced_at=announced,
             starts_at=starts, ends_at=ends),
        fact("probe_failed", service=service, probe="p", at=starts),
        fact("probe_recovered", service=service, probe="p", at=ends),
    ]


def _pin_fact(country: str, dates: list[date]) -> Fact:
    return fact("holidays_pinned", country=country, year=2026, dates=tuple(d.isoformat() for d in dates))


W1 = ("2026-06-29T10:00:00-04:00", "2026-07-01T12:00:00-04:00", "2026-07-01T13:00:00-04:00")
BASE_FACTS: list[Fact] = [REGISTER, OTHER, *_announce("w1", "web", *W1), *_announce("w2", "api", *W1)]
NO_CANADA_DAY = [d for d in CA_2026 if d != date(2026, 7, 1)]


# The months a new announcement of the window would change: those it overlaps, back to the
# month before its quiet instant (the contracts are held from May, the clock's month in Toronto).
WINDOW_MONTHS = ["2026-05", "2026-06", "2026-07"]


@pytest.mark.parametrize(("country", "expected"), [("CA", [("pin-2026", m) for m in WINDOW_MONTHS]),
                                                   ("BE", [("other", m) for m in WINDOW_MONTHS]),
                                                   ("FR", [])])
def test_a_pin_changes_the_window_months_of_contracts_whose_calendar_names_it(
    country: str, expected: list[tuple[str, str]]
) -> None:
    records = _records([*BASE_FACTS, _pin_fact(country, [])])
    known = Known()
    known.add_all(records[:-1])
    known.settle()
    known.add_all(records[-1:])
    got = affected(records[-1:], known, known.settle())
    assert sorted(got.changed) == expected
    # And a month with a window reads the pin of its calendar's country, not another's.
    pin = records[-1].position
    assert (pin in known.positions_for("pin-2026", "2026-07")) is (country == "CA")
    assert (pin in known.positions_for("other", "2026-07")) is (country == "BE")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["CA", "BE"]), min_size=1, max_size=3), st.data())
def test_the_view_follows_pins_batch_by_batch(countries: list[str], data: st.DataObject) -> None:
    pins = [_pin_fact(c, data.draw(st.sampled_from([[], NO_CANADA_DAY, CA_2026]))) for c in countries]
    facts = list(BASE_FACTS)
    for p in pins:
        facts.insert(data.draw(st.integers(2, len(facts))), p)
    records = _records(facts)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(records)), max_size=4))) | {len(records)})
    view = MemoryView(records)
    projection = ReportingProjection(view)  # type: ignore[arg-type]
    start = 0
    for cut in cuts:
        projection.apply(records[start:cut])
        start = cut
        assert view.figures == full(records[:cut])
