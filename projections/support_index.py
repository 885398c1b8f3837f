"""The support facts of section 6 as the reporting view indexes them: which a contract-month's figures read.

``projections.affected.Known`` keeps one ``SupportIndex`` beside its availability index.
It holds positions and instants only, like the rest of ``Known``: a ticket's openings
(per contract), the facts that refer to it and the instants of its time logs; a
service's engagements (per level) and recoveries; a country's pins. ``positions``
names the facts ``projections.support.evaluate_support`` needs for one contract-month,
so that the fold given only those gives the report it gives from every fact
(``ledger support`` reads all of its contract's tickets and its service's facts):

- the tickets whose earliest opening for the contract falls in the month, whole, if the contract
  is the ticket's (that of its first opening by position: the ledger refuses a ticket id for a
  second contract, and the fold ignores such an opening);
- with a quota, every ticket with time logged in the year before the month's end
  (the subscription year holding the month starts less than a year before it), whole:
  its kind decides whether its time is drawn;
- with an engagement rule, the service's engagements of that level from the month's
  start to the first one at or after its end (a stretch starting in the month is
  answered by the first engagement at or after its start);
- with a recovery rule, the service's recoveries in the month;
- every pin of a country the support clock names (the fold takes the latest per year).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from operator import itemgetter
from typing import Final
from zoneinfo import ZoneInfo

from ledger.calendar import month_bounds
from ledger.events import (
    HolidaysPinned,
    Recorded,
    RecoveryPerformed,
    SupportEngaged,
    SupportTimeLogged,
    TicketClassified,
    TicketOpened,
    TicketResolved,
    TicketResponded,
    TicketSeverityChanged,
)
from ledger.policy import PolicyFile, SupportSection
from projections.timeline import to_us

# The facts about one ticket, found by its id (index key ``t:``).
TICKET_FACTS: Final = (TicketSeverityChanged, TicketResponded, TicketClassified, TicketResolved,
                       SupportTimeLogged)
SUPPORT_FACTS: Final = frozenset({TicketOpened, *TICKET_FACTS, SupportEngaged, RecoveryPerformed,
                                  HolidaysPinned})
_POSITION: Final = itemgetter(2)  # of an opening (contract, at, position)
# A subscription year starts less than this before the start of any month it holds.
_YEAR_BACK: Final = timedelta(days=367) // timedelta(microseconds=1)


def support_section(policy: PolicyFile) -> SupportSection | None:
    """The policy's [support] section, if it has one."""
    sec = policy.support
    return sec if isinstance(sec, SupportSection) else None


def support_countries(policy: PolicyFile) -> list[str]:
    """The countries whose holidays a policy's support clock depends on, sorted."""
    sec = support_section(policy)
    if sec is None:
        return []
    named = {c.holidays for c in sec.closures}
    if sec.holidays is not None:
        named.add(sec.holidays)
    return sorted(named)


class Ticket:
    """One ticket id: its openings (contract, at, position), the facts about it, its logs' instants."""

    __slots__ = ("logs", "openings", "refs")

    def __init__(self) -> None:
        self.openings: list[tuple[str, int, int]] = []
        self.refs: list[int] = []
        self.logs: list[int] = []

    def owner(self) -> str | None:
        """The contract of its first opening by position: the ticket's (an opening for another
        contract is one the ledger refuses; the fold ignores it, ``support._collect``)."""
        return min(self.openings, key=_POSITION)[0] if self.openings else None

    def first_opening(self, contract: str) -> int | None:
        """The earliest opening for ``contract`` (the one the fold counts), or None."""
        ats = [at for c, at, _ in self.openings if c == contract]
        return min(ats) if ats else None

    def positions(self, contract: str) -> Iterator[int]:
        """Its openings for ``contract`` and every fact about it."""
        yield from (pos for c, _, pos in self.openings if c == contract)
        yield from self.refs


class SupportIndex:
    """Section 6's facts by ticket, contract, service and country (positions and instants).

    A plain class, not a dataclass: every process that rebuilds builds one, and a dataclass
    costs its generated code at import.
    """

    def __init__(self) -> None:
        self.tickets: dict[str, Ticket] = defaultdict(Ticket)
        self.of_contract: dict[str, set[str]] = defaultdict(set)
        # Per contract, the first and last instant a ticket was opened: its rows run that far too.
        self.opened: dict[str, tuple[int, int]] = {}
        # service -> level -> [(at, position)], sorted when read (``engagements``).
        self.engaged: dict[str, dict[str, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
        self._unsorted: set[tuple[str, str]] = set()
        self.recoveries: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.pins: dict[str, list[int]] = defaultdict(list)

    def add(self, rec: Recorded) -> str | None:
        """Fold one support fact (any order); the contract whose ticket span it widened, if any."""
        f, pos = rec.fact, rec.position
        if isinstance(f, TicketOpened):
            at = to_us(f.at)
            self.tickets[f.ticket].openings.append((f.contract, at, pos))
            self.of_contract[f.contract].add(f.ticket)
            lo, hi = self.opened.get(f.contract, (at, at))
            if f.contract not in self.opened or at < lo or at > hi:
                self.opened[f.contract] = (min(lo, at), max(hi, at))
                return f.contract
        elif isinstance(f, TICKET_FACTS):
            t = self.tickets[f.ticket]
            t.refs.append(pos)
            if isinstance(f, SupportTimeLogged):
                t.logs.append(to_us(f.at))
        elif isinstance(f, SupportEngaged):
            self.engaged[f.service][f.level].append((to_us(f.at), pos))
            self._unsorted.add((f.service, f.level))
        elif isinstance(f, RecoveryPerformed):
            self.recoveries[f.service].append((to_us(f.at), pos))
        elif isinstance(f, HolidaysPinned):
            self.pins[f.country].append(pos)
        return None

    def engagements(self, service: str, level: str) -> list[tuple[int, int]]:
        """A service's engagements of ``level``, (at, position), in the fold's order."""
        levels = self.engaged.get(service)
        if levels is None or level not in levels:
            return []
        found = levels[level]
        if (service, level) in self._unsorted:
            found.sort()
            self._unsorted.discard((service, level))
        return found

    def positions(self, contract: str, month: str, policy: PolicyFile) -> list[int]:
        """The support facts one contract-month's figures read (see the module's docstring), unsorted."""
        sec = support_section(policy)
        if sec is None:
            return []
        ms, me = (to_us(b) for b in month_bounds(month, ZoneInfo(policy.contract.timezone)))
        service = policy.contract.service
        out: list[int] = []
        for ticket in self.of_contract.get(contract, ()):
            t = self.tickets[ticket]
            if t.owner() != contract:
                continue  # another contract's ticket id: the fold reads none of it for this one
            first = t.first_opening(contract)
            if (first is not None and ms <= first < me) or (
                    sec.quota is not None and any(ms - _YEAR_BACK <= at < me for at in t.logs)):
                out.extend(t.positions(contract))
        if sec.engagement is not None:
            found = self.engagements(service, sec.engagement.level)
            i = bisect_left(found, (ms, -1))
            j = bisect_left(found, (me, -1))
            if j < len(found):  # the first at or after the month's end, and any at that same instant
                j = bisect_left(found, (found[j][0] + 1, -1))
            out.extend(pos for _, pos in found[i:j])
        if sec.recovery is not None:
            out.extend(pos for at, pos in self.recoveries.get(service, ()) if ms <= at < me)
        for country in support_countries(policy):
            out.extend(self.pins.get(country, ()))
        return out
