"""What the support page draws (projections/support_clock.py): the open hours deadlines were counted on."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from ledger.events import Fact, HolidaysPinned, Recorded, TicketOpened, fact_id
from ledger.policy import resolve
from ledger.policy_check import load_policy
from ledger.support_hours import to_us
from projections.support import evaluate_support
from projections.support_clock import cited_positions, month_open_hours
from tests.integration.test_support_examples import POLICY_B

B = resolve(load_policy(POLICY_B))
NO_HOLIDAYS: frozenset[date] = frozenset()


def _records(facts: list[Fact]) -> list[Recorded]:
    at = datetime(2026, 11, 2, tzinfo=UTC)
    return [Recorded(position=i + 1, recorded_at=at, id=fact_id(f), fact=f) for i, f in enumerate(facts)]


def _days(hours: tuple[tuple[datetime, datetime], ...]) -> dict[date, timedelta]:
    tz = B.timezone
    out: dict[date, timedelta] = {}
    for a, b in hours:
        day = a.astimezone(tz).date()
        assert b.astimezone(tz).date() == day, "a Mon-Fri 08:00-17:00 piece lies within one day"
        out[day] = out.get(day, timedelta()) + (b - a)
    return out


def test_open_hours_are_the_clock_of_the_month() -> None:
    days = _days(month_open_hours([], B, "2026-10", package=lambda c, y: NO_HOLIDAYS))
    assert len(days) == 22  # the weekdays of October 2026
    assert set(days.values()) == {timedelta(hours=9)}
    assert all(d.weekday() < 5 for d in days)
    without = POLICY_B.split(b"[support]")[0]
    assert month_open_hours([], resolve(load_policy(without)), "2026-10") == ()


def test_open_hours_use_the_pins_the_report_used() -> None:
    """A pinned holiday closes its day on the page as in the deadlines, from its position on."""
    opened = TicketOpened(contract=B.contract_id, ticket="T-1", at=datetime(2026, 10, 13, 16, 30, tzinfo=UTC),
                          severity="production_down")  # 18:30 Zurich, Tuesday: due Wednesday 09:00
    pin = HolidaysPinned(country="CH", year=2026, dates=("2026-10-14",))
    cases: list[tuple[list[Fact], bool]] = [([opened], False), ([opened, pin], True)]
    for facts, closed in cases:
        records = _records(facts)
        days = _days(month_open_hours(records, B, "2026-10", package=lambda c, y: NO_HOLIDAYS))
        assert (date(2026, 10, 14) not in days) is closed
        report = evaluate_support(records, B, 1, "2026-10", as_of_position=len(facts),
                                  package=lambda c, y: NO_HOLIDAYS, package_source="test")
        deadline = report.tickets[0].deadline
        assert deadline is not None
        assert deadline.date() == (date(2026, 10, 15) if closed else date(2026, 10, 14))
        first_open_after = min(a for a, _ in month_open_hours(records, B, "2026-10",
                                                              package=lambda c, y: NO_HOLIDAYS)
                               if a > opened.at)
        assert to_us(deadline) == to_us(first_open_after) + 3600 * 1_000_000
        assert cited_positions(report) == [1]
