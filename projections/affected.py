"""What a batch of new facts touches: the (contract, month) pairs it can change, and what a pair reads.

The reporting view (``ledger.reporting``) holds one row per contract-month. When
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
  it overlaps, end included, and back to the quiet instant before its start.
- A reference (resolution, cancellation, completion, revocation) changes what its
  referents change: resolutions act at their own ``at`` on every service that has
  opened that incident; the others on the months of every window or exclusion with
  that id. A reference to no known id changes nothing: the fold reads references only
  through the ids of its own service, and ``Known`` holds every fact recorded so far,
  so if the referent arrives later, its own rule recomputes its months.
- A claim changes its (contract, month); a registration every month of the contract,
  an amendment the months from its ``effective_from``.
- Months that become held are new rows.
- Walking back (``walk_back``), a second guard: a month whose downtime runs wall to wall
  carries the stretch of the month before it, so a change there reaches one month further
  back. The quiet-instant rule above already covers this; the guard costs one query.

Months are calendar months in the contract's time zone; a contract whose versions use
different zones is looked at in each of them.

The held months of a contract (the rows the view has) run from the month of the
earliest fact about its service (probe and incident ``at``, a resolution of one of
its incidents, the start of a window or exclusion) to the month of the latest, plus
every month with a claim.

``Known`` also groups records for evaluation (``records_for``): the fold filters by
service and contract itself, so giving it only its service's facts, cut to the time
around the month, yields byte-identical reports at a fraction of the cost.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, TypeAlias
from zoneinfo import ZoneInfo

from ledger.calendar import month_bounds
from ledger.events import (
    ContractAmended,
    ContractRegistered,
    CreditClaimFiled,
    ExclusionDeclared,
    ExclusionRevoked,
    ForceMajeureDeclared,
    IncidentOpened,
    IncidentResolved,
    MaintenanceAnnounced,
    MaintenanceCancelled,
    MaintenanceCompleted,
    ProbeFailed,
    ProbeRecovered,
    Recorded,
)
from projections.contracts import ContractVersion, contract_versions

Pair: TypeAlias = tuple[str, str]  # (contract, "YYYY-MM")
# What ``Known`` keeps of a fact: the record itself, or (``keep=False``) only its position.
Item: TypeAlias = Recorded | int

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_INF: Final = 2**63
# Within one instant the fold applies failures before recoveries and openings before
# resolutions; the quiet-point sweep must apply them in the same order.
_FIRST, _SECOND = 0, 1
_OUTAGE_RANK: Final = 2  # the fold's rank of impact "outage" (none 0, degraded 1)
_IMPACT_RANK: Final = {"none": 0, "degraded": 1, "outage": 2}


def _us(instant: datetime) -> int:
    return (instant - _EPOCH) // _US


def month_of(us: int, tz: ZoneInfo) -> str:
    """The "YYYY-MM" month, in ``tz``, of an instant in microseconds since the epoch."""
    local = (_EPOCH + timedelta(microseconds=us)).astimezone(tz)
    return f"{local.year:04d}-{local.month:02d}"


def add_months(month: str, n: int) -> str:
    """``month`` moved by ``n`` months."""
    index = int(month[:4]) * 12 + int(month[5:7]) - 1 + n
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
    """The facts of one service, kept for the affected rules and for evaluation."""

    first: int = _INF
    last: int = -_INF
    # Probe and incident steps in the fold's order: (at, rank, key, impact, position, item).
    steps: list[tuple[int, int, str, int, int, Item]] = field(default_factory=list)
    sorted_upto: int = 0  # steps[:sorted_upto] are sorted; appends after that are not
    quiet: list[int] | None = None  # instants when nothing is down (None: recompute)
    ats: list[int] = field(default_factory=list)  # steps' instants, once sorted
    windows: dict[str, list[Item]] = field(default_factory=lambda: defaultdict(list))
    exclusions: list[tuple[int, int, Item, str]] = field(default_factory=list)  # start, end, item, id
    incidents: set[str] = field(default_factory=set)

    def see(self, us: int) -> None:
        self.first = min(self.first, us)
        self.last = max(self.last, us)


@dataclass
class Known:
    """An index of every fact recorded so far: contracts, services, referents, claims.

    Fed in position order with ``add``; everything else reads it. With ``keep=False``
    it keeps positions instead of records (contract versions excepted), for a caller
    that fetches what ``positions_for`` names one month at a time: a service's whole
    history then costs a few small tuples per fact. That mode also accepts the
    references after the facts they refer to, out of position order.
    """

    keep: bool = True
    position: int = 0
    contract_records: list[Recorded] = field(default_factory=list)
    versions: dict[str, list[ContractVersion]] = field(default_factory=dict)
    services: dict[str, _Service] = field(default_factory=lambda: defaultdict(_Service))
    contracts_of_service: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    zones: dict[str, tuple[ZoneInfo, ...]] = field(default_factory=dict)
    # Claims by contract: (month, item).
    claims: dict[str, list[tuple[str, Item]]] = field(default_factory=lambda: defaultdict(list))
    # Reference targets: id -> services that opened it / (service, start, end) of each window.
    incident_services: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    resolutions: dict[str, list[tuple[int, int, Item]]] = field(default_factory=lambda: defaultdict(list))
    window_spans: dict[str, list[tuple[str, int, int]]] = field(default_factory=lambda: defaultdict(list))
    exclusion_spans: dict[str, list[tuple[str, int, int]]] = field(default_factory=lambda: defaultdict(list))
    maintenance_refs: dict[str, list[Item]] = field(default_factory=lambda: defaultdict(list))
    revocations: dict[str, list[Item]] = field(default_factory=lambda: defaultdict(list))

    def add_all(self, records: Iterable[Recorded]) -> None:
        """Fold many records, in position order."""
        for rec in records:
            self.add(rec)

    def add(self, rec: Recorded) -> None:
        """Fold one record (positions must increase, unless ``keep`` is off)."""
        if rec.position <= self.position:
            if self.keep:
                raise ValueError(f"position {rec.position} already folded (at {self.position})")
        else:
            self.position = rec.position
        item: Item = rec if self.keep else rec.position
        f = rec.fact
        match f:
            case ProbeFailed() | ProbeRecovered():
                s = self.services[f.service]
                at = _us(f.at)
                s.see(at)
                rank = _FIRST if isinstance(f, ProbeFailed) else _SECOND
                self._step(s, (at, rank, "p:" + f.probe, 0, rec.position, item))
            case IncidentOpened():
                s = self.services[f.service]
                at = _us(f.at)
                s.see(at)
                self._step(s, (at, _FIRST, "i:" + f.incident, _IMPACT_RANK[f.impact], rec.position, item))
                if f.incident not in s.incidents:
                    s.incidents.add(f.incident)
                    self.incident_services[f.incident].add(f.service)
                    # Resolutions recorded before the opening now belong to this service too.
                    for rat, rpos, res in self.resolutions[f.incident]:
                        s.see(rat)
                        self._step(s, (rat, _SECOND, "i:" + f.incident, 0, rpos, res))
            case IncidentResolved():
                at = _us(f.at)
                self.resolutions[f.incident].append((at, rec.position, item))
                for service in self.incident_services.get(f.incident, ()):
                    s = self.services[service]
                    s.see(at)
                    self._step(s, (at, _SECOND, "i:" + f.incident, 0, rec.position, item))
            case MaintenanceAnnounced():
                s = self.services[f.service]
                start, end = _us(f.starts_at), _us(f.ends_at)
                s.see(start)
                s.windows[f.maintenance].append(item)
                self.window_spans[f.maintenance].append((f.service, start, end))
            case MaintenanceCancelled() | MaintenanceCompleted():
                self.maintenance_refs[f.maintenance].append(item)
            case ForceMajeureDeclared() | ExclusionDeclared():
                s = self.services[f.service]
                start, end = _us(f.starts_at), _us(f.ends_at)
                s.see(start)
                xid = f.declaration if isinstance(f, ForceMajeureDeclared) else f.exclusion
                s.exclusions.append((start, end, item, xid))
                self.exclusion_spans[xid].append((f.service, start, end))
            case ExclusionRevoked():
                self.revocations[f.ref].append(item)
            case CreditClaimFiled():
                self.claims[f.contract].append((f.month, item))
            case ContractRegistered() | ContractAmended():
                self.contract_records.append(rec)
                self.versions = contract_versions(self.contract_records)
                cid = f.policy.contract.id
                for v in self.versions.get(cid, []):
                    self.contracts_of_service[v.policy.contract.service].add(cid)
                self.zones[cid] = tuple(
                    dict.fromkeys(ZoneInfo(v.policy.contract.timezone) for v in self.versions.get(cid, []))
                )

    @staticmethod
    def _step(s: _Service, step: tuple[int, int, str, int, int, Item]) -> None:
        s.steps.append(step)
        s.quiet = None

    # --- held months -----------------------------------------------------------

    def contract_services(self, contract: str) -> set[str]:
        """Every service any version of ``contract`` names."""
        return {v.policy.contract.service for v in self.versions.get(contract, [])}

    def held(self, contract: str) -> list[str]:
        """The months the view holds for ``contract``, in order."""
        zones = self.zones.get(contract, ())
        first, last = _INF, -_INF
        for name in self.contract_services(contract):
            s = self.services.get(name)
            if s is not None:
                first, last = min(first, s.first), max(last, s.last)
        months: set[str] = set()
        if first <= last and zones:
            lo = min(month_of(first, tz) for tz in zones)
            hi = max(month_of(last, tz) for tz in zones)
            months.update(months_from(lo, hi))
        for month, _ in self.claims.get(contract, []):
            months.add(month)
        return sorted(months) if zones else []

    def all_held(self) -> dict[str, list[str]]:
        """Held months of every registered contract."""
        return {cid: self.held(cid) for cid in sorted(self.versions)}

    def version_in_force(self, contract: str, month: str) -> ContractVersion:
        """The version that governs ``contract`` in ``month``."""
        versions = self.versions[contract]
        chosen = versions[0]
        for v in versions[1:]:
            assert v.effective_from is not None
            if v.effective_from <= month:
                chosen = v
        return chosen

    # --- records for one evaluation -----------------------------------------------

    def records_for(self, contract: str, month: str) -> list[Recorded]:
        """The records the fold needs for one contract-month, in position order.

        Only the in-force version's service, and of its probe and incident facts only
        those between the last instant before the month when nothing was down and the
        first one after the month when nothing was down: before the first, every
        probe and incident is back to its initial state; after the second, the last
        downtime stretch the month follows has ended. Windows and exclusions that
        touch that stretch come whole (all versions of a window id), with their
        references; claims only for the month.
        """
        if not self.keep:
            raise ValueError("this index keeps positions only: use positions_for")
        unique: dict[int, Recorded] = {}
        for item in self._picked(contract, month):
            assert isinstance(item, Recorded)
            unique[item.position] = item
        return [unique[p] for p in sorted(unique)]

    def positions_for(self, contract: str, month: str) -> list[int]:
        """The positions of ``records_for`` (either mode), ascending."""
        picked = self._picked(contract, month)
        return sorted({item if isinstance(item, int) else item.position for item in picked})

    def _picked(self, contract: str, month: str) -> list[Item]:
        version = self.version_in_force(contract, month)
        policy = version.policy
        s = self.services.get(policy.contract.service)
        out: list[Item] = [item for m, item in self.claims.get(contract, []) if m == month]
        if s is None:
            return out
        tz = ZoneInfo(policy.contract.timezone)
        start, end = (_us(b) for b in month_bounds(month, tz))
        quiet = self._quiet(s)
        # The fold looks one microsecond before the month (a stretch begun last month).
        i = bisect_right(quiet, start - 1)
        lo = quiet[i - 1] if i else -_INF
        j = bisect_left(quiet, end)
        hi = quiet[j] if j < len(quiet) else _INF
        a, b = bisect_right(s.ats, lo), bisect_right(s.ats, hi)
        out.extend(st[5] for st in s.steps[a:b])
        for mid, items in s.windows.items():
            if any(st <= hi and en >= lo for _, st, en in self.window_spans[mid]):
                out.extend(items)
                out.extend(self.maintenance_refs.get(mid, []))
        for st, en, item, xid in s.exclusions:
            if st <= hi and en >= lo:
                out.append(item)
                out.extend(self.revocations.get(xid, []))
        return out

    def last_quiet_before(self, service: str, us: int) -> int | None:
        """The last instant before ``us`` after which no probe or incident of ``service`` was down."""
        s = self.services.get(service)
        if s is None:
            return us  # no timeline: nothing before ``us`` can be reached
        quiet = self._quiet(s)
        i = bisect_left(quiet, us)
        return quiet[i - 1] if i else None

    def _quiet(self, s: _Service) -> list[int]:
        """Instants after whose facts no probe is down and no incident is in outage, ascending."""
        if s.quiet is not None:
            return s.quiet
        if s.sorted_upto < len(s.steps):
            s.steps.sort(key=lambda st: st[:5])
            s.sorted_upto = len(s.steps)
        s.ats = [st[0] for st in s.steps]
        down: set[str] = set()  # probes down, incidents in outage
        open_: set[str] = set()  # incidents open (whatever the impact)
        quiet: list[int] = []
        steps = s.steps
        n = len(steps)
        k = 0
        while k < n:
            t = steps[k][0]
            while k < n and steps[k][0] == t:
                _, rank, key, impact, _, _ = steps[k]
                if key[0] == "p":
                    (down.add if rank == _FIRST else down.discard)(key)
                elif rank == _FIRST:
                    open_.add(key)
                    (down.add if impact == _OUTAGE_RANK else down.discard)(key)
                elif key in open_:
                    open_.discard(key)
                    down.discard(key)
                k += 1
            if not down:
                quiet.append(t)
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


def _from(known: Known, held: Mapping[str, Sequence[str]], service: str, us: int, out: set[Pair]) -> None:
    """From where the outage around ``us`` began onwards, for every contract of ``service``."""
    for cid in known.contracts_of_service.get(service, ()):
        for tz in known.zones.get(cid, ()):
            first = _first(known, service, us, tz)
            out.update((cid, m) for m in held.get(cid, ()) if m >= first)


def _span(
    known: Known, held: Mapping[str, Sequence[str]], service: str, start: int, end: int, out: set[Pair]
) -> None:
    """The months [start, end] overlaps, end included, and back to where the outage at start began."""
    for cid in known.contracts_of_service.get(service, ()):
        for tz in known.zones.get(cid, ()):
            first, last = _first(known, service, start, tz), month_of(end, tz)
            out.update((cid, m) for m in held.get(cid, ()) if first <= m <= last)


def affected(batch: Sequence[Recorded], known: Known, held_before: Mapping[str, Sequence[str]]) -> set[Pair]:
    """The held (contract, month) pairs that ``batch`` can change; ``known`` already includes it."""
    out: set[Pair] = set()
    held = known.all_held()
    for rec in batch:
        f = rec.fact
        match f:
            case ProbeFailed() | ProbeRecovered() | IncidentOpened():
                _from(known, held, f.service, _us(f.at), out)
            case IncidentResolved():
                for service in known.incident_services.get(f.incident, ()):
                    _from(known, held, service, _us(f.at), out)
            case MaintenanceAnnounced() | MaintenanceCancelled() | MaintenanceCompleted():
                # Every version of the window: a new announcement can supersede an old one.
                for service, start, end in known.window_spans.get(f.maintenance, ()):
                    _span(known, held, service, start, end, out)
            case ForceMajeureDeclared() | ExclusionDeclared():
                _span(known, held, f.service, _us(f.starts_at), _us(f.ends_at), out)
            case ExclusionRevoked():
                for service, start, end in known.exclusion_spans.get(f.ref, ()):
                    _span(known, held, service, start, end, out)
            case CreditClaimFiled():
                out.add((f.contract, f.month))
            case ContractRegistered() | ContractAmended():
                cid = f.policy.contract.id
                since = f.policy.contract.effective_from if isinstance(f, ContractAmended) else None
                out.update((cid, m) for m in held.get(cid, ()) if since is None or m >= since)
    for cid, months in held.items():
        before = set(held_before.get(cid, ()))
        out.update((cid, m) for m in months if m not in before)
    keep = {(c, m) for c, months in held.items() for m in months}
    return out & keep


def walk_back(
    pairs: set[Pair],
    known: Known,
    held: Mapping[str, Sequence[str]],
    wall_to_wall: Callable[[Pair], bool],
) -> set[Pair]:
    """Pairs to add so every month whose stretch may run into a changed month is recomputed.

    ``wall_to_wall(pair)`` says whether the month is downtime from start to end (in the
    view before the batch or in its recomputation). A stretch starting in month m-1 can
    only reach past month m if m is downtime wall to wall; across a change of policy
    version the previous month reads the timeline with other rules, so it is added too.
    """
    extra: set[Pair] = set()
    held_sets = {cid: set(months) for cid, months in held.items()}
    for cid, month in pairs:
        m = month
        while True:
            prev = add_months(m, -1)
            if prev not in held_sets.get(cid, ()) or (cid, prev) in pairs or (cid, prev) in extra:
                break
            same = known.version_in_force(cid, prev).version == known.version_in_force(cid, m).version
            if same and not wall_to_wall((cid, m)):
                break
            extra.add((cid, prev))
            m = prev
    return extra
