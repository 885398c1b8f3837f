"""The support fold on the microsecond of its edges (helper hAT): month bounds, deadlines, horizons.

Tickets are opened at a month's local midnight, the microsecond either side, on the DST
changes of October and November 2026 and at 23:59:59.999999 local. The properties read
INTERFACE.md 6.2 directly: a ticket belongs to the one month holding its opening; a response
at its deadline is met and one a microsecond later breached; with no response, it is pending
at a horizon equal to its deadline and breached a microsecond later.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.calendar import local_midnight, month_bounds, wall_instant
from ledger.events import Fact, Recorded, TicketOpened, TicketResponded, fact_id
from projections.affected import add_months
from projections.support import evaluate_support
from projections.support_model import SupportReport, TicketLine
from tests.unit.test_support_fold import POLICIES, SEVERITIES

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MONTHS = ("2026-09", "2026-10", "2026-11")
US = timedelta(microseconds=1)


def anchors(which: str) -> list[datetime]:
    tz = POLICIES[which].timezone
    out = [b for m in (*MONTHS, "2026-12") for b in month_bounds(m, tz)]
    out += [datetime(2026, 10, 25, 1, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC)]  # DST ends
    out += [wall_instant(datetime(2026, 10, d).date(), time(23, 59, 59, 999_999), tz) for d in (1, 16, 30)]
    out += [local_midnight(datetime(2026, 10, d).date(), tz) for d in (5, 12, 26)]
    return out


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, datetime, str]:
    which = draw(st.sampled_from(sorted(POLICIES)))
    at = draw(st.sampled_from(anchors(which))) + draw(st.sampled_from([0, 0, -1, 1, -3600_000_000])) * US
    return which, at, draw(st.sampled_from([s for s in SEVERITIES[which] if s != "unknown"]))


def _run(which: str, facts: list[Fact], month: str, replay_point: datetime | None = None) -> SupportReport:
    records = [Recorded(position=i + 1, recorded_at=datetime(2027, 1, 1, tzinfo=UTC), id=fact_id(f), fact=f)
               for i, f in enumerate(facts)]
    return evaluate_support(records, POLICIES[which], 1, month, as_of_position=len(records),
                            replay_point=replay_point)


def _line(report: SupportReport) -> TicketLine | None:
    return next((t for t in report.tickets if t.ticket == "T"), None)


@SETTINGS
@given(case=cases())
def test_a_ticket_is_in_the_month_of_its_opening_and_its_deadline_is_exact(
        case: tuple[str, datetime, str]) -> None:
    which, at, severity = case
    policy = POLICIES[which]
    opened = TicketOpened(contract=policy.contract_id, ticket="T", at=at, severity=severity)
    bounds = {m: month_bounds(m, policy.timezone) for m in MONTHS}
    holding = [m for m in MONTHS if bounds[m][0] <= at < bounds[m][1]]
    lines = {m: _line(_run(which, [opened], m)) for m in MONTHS}
    assert [m for m, line in lines.items() if line is not None] == holding
    if not holding:
        return
    month = holding[0]
    line = lines[month]
    assert line is not None
    assert line.opened_at == at
    if line.deadline is None or line.target.startswith("mean"):
        return
    due = line.deadline
    assert due >= at
    # A response at the deadline is met, a microsecond later breached, in the month of the opening.
    for response, status in ((due, "met"), (due + US, "breached")):
        got = _line(_run(which, [opened, TicketResponded(ticket="T", at=response)], month))
        assert got is not None
        assert (got.deadline, got.status) == (due, status)
    # No response: pending while the horizon has not passed the deadline, breached after it.
    end = month_bounds(month, policy.timezone)[1]
    for point, status in ((due, "pending"), (due + US, "breached")):
        if point < end:
            got = _line(_run(which, [opened], month, replay_point=point))
            assert got is not None
            assert got.status == status, (point, due)
    assert _line(_run(which, [opened], add_months(month, 1))) is None
