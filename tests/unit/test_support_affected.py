"""The support tables kept incrementally equal the support fold over every fact (hypothesis).

Random ledgers of section 6's facts (tickets opened, re-prioritised, answered, classified,
resolved, time logged; engagements; recoveries; pins) with probe facts (downtime stretches)
for two contracts on one service, one of them amended, fed to ``ReportingProjection`` in
random batches over an in-memory view: after every batch each held month's support rows
equal ``evaluate_support`` over all facts (as ``ledger support`` reads them), and so does a
rebuild's grouped path. Facts come in any order: responses before their tickets, logs
before the classification, pins after the months they change.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.contracts import in_force
from ledger.events import (
    ContractAmended,
    ContractRegistered,
    Fact,
    HolidaysPinned,
    Recorded,
    TicketClassified,
    fact_id,
)
from ledger.persistence.rows import ViewRows
from ledger.policy import resolve
from ledger.policy_check import load_policy
from projections.affected import Known, Pair
from projections.availability import downtime_stretches
from projections.support import evaluate_support
from projections.tracked import ReportingProjection, support_rows, view_rows
from projections.tracked.groups import service_groups
from projections.tracked.rebuilding import _group_reports
from tests.unit.factories import fact, ts
from tests.unit.test_affected import _KeyedReader

BASE = datetime(2026, 1, 20, tzinfo=UTC)
SPAN_H = 90 * 24  # late January to late April
RECORDED = datetime(2026, 1, 15, tzinfo=UTC)

POLICY = """
[contract]
id = "{cid}"
customer = "C"
service = "svc"
timezone = "{tz}"
currency = "EUR"
annual_fee = "5000.00"
{effective}
[availability]
target = "99.9"
probes = ["p1"]

[support]
hours = ["Mon-Fri 09:00-17:00"]
holidays = "{holidays}"
closures = [{{ holidays = "GB", window = "-1 20:00-10:00" }}]
targets = [
  {{ severity = "high", first_response = "{high}" }},
  {{ severity = "low", first_response = "1 business day" }},
  {{ severity = "l1", mean_first_response = "30m" }},
]
engagement = {{ level = "l3", within = "10m" }}
recovery = {{ max_data_loss = "24h" }}
quota = {{ hours_per = "1000", year_starts = "03-01", exempt = ["bug"], warn_below = "2h" }}
"""
REGISTER_P = ContractRegistered(policy=load_policy(POLICY.format(
    cid="c-paris", tz="Europe/Paris", effective="", holidays="FR", high="2h").encode()))
REGISTER_T = ContractRegistered(policy=load_policy(POLICY.format(
    cid="c-toronto", tz="America/Toronto", effective="", holidays="CA", high="4h").encode()))
AMEND_P = ContractAmended(policy=load_policy(POLICY.format(
    cid="c-paris", tz="Europe/Paris", effective='effective_from = "2026-03"', holidays="CA",
    high="1h").encode()))


def _at(h: int) -> str:
    return (BASE + timedelta(hours=h, minutes=7 * (h % 5))).isoformat()


hours = st.integers(0, SPAN_H)
tickets = st.sampled_from(["t1", "t2", "t3", "t4"])
ticket_facts = st.one_of(
    st.builds(lambda c, t, h, s: fact("ticket_opened", contract=c, ticket=t, at=_at(h), severity=s),
              st.sampled_from(["c-paris", "c-paris", "c-toronto"]), tickets, hours,
              st.sampled_from(["high", "low", "l1", "odd"])),
    st.builds(lambda t, h, s: fact("ticket_severity_changed", ticket=t, at=_at(h), severity=s),
              tickets, hours, st.sampled_from(["high", "low", "l1"])),
    st.builds(lambda t, h: fact("ticket_responded", ticket=t, at=_at(h)), tickets, hours),
    st.builds(lambda t, k: TicketClassified(ticket=t, kind=k), tickets,
              st.sampled_from(["account", "bug", "global_issue"])),
    st.builds(lambda t, h: fact("ticket_resolved", ticket=t, at=_at(h)), tickets, hours),
    st.builds(lambda t, h, s: fact("support_time_logged", ticket=t, at=_at(h), seconds=s), tickets, hours,
              st.sampled_from([900, 3600, 7200])),
)
service_facts = st.one_of(
    st.builds(lambda kind, h: fact(kind, service="svc", probe="p1", at=_at(h)),
              st.sampled_from(["probe_failed", "probe_recovered"]), hours),
    st.builds(lambda level, h: fact("support_engaged", service="svc", level=level, at=_at(h)),
              st.sampled_from(["l3", "l3", "l2"]), hours),
    st.builds(lambda r, h, lost: fact("recovery_performed", service="svc", recovery=r, at=_at(h),
                                      restored_to=ts(_at(h - lost))),
              st.sampled_from(["r1", "r2"]), hours, st.integers(1, 48)),
)
pins = st.builds(
    lambda country, days: HolidaysPinned(country=country, year=2026, dates=tuple(
        (date(2026, 1, 1) + timedelta(days=d)).isoformat() for d in sorted(set(days)))),
    st.sampled_from(["FR", "CA", "GB", "DE"]), st.lists(st.integers(20, 120), max_size=4),
)
ops = st.lists(st.one_of(ticket_facts, ticket_facts, service_facts, pins), min_size=1, max_size=24)


@st.composite
def ledgers(draw: st.DrawFn) -> tuple[list[Recorded], list[int]]:
    """Facts with the contract facts at random places, and the batch boundaries."""
    facts: list[Fact] = list(draw(ops))
    for contract_fact in (REGISTER_T, REGISTER_P):
        facts.insert(draw(st.integers(0, len(facts))), contract_fact)
    if draw(st.booleans()):
        facts.insert(draw(st.integers(facts.index(REGISTER_P) + 1, len(facts))), AMEND_P)
    gaps = draw(st.lists(st.sampled_from([1, 3600, 3 * 86400, 20 * 86400]), min_size=len(facts),
                         max_size=len(facts)))
    clock = list(itertools.accumulate(gaps))
    records = [Recorded(position=i, recorded_at=RECORDED + timedelta(seconds=clock[i - 1]), id=fact_id(f),
                        fact=f)
               for i, f in enumerate(facts, 1)]
    cuts = sorted(set(draw(st.lists(st.integers(1, len(records)), max_size=6))) | {len(records)})
    return records, cuts


AS_OF = (14, 13)  # the as_of_position column of each support table: it depends on the path taken
Rows = tuple[tuple[tuple[Any, ...], ...], tuple[tuple[Any, ...], ...]]


def _by_pair(rows: ViewRows, pairs: Any = ()) -> dict[Pair, Rows]:
    out: dict[Pair, tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]] = {p: ([], []) for p in pairs}
    for i, table in enumerate((rows.tickets, rows.targets)):
        k = AS_OF[i]
        for row in table:
            out.setdefault((row[0], row[1]), ([], []))[i].append((*row[:k], 0, *row[k + 1:]))
    return {p: (tuple(t), tuple(g)) for p, (t, g) in out.items() if t or g}


class MemoryView:
    """The view's contract in memory, keeping the support rows and whether a month is wall to wall."""

    text = True

    def __init__(self, records: Sequence[Recorded]) -> None:
        self.support: dict[Pair, Rows] = {}
        self.full: set[Pair] = set()
        self.position: int | None = None
        self.reader = _KeyedReader(records)  # what the follower reads by: keys and names

    def max_tracking_id(self, application_name: str) -> int | None:
        return self.position

    def replace(self, pairs: Any, rows: ViewRows, tracking: Tracking) -> None:
        if self.position is not None and tracking.notification_id <= self.position:
            raise IntegrityError("behind")
        self.position = tracking.notification_id
        for pair in list(pairs):
            self.support.pop(pair, None)
            self.full.discard(pair)
        self.support.update(_by_pair(rows))
        self.full.update((m[0], m[1]) for m in rows.monthly if m[8] == m[4])  # downtime == total
        self.full.update((f[0], f[1]) for f in rows.failed)

    def wall_to_wall(self, pairs: Any) -> set[Pair]:
        return {p for p in self.full if p in pairs}

    def ledger_recorder(self) -> _KeyedReader:
        return self.reader


def full(records: Sequence[Recorded]) -> dict[Pair, Rows]:
    """Every held month's support rows from all records, as ``ledger support`` computes them."""
    known = Known()
    known.add_all(records)
    out: dict[Pair, Rows] = {}
    for cid, months in known.all_held().items():
        for month in months:
            version = in_force(known.versions[cid], month)
            policy = resolve(version.policy)
            report = evaluate_support(records, policy, version.version, month, as_of_position=0,
                                      stretches=downtime_stretches(records, policy, month))
            out.update(_by_pair(view_rows([support_rows(report)], text=True)))
    return out


SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(ledgers())
def test_incremental_support_rows_equal_the_fold_over_every_fact(
        ledger: tuple[list[Recorded], list[int]]) -> None:
    records, cuts = ledger
    view = MemoryView(records)
    projection = ReportingProjection(view)  # type: ignore[arg-type]
    start = 0
    for i, cut in enumerate(cuts):
        if i % 2:
            # A follower started afresh on the view: it loads only the groups the next facts touch.
            view.reader.records = records[:cut]
            projection = ReportingProjection(view)  # type: ignore[arg-type]
            assert projection.catch_up() == cut
            view.reader.records = records
        else:
            projection.apply(records[start:cut])
        start = cut
        assert view.support == full(records[:cut])


@SETTINGS
@given(ledgers())
def test_a_rebuild_gives_the_support_rows_of_the_fold(ledger: tuple[list[Recorded], list[int]]) -> None:
    # Service group by group through the key index: tickets by contract, what refers to them,
    # then the pins of the countries the support clocks name.
    records, _ = ledger
    known = Known()
    known.add_all(records)
    reader = _KeyedReader(records)
    got: dict[Pair, Rows] = {}
    for services, contracts in service_groups(known.versions):
        items = _group_reports(reader, sorted(services), sorted(contracts), len(records),  # type: ignore[arg-type]
                               records[-1].recorded_at)
        got.update(_by_pair(view_rows(items, text=True)))
    assert got == full(records)


def _incremental_equals_full(batches: Sequence[Sequence[Fact]], clock_days: int = 100) -> None:
    """Each batch applied alone (the clock well past the facts): the rows equal the full fold each time."""
    facts = [f for batch in batches for f in batch]
    clock = RECORDED + timedelta(days=clock_days)
    records = [Recorded(position=i, recorded_at=clock + timedelta(seconds=i), id=fact_id(f), fact=f)
               for i, f in enumerate(facts, 1)]
    view = MemoryView(records)
    projection = ReportingProjection(view)  # type: ignore[arg-type]
    start = 0
    for batch in batches:
        projection.apply(records[start : start + len(batch)])
        start += len(batch)
        assert view.support == full(records[:start])


def test_a_pin_alone_recomputes_the_months_its_country_reaches() -> None:
    # 21 and 22 January pinned as French holidays: the ticket's business day moves from the
    # 22nd to the 26th (a Monday), in a month no other fact of the batch touches.
    _incremental_equals_full([
        [REGISTER_P, fact("ticket_opened", contract="c-paris", ticket="t1", at=_at(30), severity="low")],
        [HolidaysPinned(country="DE", year=2026, dates=("2026-01-21",))],  # a country no clock names
        [HolidaysPinned(country="FR", year=2026, dates=("2026-01-21", "2026-01-22"))],
    ])


def test_a_classification_alone_changes_the_quota_of_the_rest_of_the_year() -> None:
    # An hour logged on 2 March (the subscription year starts on 1 March) on a ticket opened in
    # February: March's and April's quota draw it until the ticket is classified as a bug.
    _incremental_equals_full([
        [REGISTER_P, fact("ticket_opened", contract="c-paris", ticket="t1", at="2026-02-10T10:00:00+01:00",
                          severity="low"),
         fact("support_time_logged", ticket="t1", at="2026-03-02T10:00:00+01:00", seconds=3600)],
        [TicketClassified(ticket="t1", kind="bug")],
        [fact("support_time_logged", ticket="t1", at="2026-04-02T10:00:00+02:00", seconds=900)],
    ])


def test_an_engagement_alone_reaches_back_to_the_stretches_it_answers() -> None:
    # Downtime in February, engaged only in April: February's row changes, and changes again
    # when an earlier engagement arrives.
    _incremental_equals_full([
        [REGISTER_P, fact("probe_failed", service="svc", probe="p1", at="2026-02-10T10:00:00Z"),
         fact("probe_recovered", service="svc", probe="p1", at="2026-02-10T11:00:00Z")],
        [fact("support_engaged", service="svc", level="l3", at="2026-04-01T10:00:00Z")],
        [fact("support_engaged", service="svc", level="l3", at="2026-02-10T10:05:00Z")],
        [fact("support_engaged", service="svc", level="l2", at="2026-02-10T10:01:00Z")],
    ])


def _followed(records: Sequence[Recorded], cuts: Sequence[int], restart: int) -> MemoryView:
    """The follower over ``records`` cut at ``cuts``, started afresh at every cut of parity ``restart``
    (as the property above): after each cut its support rows equal the fold's."""
    view = MemoryView(records)
    projection = ReportingProjection(view)  # type: ignore[arg-type]
    start = 0
    for i, cut in enumerate(cuts):
        if i % 2 == restart:
            view.reader.records = list(records[:cut])
            projection = ReportingProjection(view)  # type: ignore[arg-type]
            assert projection.catch_up() == cut
            view.reader.records = list(records)
        else:
            projection.apply(records[start:cut])
        start = cut
        assert view.support == full(records[:cut])
    return view


def _records(facts: Sequence[Fact]) -> list[Recorded]:
    return [Recorded(position=i, recorded_at=RECORDED + timedelta(seconds=i), id=fact_id(f), fact=f)
            for i, f in enumerate(facts, 1)]


REGISTER_L = ContractRegistered(policy=load_policy(  # another service: another group
    POLICY.replace('service = "svc"', 'service = "svc2"').format(
        cid="c-lyon", tz="Europe/Paris", effective="", holidays="FR", high="2h").encode()))


def _tickets(view: MemoryView, pair: Pair) -> list[tuple[str, str | None]]:
    """The ticket lines of a held month: (ticket, responded_at)."""
    return [(row[3], row[7]) for row in view.support.get(pair, ((), ()))[0]]


def test_a_ticket_id_a_second_contract_opens_stays_the_first_ones() -> None:
    # The saved failing example, minimal: t2 opened for c-toronto (not registered yet), then for
    # c-paris (an opening the ledger refuses), then answered, all in one page. The ticket is
    # c-toronto's: c-paris's January lists no ticket, the follower as the fold (it listed t2
    # unanswered, the response routed to c-toronto's group only).
    facts = [REGISTER_P,
             fact("ticket_opened", contract="c-toronto", ticket="t2", at=_at(0), severity="high"),
             fact("ticket_opened", contract="c-paris", ticket="t2", at=_at(0), severity="high"),
             fact("ticket_responded", ticket="t2", at=_at(1))]
    view = _followed(_records(facts), [4], restart=1)
    assert _tickets(view, ("c-paris", "2026-01")) == []
    # Registered, c-toronto lists it with its response; page by page, restarted between any two facts.
    facts = [REGISTER_T, *facts]
    for restart in (0, 1):
        view = _followed(_records(facts), range(1, len(facts) + 1), restart)
        assert _tickets(view, ("c-paris", "2026-01")) == []
        assert _tickets(view, ("c-toronto", "2026-01")) == [("t2", _at(1).replace("+00:00", "Z"))]


def test_a_ticket_id_claimed_in_another_group_before_the_page_is_read_by_key() -> None:
    # c-lyon (another service: another group) opens t1 first; c-paris opens it a page later, after
    # a response and a log recorded before either opening: c-paris's group reads c-lyon's opening
    # by key and leaves the ticket out; a later response goes to c-lyon's group only.
    facts = [REGISTER_P, REGISTER_L,
             fact("ticket_responded", ticket="t1", at=_at(30)),
             fact("support_time_logged", ticket="t1", at=_at(40), seconds=3600),
             fact("ticket_opened", contract="c-lyon", ticket="t1", at=_at(20), severity="low"),
             fact("ticket_opened", contract="c-paris", ticket="t1", at=_at(10), severity="high"),
             TicketClassified(ticket="t1", kind="bug"),
             fact("ticket_resolved", ticket="t1", at=_at(50))]
    for cuts in ([5, 6, 8], [2, 4, 6, 7, 8], [8]):
        for restart in (0, 1):
            view = _followed(_records(facts), cuts, restart)
            assert _tickets(view, ("c-paris", "2026-01")) == []
            assert _tickets(view, ("c-lyon", "2026-01")) == [("t1", _at(30).replace("+00:00", "Z"))]


def test_the_fold_counts_a_ticket_for_the_contract_of_its_first_opening() -> None:
    # By position, not by ``at``: c-paris's opening is recorded second though it is earlier.
    records = _records([REGISTER_P, REGISTER_L,
                        fact("ticket_opened", contract="c-lyon", ticket="t1", at=_at(20), severity="low"),
                        fact("ticket_opened", contract="c-paris", ticket="t1", at=_at(10), severity="high")])
    rows = full(records)
    assert [row[3] for row in rows[("c-lyon", "2026-01")][0]] == ["t1"]
    assert rows[("c-paris", "2026-01")][0] == ()
