"""The sweep against the one it replaced (issue 17): the same pieces unless wide, the same figures always.

``reference_sweep`` is the sweep as it was before issue 17, kept verbatim (classifying every
elementary segment from scratch); the new one must agree with it piece for piece wherever at
most ``SPELLED`` incidents and rules are in force at once, and on every figure and every
cited fact where more are.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ledger.policy import Policy
from projections.explain import probe_cause
from projections.model import IntervalKind
from projections.sources import Source, SourceKind
from projections.sweep import SPELLED, Piece, _quorum, clip, stretches, sweep
from projections.timeline import LocalClock, local_at, to_us
from tests.unit.factories import policy

POLICIES = {
    when: policy(f"""
[contract]
id = "c-1"
customer = "x"
service = "svc"
timezone = "Europe/Paris"
currency = "EUR"
monthly_fee = "100.00"

[availability]
target = "99.9"
outage_when = {when}
probes = ["a", "b", "c"]
excludable = ["force_majeure"]
""")
    for when in ('"any"', '"all"', "2")
}


def reference_sweep(policy: Policy, sources: list[Source], horizon: int) -> list[Piece]:
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
        piece = _ref_classify(policy, sources, active, need, probe_order, t, nxt)
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


def _ref_named(sources: list[Source], ids: set[int]) -> list[Source]:
    return sorted((sources[i] for i in ids), key=lambda s: (s.name, s.start))


def _ref_classify(
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
    for s in _ref_named(sources, active["incident"]):
        causes.append(s.label)
        events.update(s.events)
    cause = "; ".join(causes)
    kind: IntervalKind
    if active["maintenance"]:
        rules = _ref_named(sources, active["maintenance"])
        kind = "maintenance"
    elif active["exclusion"]:
        # A non-conforming window that counts as downtime does not excuse, so it does not pre-empt
        # an exclusion either: precedence only decides between M and excused.
        rules = _ref_named(sources, active["exclusion"])
        kind = "excused"
    elif active["nonconforming"] or active["unannounced"]:
        # Windows that excuse nothing here, named so the reader sees why they did not count.
        rules = _ref_named(sources, active["nonconforming"] | active["unannounced"])
        kind = "downtime"
    else:
        return Piece(start, end, "downtime", cause, tuple(sorted(events)))
    for s in rules:
        events.update(s.events)
    reason = "; ".join(s.label for s in rules) + " -- outage: " + cause
    return Piece(start, end, kind, reason, tuple(sorted(events)))





_KINDS: tuple[SourceKind, ...] = (
    "probe", "incident", "maintenance", "nonconforming", "unannounced", "exclusion"
)


@st.composite
def source_lists(draw: st.DrawFn, wide: int) -> list[Source]:
    """Up to ``wide`` sources of each kind, on a short line so that they overlap often."""
    out: list[Source] = []
    position = 0
    for kind in _KINDS:
        names = ["a", "b", "c"] if kind == "probe" else [f"{kind[0]}{i}" for i in range(wide)]
        for name in draw(st.lists(st.sampled_from(names), max_size=wide)):
            start = draw(st.integers(0, 40))
            end = start + draw(st.integers(1, 20))
            position += 1
            events = (position,) if draw(st.booleans()) else (position, position + 1000)
            label = name if kind == "probe" else f"{kind} {name} [{start}]"
            out.append(Source(start, end, kind, name, label, events))
    return out


def _at(pieces: list[Piece], t: int) -> IntervalKind | None:
    return next((p.kind for p in pieces if p.start <= t < p.end), None)


def _totals(pieces: list[Piece]) -> dict[str, int]:
    out = {"downtime": 0, "maintenance": 0, "excused": 0}
    for p in pieces:
        out[p.kind] += p.end - p.start
    return out


def _cited(pieces: list[Piece]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {"downtime": set(), "maintenance": set(), "excused": set()}
    for p in pieces:
        out[p.kind].update(p.events)
    return out


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(POLICIES)), source_lists(SPELLED), st.integers(0, 70))
def test_same_pieces_where_nothing_is_wide(when: str, sources: list[Source], horizon: int) -> None:
    # Windows that excuse nothing are one rule for the sweep, whichever of the two kinds.
    assume(sum(s.kind in ("nonconforming", "unannounced") for s in sources) <= SPELLED)
    pol = POLICIES[when]
    assert sweep(pol, sources, horizon) == reference_sweep(pol, sources, horizon)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(POLICIES)), source_lists(8), st.integers(0, 70))
def test_same_figures_and_citations_where_wide(when: str, sources: list[Source], horizon: int) -> None:
    pol = POLICIES[when]
    new, old = sweep(pol, sources, horizon, cuts=(5,)), reference_sweep(pol, sources, horizon)
    # Every instant counts the same way, so every figure is the same ...
    for t in range(0, 80):
        assert _at(new, t) == _at(old, t)
    assert _totals(clip(new, 5, horizon)) == _totals(clip(old, 5, horizon))
    # ... each fact is cited under the same kind (the digest and the walk-through read these) ...
    assert _cited(clip(new, 5, horizon)) == _cited(clip(old, 5, horizon))
    # ... and the downtime stretches (the long-outage credit) have the same bounds and evidence.
    assert stretches(new, 5, horizon) == stretches(old, 5, horizon)
    # Neighbours never agree (they would have merged), and a wide reason spells no window.
    for a, b in itertools.pairwise(new):
        if a.end in (5, horizon):
            continue  # wide pieces end at a cut even where both sides agree
        assert not (a.end == b.start and (a.kind, a.reason, a.events) == (b.kind, b.reason, b.events))
    narrow = {p.reason for p in old}
    for p in new:
        if p.reason not in narrow:
            assert "more than" in p.reason or "each down probe cited" in p.reason


def test_a_wide_month_is_one_interval_per_reason() -> None:
    """Twelve overlapping windows and a probe down throughout: one wide interval, every window cited."""
    pol = POLICIES['"any"']
    windows = [Source(i, i + 15, "maintenance", f"m{i:02d}", f"maintenance m{i:02d}", (100 + i,))
               for i in range(12)]
    down = Source(0, 40, "probe", "a", "a", (1,))
    pieces = sweep(pol, [down, *windows], 40)
    # More than 3 windows in force from 3 to 23: spelled out before and after, wide between.
    assert [(p.start, p.end) for p in pieces] == [
        (0, 1), (1, 2), (2, 3), (3, 23), (23, 24), (24, 25), (25, 26), (26, 40)
    ]
    wide = pieces[3]
    assert wide.kind == "maintenance"
    assert wide.events == (1, *range(100, 112))
    assert wide.reason == (
        f"more than {SPELLED} maintenance windows in force at once, each cited in events (counted in M) "
        "-- outage: probe outage (outage_when = any), each down probe cited in events"
    )
    assert pieces[2].reason == "maintenance m00; maintenance m01; maintenance m02 -- outage: probe a down " \
        "(outage_when = any)"
    assert len(reference_sweep(pol, [down, *windows], 40)) == 24  # one per change of windows


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "UTC"]),
    st.lists(st.integers(-(2**55), 2**55), min_size=1, max_size=20),
    st.sampled_from([0, 3_600_000_000 * 24 * 365 * 56]),
)
def test_local_clock_is_local_at(zone: str, instants: list[int], shift: int) -> None:
    tz = ZoneInfo(zone)
    clock = LocalClock(tz)
    # Near DST changes too: around the instants drawn and their neighbours within the hour.
    for us in [*instants, *(i % 3_600_000_000 + shift for i in instants)]:
        for u in (us, us + 1, us - 1):
            want, got = local_at(u, tz), clock(u)
            assert (got, got.utcoffset(), got.fold, got.isoformat()) == (
                want, want.utcoffset(), want.fold, want.isoformat()
            )


def test_local_clock_across_a_fall_back() -> None:
    tz = ZoneInfo("Europe/Paris")
    clock = LocalClock(tz)
    change = to_us(datetime(2026, 10, 25, 1, tzinfo=UTC))  # 03:00 CEST -> 02:00 CET
    for us in range(change - 2 * 3_600_000_000, change + 2 * 3_600_000_000, 60_000_000 * 7):
        got, want = clock(us), local_at(us, tz)
        assert (got.isoformat(), got.fold) == (want.isoformat(), want.fold)
