"""Each ticket's explanation (issue 18): worked examples, the arithmetic in the test, on the shipped policies.

Holiday dates come from a lookup given here (not the installed package), so every
step of each example is written out below; the explanation must agree with the
fold's own deadline and status, which are asserted too.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from cli.demo.cast import EXAMPLES_DIR
from ledger.events import Fact, Recorded, TicketOpened, TicketResponded, TicketSeverityChanged, fact_id
from ledger.policy import Policy, resolve
from ledger.policy_check import load_policy
from projections.support import evaluate_support
from projections.support_explain import explain_tickets, span, when
from projections.support_model import SupportReport

ZURICH = ZoneInfo("Europe/Zurich")
TORONTO = ZoneInfo("America/Toronto")
B = resolve(load_policy((EXAMPLES_DIR / "sla-b.toml").read_bytes()))
D = resolve(load_policy((EXAMPLES_DIR / "sla-d.toml").read_bytes()))
# Thanksgiving (Monday 12 October 2026) as the only Canadian holiday; no Swiss, UK or Australian one.
HOLIDAYS = {("CA", 2026): frozenset({date(2026, 10, 12)})}


def lookup(country: str, year: int) -> frozenset[date]:
    return HOLIDAYS.get((country, year), frozenset())


def local(tz: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=tz)


def run(policy: Policy, facts: list[Fact], month: str = "2026-10") -> tuple[SupportReport, dict[str, str]]:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    records = [Recorded(position=i + 1, recorded_at=at, id=fact_id(f), fact=f) for i, f in enumerate(facts)]
    report = evaluate_support(records, policy, 1, month, as_of_position=len(records), package=lookup)
    return report, explain_tickets(records, policy, report, package=lookup)


def test_b_across_a_weekend() -> None:
    # "moderate": 1 business day. Opened Friday 2 October 18:00 Zurich, after the 17:00 close:
    # the clock opens Monday 5 October 08:00; one business day on, same time: Tuesday 6 October
    # 08:00. Answered Tuesday 07:59 (support still closed): the open time is Monday's 08:00-17:00, 9 h.
    opened, answered = local(ZURICH, 2026, 10, 2, 18), local(ZURICH, 2026, 10, 6, 7, 59)
    report, why = run(B, [TicketOpened(contract="sla-b-2026", ticket="T-1", at=opened, severity="moderate"),
                          TicketResponded(ticket="T-1", at=answered)])
    (line,) = report.tickets
    assert (line.deadline, line.status) == (local(ZURICH, 2026, 10, 6, 8), "met")
    assert why == {"T-1": "opened Fri 2 Oct 18:00, clock closed until Mon 5 Oct 08:00, 1 business day -> "
                          "Tue 6 Oct 08:00; answered Tue 6 Oct 07:59 after 9h of open time: met"}


def test_b_across_the_end_of_dst() -> None:
    # "production_down": 1 h of open time. Opened Friday 23 October 16:30 CEST (14:30 UTC): 30 min
    # until 17:00. Summer time ends on Sunday 25th; Monday 26th opens at 08:00 CET (07:00 UTC),
    # 30 min more: due 08:30 CET = 07:30 UTC (not 06:30 UTC, as a fixed +02:00 would put it).
    # Answered 08:45 CET: 30 + 45 = 75 min of open time, after the deadline.
    opened = datetime(2026, 10, 23, 14, 30, tzinfo=UTC)
    answered = datetime(2026, 10, 26, 7, 45, tzinfo=UTC)
    report, why = run(B, [TicketOpened(contract="sla-b-2026", ticket="T-2", at=opened,
                                       severity="production_down"),
                          TicketResponded(ticket="T-2", at=answered)])
    (line,) = report.tickets
    assert line.deadline == datetime(2026, 10, 26, 7, 30, tzinfo=UTC)
    assert line.status == "breached"
    assert why["T-2"] == ("opened Fri 23 Oct 16:30, 1h of open time -> Mon 26 Oct 08:30; "
                          "answered Mon 26 Oct 08:45 after 1h15m of open time: breached")


def test_b_a_severity_change_before_the_response_and_no_response() -> None:
    # Opened "moderate" Tuesday 20 October 10:00, "production_down" from 10:30, answered 12:00:
    # the 1 h target from the opening applies, due 11:00: breached. A second ticket, opened Friday
    # 30 October 14:00 and never answered: 1 business day -> Monday 2 November 14:00 (CET), after
    # the month's end: pending, with 3 h of open time (14:00-17:00) up to the horizon.
    report, why = run(B, [
        TicketOpened(contract="sla-b-2026", ticket="T-3", at=local(ZURICH, 2026, 10, 20, 10),
                     severity="moderate"),
        TicketSeverityChanged(ticket="T-3", at=local(ZURICH, 2026, 10, 20, 10, 30),
                              severity="production_down"),
        TicketResponded(ticket="T-3", at=local(ZURICH, 2026, 10, 20, 12)),
        TicketOpened(contract="sla-b-2026", ticket="T-4", at=local(ZURICH, 2026, 10, 30, 14),
                     severity="moderate"),
    ])
    assert [t.status for t in report.tickets] == ["breached", "pending"]
    assert why["T-3"] == ("opened Tue 20 Oct 10:00, moderate -> production_down at Tue 20 Oct 10:30, "
                          "1h of open time -> Tue 20 Oct 11:00; "
                          "answered Tue 20 Oct 12:00 after 2h of open time: breached")
    assert why["T-4"] == ("opened Fri 30 Oct 14:00, 1 business day -> Mon 2 Nov 14:00; "
                          "no response recorded, 3h of open time so far: pending")


def test_d_a_closure_on_a_canadian_holiday() -> None:
    # D is open from Monday 05:00 to Friday 16:00 Eastern, closed 09:00-17:00 on Canadian holidays.
    # "level2" opened on Thanksgiving, Monday 12 October 10:00: closed until 17:00; one business day
    # on (D has no whole-day holidays: Tuesday is one), same time: Tuesday 13 October 17:00 (open:
    # the week's span runs through the night). Answered Tuesday 16:00: 23 h of open time, met.
    report, why = run(D, [
        TicketOpened(contract="sla-d-2026", ticket="D-1", at=local(TORONTO, 2026, 10, 12, 10),
                     severity="level2"),
        TicketResponded(ticket="D-1", at=local(TORONTO, 2026, 10, 13, 16)),
        # "level1" (a mean target) opened the same morning at 08:50: 10 min to the closure, then from
        # 17:00, 5 min more: 17:05. Answered at 17:02: 12 min of open time.
        TicketOpened(contract="sla-d-2026", ticket="D-2", at=local(TORONTO, 2026, 10, 12, 8, 50),
                     severity="level1"),
        TicketResponded(ticket="D-2", at=local(TORONTO, 2026, 10, 12, 17, 2)),
    ])
    assert [t.ticket for t in report.tickets] == ["D-2", "D-1"]
    assert why["D-1"] == ("opened Mon 12 Oct 10:00, clock closed until Mon 12 Oct 17:00, 1 business day -> "
                          "Tue 13 Oct 17:00; answered Tue 13 Oct 16:00 after 23h of open time: met")
    assert why["D-2"] == ("opened Mon 12 Oct 08:50, 15m of open time (counts toward the month's mean) -> "
                          "Mon 12 Oct 17:05; answered Mon 12 Oct 17:02 after 12m of open time: met")


def test_a_policy_without_support_explains_nothing() -> None:
    a = resolve(load_policy((EXAMPLES_DIR / "sla-a.toml").read_bytes()))
    assert run(a, [])[1] == {}


def test_instants_and_lengths_as_written() -> None:
    assert when(datetime(2026, 10, 2, 16, 0, 30, 250000, tzinfo=UTC), ZURICH) == "Fri 2 Oct 18:00:30.25"
    lengths = [span(Decimal(s)) for s in (0, 45 * 60, 7200, 23 * 3600 + 59 * 60, 3630)]
    assert lengths == ["0m", "45m", "2h", "23h59m", "1h0m30s"]
    assert span(Decimal("0.5")) == "0m0.5s"
