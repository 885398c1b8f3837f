"""What the follower remembers: every contract's versions, and a ``Known`` per service group it touches.

The follower (``projections.tracked.projection``) does not fold the ledger from its start.
It holds the versions of every contract (read through the key index, ``k:``), the ledger's
clock, and, per service group a page touches (services joined by the contracts that name
them, as the rebuild groups them), a ``Known`` loaded through the key index as of the
position before the page: the same reads as the rebuild's group (its services' facts,
claims and versions, the corrections that refer to their ids, its contracts' tickets and
the pins of the countries its calendars name), but for its probe reports (nearly all of a
service's facts): those only from a floor the page sets (``page_floor``: a few days before
the month before the earliest month its facts act in) plus each probe's first day and last day before
it, so that a group holds a window of its history, not all of it (``Known.floor``). A page
whose changes reach before a group's window loads that group again from further back, then
whole (``projection.ReportingProjection.apply``). Loaded groups are kept for the next pages
up to a budget of folded facts, least recently used first out.

A page's facts go to the groups whose rebuild would read them (``Directory.route``): a fact
of a service to that service's group, a claim, version or ticket opening to its contract's,
a correction to the group of the service whose fact opened the id it names (found in
``ledger_names``), a ticket's other facts to its contract's, a pin to every group whose
versions name the country. An opening whose id is first used in the page brings the
corrections recorded before it (a resolution recorded before its incident), read by key. An
opening of a ticket id another contract opened first (which the ledger refuses, but a fold given
it ignores: ``support_index.Ticket.owner``) brings that first opening: from the page, or by key.

Size: over 400 lines because the directory, the group loads and the grouping the rebuild
shares (``service_groups``) are one subject: what a page's facts are routed to and read with.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo

from ledger.calendar import month_bounds
from ledger.contracts import ContractVersion, add_version
from ledger.events import (
    CONTRACT_TYPES,
    ContractAmended,
    CreditClaimFiled,
    ExclusionDeclared,
    ExclusionRevoked,
    Fact,
    ForceMajeureDeclared,
    HolidaysPinned,
    IncidentOpened,
    IncidentResolved,
    MaintenanceAnnounced,
    MaintenanceCancelled,
    MaintenanceCompleted,
    ProbeFailed,
    ProbeRecovered,
    Recorded,
    TicketOpened,
    decode_state,
)
from ledger.persistence.consistency import UNIT, ticket_owner
from ledger.persistence.keys import (
    EXCLUSION,
    INCIDENT,
    MAINTENANCE,
    TICKET,
    holidays_key,
    index_keys,
    month_keys,
    opened_key,
    prefix_end,
    probe_prefix,
    reference_key,
    service_ranges,
    ticket_key,
    tickets_key,
    utc_day,
)
from projections.affected import Known, add_months, month_of
from projections.support_index import SUPPORT_FACTS, TICKET_FACTS, support_countries
from projections.timeline import from_us, to_us

GroupKey = tuple[str, ...]  # a group's services, sorted


class GroupReader(Protocol):
    """What loading a group reads (``LedgerRecorder``'s keyed reads)."""

    def read_keyed_states(self, keys: Sequence[str], upto: int): ...  # type: ignore[no-untyped-def]

    def read_key_prefixes(self, prefixes: Sequence[str], upto: int): ...  # type: ignore[no-untyped-def]
    def read_key_range_states(self, lo: str, hi: str, upto: int): ...  # type: ignore[no-untyped-def]
    def edge_keys(self, ranges: Sequence[tuple[str, str]], upto: int, *, last: bool = False): ...  # type: ignore[no-untyped-def]
    def first_keys_by_name(self, prefixes: Sequence[str], upto: int, tail: int): ...  # type: ignore[no-untyped-def]
    def read_key_ranges_states(self, ranges: Sequence[tuple[str, str]], upto: int): ...  # type: ignore[no-untyped-def]


@dataclass
class Group:
    """A loaded service group: its index and how many facts it folded (what it costs to keep)."""

    services: frozenset[str]
    contracts: frozenset[str]
    known: Known
    facts: int = 0

    @property
    def floor(self) -> int | None:
        """Where its window starts (``Known.floor``; None: its whole history)."""
        return self.known.floor


def countries(versions: Iterable[ContractVersion]) -> set[str]:
    """The countries whose pins a group's folds read: business calendars and support clocks."""
    out: set[str] = set()
    for v in versions:
        if v.policy.calendar is not None and v.policy.calendar.holidays is not None:
            out.add(v.policy.calendar.holidays)
        out.update(support_countries(v.policy))
    return out


def load_groups(reader: GroupReader, directory: Directory, keys: Sequence[GroupKey], upto: int,
                clock: datetime | None, floors: Mapping[GroupKey, int | None] | None = None,
                ) -> dict[GroupKey, Group]:
    """Groups' ``Known`` as of ``upto``: the rebuild's reads of each (``rebuilding._group_reports``).

    The reads of many groups are made at once (their services' facts, claims and versions in
    one read, the corrections of their ids in a second, their tickets, their pins) and each
    fact goes to its group, in the order the group's own reads would give it: the same index
    as reading the groups one at a time, in a few statements instead of a few per group.

    ``floors``: a group named there with an instant holds a window from it (``Known.floor``):
    its services' probe reports from that instant's UTC day on, and each probe's first day and
    last day before it (``_probe_window``); everything else as the rebuild reads it. A reader
    that cannot find keys' edges in bulk loads every group whole.
    """
    if floors is None or not hasattr(reader, "first_keys_by_name"):
        floors = {}
    knowns = {key: Known(floor=floors.get(key)) for key in keys}
    seen: dict[GroupKey, set[int]] = {key: set() for key in keys}
    for known in knowns.values():
        known.see_clock(clock)

    def fold(key: GroupKey, rec: Recorded) -> None:
        if rec.position not in seen[key]:
            seen[key].add(rec.position)
            knowns[key].add(rec)

    services = [s for key in keys for s in directory.members[key][0]]
    contracts = [c for key in keys for c in directory.members[key][1]]
    first = [*month_keys(services, contracts, versions=True), *(tickets_key(c) for c in contracts)]
    refs: dict[str, set[GroupKey]] = {}
    of_service = directory.group_of_service
    # Most of a group's history: every position once, in order (``fold``'s check is for the reads after).
    # ``read_service_states``' reads, with every service's probe reports in one statement instead of
    # one per service: on a busy machine each round trip waits for the server to be scheduled.
    history = {position: decode_state(position, state)
               for position, state in reader.read_keyed_states(first, upto)}
    whole = [s for group in keys if floors.get(group) is None for s in directory.members[group][0]]
    for rec in reader.read_key_prefixes(service_ranges(month_keys(whole, ())), upto):
        history.setdefault(rec.position, rec)
    windowed = [(s, floor) for group in keys if (floor := floors.get(group)) is not None
                for s in directory.members[group][0]]
    if windowed:
        rows, partial = _probe_window(reader, windowed, upto)
        for position, state in rows.items():
            if position not in history:
                history[position] = decode_state(position, state)
        for group in keys:
            if knowns[group].floor is not None and partial.isdisjoint(directory.members[group][0]):
                knowns[group].floor = None  # no probe report before the floor: the whole history
    for position in sorted(history):
        rec = history[position]
        fact = rec.fact
        t = type(fact)
        if t in _ROUTED_APART:
            key = directory.owner(fact)
        else:  # a fact of its service (``owner``'s last case)
            service = getattr(fact, "service", None)
            key = of_service.get(service) if service is not None else None
        if key is None or (into := knowns.get(key)) is None:
            continue
        seen[key].add(position)
        into.add(rec)
        if t in _OPENINGS and (ref := reference_key(fact)) is not None:
            refs.setdefault(ref, set()).add(key)
    if refs:
        _fold_by_key(reader, refs, upto, fold)
    tickets: dict[str, set[GroupKey]] = {}
    group_of = {c: key for key in keys for c in directory.members[key][1]}
    # Every contract's ticket openings in one read (``u:<contract>@...``), each to its contract's group.
    for r in reader.read_key_prefixes([opened_key(c, "") for c in sorted(group_of)], upto):
        if isinstance(r.fact, TicketOpened) and r.fact.contract in group_of:
            tickets.setdefault(ticket_key(r.fact.ticket), set()).add(group_of[r.fact.contract])
    if tickets:
        _fold_by_key(reader, tickets, upto, fold)
    pins: dict[str, set[GroupKey]] = {}
    for key in keys:
        for country in directory.members[key][2]:
            pins.setdefault(holidays_key(country), set()).add(key)
    if pins:
        _fold_by_key(reader, pins, upto, fold)
    out = {}
    for key in keys:
        services_, contracts_, _ = directory.members[key]
        out[key] = Group(frozenset(services_), frozenset(contracts_), knowns[key], len(seen[key]))
    return out


# Where a group's window starts for a page: a change at t reaches back to the month before that of
# the last quiet instant before t (``affected._first``), and that month's fold reads from the last
# quiet instant before it. So: the month before that of t (a day earlier, for the contracts' zones),
# and a few days more for the quiet instant before it. A page that needs more loads again.
WINDOW_BACK: Final = 1
WINDOW_MARGIN_DAYS: Final = 4
_DAY_US: Final = 86_400_000_000
_UTC: Final = ZoneInfo("UTC")
_AT_TYPES: Final = frozenset({ProbeFailed, ProbeRecovered, IncidentOpened, IncidentResolved})
_SPAN_TYPES: Final = frozenset({MaintenanceAnnounced, ForceMajeureDeclared, ExclusionDeclared})
# Facts whose months are not bounded by an instant of their own: a group they reach is loaded whole.
_WHOLE_TYPES: Final = frozenset({HolidaysPinned, *SUPPORT_FACTS})


def window_start(us: int) -> int | None:
    """``WINDOW_MARGIN_DAYS`` before the start of the UTC month ``WINDOW_BACK`` months before that of a
    day before ``us`` (a contract's month starts within a day of the UTC one); None near the
    calendar's start."""
    start = _utc_month_start(add_months(month_of(us - _DAY_US, _UTC), -WINDOW_BACK))
    return None if start is None else start - WINDOW_MARGIN_DAYS * _DAY_US


def _utc_month_start(month: str) -> int | None:
    """The start of ``month`` (YYYY-MM) in UTC, in microseconds; None outside the calendar."""
    try:
        return to_us(datetime(int(month[:4]), int(month[5:7]), 1, tzinfo=UTC))
    except (ValueError, OverflowError):
        return None


def page_floor(recs: Iterable[Recorded], clock: datetime) -> int | None:
    """Where a group's window must start for one page's facts routed to it (None: its whole history).

    From the earliest instant the facts act at (a probe report's or incident's ``at``, a window's
    start, a claim's or amendment's month; the page's clock at the latest), ``window_start``. A
    correction's referent and a window's earlier versions are not known before the group is: a
    page that reaches before the window loads it again from there (``BeforeFloor``).
    """
    reach = to_us(clock)
    for rec in recs:
        f = rec.fact
        t = type(f)
        if t in _AT_TYPES:
            at = to_us(f.at)  # type: ignore[union-attr]
        elif t in _SPAN_TYPES:
            at = to_us(f.starts_at)  # type: ignore[union-attr]
        elif t is CreditClaimFiled or (t is ContractAmended and f.policy.contract.effective_from):  # type: ignore[union-attr]
            month: str = f.month if t is CreditClaimFiled else f.policy.contract.effective_from  # type: ignore[union-attr,assignment]
            start = _utc_month_start(month)
            if start is None:
                return None
            at = start
        elif t in _WHOLE_TYPES or t in CONTRACT_TYPES:
            return None
        else:
            continue
        if at < reach:
            reach = at
    return window_start(reach)


def _probe_window(reader: GroupReader, services: Sequence[tuple[str, int]], upto: int,
                  ) -> tuple[dict[int, bytes], set[str]]:
    """The probe reports a window from each service's floor holds, and the services that have reports
    before it: every probe's days from the floor's UTC day on, its last day before it (its state at the
    floor) and its first day (where the service's facts begin, and so its contracts' rows:
    ``Known.span``). A probe's name is found with its first day (``first_keys_by_name``: an index seek
    per probe, in one statement on PostgreSQL, one per round of names on SQLite)."""
    found: list[tuple[str, str, str, str]] = []  # (service, probe's key prefix, its first day's key, day)
    days = [utc_day(from_us(floor)) for _, floor in services]
    firsts = reader.first_keys_by_name([probe_prefix(service) for service, _ in services], upto, len(days[0]))
    for (service, _), day, keys in zip(services, days, firsts, strict=True):
        found.extend((service, key[: -len(day)], key, day) for key in keys)  # <base><name>@, then the day
    partial = {service for service, prefix, first, day in found if first < prefix + day}
    early = [(prefix, prefix + day) for _, prefix, first, day in found if first < prefix + day]
    lasts = reader.edge_keys(early, upto, last=True) if early else []
    # A day's key is the only key that starts with it: the first and last days' reads are ranges too.
    exact = {first for _, _, first, _ in found} | {key for key in lasts if key is not None}
    ranges = [(prefix + day, prefix_end(prefix)) for _, prefix, _, day in found]
    ranges += [(key, prefix_end(key)) for key in sorted(exact)]
    rows = dict(reader.read_key_ranges_states(ranges, upto)) if ranges else {}
    return rows, partial


def _fold_by_key(reader: GroupReader, wanted: dict[str, set[GroupKey]], upto: int,
                 fold: Callable[[GroupKey, Recorded], None]) -> None:
    """The facts under ``wanted``'s keys, in position order, each to the groups that asked for its key."""
    for position, state in reader.read_keyed_states(sorted(wanted), upto):
        rec = decode_state(position, state)
        for k in index_keys(rec.fact):
            for key in sorted(wanted.get(k, ())):
                fold(key, rec)


_POSITION: Final = attrgetter("position")


# What a correction's name is filed under, by the correction's type (the key its ids are claimed under).
_REF_NAME: Final[dict[type, Callable[[Any], str]]] = {
    IncidentResolved: lambda f: INCIDENT + f.incident,
    MaintenanceCancelled: lambda f: MAINTENANCE + f.maintenance,
    MaintenanceCompleted: lambda f: MAINTENANCE + f.maintenance,
    ExclusionRevoked: lambda f: EXCLUSION + f.ref,
    **{cls: (lambda f: TICKET + f.ticket) for cls in TICKET_FACTS},
}


# The facts whose id corrections refer to (``reference_key`` is not None).
_OPENINGS: Final = frozenset({IncidentOpened, MaintenanceAnnounced, ForceMajeureDeclared, ExclusionDeclared,
                              TicketOpened})


# The facts ``names_wanted`` looks at, and those ``route`` sends elsewhere than their service's group.
_NAMED: Final = frozenset(_REF_NAME) | _OPENINGS
_ROUTED_APART: Final = frozenset(_REF_NAME) | CONTRACT_TYPES | {CreditClaimFiled, TicketOpened,
                                                                HolidaysPinned}


def _scope_service(scope: str) -> str | None:
    """The service a name's scope names (an incident, window, declaration or exclusion)."""
    kind, _, rest = scope.partition(UNIT)
    return None if kind == "ticket" else rest.split(UNIT, 1)[0]


class Directory:
    """Every contract's versions, the service groups they make, and the ledger's clock."""

    def __init__(self) -> None:
        self.versions: dict[str, list[ContractVersion]] = {}
        self.group_of_service: dict[str, GroupKey] = {}
        # A group's services, contracts and the countries whose pins it reads.
        self.members: dict[GroupKey, tuple[list[str], list[str], list[str]]] = {}
        self.clock: datetime | None = None
        self._clock_months: dict[ZoneInfo, str] = {}
        self._clock_edge: datetime | None = None

    def load(self, contract_facts: Iterable[Recorded], clock: datetime | None) -> None:
        for rec in contract_facts:
            add_version(self.versions, rec)
        self.regroup()
        self.see_clock(clock)
        self.clock_moved()

    def regroup(self) -> None:
        """The service groups from the versions (``service_groups``), with the countries they name."""
        self.group_of_service = {}
        self.members = {}
        for svcs, cids in service_groups(self.versions):
            key = tuple(sorted(svcs))
            named: set[str] = set()
            for cid in cids:
                named.update(countries(self.versions[cid]))
            self.members[key] = (list(key), sorted(cids), sorted(named))
            for s in svcs:
                self.group_of_service[s] = key

    def owner(self, fact: Fact) -> GroupKey | None:
        """The group whose service, claims or versions key ``fact`` is under (its first read)."""
        t = type(fact)
        if t in CONTRACT_TYPES:
            return self.group_of_contract(fact.policy.contract.id)  # type: ignore[union-attr]
        if t is CreditClaimFiled or t is TicketOpened:
            return self.group_of_contract(fact.contract)  # type: ignore[union-attr,arg-type]
        service = getattr(fact, "service", None)
        return None if service is None else self.group_of_service.get(service)

    def group_of_contract(self, contract: str) -> GroupKey | None:
        vs = self.versions.get(contract)
        return self.group_of_service.get(vs[0].policy.contract.service) if vs else None

    def see_clock(self, instant: datetime | None) -> None:
        if instant is not None and (self.clock is None or instant > self.clock):
            self.clock = instant

    def clock_moved(self) -> bool:
        """Whether the clock's month changed in some contract's zone since the last look.

        ``Known._clock_moved`` over every contract, not only a group's.
        """
        if self.clock is None:
            return False
        if self._clock_edge is not None and self.clock < self._clock_edge:
            return False
        us = to_us(self.clock)
        zones = {ZoneInfo(v.policy.contract.timezone) for vs in self.versions.values() for v in vs}
        months = {tz: month_of(us, tz) for tz in zones}
        moved = any(self._clock_months.get(tz, m) != m for tz, m in months.items())
        self._clock_months = months
        edges = []
        for tz, m in months.items():
            with suppress(ValueError, OverflowError):
                edges.append(month_bounds(m, tz)[1])
        self._clock_edge = min(edges) if edges else None
        return moved

    def add_contracts(self, batch: Sequence[Recorded]) -> set[GroupKey]:
        """Fold the batch's contract facts; the groups (as regrouped) whose contracts changed."""
        changed: set[str] = set()
        for rec in batch:
            if type(rec.fact) in CONTRACT_TYPES:
                add_version(self.versions, rec)
                changed.add(rec.fact.policy.contract.id)  # type: ignore[union-attr]
        if not changed:
            return set()
        self.regroup()
        self._clock_edge = None  # perhaps a new zone
        return {g for c in changed if (g := self.group_of_contract(c)) is not None}

    def names_wanted(self, batch: Sequence[Recorded]) -> list[str]:
        """The names ``route`` asks ``ledger_names`` about: the batch's corrections' and openings' ids."""
        out: set[str] = set()
        for rec in batch:
            f = rec.fact
            t = type(f)
            if t not in _NAMED:
                continue  # most of a page: probe reports
            of = _REF_NAME.get(t)
            if of is not None:
                out.add(of(f))
            elif (ref := reference_key(f)) is not None:
                out.add(ref)
        return sorted(out)

    def route(self, batch: Sequence[Recorded], names: dict[str, tuple[str, int]], last: int,
              ) -> tuple[dict[GroupKey, list[Recorded]], dict[GroupKey, list[str]]]:
        """Each group's facts of ``batch`` (in position order), and the reference keys whose
        corrections recorded before the batch it must read (ids first used in the batch)."""
        first = batch[0].position if batch else last + 1
        out: dict[GroupKey, list[Recorded]] = {}
        refs: dict[GroupKey, list[str]] = {}
        groups_of_country: dict[str, list[GroupKey]] = {}
        sort: set[GroupKey] = set()  # groups given a fact out of position order (``_claimed``)
        of_service = self.group_of_service
        for rec in batch:
            f = rec.fact
            t = type(f)
            if t not in _ROUTED_APART:  # a fact of its service (most of a page: probe reports)
                service = getattr(f, "service", None)
                key = of_service.get(service) if service is not None else None
                if key is not None:
                    if (group := out.get(key)) is None:
                        out[key] = [rec]
                    else:
                        group.append(rec)
                    if t in _OPENINGS:
                        self._first_use(f, key, names, first, refs)
                continue
            targets: Sequence[GroupKey | None]
            of = _REF_NAME.get(t)
            if of is not None:
                named = names.get(of(f))
                if named is None or named[1] > last:
                    continue  # no referent yet: its opening will read this correction
                scope = named[0]
                owner = ticket_owner(scope)
                targets = ((self.group_of_contract(owner) if owner is not None
                            else of_service.get(_scope_service(scope) or "")),)
            elif t in CONTRACT_TYPES:
                targets = (self.group_of_contract(f.policy.contract.id),)  # type: ignore[union-attr]
            elif t is CreditClaimFiled or t is TicketOpened:
                targets = (self.group_of_contract(f.contract),)  # type: ignore[union-attr,arg-type]
            else:  # HolidaysPinned
                country = f.country  # type: ignore[union-attr]
                if country not in groups_of_country:
                    groups_of_country[country] = [k for k, (_, _, named_) in self.members.items()
                                                  if country in named_]
                targets = groups_of_country[country]
            for key in targets:
                if key is None:
                    continue
                out.setdefault(key, []).append(rec)
                if t in _OPENINGS:
                    self._first_use(f, key, names, first, refs)
                if t is TicketOpened:
                    self._claimed(rec, key, names, batch, out, refs, sort)
        for key in sort:  # in position order, each fact once
            out[key] = sorted({r.position: r for r in out[key]}.values(), key=_POSITION)
        return out, refs

    @staticmethod
    def _claimed(rec: Recorded, key: GroupKey, names: dict[str, tuple[str, int]], batch: Sequence[Recorded],
                 out: dict[GroupKey, list[Recorded]], refs: dict[GroupKey, list[str]], sort: set[GroupKey],
                 ) -> None:
        """An opening of a ticket id another contract's opening claimed first (one the ledger refuses):
        its group must know that opening to leave the ticket out (``support_index.Ticket.owner``), so
        it reads it by key if recorded before the batch, or is given it from the batch."""
        f = rec.fact
        assert isinstance(f, TicketOpened)
        named = names.get(TICKET + f.ticket)
        if named is None or ticket_owner(named[0]) == f.contract:
            return
        if named[1] < batch[0].position:
            refs.setdefault(key, []).append(TICKET + f.ticket)
            return
        i = bisect_left(batch, named[1], key=_POSITION)
        if i < len(batch) and batch[i].position == named[1]:
            out[key].append(batch[i])
            sort.add(key)

    @staticmethod
    def _first_use(fact: Fact, key: GroupKey, names: dict[str, tuple[str, int]], first: int,
                   refs: dict[GroupKey, list[str]]) -> None:
        """Note under ``key`` the reference key of an opening whose id is first used in the batch."""
        if (ref := reference_key(fact)) is not None:
            named = names.get(ref)
            if named is not None and named[1] >= first:  # first used in this batch
                refs.setdefault(key, []).append(ref)


class Groups:
    """Loaded groups, least recently used first, evicted past ``budget`` folded facts."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.loaded: OrderedDict[GroupKey, Group] = OrderedDict()
        self.facts = 0
        self.loads = 0  # groups loaded so far (what a test of a restart counts)

    def get(self, key: GroupKey) -> Group | None:
        g = self.loaded.get(key)
        if g is not None:
            self.loaded.move_to_end(key)
        return g

    def put(self, key: GroupKey, group: Group) -> None:
        self.drop(key)
        self.loaded[key] = group
        self.facts += group.facts
        self.loads += 1

    def drop(self, key: GroupKey) -> None:
        g = self.loaded.pop(key, None)
        if g is not None:
            self.facts -= g.facts

    def grew(self, group: Group, n: int) -> None:
        group.facts += n
        self.facts += n

    def evict(self, keep: Iterable[GroupKey] = ()) -> None:
        """Drop the least recently used groups until the budget holds (``keep``: not these)."""
        kept = set(keep)
        for key in list(self.loaded):
            if self.facts <= self.budget:
                return
            if key not in kept:
                self.drop(key)

    def clear(self) -> None:
        self.loaded.clear()
        self.facts = 0


@dataclass
class FollowerState:
    """What a follower carries from page to page (and across a reconnection): position, directory, groups."""

    position: int = 0
    directory: Directory = field(default_factory=Directory)
    groups: Groups = field(default_factory=lambda: Groups(GROUP_BUDGET))
    loaded: bool = False
    whole: bool = False  # a reader without keyed reads or names: one group, the whole ledger folded


# Facts the loaded groups may hold folded before the least recently used ones are dropped:
# about 250 bytes each in ``Known`` (positions and instants), so some 100 MB.
GROUP_BUDGET: Final = 400_000


def service_groups(versions: dict[str, list[ContractVersion]]) -> list[tuple[set[str], set[str]]]:
    """Services joined by the contracts that name them (across versions), with those contracts."""
    parent: dict[str, str] = {}  # only services joined to another (most are alone: no entry)

    def root(x: str) -> str:
        while (up := parent.get(x, x)) != x:
            parent[x] = parent.get(up, up)
            x = up
        return x

    for vs in versions.values():
        if len(vs) > 1:
            first = root(vs[0].policy.contract.service)
            for v in vs[1:]:
                other = root(v.policy.contract.service)
                if other != first:
                    parent[other] = first
    groups: dict[str, tuple[set[str], set[str]]] = {}
    for cid in sorted(versions):
        vs = versions[cid]
        service = vs[0].policy.contract.service
        r = root(service) if parent else service
        g = groups.get(r)
        if g is None:
            g = groups[r] = (set(), set())
        if len(vs) == 1:
            g[0].add(service)
        else:
            g[0].update(v.policy.contract.service for v in vs)
        g[1].add(cid)
    return [groups[k] for k in sorted(groups)]
