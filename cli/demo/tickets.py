"""The demo month's support tickets (INTERFACE.md section 6), per example contract that promises support.

Told on the same ``_Story`` as the availability facts, without drawing on its random
generator: the availability facts, and so the availability figures, stay exactly as
they were. What each contract's tickets show:

- B (``sla-b-2026``): the month of ``docs/examples/sla-b-tickets-2026-10.ndjson``
  (met, breached, pending, a ticket over a weekend, a severity change before the
  first response, an unknown severity, time logged against the quota, on account
  questions and on an exempt bug), plus a ticket of the month before, whose time is
  drawn from the same subscription year;
- C (``sla-c-en-2026``, ``sla-c-fr-2026``): a "medium" ticket opened on the Friday before the
  second Monday (Thanksgiving in Ontario, not in Belgium) and answered on the Tuesday:
  met under the English text, breached under the French one; a "high" ticket during
  the main incident, a "low" one left pending, and two recoveries (14 h and 30 h of data lost);
- D (``sla-d-2026``): three level-1 tickets whose mean is below 15 minutes though one
  of them took 25 (across the weekend's closed hours), a level-2 ticket opened on a
  Saturday, a late level-3 one, and level-3 engagement of two downtime stretches
  (the main incident within 10 minutes, the late-night patch outage 20 minutes late).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Protocol

from ledger.events import (
    Fact,
    RecoveryPerformed,
    SupportEngaged,
    SupportTimeLogged,
    TicketClassified,
    TicketKind,
    TicketOpened,
    TicketResponded,
    TicketSeverityChanged,
)

_MONDAY, _TUESDAY, _WEDNESDAY, _THURSDAY, _FRIDAY, _SATURDAY = range(6)
_MINUTE = timedelta(minutes=1)


class _Service(Protocol):
    @property
    def contract(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def tickets(self) -> str: ...


class _Story(Protocol):
    """What the tickets need of ``cli.demo.story._Story`` (not imported: the story imports this module)."""

    @property
    def svc(self) -> _Service: ...
    @property
    def month(self) -> str: ...
    @property
    def first(self) -> date: ...
    def at(self, day: date, hh: int, mm: int, ss: int = 0) -> datetime: ...
    def local(self, t: datetime) -> datetime: ...
    def nth(self, weekday: int, n: int) -> date: ...
    def last(self, weekday: int) -> date: ...
    def record(self, arrival: datetime, fact: Fact) -> None: ...


class _Desk:
    """Records one contract's tickets on a story: each fact arrives a minute after it happened."""

    def __init__(self, story: _Story, prefix: str) -> None:
        self.s = story
        self.prefix = prefix

    def name(self, n: int, month: str | None = None) -> str:
        return f"{self.prefix}-{(month or self.s.month).replace('-', '')[2:]}-{n:02d}"

    def fact(self, at: datetime, fact: Fact) -> None:
        self.s.record(at + _MINUTE, fact)

    def ticket(self, name: str, day: date, hh: int, mm: int, severity: str, title: str) -> datetime:
        at = self.s.at(day, hh, mm)
        contract = self.s.svc.contract
        self.fact(at, TicketOpened(contract=contract, ticket=name, at=self.s.local(at), severity=severity,
                                   title=title))
        return at

    def respond(self, name: str, at: datetime, kind: TicketKind | None = None) -> None:
        self.fact(at, TicketResponded(ticket=name, at=self.s.local(at)))
        if kind is not None:
            self.fact(at, TicketClassified(ticket=name, kind=kind))

    def log(self, name: str, at: datetime, seconds: int) -> None:
        self.fact(at, SupportTimeLogged(ticket=name, at=self.s.local(at), seconds=seconds))


def _seed_b(s: _Story) -> None:
    d = _Desk(s, "T")
    day = timedelta(days=1)
    eve = s.first - day
    prev = d.name(0, eve.strftime("%Y-%m"))  # 00: no other month's demo names it
    opened = d.ticket(prev, s.first - 7 * day, 9, 0, "limited", "Training for the new bookkeeper")
    d.respond(prev, opened + timedelta(hours=1))
    d.log(prev, s.at(s.first - 6 * day, 14, 0), 9000)
    t1 = d.ticket(d.name(1), s.first, 9, 10, "production_down", "Login page returns 502")
    d.respond(d.name(1), t1 + timedelta(minutes=30), "global_issue")
    fri = s.nth(_FRIDAY, 1)
    d.ticket(d.name(2), fri, 16, 30, "moderate", "Export to CSV drops accents")
    d.respond(d.name(2), s.at(fri + 3 * day, 15, 0), "bug")
    d.log(d.name(2), s.at(fri + 4 * day, 10, 0), 3600)
    tue = s.nth(_TUESDAY, 1)
    d.ticket(d.name(3), tue, 15, 0, "serious", "Reports take minutes to load")
    d.respond(d.name(3), s.at(tue + day, 11, 30))
    sat = s.nth(_SATURDAY, 2)
    d.ticket(d.name(4), sat, 11, 0, "production_down", "Nobody can sign in since this morning")
    d.respond(d.name(4), s.at(sat + 2 * day, 8, 20))
    wed = s.nth(_WEDNESDAY, 2)
    d.ticket(d.name(5), wed, 10, 0, "limited", "How do I add a second accountant?")
    d.respond(d.name(5), s.at(wed + day, 14, 0), "account")
    d.log(d.name(5), s.at(wed + day, 16, 0), 7200)
    tue3 = s.nth(_TUESDAY, 3)
    t6 = d.ticket(d.name(6), tue3, 10, 0, "moderate", "Invoices are not sent")
    raised = t6 + timedelta(minutes=30)
    d.fact(raised, TicketSeverityChanged(ticket=d.name(6), at=s.local(raised), severity="production_down"))
    d.respond(d.name(6), t6 + timedelta(hours=2))
    d.ticket(d.name(7), s.nth(_WEDNESDAY, 3), 9, 0, "urgent", "Please call me back")
    mon = s.last(_MONDAY)
    d.ticket(d.name(8), mon, 16, 0, "serious", "Slow after the update")
    d.respond(d.name(8), s.at(mon + day, 9, 30))
    d.ticket(d.name(9), s.last(_FRIDAY), 14, 0, "moderate", "Import of bank statements fails")


def _seed_c(s: _Story) -> None:
    d = _Desk(s, s.svc.service)
    day = timedelta(days=1)
    wed = s.nth(_WEDNESDAY, 1)
    high = d.ticket(d.name(1), wed, 14, 10, "high", "The platform does not load")
    d.respond(d.name(1), high + timedelta(minutes=25), "global_issue")
    # The recovery after it: the snapshot of 02:00 restored at 16:00, 14 h of data lost (at most 24 h).
    restored = s.at(wed, 16, 0)
    d.fact(restored, RecoveryPerformed(service=s.svc.service, recovery=f"{d.prefix}-{s.month}-rec-1",
                                       at=s.local(restored), restored_to=s.local(s.at(wed, 2, 0))))
    fri = s.nth(_MONDAY, 2) - 3 * day
    d.ticket(d.name(2), fri, 17, 0, "medium", "Applications cannot be exported")
    d.respond(d.name(2), s.at(fri + 4 * day, 10, 0))
    thu = s.last(_THURSDAY)
    late = s.at(thu, 4, 0)
    d.fact(late, RecoveryPerformed(service=s.svc.service, recovery=f"{d.prefix}-{s.month}-rec-2",
                                   at=s.local(late), restored_to=s.local(late - timedelta(hours=30))))
    d.ticket(d.name(3), s.last(_FRIDAY), 16, 0, "low", "Wording of the reminder e-mail")


def _seed_d(s: _Story) -> None:
    d = _Desk(s, "BI")
    day = timedelta(days=1)
    fri = s.nth(_FRIDAY, 1)
    mon = fri + 3 * day
    d.ticket(d.name(1), mon, 10, 0, "level1", "How do I add a volunteer role?")
    d.respond(d.name(1), s.at(mon, 10, 12))
    d.ticket(d.name(2), fri, 15, 55, "level1", "Where do I export hours?")
    d.respond(d.name(2), s.at(mon, 5, 20))  # 5 min on Friday, 20 on Monday: 25 min of open time
    d.ticket(d.name(3), mon + 2 * day, 9, 0, "level1", "Can I print a schedule?")
    d.respond(d.name(3), s.at(mon + 2 * day, 9, 5))
    sat = s.nth(_SATURDAY, 1)
    d.ticket(d.name(4), sat, 11, 0, "level2", "Best way to run a volunteer drive")
    d.respond(d.name(4), s.at(sat + 2 * day, 15, 0))
    thu = s.nth(_THURSDAY, 2)
    d.ticket(d.name(5), thu, 10, 0, "level3", "API token rejected")
    d.respond(d.name(5), s.at(thu + 5 * day, 9, 0))
    # Level 3 engaged on the main incident's outage (14:00 on the first Wednesday) within
    # 10 minutes, and on the late-night patch outage (23:05 on the third Tuesday) 20 minutes late.
    for at in (s.at(s.nth(_WEDNESDAY, 1), 14, 6), s.at(s.nth(_TUESDAY, 3), 23, 25)):
        d.fact(at, SupportEngaged(service=s.svc.service, level="level3", at=s.local(at)))


def tell_tickets(story: _Story, tickets: bool = True) -> None:
    """The support facts of ``story``'s contract (none for a contract that promises none, or not ``tickets``).

    ``tickets=False``: a second demo month in a store whose quota year should hold one
    month's use (``scripts/html-examples``' DST month).
    """
    tell = {"B": _seed_b, "C": _seed_c, "D": _seed_d}.get(story.svc.tickets)
    if tell is not None and tickets:
        tell(story)
