"""Pass 3 of the month fold: one sweep over the sources' end points classifies every segment of outage.

Each elementary segment is maintenance, excused or downtime; adjacent segments that agree
(kind, reason, events) merge into the report's intervals, and so do adjacent *wide* segments
(more than ``SPELLED`` incidents or rules in force) with the same kind and reason.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

import msgspec

from ledger.policy import Policy
from projections.credit import Stretch
from projections.explain import probe_cause, probe_rule
from projections.model import IntervalKind
from projections.sources import Source, SourceKind


class Piece(msgspec.Struct, frozen=True):
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



def sweep(policy: Policy, sources: list[Source], horizon: int, cuts: Collection[int] = ()) -> list[Piece]:
    """Classify every elementary segment of outage and merge neighbours that agree.

    Past ``horizon`` only a downtime stretch already running is followed (its length decides
    the long-outage credit); the sweep stops as soon as it breaks.

    A piece's reason and events depend only on the sources that decide it (the probes down
    when they make outage, the incidents, the rules of its kind); while none of those changes,
    the next segment only extends the last piece, in O(1). Where more than ``SPELLED``
    incidents or rules are in force at once the piece is *wide*: its reason names the rule
    without spelling every window (docs/decisions.md, issue 17), neighbours with the same
    reason merge, and the merged interval cites every source in force during it, each
    source's events added once, when it enters. A wide piece never runs across ``horizon``
    or one of ``cuts`` (the month's start), so that clipping it there cites what the
    elementary segments on each side would. Every source is non-empty (start < end), as the
    fold gives them.
    """
    need = _quorum(policy)
    has_probes = bool(policy.probes)
    probe_order = {p: i for i, p in enumerate(policy.probes)}
    # Each instant's end points, as source ids: i enters, ~i (negative) leaves. Within an
    # instant their order changes nothing (a source never starts and ends at once, every
    # instant's points apply before its segment is classified), so only instants are sorted.
    # Most instants have one point: held as the bare id, a list only for several (a list per
    # instant made the cyclic collector run over and over where it is not paused).
    at: dict[int, int | list[int]] = {}
    slots: list[int] = []
    named: list[int] = []  # the sources reasons name (all but probes)
    kind_slot = _KIND_SLOT
    for i, s in enumerate(sources):
        slot = kind_slot[s.kind]
        slots.append(slot)
        if slot != _PROBE:
            named.append(i)
        here = at.get(s.start)
        if here is None:
            at[s.start] = i
        elif isinstance(here, int):
            at[s.start] = [here, i]
        else:
            here.append(i)
        here = at.get(s.end)
        if here is None:
            at[s.end] = ~i
        elif isinstance(here, int):
            at[s.end] = [here, ~i]
        else:
            here.append(~i)
    cut = {horizon, *cuts}
    for c in cut:
        at.setdefault(c, [])  # a place to end a wide piece, changing nothing else
    times = sorted(at)
    # Rank of each named source among reasons (by name, then start): sorted once, not per
    # segment (probes are never ranked: reasons list them in the policy's order).
    rank: dict[int, int] = {
        i: r for r, i in enumerate(sorted(named, key=lambda i: (sources[i].name, sources[i].start)))
    }
    active: list[set[int]] = [set() for _ in _KIND_SLOT]
    probes_down, incidents_open = active[_PROBE], active[_INCIDENT]
    in_maintenance, in_exclusion = active[_MAINTENANCE], active[_EXCLUSION]
    in_nonconforming, in_unannounced = active[_NONCONFORMING], active[_UNANNOUNCED]
    changes = [0] * len(_KIND_SLOT)  # bumped whenever a kind's active set changes
    pieces: list[Piece] = []
    last_key: tuple[int, ...] | None = None
    wide: set[int] | None = None  # the last piece's events while it is wide and may still grow
    generic: dict[tuple[bool, bool, tuple[int, ...]], tuple[IntervalKind, str]] = {}
    final = len(times) - 1  # the last instant's points end what is left: no segment starts there
    for k, t in enumerate(times):
        if k == final:
            break
        codes = at[t]  # an empty list: a cut only
        if isinstance(codes, int):  # the same as the loop below, for the one point of most instants
            if codes >= 0:
                slot = slots[codes]
                active[slot].add(codes)
            else:
                slot = slots[~codes]
                active[slot].discard(~codes)
            changes[slot] += 1
            real = True
        else:
            for i in codes:
                if i >= 0:
                    slot = slots[i]
                    active[slot].add(i)
                else:
                    slot = slots[~i]
                    active[slot].discard(~i)
                changes[slot] += 1
            real = bool(codes)
        if real and t >= horizon:
            last = pieces[-1] if pieces else None
            if last is None or last.end != t or last.kind != "downtime":
                break
        probes_out = has_probes and len(probes_down) >= need
        if not probes_out and not incidents_open:
            last_key = None
            continue
        last = pieces[-1] if pieces else None
        nxt = times[k + 1]
        if in_maintenance:
            rule: tuple[int, ...] = (_MAINTENANCE,)
        elif in_exclusion:
            # A non-conforming window that counts as downtime does not excuse, so it does not pre-empt
            # an exclusion either: precedence only decides between M and excused.
            rule = (_EXCLUSION,)
        elif in_nonconforming or in_unannounced:
            rule = (_NONCONFORMING, _UNANNOUNCED)
        else:
            rule = ()
        key = (changes[_PROBE] if probes_out else -1, changes[_INCIDENT], *rule, *(changes[r] for r in rule))
        if last is not None and key == last_key and last.end == t and (wide is None or t not in cut):
            # Nothing that decides the piece changed (and nothing entered that it would cite).
            pieces[-1] = Piece(last.start, nxt, last.kind, last.reason, last.events)
            continue
        last_key = key
        deciding = ((_PROBE,) if probes_out else ()) + (_INCIDENT, *rule)
        incidents = len(active[_INCIDENT])
        ruling = sum(len(active[r]) for r in rule)
        if incidents > SPELLED or ruling > SPELLED:
            if (incidents == 0 or incidents > SPELLED) and (not rule or ruling > SPELLED):
                # Nothing in the reason names a source: one text per rule, written once.
                said = (probes_out, incidents > 0, rule)
                if said not in generic:
                    generic[said] = _wide(policy, sources, rank, active, probes_out, probe_order, rule)
                kind, reason = generic[said]
            else:
                kind, reason = _wide(policy, sources, rank, active, probes_out, probe_order, rule)
            if (
                wide is not None
                and last is not None
                and last.end == t
                and t not in cut
                and (last.kind, last.reason) == (kind, reason)
            ):
                pieces[-1] = Piece(last.start, nxt, kind, reason, ())
                for i in (codes,) if isinstance(codes, int) else codes:
                    if i >= 0 and slots[i] in deciding:  # entered now
                        wide.update(sources[i].events)
                continue
            _close(pieces, wide)
            wide = set()
            for slot in deciding:
                for i in active[slot]:
                    wide.update(sources[i].events)
            pieces.append(Piece(t, nxt, kind, reason, ()))
            continue
        _close(pieces, wide)
        wide = None
        piece = _classify(policy, sources, rank, active, probes_out, probe_order, rule, t, nxt)
        if (
            last is not None
            and last.end == piece.start
            and (last.kind, last.reason, last.events) == (piece.kind, piece.reason, piece.events)
        ):
            pieces[-1] = Piece(last.start, piece.end, last.kind, last.reason, last.events)
        else:
            pieces.append(piece)
    _close(pieces, wide)
    return pieces


def _close(pieces: list[Piece], wide: set[int] | None) -> None:
    """Give the last piece, if it was wide, the events gathered while it grew."""
    if wide is not None:
        p = pieces[-1]
        pieces[-1] = Piece(p.start, p.end, p.kind, p.reason, tuple(sorted(wide)))


# Index of each source kind's active set in the sweep.
_PROBE, _INCIDENT, _MAINTENANCE, _NONCONFORMING, _UNANNOUNCED, _EXCLUSION = range(6)
_KIND_SLOT: Final[dict[SourceKind, int]] = {
    "probe": _PROBE,
    "incident": _INCIDENT,
    "maintenance": _MAINTENANCE,
    "nonconforming": _NONCONFORMING,
    "unannounced": _UNANNOUNCED,
    "exclusion": _EXCLUSION,
}
# More incidents or rules in force at once than this and a piece's reason names the rule
# instead of spelling each one out (its events still cite them all): docs/decisions.md, issue 17.
SPELLED: Final = 3
_WIDE_RULES: Final = {
    _MAINTENANCE: f"more than {SPELLED} maintenance windows in force at once, each cited in events "
    "(counted in M)",
    _EXCLUSION: f"more than {SPELLED} exclusions in force at once, each cited in events (excused)",
    _NONCONFORMING: f"more than {SPELLED} maintenance windows in force at once that excuse nothing, "
    "each cited in events (counted as downtime)",
}
_WIDE_INCIDENTS: Final = f"more than {SPELLED} outage incidents open at once, each cited in events"


def _named(sources: list[Source], rank: dict[int, int], ids: set[int]) -> list[Source]:
    return [sources[i] for i in sorted(ids, key=rank.__getitem__)]


def _cause(
    policy: Policy, sources: list[Source], rank: dict[int, int], active: list[set[int]], probes_out: bool,
    probe_order: dict[str, int], events: set[int] | None,
) -> str:
    """Why the segment is outage: the probes down (if they make it) and the outage incidents."""
    causes: list[str] = []
    if probes_out and events is None:
        # Wide: which probes are down changes at every blip; the rule stays, the facts are cited.
        causes.append(probe_rule(policy))
    elif probes_out:
        down = sorted((sources[i] for i in active[_PROBE]), key=lambda s: probe_order[s.name])
        causes.append(probe_cause(policy, [s.name for s in down]))
        if events is not None:
            for s in down:
                events.update(s.events)
    if events is None and len(active[_INCIDENT]) > SPELLED:
        causes.append(_WIDE_INCIDENTS)
    else:
        for s in _named(sources, rank, active[_INCIDENT]):
            causes.append(s.label)
            if events is not None:
                events.update(s.events)
    return "; ".join(causes)


def _kind(rule: tuple[int, ...]) -> IntervalKind:
    if not rule or rule[0] not in (_MAINTENANCE, _EXCLUSION):
        return "downtime"
    return "maintenance" if rule[0] == _MAINTENANCE else "excused"


def _wide(
    policy: Policy,
    sources: list[Source],
    rank: dict[int, int],
    active: list[set[int]],
    probes_out: bool,
    probe_order: dict[str, int],
    rule: tuple[int, ...],
) -> tuple[IntervalKind, str]:
    """The kind and reason of a wide segment, without its events (gathered by the sweep)."""
    cause = _cause(policy, sources, rank, active, probes_out, probe_order, None)
    if not rule:
        return "downtime", cause
    ids = active[rule[0]] if len(rule) == 1 else active[rule[0]] | active[rule[1]]
    if len(ids) > SPELLED:
        rules = _WIDE_RULES[rule[0]]
    else:
        rules = "; ".join(s.label for s in _named(sources, rank, ids))
    return _kind(rule), rules + " -- outage: " + cause


def _classify(
    policy: Policy,
    sources: list[Source],
    rank: dict[int, int],
    active: list[set[int]],
    probes_out: bool,
    probe_order: dict[str, int],
    rule: tuple[int, ...],
    start: int,
    end: int,
) -> Piece:
    """One segment of outage where the deciding sources are constant: of which kind, and why?"""
    events: set[int] = set()
    cause = _cause(policy, sources, rank, active, probes_out, probe_order, events)
    if not rule:
        return Piece(start, end, "downtime", cause, tuple(sorted(events)))
    ids = active[rule[0]] if len(rule) == 1 else active[rule[0]] | active[rule[1]]
    rules = _named(sources, rank, ids)
    for s in rules:
        events.update(s.events)
    reason = "; ".join(s.label for s in rules) + " -- outage: " + cause
    return Piece(start, end, _kind(rule), reason, tuple(sorted(events)))



def clip(pieces: list[Piece], lo: int, hi: int) -> list[Piece]:
    out = []
    for p in pieces:
        s, e = max(p.start, lo), min(p.end, hi)
        if s < e:
            out.append(Piece(s, e, p.kind, p.reason, p.events))
    return out


def stretches(pieces: list[Piece], lo: int, hi: int) -> list[Stretch]:
    """Maximal unbroken stretches of downtime that start in [lo, hi) (their whole length)."""
    out: list[Stretch] = []
    start = end = 0
    events: set[int] | None = None  # one set per stretch, grown in place (a copy per piece is quadratic)
    for p in pieces:
        if p.kind != "downtime":
            continue
        if events is not None and end == p.start:
            end = p.end
            events.update(p.events)
            continue
        if events is not None:
            out.append(Stretch(start, end, tuple(sorted(events))))
        start, end, events = p.start, p.end, set(p.events)
    if events is not None:
        out.append(Stretch(start, end, tuple(sorted(events))))
    return [s for s in out if lo <= s.start_us < hi]
