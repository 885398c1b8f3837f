"""What a batch of new facts touches: the (contract, month) pairs it can change, and what a pair reads.

Size: over 400 lines on purpose: the index (``Known``) and the rules that read it are one proof of
"never one pair too few", which is checked more easily when read in one place.

The reporting view (``projections.tracked``) holds one row per contract-month. When
new facts arrive it recomputes only the pairs they can change; ``affected`` says
which, from the facts and an index of every fact known so far (``Known``). The
rules, all conservative (recomputing a pair too many is slow, one too few is wrong):

- A probe or incident fact at t changes the timeline from t on, so every held month
  from month(t) on (a down probe or open incident stays down); and it changes the
  outage around t as a whole: a recovery ends a down-period that began earlier, and
  every interval of that period lists the recovery among its events; a downtime
  stretch running into t belongs to the month it started in (long-outage credit).
  So the first month changed is the month of the last instant before t when nothing
  of the service was down (a "quiet" instant), minus one to be safe; none: all months.
- An interval fact (maintenance window, force majeure, exclusion) changes the months
  it overlaps, end included, and back to the quiet instant before its start. A window
  announced after it started acts only inside that span too (the part before its
  announcement is downtime, the rest excused or not by the clause), so the same months.
- A reference (resolution, cancellation, completion, revocation) changes what its
  referents change: resolutions act at their own ``at`` on every service that has
  opened that incident; the others on the months of every window or exclusion with
  that id. A reference to no known id changes nothing: the fold reads references only
  through the ids of its own service, and ``Known`` holds every fact recorded so far,
  so if the referent arrives later, its own rule recomputes its months.
- A pin of a country's holidays (``holidays_pinned``) changes the verdict of every window
  of the services of contracts whose business calendar names that country (notice in
  business days, business hours): the months of each such window, as if it were announced again.
- A claim changes its (contract, month); a registration every month of the contract,
  an amendment the months from its ``effective_from``.
- A support fact (section 6.1: tickets, engagements, recoveries, pins) changes the months
  ``_support`` names: its ticket's month, the rest of a quota year, the stretches an
  engagement can answer, a recovery's month, every month of a clock a pin's country is on.
- Months that become held are new rows ("fresh"): computed, but no month before them
  changes because they exist, so they start no walk back.
- Walking back (``walk_back``), a second guard: a month whose downtime runs wall to wall
  carries the stretch of the month before it, so a change there reaches one month further
  back. The quiet-instant rule above already covers this; the guard costs one query.

Months are calendar months in the contract's time zone; a contract whose versions use
different zones is looked at in each of them.

The held months of a contract (the rows the view has, ``Known.span``) run from its
first month (that of its registration's recorded_at, or of the earliest fact about its
service if earlier: probe and incident ``at``, a resolution of one of its incidents,
the start of a window or exclusion) to the month of the ledger's clock (the latest
recorded_at) or of the latest fact if later, plus every month with a claim. A worker
keeps the spans as of its last ``settle`` and, per batch, looks only at the contracts
the batch touched, unless the clock entered a new month: then every contract gains it.

A ``Known`` may hold a window (``Known.floor``, the follower's groups): every fact but probe
reports, and probe reports from the floor on plus each probe's first day and last report before
it. Each probe's and incident's state at the floor is then the real one, and so at the last step
before it: the quiet instants from that step on are exact (a service silent since long before the
floor is answered for in full); a rule or an evaluation that would rest on an earlier quiet instant
raises ``BeforeFloor`` instead of answering, and the caller loads more.

``Known`` also names the facts one evaluation needs (``positions_for``): the fold
filters by service and contract itself, so giving it only its service's facts, cut to
the time around the month, yields byte-identical reports at a fraction of the cost.
The timeline's order is ``projections.timeline``'s, the fold's own.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Final, NamedTuple, TypeAlias
from zoneinfo import ZoneInfo

from ledger.calendar import month_bounds, split_month
from ledger.contracts import ContractVersion, add_version, contract_versions, in_force
from ledger.events import (
    ContractAmended,
    ContractRegistered,
    CreditClaimFiled,
    ExclusionDeclared,
    ExclusionRevoked,
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
    RecoveryPerformed,
    SupportEngaged,
    SupportTimeLogged,
    TicketClassified,
    TicketOpened,
)
from ledger.policy import SupportSection
from projections.support_index import (
    SUPPORT_FACTS,
    TICKET_FACTS,
    SupportIndex,
    support_countries,
    support_section,
)
from projections.timeline import (
    EPOCH,
    FAIL,
    MICROSECOND,
    OPEN,
    OUTAGE,
    RECOVER,
    RESOLVE,
    from_us,
    impact_rank,
    probe_rank,
    to_us,
)

Pair: TypeAlias = tuple[str, str]  # (contract, "YYYY-MM")
# A probe or incident fact as the quiet-point sweep reads it: (at, rank, key, impact, position),
# sorted in the fold's order (``projections.timeline``).
_Step: TypeAlias = tuple[int, int, str, int, int]

_INF: Final = 2**63
# The months ``ledger report`` answers for (its --month check): the view holds no other.
_FIRST_MONTH, _LAST_MONTH = "0002-01", "9998-12"


def month_of(us: int, tz: ZoneInfo) -> str:
    """The "YYYY-MM" month, in ``tz``, of an instant in microseconds since the epoch.

    Total: within hours of datetime's limits (where the zone's wall clock does not exist)
    it answers the first or last month there is.
    """
    try:
        local = from_us(us).astimezone(tz)
    except OverflowError:
        return "9999-12" if us > 0 else "0001-01"
    return f"{local.year:04d}-{local.month:02d}"


@lru_cache(maxsize=4096)
def _month_us(month: str, zone: str) -> tuple[int, int]:
    """``month_bounds`` of ``month`` in the zone named ``zone``, in microseconds: a rebuild asks for
    every contract-month's, most of them of a few months and zones."""
    start, end = month_bounds(month, ZoneInfo(zone))
    return to_us(start), to_us(end)


def add_months(month: str, n: int) -> str:
    """``month`` moved by ``n`` months."""
    year, mon = split_month(month)
    index = year * 12 + mon - 1 + n
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def months_from(first: str, last: str) -> list[str]:
    """Every month from ``first`` to ``last`` inclusive."""
    out: list[str] = []
    m = first
    while m <= last:
        out.append(m)
        m = add_months(m, 1)
    return out


@dataclass
class _Service:
    """The facts of one service (their positions), kept for the affected rules and for evaluation."""

    first: int = _INF
    last: int = -_INF
    # Probe and incident steps, sorted in the fold's order when read.
    steps: list[_Step] = field(default_factory=list)
    sorted_upto: int = 0  # steps[:sorted_upto] are sorted; appends after that are not
    quiet: list[int] | None = None  # instants when nothing is down (None: recompute)
    ats: list[int] = field(default_factory=list)  # steps' instants, once sorted
    items: list[int] = field(default_factory=list)  # and their positions (what ``positions_for`` slices)
    # In a window (``Known.floor``): the last step's instant before the floor (None: none). The
    # state there is the real one (each probe's last report before the floor is held), so quiet
    # instants from it on are exact, earlier ones not.
    trust: int | None = None
    windows: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    exclusions: list[tuple[int, int, int, str]] = field(default_factory=list)  # start, end, position, id
    incidents: set[str] = field(default_factory=set)

    def see(self, us: int) -> bool:
        """Widen the span of the service's facts to ``us``; whether it moved."""
        if self.first <= us <= self.last:
            return False
        if us < self.first:
            self.first = us
        if us > self.last:
            self.last = us
        return True


@dataclass(frozen=True, slots=True)
class Span:
    """The months a contract's rows cover: ``lo`` to ``hi`` (none if ``lo > hi``), plus claim months."""

    lo: str
    hi: str
    claims: frozenset[str]

    def months(self) -> list[str]:
        """Every month, in order."""
        return sorted({*months_from(self.lo, self.hi), *self.claims})

    def holds(self, month: str) -> bool:
        return self.lo <= month <= self.hi or month in self.claims


_NO_SPAN: Final = Span("9999-12", "0000-01", frozenset())


class BeforeFloor(Exception):
    """A ``Known`` that holds a window (``Known.floor``) was asked what rests on facts before it."""

    def __init__(self, known: Known, at: int) -> None:
        super().__init__(at)
        self.known = known
        self.at = at  # the instant asked about: the window must start before it


@dataclass
class Known:
    """An index of every fact recorded so far: contracts, services, referents, claims.

    Fed with ``add``; everything else reads it. It keeps positions, not records (contract
    versions excepted), for a caller that fetches what ``positions_for`` names one month
    at a time: a service's whole history then costs a few small tuples per fact. It also
    accepts the references after the facts they refer to, out of position order.
    """

    position: int = 0
    # Contract facts by contract id (few): an out-of-order one re-derives that contract's versions.
    contract_records: dict[str, list[Recorded]] = field(default_factory=lambda: defaultdict(list))
    versions: dict[str, list[ContractVersion]] = field(default_factory=dict)
    services: dict[str, _Service] = field(default_factory=lambda: defaultdict(_Service))
    contracts_of_service: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    zones: dict[str, tuple[ZoneInfo, ...]] = field(default_factory=dict)
    # Claims by contract: (month, position).
    claims: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))
    # Reference targets: id -> services that opened it / (service, start, end) of each window.
    incident_services: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    resolutions: dict[str, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    window_spans: dict[str, list[tuple[str, int, int]]] = field(default_factory=lambda: defaultdict(list))
    exclusion_spans: dict[str, list[tuple[str, int, int]]] = field(default_factory=lambda: defaultdict(list))
    maintenance_refs: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    revocations: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    pins: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # country -> positions
    # The ledger's clock: the latest recorded_at folded (or told, ``see_clock``); rows run to its month.
    recorded: datetime | None = None
    # Spans as of the last ``settle`` (the rows the view has), and what may have moved since.
    settled: dict[str, Span] = field(default_factory=dict)
    _moved: set[str] = field(default_factory=set)  # contracts (claims, versions)
    _moved_services: set[str] = field(default_factory=set)  # services whose facts' span widened
    # Quiet instants of the services the facts since ``mark`` touched, as they were at ``mark``
    # (by the service's identity); None: not kept (a rebuild's index never asks).
    _before: dict[int, tuple[list[int], list[int]]] | None = None
    _latest: dict[int, int] = field(default_factory=dict)  # the latest step since ``mark``, by service
    _ever_settled: bool = False
    _clock_months: dict[ZoneInfo, str] = field(default_factory=dict)  # month of `recorded` per zone
    _clock_edge: datetime | None = None  # the clock's month changes in some zone from here
    support: SupportIndex = field(default_factory=SupportIndex)  # section 6's facts (the support tables)
    # A window (the follower's groups, ``tracked.groups``): every fact from this instant on, probe
    # reports from its UTC day and each probe's last day before it and its first day, the service's
    # other facts whole. Quiet instants from it on are exact (each probe's state there is); an
    # answer that rests on an earlier one raises ``BeforeFloor``. None: every fact.
    floor: int | None = None
    # Probe facts' instants (microseconds) by position, kept where not None (a rebuild's index: its
    # months' folds take them from here, ``collect``'s ``instants``, instead of converting again).
    instants: dict[int, int] | None = None

    def see_clock(self, instant: datetime | None) -> None:
        """The ledger's latest recorded_at, for an index fed only part of the ledger (a rebuild's group)."""
        if instant is not None and (self.recorded is None or instant > self.recorded):
            self.recorded = instant

    def add_all(self, records: Iterable[Recorded]) -> None:
        """Fold many records, in position order (or references after their referents, as ``add``).

        ``add`` for each, with its probe branch inlined into the loop and the index's fields held in
        locals while probe facts come (written back before any other fact's ``add``): a rebuild's
        group folds a thousand facts this way, nearly all probe reports, at about a call less each.
        """
        if self._before is not None:  # each step goes through ``_step`` (a follower's batch)
            for rec in records:
                self.add(rec)
            return
        services, instants, moved = self.services, self.instants, self._moved_services
        position, recorded = self.position, self.recorded
        epoch, us = EPOCH, MICROSECOND
        keys: dict[str, str] = {}  # each probe's step key, made once a call
        for rec in records:
            f = rec.fact
            if type(f) is not ProbeFailed and type(f) is not ProbeRecovered:
                self.position, self.recorded = position, recorded
                self.add(rec)
                position, recorded = self.position, self.recorded
                continue
            item = rec.position
            if item > position:
                position = item
            if recorded is None or rec.recorded_at > recorded:
                recorded = rec.recorded_at
            s = services[f.service]
            at = (f.at - epoch) // us
            if instants is not None:
                instants[item] = at
            # ``see`` inlined: a service's facts mostly come in time order, each one widening its span.
            if at > s.last:
                s.last = at
                if at < s.first:
                    s.first = at
                moved.add(f.service)
            elif at < s.first:
                s.first = at
                moved.add(f.service)
            key = keys.get(f.probe)
            if key is None:
                key = keys[f.probe] = "p:" + f.probe
            s.steps.append((at, FAIL if type(f) is ProbeFailed else RECOVER, key, 0, item))
            s.quiet = None
        self.position, self.recorded = position, recorded

    def add(self, rec: Recorded) -> None:
        """Fold one record (references may come after their referents, out of position order)."""
        item = rec.position
        if item > self.position:
            self.position = item
        if self.recorded is None or rec.recorded_at > self.recorded:
            self.recorded = rec.recorded_at
        f = rec.fact
        if type(f) is ProbeFailed or type(f) is ProbeRecovered:
            # Most facts: no match statement, and ``to_us``, ``probe_rank``, ``see`` and ``_step``
            # inlined (the same values; a rebuild folds a million of these).
            s = self.services[f.service]
            at = (f.at - EPOCH) // MICROSECOND
            if self.instants is not None:
                self.instants[item] = at
            if not s.first <= at <= s.last:
                s.see(at)
                self._moved_services.add(f.service)
            step = (at, FAIL if type(f) is ProbeFailed else RECOVER, "p:" + f.probe, 0, item)
            if self._before is None:
                s.steps.append(step)
                s.quiet = None
            else:
                self._step(s, step)
            return
        match f:
            case ProbeFailed() | ProbeRecovered():
                s = self.services[f.service]
                at = to_us(f.at)
                if s.see(at):
                    self._moved_services.add(f.service)
                self._step(s, (at, probe_rank(f), "p:" + f.probe, 0, item))
            case IncidentOpened():
                s = self.services[f.service]
                at = to_us(f.at)
                if s.see(at):
                    self._moved_services.add(f.service)
                self._step(s, (at, OPEN, "i:" + f.incident, impact_rank(f), item))
                if f.incident not in s.incidents:
                    s.incidents.add(f.incident)
                    self.incident_services[f.incident].add(f.service)
                    # Resolutions recorded before the opening now belong to this service too.
                    for rat, res in self.resolutions[f.incident]:
                        if s.see(rat):
                            self._moved_services.add(f.service)
                        self._step(s, (rat, RESOLVE, "i:" + f.incident, 0, res))
            case IncidentResolved():
                at = to_us(f.at)
                self.resolutions[f.incident].append((at, item))
                for service in self.incident_services.get(f.incident, ()):
                    s = self.services[service]
                    if s.see(at):
                        self._moved_services.add(service)
                    self._step(s, (at, RESOLVE, "i:" + f.incident, 0, item))
            case MaintenanceAnnounced():
                s = self.services[f.service]
                start, end = to_us(f.starts_at), to_us(f.ends_at)
                if s.see(start):
                    self._moved_services.add(f.service)
                s.windows[f.maintenance].append(item)
                self.window_spans[f.maintenance].append((f.service, start, end))
            case MaintenanceCancelled() | MaintenanceCompleted():
                self.maintenance_refs[f.maintenance].append(item)
            case ForceMajeureDeclared() | ExclusionDeclared():
                s = self.services[f.service]
                start, end = to_us(f.starts_at), to_us(f.ends_at)
                if s.see(start):
                    self._moved_services.add(f.service)
                xid = f.declaration if isinstance(f, ForceMajeureDeclared) else f.exclusion
                s.exclusions.append((start, end, item, xid))
                self.exclusion_spans[xid].append((f.service, start, end))
            case ExclusionRevoked():
                self.revocations[f.ref].append(item)
            case HolidaysPinned():
                self.pins[f.country].append(item)
            case CreditClaimFiled():
                self.claims[f.contract].append((f.month, item))
                self._moved.add(f.contract)
            case ContractRegistered() | ContractAmended():
                cid = f.policy.contract.id
                records = self.contract_records[cid]
                records.append(rec)
                if len(records) > 1 and records[-2].position > rec.position:
                    # Out of position order (an index read by key): derive this contract's again.
                    vs = contract_versions(records).get(cid)
                    if vs:
                        self.versions[cid] = vs
                else:
                    add_version(self.versions, rec)
                for v in self.versions.get(cid, []):
                    self.contracts_of_service[v.policy.contract.service].add(cid)
                self.zones[cid] = tuple(
                    dict.fromkeys(ZoneInfo(v.policy.contract.timezone) for v in self.versions.get(cid, []))
                )
                self._moved.add(cid)
                self._clock_edge = None  # perhaps a new zone, with months of its own
        if type(f) in SUPPORT_FACTS:
            self._support(rec)

    def _support(self, rec: Recorded) -> None:
        """A support fact: into the support index; a ticket's opening widens its contract's rows.

        Engagements and recoveries are facts of their service, so they widen its span as the
        other facts of the service do.
        """
        widened = self.support.add(rec)
        if widened is not None:
            self._moved.add(widened)
        f = rec.fact
        if isinstance(f, SupportEngaged | RecoveryPerformed) and self.services[f.service].see(to_us(f.at)):
            self._moved_services.add(f.service)

    def _step(self, s: _Service, step: _Step) -> None:
        if self._before is not None:
            key = id(s)
            if key not in self._before:
                # The quiet instants and step instants as they were (both lists are replaced, never changed).
                self._before[key] = (self._quiet(s), s.ats)
            if step[0] > self._latest.get(key, -_INF):
                self._latest[key] = step[0]
        s.steps.append(step)
        s.quiet = None

    def mark(self) -> None:
        """From here on, remember each touched service's quiet instants as they are now (``quiet_after``)."""
        self._before = {}
        self._latest = {}

    # --- held months -----------------------------------------------------------

    def contract_services(self, contract: str) -> set[str]:
        """Every service any version of ``contract`` names."""
        return {v.policy.contract.service for v in self.versions.get(contract, [])}

    def span(self, contract: str) -> Span:
        """The months the view holds for ``contract`` (docs/reporting.md, "Which months are there").

        From the contract's first month, the month of its registration's recorded_at or of the
        earliest fact about its service if that is earlier (a ledger imported with its
        history), to the month of the ledger's latest recorded_at or of the latest fact if
        that is later (a window announced ahead), plus every month with a claim; months in
        each zone its versions use. Only months ``ledger report`` answers for (years 2 to 9998).
        """
        versions = self.versions.get(contract)
        if not versions:
            return _NO_SPAN
        zones = self.zones[contract]
        first = last = to_us(versions[0].recorded_at)
        if self.recorded is not None:
            last = max(last, to_us(self.recorded))
        for name in self.contract_services(contract):
            s = self.services.get(name)
            if s is not None and s.first <= s.last:
                first, last = min(first, s.first), max(last, s.last)
        opened = self.support.opened.get(contract)
        if opened is not None:
            first, last = min(first, opened[0]), max(last, opened[1])
        lo = max(min(month_of(first, tz) for tz in zones), _FIRST_MONTH)
        hi = min(max(month_of(last, tz) for tz in zones), _LAST_MONTH)
        claims = frozenset(m for m, _ in self.claims.get(contract, []) if _FIRST_MONTH <= m <= _LAST_MONTH)
        return Span(lo, hi, claims)

    def held(self, contract: str) -> list[str]:
        """The months the view holds for ``contract``, in order."""
        return self.span(contract).months()

    def all_held(self) -> dict[str, list[str]]:
        """Held months of every registered contract."""
        return {cid: self.held(cid) for cid in sorted(self.versions)}

    def settle(self) -> dict[str, tuple[Span, Span]]:
        """Bring ``settled`` up to date with the facts folded; the spans that changed: (before, now).

        Looks only at the contracts whose span may have moved since the last call (a fact
        widened their service's span, a claim, a version), unless the clock entered a new
        month (or this is the first call): then at every contract, which all gain that month.
        """
        clock_moved = self._clock_moved()  # always: it keeps the months it compares with current
        if not self._ever_settled or clock_moved:
            contracts: Iterable[str] = list(self.versions)
        else:
            contracts = set(self._moved)
            for service in self._moved_services:
                contracts.update(self.contracts_of_service.get(service, ()))
        self._ever_settled = True
        self._moved.clear()
        self._moved_services.clear()
        changed: dict[str, tuple[Span, Span]] = {}
        for cid in contracts:
            now = self.span(cid)
            before = self.settled.get(cid, _NO_SPAN)
            if now != before:
                changed[cid] = (before, now)
                self.settled[cid] = now
        return changed

    def holds(self, contract: str, month: str) -> bool:
        """Whether the view holds ``(contract, month)``, as of the last ``settle``."""
        span = self.settled.get(contract)
        return span is not None and span.holds(month)

    def _clock_moved(self) -> bool:
        """Whether the clock's month changed in some zone since the last look (cheap when not)."""
        if self.recorded is None:
            return False
        if self._clock_edge is not None and self.recorded < self._clock_edge:
            return False
        us = to_us(self.recorded)
        months = {tz: month_of(us, tz) for zones in self.zones.values() for tz in zones}
        moved = any(self._clock_months.get(tz, m) != m for tz, m in months.items())
        self._clock_months = months
        edges = []
        for tz, m in months.items():
            with suppress(ValueError, OverflowError):  # no next month near the calendar's end
                edges.append(month_bounds(m, tz)[1])
        self._clock_edge = min(edges) if edges else None
        return moved

    def version_in_force(self, contract: str, month: str) -> ContractVersion:
        """The version that governs ``contract`` in ``month``."""
        return in_force(self.versions[contract], month)

    # --- facts for one evaluation ------------------------------------------------

    def positions_for(self, contract: str, month: str) -> list[int]:
        """The positions of the facts the fold needs for one contract-month, ascending.

        Only the in-force version's service, and of its probe and incident facts only
        those between the last instant before the month when nothing was down and the
        first one after the month when nothing was down: before the first, every
        probe and incident is back to its initial state; after the second, the last
        downtime stretch the month follows has ended. Windows and exclusions that
        touch that stretch come whole (all versions of a window id), with their
        references, and then the pins of the calendar's country (their verdicts read the
        holidays); claims only for the month. With a [support] section, the support facts the
        month's support figures read too (``SupportIndex.positions``).
        """
        picked = self._picked(contract, month)
        policy = self.version_in_force(contract, month).policy
        if isinstance(policy.support, SupportSection):
            picked.extend(self.support.positions(contract, month, policy))
        return sorted(set(picked))

    def _picked(self, contract: str, month: str) -> list[int]:
        version = self.version_in_force(contract, month)
        policy = version.policy
        s = self.services.get(policy.contract.service)
        out: list[int] = [item for m, item in self.claims.get(contract, []) if m == month]
        if s is None:
            return out
        start, end = _month_us(month, policy.contract.timezone)
        quiet = self._quiet(s)
        # The fold looks one microsecond before the month (a stretch begun last month).
        i = bisect_right(quiet, start - 1)
        if s.trust is not None and self.floor is not None and (not i or quiet[i - 1] < s.trust):
            raise BeforeFloor(self, start)
        lo = quiet[i - 1] if i else -_INF
        j = bisect_left(quiet, end)
        hi = quiet[j] if j < len(quiet) else _INF
        a, b = bisect_right(s.ats, lo), bisect_right(s.ats, hi)
        out.extend(s.items[a:b])
        windows = False
        for mid, items in s.windows.items():
            if any(st <= hi and en >= lo for _, st, en in self.window_spans[mid]):
                out.extend(items)
                out.extend(self.maintenance_refs.get(mid, []))
                windows = True
        country = policy.calendar.holidays if policy.calendar is not None else None
        if windows and country is not None:
            out.extend(self.pins.get(country, []))
        for st, en, item, xid in s.exclusions:
            if st <= hi and en >= lo:
                out.append(item)
                out.extend(self.revocations.get(xid, []))
        return out

    def quiet_after(self, service: str, us: int) -> int | None:
        """The first instant from ``us`` on when ``service`` was quiet before and after the facts since mark.

        Past it the state is the same (nothing down) and so are the steps, so no month
        starting after it reads anything those facts changed. None: there is none, or the
        index does not know how it was before (every later month is reached).
        """
        s = self.services.get(service)
        if s is None or self._before is None or id(s) not in self._before:
            return None
        old, old_ats = self._before[id(s)]
        new = self._quiet(s)
        # Past every step added since the mark, not only ``us``: an opening brings earlier resolutions.
        us = max(us, self._latest[id(s)])
        for k in range(bisect_left(new, us), len(new)):
            q = new[k]
            # Quiet before too: the last earlier step at or before q left nothing down (or there was none).
            j = bisect_right(old_ats, q)
            if j == 0:
                return q
            i = bisect_left(old, old_ats[j - 1])
            if i < len(old) and old[i] == old_ats[j - 1]:
                return q
        return None

    def last_quiet_before(self, service: str, us: int) -> int | None:
        """The last instant before ``us`` after which no probe or incident of ``service`` was down."""
        s = self.services.get(service)
        if s is None:
            return us  # no timeline: nothing before ``us`` can be reached
        quiet = self._quiet(s)
        i = bisect_left(quiet, us)
        if s.trust is not None and self.floor is not None and (not i or quiet[i - 1] < s.trust):
            raise BeforeFloor(self, us)
        return quiet[i - 1] if i else None

    def _quiet(self, s: _Service) -> list[int]:
        """Instants after whose facts no probe is down and no incident is in outage, ascending."""
        if s.quiet is not None:
            return s.quiet
        if s.sorted_upto < len(s.steps):
            s.steps.sort()
            s.sorted_upto = len(s.steps)
        s.ats = [st[0] for st in s.steps]
        s.items = [st[4] for st in s.steps]
        if self.floor is not None:
            k = bisect_left(s.ats, self.floor)
            s.trust = s.ats[k - 1] if k else None
        down: set[str] = set()  # probes down, incidents in outage
        open_: set[str] = set()  # incidents open (whatever the impact)
        quiet: list[int] = []
        # One pass: an instant is quiet if nothing is down once all its steps are applied, which
        # is known when the next instant's first step comes (or the steps end).
        last: int | None = None
        for t, rank, key, impact, _ in s.steps:
            if t != last:
                if last is not None and not down:
                    quiet.append(last)
                last = t
            if key[0] == "p":
                if rank == FAIL:
                    down.add(key)
                else:
                    down.discard(key)
            elif rank == OPEN:
                open_.add(key)
                if impact == OUTAGE:
                    down.add(key)
                else:
                    down.discard(key)
            elif key in open_:
                open_.discard(key)
                down.discard(key)
        if last is not None and not down:
            quiet.append(last)
        s.quiet = quiet
        return quiet


# --- which pairs a batch changes ---------------------------------------------------


def _first(known: Known, service: str, us: int, tz: ZoneInfo) -> str:
    """The first month a change at ``us`` can reach: back to where the outage around it began.

    A probe or incident source carries the positions of the facts that start and end it,
    so a recovery changes every month its down-period touched, and a downtime stretch that
    runs into ``us`` belongs to the month it started in. Both begin after the last instant
    before ``us`` when nothing was down; one month more for the stretch begun the month before.
    """
    quiet = known.last_quiet_before(service, us)
    if quiet is None:
        return ""  # down since the first fact: every held month
    return add_months(month_of(quiet, tz), -1)


class _Held:
    """Held months of the contracts one batch touches, looked up once each (after ``settle``)."""

    def __init__(self, known: Known) -> None:
        self.known = known
        self.months: dict[str, list[str]] = {}

    def __getitem__(self, contract: str) -> list[str]:
        months = self.months.get(contract)
        if months is None:
            span = self.known.settled.get(contract)
            months = self.months[contract] = span.months() if span is not None else []
        return months


class _MonthOf:
    """``month_of`` in one zone for many instants in few months: the last month's bounds are kept."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.lo = self.hi = 0
        self.month = ""

    def __call__(self, us: int) -> str:
        if self.lo <= us < self.hi:
            return self.month
        m = month_of(us, self.tz)
        with suppress(ValueError, OverflowError):
            lo, hi = (to_us(b) for b in month_bounds(m, self.tz))
            # Kept only where the bounds agree with ``month_of`` at both ends (not near the calendar's end).
            if lo <= us < hi and month_of(lo, self.tz) == m == month_of(hi - 1, self.tz):
                self.lo, self.hi, self.month = lo, hi, m
        return m


def _from(known: Known, held: _Held, service: str, instants: Iterable[int], out: set[Pair]) -> None:
    """From where the outage around each instant began to the month of ``Known.quiet_after``, per contract.

    Instants in one outage share both ends: each distinct pair of ends is spread over months once.
    Both ends only grow with the instant, so the months they span are merged as they come.
    """
    ends: list[tuple[int | None, int | None]] = []
    after: int | None = -_INF
    s = known.services.get(service)
    quiet = known._quiet(s) if s is not None else None
    i = 0
    for us in sorted(instants):
        # ``quiet_after`` is monotone: an instant up to the last answer has the same answer, and
        # after a None (no such instant) every later one has None too.
        if after is not None and us > after:
            after = known.quiet_after(service, us)
        if quiet is None:
            before: int | None = us  # ``last_quiet_before`` of a service without a timeline
        else:
            while i < len(quiet) and quiet[i] < us:  # the last quiet instant before ``us``
                i += 1
            before = quiet[i - 1] if i else None
            if s is not None and s.trust is not None and known.floor is not None and (
                    before is None or before < s.trust):
                raise BeforeFloor(known, us)
        if not ends or ends[-1] != (before, after):
            ends.append((before, after))
    for cid in known.contracts_of_service.get(service, ()):
        for tz in known.zones.get(cid, ()):
            of = _MonthOf(tz)
            spans: list[list[str]] = []
            previous: dict[str, str] = {}
            for before, after in ends:
                # One month more before: a downtime stretch begun the month before (``_first``).
                if before is None:
                    first = ""
                else:
                    month = of(before)
                    first = previous.get(month) or previous.setdefault(month, add_months(month, -1))
                last = of(after) if after is not None else "9999-99"
                if spans and first <= spans[-1][1]:
                    spans[-1][1] = max(spans[-1][1], last)
                else:
                    spans.append([first, last])
            out.update((cid, m) for m in held[cid] if any(lo <= m <= hi for lo, hi in spans))


def _span(known: Known, held: _Held, service: str, start: int, end: int, out: set[Pair]) -> None:
    """The months [start, end] overlaps, end included, and back to where the outage at start began."""
    for cid in known.contracts_of_service.get(service, ()):
        for tz in known.zones.get(cid, ()):
            first, last = _first(known, service, start, tz), month_of(end, tz)
            out.update((cid, m) for m in held[cid] if first <= m <= last)


def _calendar_services(known: Known, country: str) -> set[str]:
    """The services of the contracts any of whose versions' business calendar names ``country``."""
    return {v.policy.contract.service for vs in known.versions.values() for v in vs
            if v.policy.calendar is not None and v.policy.calendar.holidays == country
            and v.policy.contract.service in known.services}


def _months(known: Known, held: _Held, cid: str, lo: int | None, hi: int, out: set[Pair],
            more: int = 0) -> None:
    """``cid``'s held months from that of ``lo`` (None: the first) to that of ``hi`` plus ``more``."""
    for tz in known.zones.get(cid, ()):
        first = "" if lo is None else month_of(lo, tz)
        last = add_months(month_of(hi, tz), more)
        out.update((cid, m) for m in held[cid] if first <= m <= last)


def _promises(known: Known, cid: str, what: str) -> bool:
    """Whether some version of ``cid`` has a [support] section with ``what`` (quota, engagement...)."""
    return any((sec := support_section(v.policy)) is not None and getattr(sec, what) is not None
               for v in known.versions.get(cid, ()))


def _support(rec: Recorded, known: Known, held: _Held, out: set[Pair]) -> None:
    """The pairs a support fact (section 6.1) can change; ``known`` includes it.

    - A ticket fact: its contract's months of the ticket's openings (a ticket is listed in the
      month of its earliest opening). Time logged, and a classification or opening of a ticket
      with time logged, with a quota: also the twelve months after each log's (a subscription
      year holds a log in every month from the log's to the year's end).
    - An engagement at t: the months from that of the service's previous engagement of that
      level (before t; none: the first held month) to t's: the stretches starting in between
      are the ones whose first engagement at or after their start it can be.
    - A recovery: its month. A pin: every held month of a contract whose support clock names
      the country (any version): which years a deadline reaches is the clock's affair.
    """
    f, idx = rec.fact, known.support
    if isinstance(f, (TicketOpened, *TICKET_FACTS)):
        t = idx.tickets.get(f.ticket)
        if t is None:
            return
        logs = [to_us(f.at)] if isinstance(f, SupportTimeLogged) else (
            t.logs if isinstance(f, TicketOpened | TicketClassified) else [])
        contracts = {f.contract} if isinstance(f, TicketOpened) else {c for c, _, _ in t.openings}
        for cid in contracts:
            for c, at, _ in t.openings:
                if c == cid:
                    _months(known, held, cid, at, at, out)
            if logs and _promises(known, cid, "quota"):
                for at in logs:
                    _months(known, held, cid, at, at, out, more=12)
    elif isinstance(f, SupportEngaged):
        at = to_us(f.at)
        found = idx.engagements(f.service, f.level)
        i = bisect_left(found, (at, -1))
        before = found[i - 1][0] if i else None
        for cid in known.contracts_of_service.get(f.service, ()):
            if _promises(known, cid, "engagement"):
                _months(known, held, cid, before, at, out)
    elif isinstance(f, RecoveryPerformed):
        at = to_us(f.at)
        for cid in known.contracts_of_service.get(f.service, ()):
            _months(known, held, cid, at, at, out)
    elif isinstance(f, HolidaysPinned):
        for cid, versions in known.versions.items():
            if any(f.country in support_countries(v.policy) for v in versions):
                out.update((cid, m) for m in held[cid])


class Affected(NamedTuple):
    """What a batch changes: pairs its facts can change, and pairs that are new rows only."""

    changed: set[Pair]
    fresh: set[Pair]  # held from now on and no fact of the batch reaches them (e.g. the clock moved)


def affected(
    batch: Sequence[Recorded], known: Known, spans: Mapping[str, tuple[Span, Span]]
) -> Affected:
    """The held pairs ``batch`` can change, and the new ones; ``known`` includes it and is settled.

    ``spans`` is what ``Known.settle`` returned after folding the batch: the contracts whose
    rows the batch (or the clock) widened. Only those and the contracts of the batch's
    facts are looked at, so a batch costs what it touches, not the whole view.
    """
    out: set[Pair] = set()
    held = _Held(known)
    steps: dict[str, set[int]] = defaultdict(set)  # service -> instants of its probe and incident facts
    for rec in batch:
        f = rec.fact
        match f:
            case ProbeFailed() | ProbeRecovered() | IncidentOpened():
                steps[f.service].add(to_us(f.at))
            case IncidentResolved():
                for service in known.incident_services.get(f.incident, ()):
                    steps[service].add(to_us(f.at))
            case MaintenanceAnnounced() | MaintenanceCancelled() | MaintenanceCompleted():
                # Every version of the window: a new announcement can supersede an old one. A
                # window acts only inside its announced [starts_at, ends_at], whenever it was
                # announced (a late announcement voids the part before it, inside that span).
                for service, start, end in known.window_spans.get(f.maintenance, ()):
                    _span(known, held, service, start, end, out)
            case ForceMajeureDeclared() | ExclusionDeclared():
                _span(known, held, f.service, to_us(f.starts_at), to_us(f.ends_at), out)
            case ExclusionRevoked():
                for service, start, end in known.exclusion_spans.get(f.ref, ()):
                    _span(known, held, service, start, end, out)
            case HolidaysPinned():
                for service in _calendar_services(known, f.country):
                    for mid in known.services[service].windows:
                        for named, start, end in known.window_spans.get(mid, ()):
                            _span(known, held, named, start, end, out)
            case CreditClaimFiled():
                out.add((f.contract, f.month))
            case ContractRegistered() | ContractAmended():
                cid = f.policy.contract.id
                since = f.policy.contract.effective_from if isinstance(f, ContractAmended) else None
                out.update((cid, m) for m in held[cid] if since is None or m >= since)
        if type(f) in SUPPORT_FACTS:
            _support(rec, known, held, out)
    for service, instants in steps.items():
        _from(known, held, service, instants, out)
    changed = {(c, m) for c, m in out if known.holds(c, m)}
    fresh: set[Pair] = set()
    for cid, (before, now) in spans.items():
        fresh.update((cid, m) for m in now.months() if not before.holds(m) and (cid, m) not in changed)
    return Affected(changed, fresh)


def walk_back(
    pairs: Iterable[Pair],
    known: Known,
    wall_to_wall: Callable[[Pair], bool],
    done: Container[Pair] = (),
) -> set[Pair]:
    """Pairs to add so every month whose stretch may run into a changed month is recomputed.

    ``wall_to_wall(pair)`` says whether the month is downtime from start to end (in the
    view before the batch or in its recomputation). A stretch starting in month m-1 can
    only reach past month m if m is downtime wall to wall; across a change of policy
    version the previous month reads the timeline with other rules, so it is added too.
    Pairs in ``done`` (recomputed already) stop the walk. ``known`` is settled.
    """
    extra: set[Pair] = set()
    seeds = set(pairs)
    for cid, month in seeds:
        m = month
        while True:
            prev = add_months(m, -1)
            pair = (cid, prev)
            if not known.holds(cid, prev) or pair in seeds or pair in done or pair in extra:
                break
            same = known.version_in_force(cid, prev).version == known.version_in_force(cid, m).version
            if same and not wall_to_wall((cid, m)):
                break
            extra.add(pair)
            m = prev
    return extra
