"""The month's availability: a pure fold of recorded facts into a Report and its Explanation.

How it works, in three passes (all O(n log n) in the number of relevant facts), one module each:

1. ``projections.collect`` reads every record once (one branch per fact type) and keeps
   only what concerns the policy's service and contract.
2. ``projections.sources``: each kind of fact becomes *sources*, half-open intervals in
   integer microseconds since the epoch (probe down-times, outage incidents, maintenance
   windows, exclusions), each carrying the positions of the facts behind it.
3. ``projections.sweep``: one sweep over the sources' end points classifies every
   elementary segment of outage as maintenance, excused or downtime; adjacent segments
   that agree (kind, reason, events) merge into the report's intervals. Where more than
   three incidents or windows are in force at once the reason names the rule and the
   interval cites their facts instead (docs/decisions.md, issue 17).

This module adds the figures up; ``projections.explain`` writes the walk-through.
No floats anywhere: durations are integers, ratios are exact integer pairs (``Ratio``).
The interpretations where INTERFACE.md is silent are in docs/decisions.md
("Availability, maintenance, exclusions and credits").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

from ledger.calendar import HolidayBook, HolidayLookup, holiday_dates, month_bounds
from ledger.events import Recorded
from ledger.policy import Policy
from projections.collect import Facts, collect
from projections.credit import Ratio, Stretch, below, evaluate_credit, lowest
from projections.digest import digest
from projections.explain import Figures, walk_through
from projections.model import Credit, Evaluation, Explanation, HolidayUse, Interval, Report
from projections.sources import (
    Scope,
    Source,
    exclusion_sources,
    incident_sources,
    maintenance_sources,
    probe_sources,
)
from projections.sweep import Piece, clip, stretches, sweep
from projections.timeline import clock_for, local_at, seconds, to_us

# The holidays a figure used: (country, year) -> (source, dates), as ``HolidayBook.used`` holds them.
HolidaysUsed = dict[tuple[str, int], tuple[str, frozenset[date]]]

# Findings derived from recorded_at: shown to the auditor, kept out of the digest.
_RECORDING_FLAGS: Final = frozenset({"backdated_notice", "claim_recorded_late"})


def _availability(policy: Policy, t: int, m: int, d: int) -> tuple[Ratio, str]:
    """Exact availability in percent and the formula with the numbers put in."""
    ts, ms, ds = seconds(t), seconds(m), seconds(d)
    if policy.formula == "downtime_over_total":
        return lowest(100 * (t - d), t), f"A = (T - D) / T = ({ts} - {ds}) / {ts}"
    text = f"A = (T - M - D) / (T - M) = ({ts} - {ms} - {ds}) / ({ts} - {ms})"
    if t == m:
        # The whole month was maintenance: no time was due, so none was missed (D is 0 here).
        return (100, 1), text + " -- T - M = 0: nothing was due, A = 100 %"
    return lowest(100 * (t - m - d), t - m), text


def _truncate4(value: Ratio) -> str:
    scaled = value[0] * 10_000 // value[1]  # value >= 0, so floor truncates toward zero
    return f"{scaled // 10_000}.{scaled % 10_000:04d}"


def quiet_report(
    policy: Policy, policy_version: int, month: str, *, as_of_position: int, credit: Credit
) -> Report:
    """``evaluate`` of a month given no fact at all, without the explanation: about 10 times faster.

    The reporting view holds every month up to the ledger's clock, most of them quiet;
    ``credit`` is ``quiet_credit(policy)``, the same for every such month.
    """
    ms, me = _bounds_us(month, policy.timezone)
    return Report(
        contract=policy.contract_id,
        month=month,
        timezone=policy.timezone.key,
        policy_version=policy_version,
        total_seconds=seconds(me - ms),
        outage_seconds=Decimal(0),
        maintenance_seconds=Decimal(0),
        excused_seconds=Decimal(0),
        downtime_seconds=Decimal(0),
        availability_percent=_FULL,
        target_percent=policy.source.availability.target,
        target_met=policy.target <= 100,  # A = 100 exactly; both Decimal and int compare exactly
        credit=credit,
        intervals=(),
        holidays=(),
        as_of_position=as_of_position,
        digest=digest(policy.contract_id, month, policy_version, policy.source, ()),
    )


_FULL: Final = _truncate4((100, 1))  # a quiet month's availability text


@lru_cache(maxsize=1024)
def _bounds_us(month: str, tz: ZoneInfo) -> tuple[int, int]:
    """``month_bounds`` in microseconds, once per month and zone: a rebuild asks for each thousands
    of times (every contract's quiet months and busy ones)."""
    start, end = month_bounds(month, tz)
    return to_us(start), to_us(end)


def quiet_credit(policy: Policy) -> Credit:
    """The credit of a month without facts: A = 100 %, no stretch, no claim, whatever the month."""
    # The month only sets the claim deadline, which nothing is compared with here.
    return evaluate_credit(policy, "2000-01", (100, 1), [], []).credit




def _timeline(
    records: Iterable[Recorded], policy: Policy, month: str, replay_point: datetime | None,
    package: HolidayLookup = holiday_dates, package_source: str | None = None,
    instants: Mapping[int, int] | None = None,
) -> tuple[Facts, Scope, list[Piece], HolidayBook]:
    """The collected facts, the month's scope, the swept timeline and the holidays it looked up.

    Public holidays are the pinned dates among ``records`` (``holidays_pinned``: a replay
    before a pin does not see it) where a country-year is pinned, else ``package``'s.
    """
    ms, me = _bounds_us(month, policy.timezone)
    rp = to_us(replay_point) if replay_point is not None else None
    # Outage with no recorded end runs to the horizon: month end, or the replay point if earlier.
    horizon = max(ms, min(me, rp)) if rp is not None else me
    # Past month end a downtime stretch is still followed (for its long-outage length) as far
    # as recorded ends take it; an audit sees nothing after its replay point.
    limit = rp if rp is not None else None

    facts = collect(records, policy, month, instants)
    book = HolidayBook({k: v[1] for k, v in facts.pins.items()}, package, package_source)
    scope = Scope(policy, ms, me, horizon, book)

    sources: list[Source] = []
    for probe, evs in facts.probes.items():
        sources += probe_sources(probe, evs, horizon)
    for inc, opened in facts.incidents.items():
        sources += incident_sources(inc, opened, facts.resolutions.get(inc, []), horizon)
    sources += maintenance_sources(scope, facts)
    sources += exclusion_sources(scope, facts)
    # One microsecond before the month is enough to tell a stretch that began last month.
    lo, hi = ms - 1, limit
    window: list[Source] = []
    for s in sources:
        start, end = s.start, s.end
        if end <= lo or (hi is not None and start >= hi):
            continue
        if start < lo or (hi is not None and end > hi):  # a new source only where one is clipped
            start, end = max(start, lo), (min(end, hi) if hi is not None else end)
            events = s.events
            if hi is not None and s.end > hi and s.kind in ("probe", "incident"):
                events = events[:-1]  # its closing fact is dated after the replay point: not yet
            if start < end:
                window.append(Source(start, end, s.kind, s.name, s.label, events))
        elif start < end:
            window.append(s)
    timeline = sweep(policy, window, horizon, cuts=(ms,))
    return facts, scope, timeline, book


def evaluate(
    records: Iterable[Recorded],
    policy: Policy,
    policy_version: int,
    month: str,
    *,
    as_of_position: int,
    replay_point: datetime | None = None,
    package: HolidayLookup = holiday_dates,
    package_source: str | None = None,
) -> Evaluation:
    """Evaluate one contract's month from the recorded facts: figures, intervals, credit, reasons.

    ``package`` / ``package_source``: the holiday dates (and their name) used where the facts pin
    none (default: the installed ``holidays`` package).
    """
    return evaluate_with_stretches(records, policy, policy_version, month, as_of_position=as_of_position,
                                   replay_point=replay_point, package=package,
                                   package_source=package_source)[0]


def evaluate_with_stretches(
    records: Iterable[Recorded],
    policy: Policy,
    policy_version: int,
    month: str,
    *,
    as_of_position: int,
    replay_point: datetime | None = None,
    package: HolidayLookup = holiday_dates,
    package_source: str | None = None,
    instants: Mapping[int, int] | None = None,
) -> tuple[Evaluation, list[Stretch], HolidaysUsed]:
    """``evaluate``, and the month's downtime stretches it found (``downtime_stretches``, for free)
    with the holidays whose dates shaped them (the report's own, with their dates).

    ``instants``: probe facts' instants by position where the caller has them (``collect``)."""
    facts, scope, timeline, book = _timeline(records, policy, month, replay_point, package, package_source,
                                             instants)
    ms, me, horizon = scope.month_start, scope.month_end, scope.horizon
    pieces = clip(timeline, ms, horizon)

    totals = {"downtime": 0, "maintenance": 0, "excused": 0}
    kind_events: dict[str, set[int]] = {"downtime": set(), "maintenance": set(), "excused": set()}
    for p in pieces:
        totals[p.kind] += p.end - p.start
        kind_events[p.kind].update(p.events)
    t = me - ms
    d, m, x = totals["downtime"], totals["maintenance"], totals["excused"]
    a_exact, formula_text = _availability(policy, t, m, d)
    a_text = _truncate4(a_exact)
    target_met = not below(a_exact, policy.target)

    runs = stretches(timeline, ms, horizon)
    # A claim dated after the replay point (recorded ahead of its `at`) was not filed yet.
    claims = facts.claims if replay_point is None else [c for c in facts.claims if c.at <= replay_point]
    credit = evaluate_credit(policy, month, a_exact, runs, claims)

    for probe in sorted(facts.ignored_probes):
        n = sum(1 for at in facts.ignored_probes[probe] if ms <= at < me)
        if n:
            scope.find(
                "ignored_probe", probe, f"probe {probe} is not in the policy's probes: {n} report(s) ignored"
            )

    tz = policy.timezone
    local = clock_for(tz)  # offsets once per hour, not per interval end
    intervals = tuple(
        Interval(
            start=local(p.start),
            end=local(p.end),
            seconds=seconds(p.end - p.start),
            kind=p.kind,
            reason=p.reason,
            events=p.events,
        )
        for p in pieces
    )
    figures = Figures(ms, me, horizon, m, x, d, kind_events, a_exact, a_text, formula_text, target_met)
    steps = [*walk_through(policy, figures), *credit.steps]

    findings = tuple([*scope.findings, *credit.findings])
    used: set[int] = set(credit.claim_events)
    for p in pieces:
        used.update(p.events)
    for s in runs:
        used.update(s.events)
    for f in findings:
        # These flags rest on recorded_at, which the digest must not see.
        if f.kind not in _RECORDING_FLAGS:
            used.update(f.events)
    # The holidays of the windows the figures cite (their verdicts), as the digest's facts are.
    years = sorted({key for p in used for key in scope.looked_up.get(p, ())})
    report = Report(
        contract=policy.contract_id,
        month=month,
        timezone=tz.key,
        policy_version=policy_version,
        total_seconds=seconds(t),
        outage_seconds=seconds(d + m + x),
        maintenance_seconds=seconds(m),
        excused_seconds=seconds(x),
        downtime_seconds=seconds(d),
        availability_percent=a_text,
        target_percent=policy.source.availability.target,
        target_met=target_met,
        credit=credit.credit,
        intervals=intervals,
        holidays=tuple(HolidayUse(c, y, book.used[(c, y)][0]) for c, y in years),
        as_of_position=as_of_position,
        digest=digest(
            policy.contract_id,
            month,
            policy_version,
            policy.source,
            (facts.facts[p] for p in used if p in facts.facts),
            {key: book.used[key][1] for key in years},
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
    return Evaluation(report=report, explanation=explanation), runs, _shaped(scope, book, pieces, runs)


def downtime_stretches(
    records: Iterable[Recorded], policy: Policy, month: str, *, replay_point: datetime | None = None,
    package: HolidayLookup = holiday_dates, package_source: str | None = None,
) -> list[Stretch]:
    """The month's downtime stretches (section 5), as ``evaluate`` finds them: for support engagement.

    The same passes as ``evaluate`` up to the stretches, so that "a stretch of D" has one
    definition; the figures, credit and explanation are left out.
    """
    return downtime_stretches_used(records, policy, month, replay_point=replay_point, package=package,
                                   package_source=package_source)[0]


def downtime_stretches_used(
    records: Iterable[Recorded], policy: Policy, month: str, *, replay_point: datetime | None = None,
    package: HolidayLookup = holiday_dates, package_source: str | None = None,
) -> tuple[list[Stretch], HolidaysUsed]:
    """``downtime_stretches``, with the holidays whose dates shaped them: those the verdicts of the
    windows in the month's intervals looked up, as ``evaluate`` names them in the report."""
    _, scope, timeline, book = _timeline(records, policy, month, replay_point, package, package_source)
    runs = stretches(timeline, scope.month_start, scope.horizon)
    return runs, _shaped(scope, book, clip(timeline, scope.month_start, scope.horizon), runs)


def _shaped(scope: Scope, book: HolidayBook, pieces: Iterable[Piece],
            runs: Iterable[Stretch]) -> HolidaysUsed:
    """The holidays (with their dates) looked up by the verdicts of the windows the month's
    intervals and downtime stretches cite: what shaped the stretches."""
    cited = {p for piece in pieces for p in piece.events}
    cited.update(p for run in runs for p in run.events)
    return {key: book.used[key] for key in sorted({k for p in cited for k in scope.looked_up.get(p, ())})}
