"""Incremental reporting equals a full recomputation (hypothesis), and the rules behind it.

Random ledgers over January to April 2026 for two contracts on one service (Paris and
Toronto time, an amendment, long outages that cross months, out-of-order facts, references
before their referents, claims) are fed to ``ReportingProjection`` in random batches over an
in-memory view. After every batch the view must equal what the month fold gives from all
facts at once, pair by pair (as_of_position aside: an untouched row keeps the position it
was computed at).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, Tracking
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.contracts import in_force
from ledger.events import (
    ContractAmended,
    ContractRegistered,
    Fact,
    ProbeFailed,
    ProbeRecovered,
    Recorded,
    decode_state,
    decode_states,
    encode_state,
    fact_id,
)
from ledger.persistence.consistency import first_uses
from ledger.persistence.keys import index_keys
from ledger.persistence.port import LedgerRecorder
from ledger.persistence.rows import ViewRows
from ledger.policy import resolve
from ledger.policy_check import load_policy
from projections.affected import Known, Pair, add_months, affected, month_of, months_from
from projections.availability import evaluate
from projections.model import Report, to_json
from projections.timeline import to_us
from projections.tracked import APP_NAME, Evaluator, ReportingProjection, rebuilding, view_rows
from projections.tracked.groups import service_groups
from projections.tracked.rebuilding import _group_reports
from tests.unit.factories import fact

BASE = datetime(2026, 1, 25, tzinfo=UTC)
SPAN_H = 80 * 24  # hours covered by generated facts: late January to mid April
# When the ledger learns the facts: from late January on, the clock moving up to months ahead
# of them (rows then run to the clock's month: quiet months after the last fact).
RECORDED = datetime(2026, 1, 20, tzinfo=UTC)

C1 = """
[contract]
id = "c-paris"
customer = "P"
service = "svc"
timezone = "Europe/Paris"
currency = "EUR"
monthly_fee = "100.00"
{effective}
[availability]
target = "99.9"
outage_when = "any"
probes = [{probes}]
excludable = ["force_majeure", "customer_isp"]

[maintenance]
min_notice = "24h"
nonconforming = "downtime"

[credits]
tiers = [{{ below = "99.9", percent = "10" }}, {{ below = "99", percent = "50" }}]
cap_percent = "100"
claim_deadline_days = 3
long_outage = {{ over = "24h", per_started_day = true }}
"""
C2 = """
[contract]
id = "c-toronto"
customer = "T"
service = "svc"
timezone = "America/Toronto"
currency = "CAD"
annual_fee = "3650.00"

[availability]
target = "99.5"
formula = "maintenance_out_of_total"
outage_when = "all"
probes = ["p1", "p2"]
excludable = ["third_party"]

[maintenance]
min_notice = "48h"
nonconforming = "emergency"

[credits]
tiers = [{ below = "99.5", percent = "25" }]
cap_percent = "100"
long_outage = { over = "36h", per_started_day = true }
"""
REGISTER_1 = ContractRegistered(policy=load_policy(C1.format(effective="", probes='"p1", "p2"').encode()))
REGISTER_2 = ContractRegistered(policy=load_policy(C2.encode()))
AMEND_1 = ContractAmended(
    policy=load_policy(C1.format(effective='effective_from = "2026-03"', probes='"p1"').encode())
)
MONTHS = ("2026-01", "2026-02", "2026-03", "2026-04")


def _at(h: int) -> str:
    return (BASE + timedelta(hours=h)).isoformat()


hours = st.integers(0, SPAN_H)
probe_fact = st.builds(
    lambda kind, probe, h, service: fact(kind, service=service, probe=probe, at=_at(h)),
    st.sampled_from(["probe_failed", "probe_recovered"]),
    st.sampled_from(["p1", "p1", "p2", "p3"]),
    hours,
    # Another service's facts change no row, but their recorded_at moves the clock.
    st.sampled_from(["svc", "svc", "svc", "other"]),
)
incident_fact = st.one_of(
    st.builds(
        lambda i, impact, h: fact("incident_opened", service="svc", incident=i, impact=impact, at=_at(h)),
        st.sampled_from(["i1", "i2"]),
        st.sampled_from(["outage", "degraded"]),
        hours,
    ),
    st.builds(
        lambda i, h: fact("incident_resolved", incident=i, at=_at(h)), st.sampled_from(["i1", "i2"]), hours
    ),
)
window_fact = st.one_of(
    st.builds(
        lambda m, h, d, notice: fact(
            "maintenance_announced",
            service="svc",
            maintenance=m,
            announced_at=_at(h - notice),
            starts_at=_at(h),
            ends_at=_at(h + d),
        ),
        st.sampled_from(["m1", "m2"]),
        hours,
        st.integers(1, 72),
        # Negative notice: announced after the window started, or even after it ended.
        st.integers(-96, 72),
    ),
    st.builds(
        lambda kind, m, h: fact(kind, maintenance=m, at=_at(h)),
        st.sampled_from(["maintenance_cancelled", "maintenance_completed"]),
        st.sampled_from(["m1", "m2"]),
        hours,
    ),
)
exclusion_fact = st.one_of(
    st.builds(
        lambda x, h, d: fact(
            "force_majeure_declared",
            service="svc",
            declaration=x,
            starts_at=_at(h),
            ends_at=_at(h + d),
            reason="storm",
        ),
        st.sampled_from(["f1", "x1"]),
        hours,
        st.integers(1, 400),
    ),
    st.builds(
        lambda x, cat, contract, h, d: fact(
            "exclusion_declared",
            service="svc",
            exclusion=x,
            category=cat,
            contract=contract,
            starts_at=_at(h),
            ends_at=_at(h + d),
            reason="isp",
        ),
        st.sampled_from(["x1", "x2"]),
        st.sampled_from(["customer_isp", "third_party"]),
        st.sampled_from([None, "c-paris"]),
        hours,
        st.integers(1, 400),
    ),
    st.builds(
        lambda ref: fact("exclusion_revoked", ref=ref, reason="ours"), st.sampled_from(["f1", "x1", "x2"])
    ),
)
claim_fact = st.builds(
    lambda contract, month, h: fact("credit_claim_filed", contract=contract, month=month, at=_at(h)),
    st.sampled_from(["c-paris", "c-toronto"]),
    st.sampled_from(MONTHS),
    hours,
)
ops = st.lists(
    st.one_of(probe_fact, probe_fact, incident_fact, window_fact, exclusion_fact, claim_fact),
    min_size=1,
    max_size=28,
)


@st.composite
def ledgers(draw: st.DrawFn) -> tuple[list[Recorded], list[int]]:
    """Facts with the contract facts inserted at random places, and the batch boundaries."""
    facts: list[Fact] = list(draw(ops))
    for contract_fact in (REGISTER_2, REGISTER_1):
        facts.insert(draw(st.integers(0, len(facts))), contract_fact)
    if draw(st.booleans()):
        after = facts.index(REGISTER_1) + 1
        facts.insert(draw(st.integers(after, len(facts))), AMEND_1)
    gaps = draw(st.lists(st.sampled_from([1, 3600, 2 * 86400, 6 * 86400]), min_size=len(facts),
                         max_size=len(facts)))
    clock = list(itertools.accumulate(gaps))
    records = [
        Recorded(position=i, recorded_at=RECORDED + timedelta(seconds=clock[i - 1]), id=fact_id(f), fact=f)
        for i, f in enumerate(facts, 1)
    ]
    cuts = sorted(set(draw(st.lists(st.integers(1, len(records)), max_size=8))) | {len(records)})
    return records, cuts


class _Reader:
    def __init__(self, records: Sequence[Recorded]) -> None:
        self.records = records

    def read_records(self, start: int = 1, stop: int | None = None) -> Iterator[Recorded]:
        return (r for r in self.records if r.position >= start and (stop is None or r.position <= stop))

    def read_positions(self, positions: Sequence[int]) -> Iterator[Recorded]:
        at = {r.position: r for r in self.records}
        return (at[p] for p in positions)


# A pair's rows in the view: monthly (the position it was computed at left out: it depends on
# the path taken), intervals and credit.
Figures = tuple[tuple[Any, ...], tuple[tuple[Any, ...], ...], tuple[Any, ...]]
AS_OF, TOTAL, DOWNTIME = 12, 4, 8  # columns of report_monthly_availability


def _by_pair(rows: ViewRows) -> dict[Pair, Figures]:
    intervals: dict[Pair, list[tuple[Any, ...]]] = {}
    for row in rows.intervals:
        intervals.setdefault((row[0], row[1]), []).append(row)
    credits = {(row[0], row[1]): row for row in rows.credits}
    return {
        (m[0], m[1]): ((*m[:AS_OF], 0, *m[AS_OF + 1 :]), tuple(intervals.get((m[0], m[1]), ())),
                       credits[(m[0], m[1])])
        for m in rows.monthly
    }


class MemoryView:
    """The reporting view's contract, in memory: rows per pair and one tracking position."""

    text = True

    def __init__(self, records: Sequence[Recorded]) -> None:
        self.figures: dict[Pair, Figures] = {}
        self.position: int | None = None
        self.reader = _KeyedReader(records)

    def max_tracking_id(self, application_name: str) -> int | None:
        return self.position

    def replace(self, pairs: Any, rows: ViewRows, tracking: Tracking) -> None:
        if self.position is not None and tracking.notification_id <= self.position:
            raise IntegrityError("behind")
        self.position = tracking.notification_id
        for pair in list(pairs):
            self.figures.pop(pair, None)
        self.figures.update(_by_pair(rows))

    def wall_to_wall(self, pairs: Any) -> set[Pair]:
        full = {p for p, f in self.figures.items() if f[0][DOWNTIME] == f[0][TOTAL]}
        return {p for p in full if p in pairs}

    def ledger_recorder(self) -> _KeyedReader:
        return self.reader


def _figures(report: Report) -> Figures:
    return _by_pair(view_rows([report], text=True))[(report.contract, report.month)]


def full(records: Sequence[Recorded]) -> dict[Pair, Figures]:
    """Every held pair recomputed from all records with the plain fold (no grouping, no cut)."""
    known = Known()
    known.add_all(records)
    out: dict[Pair, Figures] = {}
    for cid, months in known.all_held().items():
        for month in months:
            version = in_force(known.versions[cid], month)
            ev = evaluate(records, resolve(version.policy), version.version, month, as_of_position=0)
            out[(cid, month)] = _figures(ev.report)
    return out


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(ledgers())
def test_incremental_view_equals_full_recomputation(ledger: tuple[list[Recorded], list[int]]) -> None:
    records, cuts = ledger
    view = MemoryView(records)
    projection = ReportingProjection(view)  # type: ignore[arg-type]
    start = 0
    for i, cut in enumerate(cuts):
        if i % 2:
            # A worker started afresh (after a restart) loads the ledger up to the view's
            # position and carries on from there.
            view.reader.records = records[:cut]  # the ledger's head is at `cut` for now
            projection = ReportingProjection(view)  # type: ignore[arg-type]
            assert projection.catch_up() == cut
            view.reader.records = records
            start = cut
            got = view.figures
            assert got == full(records[:cut])
            continue
        projection.apply(records[start:cut])
        start = cut
        got = view.figures
        assert got == full(records[:cut])
    assert view.position == len(records)


@SETTINGS
@given(ledgers())
def test_one_notification_at_a_time_equals_full_recomputation(
    ledger: tuple[list[Recorded], list[int]],
) -> None:
    records, _ = ledger
    view = MemoryView(records)
    projection = ReportingProjection(view)  # type: ignore[arg-type]
    for rec in records:
        projection.process_event(_event(rec), Tracking(APP_NAME, rec.position))
    assert view.figures == full(records)


def _event(rec: Recorded) -> Any:
    from uuid import uuid4

    from ledger.persistence.notifications import LedgerEvent

    return LedgerEvent(uuid4(), 1, rec)


@SETTINGS
@given(ledgers())
def test_grouped_and_cut_records_give_byte_identical_reports(
    ledger: tuple[list[Recorded], list[int]],
) -> None:
    records, _ = ledger
    known = Known()
    known.add_all(records)
    evaluator = Evaluator(known, _Reader(records))  # type: ignore[arg-type]
    for cid, months in known.all_held().items():
        for month in months:
            version = in_force(known.versions[cid], month)
            whole = evaluate(
                records, resolve(version.policy), version.version, month, as_of_position=len(records)
            ).report
            assert to_json(evaluator.report((cid, month), len(records))) == to_json(whole)


class _KeyedReader(_Reader):
    """What the streaming rebuild reads: stored states by index key, and by position."""

    def __init__(self, records: Sequence[Recorded]) -> None:
        super().__init__(records)
        self.states = {r.position: encode_state(r.id, r.recorded_at, r.fact, "0" * 64) for r in records}
        self.fetched = 0

    def read_keyed_states(self, keys: Sequence[str], upto: int) -> Iterator[tuple[int, bytes]]:
        wanted = set(keys)
        return ((r.position, self.states[r.position]) for r in self.records
                if r.position <= upto and not wanted.isdisjoint(index_keys(r.fact)))

    def read_key_prefix(self, prefix: str, upto: int) -> Iterator[Recorded]:
        return (r for r in self.records
                if r.position <= upto and any(k.startswith(prefix) for k in index_keys(r.fact)))

    def read_key_prefixes(self, prefixes: Sequence[str], upto: int) -> Iterator[Recorded]:
        return (r for r in self.records
                if r.position <= upto and any(k.startswith(p) for k in index_keys(r.fact) for p in prefixes))

    def read_key_range_states(self, lo: str, hi: str, upto: int) -> Iterator[tuple[int, bytes]]:
        return ((r.position, self.states[r.position]) for r in self.records
                if r.position <= upto and any(lo <= k < hi for k in index_keys(r.fact)))

    def read_key_ranges_states(self, ranges: Sequence[tuple[str, str]],
                               upto: int) -> Iterator[tuple[int, bytes]]:
        return ((r.position, self.states[r.position]) for r in self.records
                if r.position <= upto and any(lo <= k < hi for k in index_keys(r.fact) for lo, hi in ranges))

    def edge_keys(self, ranges: Sequence[tuple[str, str]], upto: int, *,
                  last: bool = False) -> list[str | None]:
        keys = sorted({k for r in self.records if r.position <= upto for k in index_keys(r.fact)})
        out: list[str | None] = []
        for lo, hi in ranges:
            inside = [k for k in keys if lo <= k < hi]
            out.append((inside[-1] if last else inside[0]) if inside else None)
        return out

    first_keys_by_name = LedgerRecorder.first_keys_by_name  # the port's own, on ``edge_keys``
    read_key_parts_states = LedgerRecorder.read_key_parts_states  # the port's own, on the reads above

    def read_position_states(self, positions: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        self.fetched += len(positions)
        return ((p, self.states[p]) for p in positions)

    def read_names(self, names: Sequence[str]) -> dict[str, tuple[str, int]]:
        """``ledger_names`` as the store would hold it: each name's first use."""
        uses = first_uses(self.records)
        return {n: uses[n] for n in names if n in uses}


@SETTINGS
@given(ledgers())
def test_rebuild_keeping_positions_only_gives_byte_identical_reports(
    ledger: tuple[list[Recorded], list[int]],
) -> None:
    # The rebuild's Known keeps positions, takes references after their referents (out of
    # position order) and fetches each month's facts: the same reports as the whole fold.
    records, _ = ledger
    known = Known()
    known.add_all(records)
    groups = service_groups(known.versions)
    want = {pair: to_json(r) for pair, r in full_reports(records).items()}
    # Every fact kept, none kept (each month read again by position), and some kept; the group's
    # first read decoded whole or a few rows at a time (``DECODE_SLICE``).
    for budget, piece in ((rebuilding.FACT_BUDGET, rebuilding.DECODE_SLICE), (0, 3), (600, 1),
                          (rebuilding.FACT_BUDGET, 2)):
        reader = _KeyedReader(records)
        got = {}
        saved = rebuilding.FACT_BUDGET, rebuilding.DECODE_SLICE
        rebuilding.FACT_BUDGET, rebuilding.DECODE_SLICE = budget, piece  # type: ignore[misc]
        try:
            for services, contracts in groups:
                for r in _group_reports(reader, sorted(services), sorted(contracts), len(records),  # type: ignore[arg-type]
                                        records[-1].recorded_at):
                    got[(r.contract, r.month)] = to_json(r)
        finally:
            rebuilding.FACT_BUDGET, rebuilding.DECODE_SLICE = saved  # type: ignore[misc]
        assert got == want
        if budget == rebuilding.FACT_BUDGET:
            assert reader.fetched == 0


@SETTINGS
@given(ledgers(), st.integers(1, 9), st.integers(0, 30))
def test_any_split_into_pages_gives_the_rebuilt_tables(
    ledger: tuple[list[Recorded], list[int]], page: int, start: int
) -> None:
    # The follower's catch-up, from a view the follower or a rebuild left at ``start``, in pages
    # of ``page`` facts: the same tables as a rebuild of the whole ledger (the rebuild's own path,
    # service group by service group through the key index).
    records, _ = ledger
    start = min(start, len(records))
    view = MemoryView(records)
    if start:
        ReportingProjection(view).apply(records[:start])  # type: ignore[arg-type]
    assert ReportingProjection(view).catch_up(page=page) == len(records)  # type: ignore[arg-type]
    known = Known()
    known.add_all(records)
    reader = _KeyedReader(records)
    rebuilt: dict[Pair, Figures] = {}
    for services, contracts in service_groups(known.versions):
        reports = _group_reports(reader, sorted(services), sorted(contracts), len(records),  # type: ignore[arg-type]
                                 records[-1].recorded_at)
        rebuilt.update(_by_pair(view_rows(reports, text=True)))
    assert view.figures == rebuilt


@SETTINGS
@given(ledgers())
def test_add_all_folds_as_add_does_one_at_a_time(ledger: tuple[list[Recorded], list[int]]) -> None:
    # ``add_all`` inlines the probe branch of ``add`` and holds the index's fields in locals between
    # the other facts' ``add``: the index must be the same field for field, and the instants it
    # keeps for the months' folds (``collect``'s) each probe fact's ``to_us(at)``.
    records, cuts = ledger
    one, many = Known(instants={}), Known(instants={})
    for rec in records:
        one.add(rec)
    cut = cuts[0] if cuts else len(records) // 2
    many.add_all(records[:cut])
    many.add_all(records[cut:])
    assert _fields(one) == _fields(many)
    assert many.instants == {r.position: to_us(r.fact.at) for r in records
                             if isinstance(r.fact, ProbeFailed | ProbeRecovered)}
    # After ``mark`` each step goes through ``_step`` (a follower's batch): the same as ``add``.
    one.mark()
    many.mark()
    for rec in records[:cut]:
        one.add(rec)
    many.add_all(records[:cut])
    assert _fields(one) == _fields(many)


def _fields(known: Known) -> dict[str, Any]:
    """A ``Known``'s fields, its support index's as theirs (it has no equality of its own), and what
    it keeps by a service's identity by the service's name."""
    name = {id(s): n for n, s in known.services.items()}
    before = None if known._before is None else {name[k]: v for k, v in known._before.items()}
    latest = {name[k]: v for k, v in known._latest.items()}
    return {**vars(known), "support": vars(known.support), "_before": before, "_latest": latest}


@SETTINGS
@given(ledgers())
def test_decode_states_decodes_as_decode_state(ledger: tuple[list[Recorded], list[int]]) -> None:
    records, _ = ledger
    states = [encode_state(r.id, r.recorded_at, r.fact, "0" * 64) for r in records]
    positions = [r.position for r in records]
    one_by_one = [decode_state(p, s) for p, s in zip(positions, states, strict=True)]
    assert decode_states(positions, states) == one_by_one


def full_reports(records: Sequence[Recorded]) -> dict[Pair, Report]:
    known = Known()
    known.add_all(records)
    out: dict[Pair, Report] = {}
    for cid, months in known.all_held().items():
        for month in months:
            version = in_force(known.versions[cid], month)
            out[(cid, month)] = evaluate(
                records, resolve(version.policy), version.version, month, as_of_position=len(records)
            ).report
    return out


def test_a_worker_that_lost_the_race_skips_ahead() -> None:
    recs = [
        Recorded(position=i, recorded_at=RECORDED, id=fact_id(f), fact=f)
        for i, f in enumerate(
            [
                REGISTER_1,
                fact("probe_failed", service="svc", probe="p1", at=_at(100)),
                fact("probe_recovered", service="svc", probe="p1", at=_at(130)),
            ],
            1,
        )
    ]
    view = MemoryView(recs)
    first, second = ReportingProjection(view), ReportingProjection(view)  # type: ignore[arg-type]
    assert first.apply(recs[:2]) is True
    assert second.apply(recs[:2]) is False  # same positions: the tracking row refuses it
    assert second.catch_up() == 3  # and it carries on from there
    assert first.catch_up() == 3
    assert view.figures == full(recs)


def test_months_and_held_range() -> None:
    assert add_months("2026-01", -1) == "2025-12"
    assert add_months("2026-12", 1) == "2027-01"
    assert months_from("2025-11", "2026-02") == ["2025-11", "2025-12", "2026-01", "2026-02"]
    from zoneinfo import ZoneInfo

    # 23:30 UTC on 31 January is already February in Paris, still January in Toronto.
    us = (
        int((datetime(2026, 1, 31, 23, 30, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
        * 10**6
    )
    assert month_of(us, ZoneInfo("Europe/Paris")) == "2026-02"
    assert month_of(us, ZoneInfo("America/Toronto")) == "2026-01"


def _known(*facts: Fact) -> tuple[Known, list[Recorded]]:
    known = Known()
    recs = [Recorded(position=i, recorded_at=RECORDED, id=fact_id(f), fact=f) for i, f in enumerate(facts, 1)]
    known.add_all(recs)
    return known, recs


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        # A probe fact inside an outage that began in January: back to January, and on.
        (
            fact("probe_failed", service="svc", probe="p2", at="2026-03-10T00:00:00Z"),
            ["2026-01", "2026-02", "2026-03", "2026-04"],
        ),
        # After the recovery of 5 April: from the month before the last quiet instant.
        (
            fact("probe_failed", service="svc", probe="p2", at="2026-04-10T00:00:00Z"),
            ["2026-03", "2026-04"],
        ),
        # A window: the months it overlaps and the month before.
        (
            fact(
                "maintenance_announced",
                service="svc",
                maintenance="mx",
                announced_at="2026-01-01T00:00:00Z",
                starts_at="2026-02-10T00:00:00Z",
                ends_at="2026-02-11T00:00:00Z",
            ),
            ["2026-01", "2026-02"],
        ),
        # A claim: its own month.
        (
            fact("credit_claim_filed", contract="c-paris", month="2026-03", at="2026-04-02T00:00:00Z"),
            ["2026-03"],
        ),
        # A revocation of nothing known changes nothing.
        (fact("exclusion_revoked", ref="nope", reason="r"), []),
    ],
)
def test_rules(new: Fact, expected: list[str]) -> None:
    known, _ = _known(
        REGISTER_1,
        fact("probe_failed", service="svc", probe="p1", at="2026-01-05T00:00:00Z"),
        fact("probe_recovered", service="svc", probe="p1", at="2026-04-05T00:00:00Z"),
    )
    known.settle()
    batch = [Recorded(position=4, recorded_at=RECORDED, id=fact_id(new), fact=new)]
    known.add_all(batch)
    got = affected(batch, known, known.settle())
    assert sorted(m for _, m in got.changed) == expected
    assert got.fresh == set()


def _incremental_equals_full(batches: Sequence[Sequence[Fact]], recorded_at: datetime = RECORDED) -> None:
    facts = [f for batch in batches for f in batch]
    records = [
        Recorded(position=i, recorded_at=recorded_at, id=fact_id(f), fact=f) for i, f in enumerate(facts, 1)
    ]
    view = MemoryView(records)
    projection = ReportingProjection(view)  # type: ignore[arg-type]
    start = 0
    for batch in batches:
        projection.apply(records[start : start + len(batch)])
        start += len(batch)
        assert view.figures == full(records[:start])


def test_a_recovery_next_month_changes_the_stretch_begun_this_month() -> None:
    # The long-outage stretch is counted in January, the month it starts; its recovery in
    # February changes January's credit and digest.
    _incremental_equals_full(
        [
            [REGISTER_1, fact("probe_failed", service="svc", probe="p1", at="2026-01-30T00:00:00Z")],
            [fact("probe_recovered", service="svc", probe="p1", at="2026-02-03T00:00:00Z")],
        ]
    )


def test_a_stretch_through_a_whole_month_reaches_two_months_back() -> None:
    # Down from late January, all of February, recovered in March: the recovery changes
    # January's stretch, through a February that is downtime wall to wall.
    _incremental_equals_full(
        [
            [
                REGISTER_1,
                fact("probe_failed", service="svc", probe="p1", at="2026-01-30T00:00:00Z"),
                fact("probe_failed", service="svc", probe="p1", at="2026-03-20T00:00:00Z"),
                fact("probe_recovered", service="svc", probe="p1", at="2026-03-25T00:00:00Z"),
            ],
            [fact("probe_recovered", service="svc", probe="p1", at="2026-03-02T00:00:00Z")],
        ]
    )


def test_a_recovery_changes_every_month_of_its_down_period() -> None:
    # Found by hypothesis: the excused interval of January lists the probe's recovery (its
    # source runs from the failure to the recovery), so a recovery recorded in March changes
    # January although February lies between them.
    _incremental_equals_full(
        [
            [
                REGISTER_1,
                fact("probe_failed", service="svc", probe="p1", at="2026-01-25T00:00:00Z"),
                fact(
                    "force_majeure_declared",
                    service="svc",
                    declaration="f1",
                    reason="storm",
                    starts_at="2026-01-25T00:00:00Z",
                    ends_at="2026-02-01T00:00:00Z",
                ),
            ],
            [fact("probe_recovered", service="svc", probe="p1", at="2026-02-28T23:00:00Z")],
        ]
    )


LATE = datetime(2026, 4, 25, tzinfo=UTC)  # the clock in April: rows run from January to April


def test_a_recovery_reaches_every_later_month_the_old_timeline_had_down() -> None:
    # Down since January without end, then a recovery in February: every later month changes,
    # though the new timeline is quiet from the recovery on (it was not quiet before).
    _incremental_equals_full(
        [
            [REGISTER_1, fact("probe_failed", service="svc", probe="p1", at="2026-01-26T00:00:00Z")],
            [fact("probe_recovered", service="svc", probe="p1", at="2026-02-03T00:00:00Z")],
        ],
        LATE,
    )


def test_an_opening_after_its_resolution_reaches_the_resolution_month() -> None:
    # The resolution (March) came first; the opening (January) brings it into the service's
    # timeline, so the change reaches past March, not just past the opening.
    _incremental_equals_full(
        [
            [REGISTER_1, fact("incident_resolved", incident="i1", at="2026-03-10T00:00:00Z")],
            [fact("incident_opened", service="svc", incident="i1", impact="degraded",
                  at="2026-01-27T00:00:00Z")],
        ],
        LATE,
    )


def test_a_change_stops_at_the_first_instant_quiet_before_and_after() -> None:
    # A short outage in January, quiet before and after it from its recovery on: the batch
    # changes January (and the month before it), not the months after.
    facts = [REGISTER_1, fact("probe_recovered", service="svc", probe="p2", at="2026-01-26T00:00:00Z"),
             fact("probe_failed", service="svc", probe="p1", at="2026-01-27T00:00:00Z"),
             fact("probe_recovered", service="svc", probe="p1", at="2026-01-27T01:00:00Z")]
    records = [Recorded(position=i, recorded_at=LATE, id=fact_id(f), fact=f)
               for i, f in enumerate(facts, 1)]
    known = Known()
    known.add_all(records[:2])
    known.settle()
    known.mark()
    known.add_all(records[2:])
    got = affected(records[2:], known, known.settle())
    assert sorted(m for _, m in got.changed) == ["2026-01"]
    _incremental_equals_full([facts[:2], facts[2:]], LATE)


# --- which months the view holds ------------------------------------------------------------


def _rec(position: int, f: Fact, recorded_at: datetime) -> Recorded:
    return Recorded(position=position, recorded_at=recorded_at, id=fact_id(f), fact=f)


def test_a_contract_without_facts_is_held_from_its_registration_to_the_clock() -> None:
    known = Known()
    known.add(_rec(1, REGISTER_1, datetime(2026, 1, 20, tzinfo=UTC)))
    assert known.held("c-paris") == ["2026-01"]
    # Time passes: a fact about nothing this contract covers, recorded in April.
    other = fact("probe_failed", service="elsewhere", probe="p1", at="2026-04-02T00:00:00Z")
    known.add(_rec(2, other, datetime(2026, 4, 2, tzinfo=UTC)))
    assert known.held("c-paris") == ["2026-01", "2026-02", "2026-03", "2026-04"]


def test_a_contract_registered_after_its_history_is_held_from_the_first_fact() -> None:
    # A ledger imported with its history: facts from November, the contract registered in March.
    known = Known()
    old = fact("probe_failed", service="svc", probe="p1", at="2025-11-10T00:00:00Z")
    back = fact("probe_recovered", service="svc", probe="p1", at="2025-11-10T01:00:00Z")
    march = datetime(2026, 3, 1, tzinfo=UTC)
    known.add_all([_rec(1, old, march), _rec(2, back, march)])
    known.add(_rec(3, REGISTER_1, datetime(2026, 3, 2, tzinfo=UTC)))
    assert known.held("c-paris") == ["2025-11", "2025-12", "2026-01", "2026-02", "2026-03"]


def test_the_clock_month_is_counted_in_each_contract_zone() -> None:
    known = Known()
    known.add_all([
        _rec(1, REGISTER_1, datetime(2026, 1, 20, tzinfo=UTC)),  # Europe/Paris
        _rec(2, REGISTER_2, datetime(2026, 1, 20, tzinfo=UTC)),  # America/Toronto
    ])
    known.settle()
    # 1 February 02:00 UTC: 03:00 in Paris (February), 21:00 on 31 January in Toronto.
    tick = fact("probe_failed", service="elsewhere", probe="p1", at="2026-02-01T02:00:00Z")
    known.add(_rec(3, tick, datetime(2026, 2, 1, 2, tzinfo=UTC)))
    changed = known.settle()
    assert {cid: now.hi for cid, (_, now) in changed.items()} == {"c-paris": "2026-02"}
    assert known.held("c-toronto") == ["2026-01"]
    tock = fact("probe_recovered", service="elsewhere", probe="p1", at="2026-02-01T06:00:00Z")
    known.add(_rec(4, tock, datetime(2026, 2, 1, 6, tzinfo=UTC)))
    assert list(known.settle()) == ["c-toronto"]


def test_settling_looks_only_at_touched_contracts_until_the_clock_enters_a_new_month(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policies = [
        ContractRegistered(policy=load_policy(
            C1.format(effective="", probes='"p1"').replace('id = "c-paris"', f'id = "c{i}"')
            .replace('service = "svc"', f'service = "s{i}"').encode()
        ))
        for i in range(40)
    ]
    known = Known()
    known.add_all(_rec(i, p, datetime(2026, 1, 20, tzinfo=UTC)) for i, p in enumerate(policies, 1))
    known.settle()
    looked: list[str] = []
    real = Known.span
    monkeypatch.setattr(Known, "span", lambda self, cid: looked.append(cid) or real(self, cid))
    # A fact about s7 in the clock's month: only c7 is looked at, and its rows do not change.
    f7 = fact("probe_failed", service="s7", probe="p1", at="2026-01-21T00:00:00Z")
    known.add(_rec(41, f7, datetime(2026, 1, 21, tzinfo=UTC)))
    assert known.settle() == {}
    assert looked == ["c7"]
    # The same, recorded on 3 February: every contract gains February.
    looked.clear()
    r7 = fact("probe_recovered", service="s7", probe="p1", at="2026-01-21T01:00:00Z")
    known.add(_rec(42, r7, datetime(2026, 2, 3, tzinfo=UTC)))
    changed = known.settle()
    assert len(looked) == len(changed) == 40
    assert all(now.months() == ["2026-01", "2026-02"] for _, now in changed.values())


def test_a_long_open_incident_holds_every_month_to_the_clock() -> None:
    # Opened in January and never resolved; the clock moves on month by month. Each month
    # from January to the clock's is a row, downtime wall to wall after January.
    opened = fact(
        "incident_opened", service="svc", incident="i-long", impact="outage", at="2026-01-28T00:00:00Z"
    )
    ticks = [
        fact("probe_recovered", service="svc", probe="p3", at=f"2026-0{m}-02T00:00:00Z") for m in (2, 3, 4)
    ]
    records = [
        _rec(1, REGISTER_1, datetime(2026, 1, 20, tzinfo=UTC)),
        _rec(2, opened, datetime(2026, 1, 28, tzinfo=UTC)),
        *(_rec(3 + i, t, datetime(2026, 2 + i, 2, tzinfo=UTC)) for i, t in enumerate(ticks)),
    ]
    view = MemoryView(records)
    projection = ReportingProjection(view)  # type: ignore[arg-type]
    for i in range(len(records)):
        projection.apply(records[i : i + 1])
        assert view.figures == full(records[: i + 1])
    assert sorted(view.figures) == [("c-paris", m) for m in MONTHS]
    assert all(view.figures[("c-paris", m)][0][DOWNTIME] == view.figures[("c-paris", m)][0][TOTAL]
               for m in MONTHS[1:])


def test_a_restarted_worker_adds_the_month_the_clock_enters() -> None:
    # The worker's first look at the clock is after loading the view's position: the month the
    # clock was in then must be remembered, or the next month would never look new.
    registered = _rec(1, REGISTER_1, datetime(2026, 1, 20, tzinfo=UTC))
    later = _rec(2, fact("probe_failed", service="other", probe="p1", at="2026-02-03T00:00:00Z"),
                 datetime(2026, 2, 3, tzinfo=UTC))
    view = MemoryView([registered])
    assert ReportingProjection(view).catch_up() == 1  # type: ignore[arg-type]
    assert sorted(view.figures) == [("c-paris", "2026-01")]
    view.reader.records = [registered, later]
    assert ReportingProjection(view).catch_up() == 2  # type: ignore[arg-type]
    assert sorted(view.figures) == [("c-paris", "2026-01"), ("c-paris", "2026-02")]
    assert view.figures == full([registered, later])
