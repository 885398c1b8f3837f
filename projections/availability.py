"""The month's availability: a pure fold of recorded facts into a Report and its Explanation.

How it works, in three passes (all O(n log n) in the number of relevant facts):

1. ``_collect`` reads every record once (one branch per fact type) and keeps only
   what concerns the policy's service and contract.
2. Each kind of fact becomes *sources*: half-open intervals in integer
   microseconds since the epoch (probe down-times, outage incidents, maintenance
   windows, exclusions), each carrying the positions of the facts behind it.
3. One sweep over the sources' end points classifies every elementary segment of
   outage as maintenance, excused or downtime; adjacent segments that agree
   (kind, reason, events) merge into the report's intervals.

No floats anywhere: durations are integers, ratios are ``Fraction``.
The interpretations where INTERFACE.md is silent are in docs/decisions.md
("Availability, maintenance, exclusions and credits").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from math import floor
from typing import Final, Literal
from zoneinfo import ZoneInfo

from ledger.calendar import add_business_days, business_intervals, month_bounds
from ledger.events import (
    ContractAmended,
    ContractRegistered,
    CreditClaimFiled,
    ExclusionDeclared,
    ExclusionRevoked,
    Fact,
    ForceMajeureDeclared,
    IncidentOpened,
    IncidentResolved,
    MaintenanceAnnounced,
    MaintenanceCancelled,
    MaintenanceCompleted,
    ProbeFailed,
    ProbeRecovered,
    Recorded,
    canonical,
)
from ledger.policy import Policy, format_duration
from projections.credit import Claim, Stretch, evaluate_credit, percent_text
from projections.digest import digest
from projections.model import (
    Credit,
    Evaluation,
    Explanation,
    Finding,
    Interval,
    IntervalKind,
    Report,
    Step,
)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)

# Within one instant, facts apply in this order (so the result never depends on arrival order):
# a failure before a recovery, an opening before a resolution. A failure and a recovery at the
# same instant are therefore a zero-length blip, not an outage that never ends.
_FAIL, _RECOVER = 0, 1
_OPEN, _RESOLVE = 0, 1
# Several openings of one incident at one instant: the worst impact is applied last, so it wins.
_IMPACT_RANK: Final = {"none": 0, "degraded": 1, "outage": 2}

# Findings derived from recorded_at: shown to the auditor, kept out of the digest.
_RECORDING_FLAGS: Final = frozenset({"backdated_notice", "claim_recorded_late"})

# "unannounced": the part of a window before its announcement, which excuses nothing (INTERFACE.md
# section 2: a window only exists from its announced_at); it is named in the reason all the same.
SourceKind = Literal["probe", "incident", "maintenance", "nonconforming", "unannounced", "exclusion"]


def to_us(instant: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact)."""
    return (instant - _EPOCH) // _US


def from_us(us: int) -> datetime:
    """Inverse of ``to_us``, in UTC."""
    return _EPOCH + timedelta(microseconds=us)


def local_at(us: int, tz: ZoneInfo) -> datetime:
    """The instant ``us`` in ``tz``, with a fixed-offset tzinfo.

    A fixed offset keeps later arithmetic exact: two datetimes sharing one ZoneInfo are
    subtracted and compared by wall clock, which is wrong across a DST change.
    """
    local = from_us(us).astimezone(tz)
    offset = local.utcoffset()
    assert offset is not None
    return local.replace(tzinfo=timezone(offset))


def seconds(us: int) -> Decimal:
    """Exact seconds of a microsecond count, without exponent or trailing zeros ("5400", "0.25")."""
    whole, rest = divmod(us, 1_000_000)
    if rest == 0:
        return Decimal(whole)
    return Decimal(f"{whole}.{rest:06d}".rstrip("0"))


# --- pass 1: collect ---------------------------------------------------------


@dataclass
class _Facts:
    """The facts that can matter for one contract's service, grouped for pass 2."""

    probes: dict[str, list[tuple[int, int, int]]] = field(default_factory=lambda: defaultdict(list))
    ignored_probes: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    incidents: dict[str, list[tuple[int, int, int, int]]] = field(default_factory=lambda: defaultdict(list))
    resolutions: dict[str, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    announced: dict[str, list[tuple[int, datetime, MaintenanceAnnounced]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    cancelled: dict[str, list[tuple[int, MaintenanceCancelled]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    completed: dict[str, list[tuple[int, MaintenanceCompleted]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    exclusions: list[tuple[int, ForceMajeureDeclared | ExclusionDeclared]] = field(default_factory=list)
    revoked: dict[str, list[tuple[int, ExclusionRevoked]]] = field(default_factory=lambda: defaultdict(list))
    claims: list[Claim] = field(default_factory=list)
    facts: dict[int, Fact] = field(default_factory=dict)  # position -> fact, for the digest


def _collect(records: Iterable[Recorded], policy: Policy, month: str) -> _Facts:
    """One pass, one branch per fact type; keeps what concerns this service and contract."""
    out = _Facts()
    service, wanted = policy.service, frozenset(policy.probes)
    for rec in records:
        pos, fact = rec.position, rec.fact
        match fact:
            case ProbeFailed() | ProbeRecovered() if fact.service == service:
                rank = _FAIL if isinstance(fact, ProbeFailed) else _RECOVER
                if fact.probe in wanted:
                    out.probes[fact.probe].append((to_us(fact.at), rank, pos))
                else:
                    out.ignored_probes[fact.probe].append(to_us(fact.at))
            case IncidentOpened() if fact.service == service:
                out.incidents[fact.incident].append((to_us(fact.at), _OPEN, _IMPACT_RANK[fact.impact], pos))
            case IncidentResolved():
                # No service on a resolution: keep them all, only ids opened on our service are read.
                out.resolutions[fact.incident].append((to_us(fact.at), pos))
            case MaintenanceAnnounced() if fact.service == service:
                out.announced[fact.maintenance].append((pos, rec.recorded_at, fact))
            case MaintenanceCancelled():
                out.cancelled[fact.maintenance].append((pos, fact))
            case MaintenanceCompleted():
                out.completed[fact.maintenance].append((pos, fact))
            case ForceMajeureDeclared() | ExclusionDeclared() if fact.service == service:
                out.exclusions.append((pos, fact))
            case ExclusionRevoked():
                out.revoked[fact.ref].append((pos, fact))
            case CreditClaimFiled() if fact.contract == policy.contract_id and fact.month == month:
                out.claims.append(Claim(at=fact.at, recorded_at=rec.recorded_at, position=pos))
            case ContractRegistered() | ContractAmended():
                continue  # the caller resolved the policy version already
            case _:
                continue  # another service's fact
        out.facts[pos] = fact
    return out


# --- pass 2: sources ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Source:
    """A half-open interval [start, end) in microseconds that can make or classify outage."""

    start: int
    end: int
    kind: SourceKind
    name: str  # probe name, incident id, maintenance id, exclusion id: sorts reasons
    label: str  # the rule, in words
    events: tuple[int, ...]


def _probe_sources(probe: str, events: list[tuple[int, int, int]], horizon: int) -> list[_Source]:
    """Down from a failure until the next recovery by `at`; no recovery: down until the horizon."""
    out: list[_Source] = []
    down_since: int | None = None
    started_by: list[int] = []
    for at, rank, pos in sorted(events):
        if rank == _FAIL:
            if down_since is None:
                down_since, started_by = at, [pos]
            elif at == down_since:
                started_by.append(pos)  # same-instant duplicates all start it: order-independent
            # a later failure while down changes nothing
        elif down_since is not None:
            if at > down_since:
                out.append(_Source(down_since, at, "probe", probe, probe, (*started_by, pos)))
            down_since = None
        # a recovery while up changes nothing
    if down_since is not None and down_since < horizon:
        out.append(_Source(down_since, horizon, "probe", probe, probe, tuple(started_by)))
    return out


def _incident_sources(
    incident: str, opened: list[tuple[int, int, int, int]], resolved: list[tuple[int, int]], horizon: int
) -> list[_Source]:
    """Outage while open with impact outage; a re-opening changes the impact from its `at`."""
    label = f"incident {incident} (impact outage)"
    steps = sorted([*opened, *((at, _RESOLVE, 0, pos) for at, pos in resolved)])
    out: list[_Source] = []
    is_open = False
    since: int | None = None  # start of the current outage stretch
    started_by: list[int] = []
    for at, rank, impact, pos in steps:
        if rank == _OPEN:
            is_open = True
            if impact == _IMPACT_RANK["outage"]:
                if since is None:
                    since, started_by = at, [pos]
                elif at == since:
                    started_by.append(pos)
            elif since is not None:
                # downgraded while open: the outage part ends here
                if at > since:
                    out.append(_Source(since, at, "incident", incident, label, (*started_by, pos)))
                since = None
        elif is_open:
            if since is not None and at > since:
                out.append(_Source(since, at, "incident", incident, label, (*started_by, pos)))
            is_open, since = False, None
    if since is not None and since < horizon:
        out.append(_Source(since, horizon, "incident", incident, label, tuple(started_by)))
    return out


def _local(instant: datetime, policy: Policy) -> str:
    try:
        return instant.astimezone(policy.calendar.timezone).strftime("%Y-%m-%d %H:%M %Z")
    except OverflowError:  # within hours of datetime's limits the zone's wall clock does not exist
        return instant.isoformat()


def _ahead(notice: timedelta) -> str:
    if notice < timedelta(0):
        return f"{format_duration(-notice)} after it started"
    return f"{format_duration(notice)} ahead"


def _hours(policy: Policy) -> str:
    cal = policy.calendar
    closes = "24:00" if cal.closes == time.max else f"{cal.closes:%H:%M}"
    return f"{cal.opens:%H:%M}-{closes} {cal.timezone.key}"


def _verdict(mid: str, ann: MaintenanceAnnounced, policy: Policy) -> tuple[bool, str]:
    """Whether a window conforms to the maintenance clause, and the rule in words."""
    rules = policy.maintenance
    assert rules is not None
    parts: list[str] = []
    notice = ann.starts_at - ann.announced_at
    if rules.min_notice.business_days is not None:
        n = rules.min_notice.business_days
        due = add_business_days(ann.announced_at, n, policy.calendar)
        # No instant to reach (past the end of datetime's calendar): the notice is never enough.
        ok = due is not None and ann.starts_at >= due
        runs_to = "past the end of the calendar" if due is None else f"to {_local(due, policy)}"
        parts.append(
            f"announced {_ahead(notice)}; {rules.min_notice.describe()} required "
            f"(notice from {_local(ann.announced_at, policy)} runs {runs_to})"
        )
    else:
        assert rules.min_notice.fixed is not None
        ok = notice >= rules.min_notice.fixed
        parts.append(f"announced {_ahead(notice)}; {rules.min_notice.describe()} required")
    if rules.outside_business_hours:
        first = next(business_intervals(ann.starts_at, ann.ends_at, policy.calendar), None)
        hours = _hours(policy)
        if first is not None:
            ok = False
            parts.append(f"overlaps business hours {hours} on {_local(first[0], policy)}")
        else:
            parts.append(f"outside business hours {hours}")
    if ok:
        tail = "conforming, counted in M"
    elif rules.nonconforming == "emergency":
        tail = "non-conforming: emergency maintenance, counted in M"
    else:
        tail = "non-conforming, counted as downtime"
    return ok, f"maintenance {mid} {'; '.join(parts)} ({tail})"


@dataclass
class _Context:
    policy: Policy
    month_start: int
    month_end: int
    horizon: int
    findings: list[Finding] = field(default_factory=list)

    def in_month(self, start: datetime, end: datetime) -> bool:
        return to_us(start) < self.month_end and to_us(end) > self.month_start

    def find(self, kind: str, ref: str, text: str, *events: int) -> None:
        self.findings.append(Finding(kind=kind, ref=ref, text=text, events=tuple(sorted(set(events)))))


def _maintenance_sources(ctx: _Context, facts: _Facts) -> list[_Source]:
    """Windows in force: the latest announcement per id, shortened by completion, unless cancelled."""
    out: list[_Source] = []
    policy = ctx.policy
    for mid in sorted(facts.announced):
        versions = facts.announced[mid]
        # Latest announced_at wins (a re-announcement is new notice); exact ties by content,
        # so neither the store nor import order can change which version is in force.
        pos, recorded_at, ann = max(versions, key=lambda v: (v[2].announced_at, canonical(v[2]), v[0]))
        relevant = ctx.in_month(ann.starts_at, ann.ends_at)
        if relevant:
            for old_pos, _, old in sorted(versions, key=lambda v: (v[2].announced_at, v[0])):
                if old_pos != pos and old != ann:
                    ctx.find(
                        "superseded",
                        mid,
                        f"announcement of maintenance {mid} at {old.announced_at.isoformat()} superseded by "
                        f"the one at {ann.announced_at.isoformat()}",
                        old_pos,
                        pos,
                    )
            if recorded_at > ann.announced_at:
                ctx.find(
                    "backdated_notice",
                    mid,
                    f"maintenance {mid} says it was announced at {ann.announced_at.isoformat()} but was "
                    f"recorded at {recorded_at.isoformat()}; notice is counted from announced_at",
                    pos,
                )
        cancels = facts.cancelled.get(mid, [])
        if cancels:
            if relevant:
                cpos, cancel = min(cancels, key=lambda c: (c[1].at, c[0]))
                ctx.find(
                    "cancelled",
                    mid,
                    f"maintenance {mid} was cancelled at {cancel.at.isoformat()}: the window excuses nothing",
                    pos,
                    cpos,
                )
            continue
        if policy.maintenance is None:
            if relevant:
                ctx.find(
                    "maintenance_refused",
                    mid,
                    f"maintenance {mid}: the policy has no maintenance clause, the window excuses nothing",
                    pos,
                )
            continue
        start, end = to_us(ann.starts_at), to_us(ann.ends_at)
        ended = ann.ends_at
        events = [pos]
        completions = facts.completed.get(mid, [])
        if completions:
            dpos, done = min(completions, key=lambda c: (c[1].at, c[0]))
            if to_us(done.at) < end:
                end, ended = to_us(done.at), done.at
                events.append(dpos)
                if relevant:
                    ctx.find(
                        "completed_early",
                        mid,
                        f"maintenance {mid} completed at {done.at.isoformat()}, before its announced end: "
                        "outage after that is downtime",
                        pos,
                        dpos,
                    )
        conforming, label = _verdict(mid, ann, policy)
        if not conforming and relevant:
            ctx.find("maintenance_refused", mid, label, pos)
        announced = to_us(ann.announced_at)
        if announced > start:
            # A window only exists from its announcement (INTERFACE.md section 2), whatever the
            # rule: outage before it is downtime, even for emergency maintenance.
            cut = min(announced, end)
            if relevant:
                ctx.find("announced_late", mid, _late_text(mid, ann, ended), *events)
            if start < cut:
                late = (
                    f"maintenance {mid} not yet announced (announced at {_local(ann.announced_at, policy)}, "
                    f"{format_duration(ann.announced_at - ann.starts_at)} after it started): a window only "
                    "exists from its announcement, outage before it is downtime"
                )
                out.append(_Source(start, cut, "unannounced", mid, late, tuple(events)))
            start = cut
            label += f"; in force only from its announcement at {_local(ann.announced_at, policy)}"
        if start < end:
            kind: SourceKind = (
                "maintenance"
                if conforming or policy.maintenance.nonconforming == "emergency"
                else "nonconforming"
            )
            out.append(_Source(start, end, kind, mid, label, tuple(events)))
    return out


def _late_text(mid: str, ann: MaintenanceAnnounced, ended: datetime) -> str:
    """The finding for a window announced after it started: which part of it counted for nothing."""
    said = f"maintenance {mid} was announced at {ann.announced_at.isoformat()}"
    if ann.announced_at >= ended:
        return (
            f"{said}, after its end at {ended.isoformat()}: a window only exists from its "
            "announcement, so none of it counted (outage in it is downtime unless excused otherwise)"
        )
    return (
        f"{said}, after it started at {ann.starts_at.isoformat()}: a window only exists from its "
        f"announcement, so its first {format_duration(ann.announced_at - ann.starts_at)} counted for "
        "nothing (outage then is downtime unless excused otherwise); the rest follows the maintenance clause"
    )


def _exclusion_sources(ctx: _Context, facts: _Facts) -> list[_Source]:
    """Force majeure and exclusions that excuse: excludable category, this contract, not revoked."""
    out: list[_Source] = []
    policy = ctx.policy
    # In time order, so findings read the same whatever order the facts arrived in.
    for pos, fact in sorted(facts.exclusions, key=lambda e: (e[1].starts_at, e[1].ends_at, e[0])):
        contract: str | None
        if isinstance(fact, ForceMajeureDeclared):
            xid, category, contract = fact.declaration, "force_majeure", None
            label = f"force majeure {xid}: {fact.reason}"
        else:
            xid, category, contract = fact.exclusion, fact.category, fact.contract
            label = f"exclusion {xid} ({category}): {fact.reason}"
        relevant = ctx.in_month(fact.starts_at, fact.ends_at)
        revocations = facts.revoked.get(xid, [])
        if revocations:
            if relevant:
                why = "; ".join(sorted({r.reason for _, r in revocations}))
                ctx.find("revoked", xid, f"{label} -- revoked: {why}", pos, *(p for p, _ in revocations))
            continue
        if contract is not None and contract != policy.contract_id:
            if relevant:
                ctx.find(
                    "exclusion_refused",
                    xid,
                    f"{label} -- applies to contract {contract} only, not {policy.contract_id}",
                    pos,
                )
            continue
        if category not in policy.excludable:
            if relevant:
                allowed = ", ".join(sorted(policy.excludable)) or "none"
                ctx.find(
                    "exclusion_refused",
                    xid,
                    f"{label} -- category {category} is not excludable under this contract "
                    f"(excludable: {allowed})",
                    pos,
                )
            continue
        out.append(_Source(to_us(fact.starts_at), to_us(fact.ends_at), "exclusion", xid, label, (pos,)))
    return out


# --- pass 3: sweep -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Piece:
    start: int
    end: int
    kind: IntervalKind
    reason: str
    events: tuple[int, ...]


def _quorum(policy: Policy) -> int:
    if policy.outage_when == "any":
        return 1
    if policy.outage_when == "all":
        return len(policy.probes)
    return policy.outage_when


def _probe_cause(policy: Policy, down: list[str]) -> str:
    names = ", ".join(down)
    noun = "probe" if len(down) == 1 else "probes"
    if policy.outage_when == "all":
        return f"{noun} {names} {'all ' if len(down) > 1 else ''}down (outage_when = all)"
    if policy.outage_when == "any":
        return f"{noun} {names} down (outage_when = any)"
    return f"{noun} {names} down ({len(down)} of {len(policy.probes)}; outage_when = {policy.outage_when})"


def _sweep(policy: Policy, sources: list[_Source], horizon: int) -> list[_Piece]:
    """Classify every elementary segment of outage and merge neighbours that agree.

    Past ``horizon`` only a downtime stretch already running is followed (its length decides
    the long-outage credit); the sweep stops as soon as it breaks.
    """
    need = _quorum(policy)
    probe_order = {p: i for i, p in enumerate(policy.probes)}
    points: list[tuple[int, int, int]] = []
    for i, s in enumerate(sources):
        points.append((s.start, 1, i))
        points.append((s.end, -1, i))
    points.sort()
    active: dict[SourceKind, set[int]] = {
        "probe": set(),
        "incident": set(),
        "maintenance": set(),
        "nonconforming": set(),
        "unannounced": set(),
        "exclusion": set(),
    }
    pieces: list[_Piece] = []
    k = 0
    while k < len(points):
        t = points[k][0]
        while k < len(points) and points[k][0] == t:
            _, delta, i = points[k]
            (active[sources[i].kind].add if delta > 0 else active[sources[i].kind].discard)(i)
            k += 1
        if k == len(points):
            break
        last = pieces[-1] if pieces else None
        if t >= horizon and (last is None or last.end != t or last.kind != "downtime"):
            break
        nxt = points[k][0]
        piece = _classify(policy, sources, active, need, probe_order, t, nxt)
        if piece is None:
            continue
        if (
            last is not None
            and last.end == piece.start
            and (last.kind, last.reason, last.events) == (piece.kind, piece.reason, piece.events)
        ):
            pieces[-1] = _Piece(last.start, piece.end, last.kind, last.reason, last.events)
        else:
            pieces.append(piece)
    return pieces


def _named(sources: list[_Source], ids: set[int]) -> list[_Source]:
    return sorted((sources[i] for i in ids), key=lambda s: (s.name, s.start))


def _classify(
    policy: Policy,
    sources: list[_Source],
    active: dict[SourceKind, set[int]],
    need: int,
    probe_order: dict[str, int],
    start: int,
    end: int,
) -> _Piece | None:
    """One segment where the set of active sources is constant: is it outage, and of which kind?"""
    probes_out = bool(policy.probes) and len(active["probe"]) >= need
    if not probes_out and not active["incident"]:
        return None
    causes: list[str] = []
    events: set[int] = set()
    if probes_out:
        down = sorted((sources[i] for i in active["probe"]), key=lambda s: probe_order[s.name])
        causes.append(_probe_cause(policy, [s.name for s in down]))
        for s in down:
            events.update(s.events)
    for s in _named(sources, active["incident"]):
        causes.append(s.label)
        events.update(s.events)
    cause = "; ".join(causes)
    kind: IntervalKind
    if active["maintenance"]:
        rules = _named(sources, active["maintenance"])
        kind = "maintenance"
    elif active["exclusion"]:
        # A non-conforming window that counts as downtime does not excuse, so it does not pre-empt
        # an exclusion either: precedence only decides between M and excused.
        rules = _named(sources, active["exclusion"])
        kind = "excused"
    elif active["nonconforming"] or active["unannounced"]:
        # Windows that excuse nothing here, named so the reader sees why they did not count.
        rules = _named(sources, active["nonconforming"] | active["unannounced"])
        kind = "downtime"
    else:
        return _Piece(start, end, "downtime", cause, tuple(sorted(events)))
    for s in rules:
        events.update(s.events)
    reason = "; ".join(s.label for s in rules) + " -- outage: " + cause
    return _Piece(start, end, kind, reason, tuple(sorted(events)))


# --- the fold ----------------------------------------------------------------


def _clip(pieces: list[_Piece], lo: int, hi: int) -> list[_Piece]:
    out = []
    for p in pieces:
        s, e = max(p.start, lo), min(p.end, hi)
        if s < e:
            out.append(_Piece(s, e, p.kind, p.reason, p.events))
    return out


def _stretches(pieces: list[_Piece], lo: int, hi: int) -> list[Stretch]:
    """Maximal unbroken stretches of downtime that start in [lo, hi) (their whole length)."""
    out: list[Stretch] = []
    cur: tuple[int, int, set[int]] | None = None
    for p in pieces:
        if p.kind != "downtime":
            continue
        if cur is not None and cur[1] == p.start:
            cur = (cur[0], p.end, cur[2] | set(p.events))
            continue
        if cur is not None:
            out.append(Stretch(cur[0], cur[1], tuple(sorted(cur[2]))))
        cur = (p.start, p.end, set(p.events))
    if cur is not None:
        out.append(Stretch(cur[0], cur[1], tuple(sorted(cur[2]))))
    return [s for s in out if lo <= s.start_us < hi]


def _availability(policy: Policy, t: int, m: int, d: int) -> tuple[Fraction, str]:
    """Exact availability in percent and the formula with the numbers put in."""
    ts, ms, ds = seconds(t), seconds(m), seconds(d)
    if policy.formula == "downtime_over_total":
        return Fraction(100 * (t - d), t), f"A = (T - D) / T = ({ts} - {ds}) / {ts}"
    text = f"A = (T - M - D) / (T - M) = ({ts} - {ms} - {ds}) / ({ts} - {ms})"
    if t == m:
        # The whole month was maintenance: no time was due, so none was missed (D is 0 here).
        return Fraction(100), text + " -- T - M = 0: nothing was due, A = 100 %"
    return Fraction(100 * (t - m - d), t - m), text


def _truncate4(value: Fraction) -> str:
    scaled = floor(value * 10_000)  # value >= 0, so floor truncates toward zero
    return f"{scaled // 10_000}.{scaled % 10_000:04d}"


def quiet_report(
    policy: Policy, policy_version: int, month: str, *, as_of_position: int, credit: Credit
) -> Report:
    """``evaluate`` of a month given no fact at all, without the explanation: about 10 times faster.

    The reporting view holds every month up to the ledger's clock, most of them quiet;
    ``credit`` is ``quiet_credit(policy)``, the same for every such month.
    """
    ms_dt, me_dt = month_bounds(month, policy.timezone)
    target_met = Fraction(100) >= Fraction(policy.target)
    return Report(
        contract=policy.contract_id,
        month=month,
        timezone=policy.timezone.key,
        policy_version=policy_version,
        total_seconds=seconds(to_us(me_dt) - to_us(ms_dt)),
        outage_seconds=Decimal(0),
        maintenance_seconds=Decimal(0),
        excused_seconds=Decimal(0),
        downtime_seconds=Decimal(0),
        availability_percent=_truncate4(Fraction(100)),
        target_percent=policy.source.availability.target,
        target_met=target_met,
        credit=credit,
        intervals=(),
        as_of_position=as_of_position,
        digest=digest(policy.contract_id, month, policy_version, policy.source, ()),
    )


def quiet_credit(policy: Policy) -> Credit:
    """The credit of a month without facts: A = 100 %, no stretch, no claim, whatever the month."""
    # The month only sets the claim deadline, which nothing is compared with here.
    return evaluate_credit(policy, "2000-01", Fraction(100), [], []).credit


def evaluate(
    records: Iterable[Recorded],
    policy: Policy,
    policy_version: int,
    month: str,
    *,
    as_of_position: int,
    replay_point: datetime | None = None,
) -> Evaluation:
    """Evaluate one contract's month from the recorded facts: figures, intervals, credit, reasons."""
    ms_dt, me_dt = month_bounds(month, policy.timezone)
    ms, me = to_us(ms_dt), to_us(me_dt)
    rp = to_us(replay_point) if replay_point is not None else None
    # Outage with no recorded end runs to the horizon: month end, or the replay point if earlier.
    horizon = max(ms, min(me, rp)) if rp is not None else me
    # Past month end a downtime stretch is still followed (for its long-outage length) as far
    # as recorded ends take it; an audit sees nothing after its replay point.
    limit = rp if rp is not None else None

    facts = _collect(records, policy, month)
    ctx = _Context(policy, ms, me, horizon)

    sources: list[_Source] = []
    for probe, evs in facts.probes.items():
        sources += _probe_sources(probe, evs, horizon)
    for inc, opened in facts.incidents.items():
        sources += _incident_sources(inc, opened, facts.resolutions.get(inc, []), horizon)
    sources += _maintenance_sources(ctx, facts)
    sources += _exclusion_sources(ctx, facts)
    # One microsecond before the month is enough to tell a stretch that began last month.
    lo, hi = ms - 1, limit
    window = [
        _Source(
            max(s.start, lo), min(s.end, hi) if hi is not None else s.end, s.kind, s.name, s.label, s.events
        )
        for s in sources
        if s.end > lo and (hi is None or s.start < hi)
    ]
    timeline = _sweep(policy, [s for s in window if s.start < s.end], horizon)
    pieces = _clip(timeline, ms, horizon)

    totals = {"downtime": 0, "maintenance": 0, "excused": 0}
    kind_events: dict[str, set[int]] = {"downtime": set(), "maintenance": set(), "excused": set()}
    for p in pieces:
        totals[p.kind] += p.end - p.start
        kind_events[p.kind].update(p.events)
    t = me - ms
    d, m, x = totals["downtime"], totals["maintenance"], totals["excused"]
    outage = d + m + x
    a_exact, formula_text = _availability(policy, t, m, d)
    a_text = _truncate4(a_exact)
    target_met = a_exact >= Fraction(policy.target)

    stretches = _stretches(timeline, ms, horizon)
    credit = evaluate_credit(policy, month, a_exact, stretches, facts.claims)

    for probe in sorted(facts.ignored_probes):
        n = sum(1 for at in facts.ignored_probes[probe] if ms <= at < me)
        if n:
            ctx.find(
                "ignored_probe", probe, f"probe {probe} is not in the policy's probes: {n} report(s) ignored"
            )

    tz = policy.timezone
    intervals = tuple(
        Interval(
            start=local_at(p.start, tz),
            end=local_at(p.end, tz),
            seconds=seconds(p.end - p.start),
            kind=p.kind,
            reason=p.reason,
            events=p.events,
        )
        for p in pieces
    )

    def ev(*sets: set[int]) -> tuple[int, ...]:
        return tuple(sorted(set().union(*sets)))

    horizon_note = (
        ""
        if horizon == me
        else f", outage with no recorded end cut at the replay point "
        f"{from_us(horizon).astimezone(tz).isoformat()}"
    )
    steps: list[Step] = [
        Step(
            figure="month",
            value=f"{ms_dt.astimezone(tz).isoformat()} .. {me_dt.astimezone(tz).isoformat()}",
            how=f"local midnight of the 1st to local midnight of the 1st of the next month in {tz.key}",
        ),
        Step(
            figure="T",
            value=f"{seconds(t)} s",
            how=f"{Fraction(t, 3_600_000_000)} h in the month (daylight saving included)",
        ),
        Step(
            figure="outage",
            value=f"{seconds(outage)} s",
            how=f"probe outage (outage_when = {policy.outage_when}, "
            f"probes {', '.join(policy.probes) or 'none'}) "
            f"united with impact-outage incidents, overlaps counted once, inside the month{horizon_note}",
            events=ev(*kind_events.values()),
        ),
        Step(
            figure="M",
            value=f"{seconds(m)} s",
            how="outage inside maintenance windows that count as M",
            events=ev(kind_events["maintenance"]),
        ),
        Step(
            figure="excused",
            value=f"{seconds(x)} s",
            how="outage inside excludable, unrevoked exclusions not already counted as maintenance",
            events=ev(kind_events["excused"]),
        ),
        Step(
            figure="D",
            value=f"{seconds(d)} s",
            how=f"D = outage - M - excused = {seconds(outage)} - {seconds(m)} - {seconds(x)}",
            events=ev(kind_events["downtime"]),
        ),
        Step(figure="formula", value=policy.formula, how=formula_text),
        Step(
            figure="A",
            value=f"{a_text} %",
            how=f"exact A = {a_exact.numerator}/{a_exact.denominator} %, truncated toward zero to 4 decimals",
        ),
        Step(
            figure="target",
            value="met" if target_met else "not met",
            how=f"exact A {'>=' if target_met else '<'} target {percent_text(policy.target)} %",
        ),
        *credit.steps,
    ]

    findings = tuple([*ctx.findings, *credit.findings])
    used: set[int] = set(credit.claim_events)
    for p in pieces:
        used.update(p.events)
    for s in stretches:
        used.update(s.events)
    for f in findings:
        # These flags rest on recorded_at, which the digest must not see.
        if f.kind not in _RECORDING_FLAGS:
            used.update(f.events)
    report = Report(
        contract=policy.contract_id,
        month=month,
        timezone=tz.key,
        policy_version=policy_version,
        total_seconds=seconds(t),
        outage_seconds=seconds(outage),
        maintenance_seconds=seconds(m),
        excused_seconds=seconds(x),
        downtime_seconds=seconds(d),
        availability_percent=a_text,
        target_percent=policy.source.availability.target,
        target_met=target_met,
        credit=credit.credit,
        intervals=intervals,
        as_of_position=as_of_position,
        digest=digest(
            policy.contract_id,
            month,
            policy_version,
            policy.source,
            (facts.facts[p] for p in used if p in facts.facts),
        ),
    )
    explanation = Explanation(
        month_start=local_at(ms, tz),
        month_end=local_at(me, tz),
        horizon=local_at(horizon, tz),
        policy_version=policy_version,
        steps=tuple(steps),
        findings=findings,
    )
    return Evaluation(report=report, explanation=explanation)


def downtime_stretches(
    records: Iterable[Recorded], policy: Policy, month: str, *, replay_point: datetime | None = None
) -> list[Stretch]:
    """The month's downtime stretches (section 5), as ``evaluate`` finds them: for support engagement.

    The same passes as ``evaluate`` up to the stretches, so that "a stretch of D" has one
    definition; the figures, credit and explanation are left out.
    """
    ms_dt, me_dt = month_bounds(month, policy.timezone)
    ms, me = to_us(ms_dt), to_us(me_dt)
    rp = to_us(replay_point) if replay_point is not None else None
    horizon = max(ms, min(me, rp)) if rp is not None else me
    facts = _collect(records, policy, month)
    ctx = _Context(policy, ms, me, horizon)
    sources: list[_Source] = []
    for probe, evs in facts.probes.items():
        sources += _probe_sources(probe, evs, horizon)
    for inc, opened in facts.incidents.items():
        sources += _incident_sources(inc, opened, facts.resolutions.get(inc, []), horizon)
    sources += _maintenance_sources(ctx, facts)
    sources += _exclusion_sources(ctx, facts)
    lo, hi = ms - 1, rp
    window = [
        _Source(
            max(s.start, lo), min(s.end, hi) if hi is not None else s.end, s.kind, s.name, s.label, s.events
        )
        for s in sources
        if s.end > lo and (hi is None or s.start < hi)
    ]
    timeline = _sweep(policy, [s for s in window if s.start < s.end], horizon)
    return _stretches(timeline, ms, horizon)
