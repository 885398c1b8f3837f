"""Pass 3 of the month fold: one sweep over the sources' end points classifies every segment of outage.

Each elementary segment is maintenance, excused or downtime; adjacent segments that agree
(kind, reason, events) merge into the report's intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.policy import Policy
from projections.credit import Stretch
from projections.explain import probe_cause
from projections.model import IntervalKind
from projections.sources import Source, SourceKind


@dataclass(frozen=True, slots=True)
class Piece:
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



def sweep(policy: Policy, sources: list[Source], horizon: int) -> list[Piece]:
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
    pieces: list[Piece] = []
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
            pieces[-1] = Piece(last.start, piece.end, last.kind, last.reason, last.events)
        else:
            pieces.append(piece)
    return pieces


def _named(sources: list[Source], ids: set[int]) -> list[Source]:
    return sorted((sources[i] for i in ids), key=lambda s: (s.name, s.start))


def _classify(
    policy: Policy,
    sources: list[Source],
    active: dict[SourceKind, set[int]],
    need: int,
    probe_order: dict[str, int],
    start: int,
    end: int,
) -> Piece | None:
    """One segment where the set of active sources is constant: is it outage, and of which kind?"""
    probes_out = bool(policy.probes) and len(active["probe"]) >= need
    if not probes_out and not active["incident"]:
        return None
    causes: list[str] = []
    events: set[int] = set()
    if probes_out:
        down = sorted((sources[i] for i in active["probe"]), key=lambda s: probe_order[s.name])
        causes.append(probe_cause(policy, [s.name for s in down]))
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
        return Piece(start, end, "downtime", cause, tuple(sorted(events)))
    for s in rules:
        events.update(s.events)
    reason = "; ".join(s.label for s in rules) + " -- outage: " + cause
    return Piece(start, end, kind, reason, tuple(sorted(events)))



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
