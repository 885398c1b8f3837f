"""The shipped example policies and the demo month's facts."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

import ledger
from cli import demo
from ledger.admission import decode_fact
from ledger.errors import BadInput
from ledger.events import (
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
    RecoveryPerformed,
    SupportEngaged,
    SupportTimeLogged,
    TicketClassified,
    TicketOpened,
    TicketResponded,
    TicketSeverityChanged,
)
from ledger.policy import Policy, resolve
from ledger.policy_check import load_policy

EXPECTED = {"sla-a.toml", "sla-b.toml", "sla-c-en.toml", "sla-c-fr.toml", "sla-d.toml"}
README = Path(__file__).resolve().parents[2] / "docs" / "examples" / "README.md"


def _policies() -> list[Policy]:
    return [resolve(load_policy(p.read_bytes(), source=p.name)) for p in demo.example_policy_paths()]


def _instants(fact: Fact) -> list[datetime]:
    raw = msgspec.structs.asdict(fact)
    return [v for v in raw.values() if isinstance(v, datetime)]


@pytest.fixture(scope="module")
def facts() -> list[Fact]:
    return demo.demo_facts(demo.demo_month())


def test_the_five_examples_ship_as_package_data() -> None:
    paths = demo.example_policy_paths()
    assert {p.name for p in paths} == EXPECTED
    assert all(p.parent == Path(ledger.__file__).parent / "examples" for p in paths)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_loads_and_resolves(name: str) -> None:
    path = demo.EXAMPLES_DIR / name
    policy = resolve(load_policy(path.read_bytes(), source=name))
    assert policy.service
    assert policy.probes, "every example names its probes"


def test_examples_name_distinct_contracts_and_services() -> None:
    policies = _policies()
    assert len({p.contract_id for p in policies}) == len(policies)
    assert len({p.service for p in policies}) == len(policies)


def test_seed_c_versions_differ_only_in_holidays_and_placeholders() -> None:
    by_id = {p.contract_id: p for p in _policies()}
    en, fr = by_id["sla-c-en-2026"], by_id["sla-c-fr-2026"]
    assert (en.calendar.holidays, fr.calendar.holidays) == ("CA-ON", "BE")
    assert en.credits is None
    assert fr.credits is None
    same = ("target", "formula", "outage_when", "probes", "excludable", "maintenance", "timezone")
    for field in same:
        assert getattr(en, field) == getattr(fr, field), field
    assert (en.calendar.timezone, en.calendar.opens, en.calendar.closes) == (
        fr.calendar.timezone,
        fr.calendar.opens,
        fr.calendar.closes,
    )


def test_readme_links_every_example() -> None:
    text = README.read_text(encoding="utf-8")
    for name in EXPECTED:
        assert f"(../../ledger/examples/{name})" in text, name


def test_demo_services_match_the_examples(facts: list[Fact]) -> None:
    policies = {p.contract_id: p for p in _policies()}
    assert demo.demo_services() == {cid: p.service for cid, p in policies.items()}
    services = {getattr(f, "service", None) for f in facts} - {None}
    assert services == {p.service for p in policies.values()}
    for p in policies.values():
        seen = {f.probe for f in facts if isinstance(f, ProbeFailed) and f.service == p.service}
        assert set(p.probes) <= seen, p.contract_id


def test_demo_facts_round_trip_through_the_decoder(facts: list[Fact]) -> None:
    for fact in facts:
        assert decode_fact(msgspec.json.encode(fact)) == fact


def test_demo_facts_have_unique_explicit_ids_and_no_envelope(facts: list[Fact]) -> None:
    ids = [f.id for f in facts]
    assert None not in ids
    assert len(set(ids)) == len(ids)
    assert all(f.position is None and f.recorded_at is None for f in facts)


def test_demo_facts_fall_in_or_around_the_month(facts: list[Fact]) -> None:
    lo, hi = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    slack = timedelta(days=7)
    for fact in facts:
        for instant in _instants(fact):
            assert instant.tzinfo is not None
            assert lo - slack <= instant <= hi + slack, fact


def test_demo_facts_are_deterministic_for_a_seed() -> None:
    month = demo.demo_month()
    assert demo.demo_facts(month, seed=7) == demo.demo_facts(month, seed=7)
    assert demo.demo_facts(month) == demo.demo_facts(month, seed=7)
    assert demo.demo_facts(month, seed=8) != demo.demo_facts(month, seed=7)


def test_demo_ids_differ_between_months() -> None:
    oct_ids = {f.id for f in demo.demo_facts("2026-10")}
    nov_ids = {f.id for f in demo.demo_facts("2026-11")}
    assert not oct_ids & nov_ids


def test_every_service_gets_every_kind_of_story(facts: list[Fact]) -> None:
    for policy in _policies():
        service = policy.service
        mine = [f for f in facts if getattr(f, "service", None) == service]
        kinds = Counter(type(f) for f in mine)
        story = (ProbeFailed, ProbeRecovered, MaintenanceAnnounced, ForceMajeureDeclared, ExclusionDeclared)
        for kind in story:
            assert kinds[kind] >= 1, (service, kind.__name__)
        assert any(isinstance(f, IncidentOpened) and f.impact == "outage" for f in mine)
        assert kinds[ProbeFailed] > kinds[ProbeRecovered], "a repeated failure while down"
        names = {f.maintenance for f in mine if isinstance(f, MaintenanceAnnounced)}
        assert any(isinstance(f, MaintenanceCancelled) and f.maintenance in names for f in facts)
        assert any(isinstance(f, MaintenanceCompleted) and f.maintenance in names for f in facts)
        refs = {f.exclusion for f in mine if isinstance(f, ExclusionDeclared)}
        refs |= {f.declaration for f in mine if isinstance(f, ForceMajeureDeclared)}
        assert any(isinstance(f, ExclusionRevoked) and f.ref in refs for f in facts)
        boundary = datetime(2026, 10, 1, tzinfo=policy.timezone)
        # an outage across the month's start
        assert any(isinstance(f, ProbeFailed) and f.at < boundary for f in mine)


def test_contract_a_files_one_claim_in_time_and_one_late(facts: list[Fact]) -> None:
    claims = {f.month: f.at for f in facts if isinstance(f, CreditClaimFiled)}
    assert set(claims) == {"2026-10", "2026-09"}
    assert claims["2026-10"] < datetime(2026, 11, 4, tzinfo=UTC)  # by the 3rd of the next month
    assert claims["2026-09"] > datetime(2026, 10, 4, tzinfo=UTC)  # after the 3rd: late


def test_some_probe_events_arrive_out_of_order(facts: list[Fact]) -> None:
    first_seen: dict[tuple[str, str], datetime] = {}
    late = 0
    for f in facts:
        if isinstance(f, ProbeFailed | ProbeRecovered):
            key = (f.service, f.probe)
            if key in first_seen and f.at < first_seen[key]:
                late += 1
            first_seen.setdefault(key, f.at)
    assert late > 0


def test_references_point_back_to_earlier_facts(facts: list[Fact]) -> None:
    announced: set[str] = set()
    opened: set[str] = set()
    declared: set[str] = set()
    for f in facts:
        match f:
            case MaintenanceAnnounced():
                announced.add(f.maintenance)
            case MaintenanceCancelled() | MaintenanceCompleted():
                assert f.maintenance in announced
            case IncidentOpened():
                opened.add(f.incident)
            case IncidentResolved():
                assert f.incident in opened
            case ExclusionDeclared():
                declared.add(f.exclusion)
            case ForceMajeureDeclared():
                declared.add(f.declaration)
            case ExclusionRevoked():
                assert f.ref in declared


@pytest.mark.parametrize("month", ["2026-13", "2026-1", "october", ""])
def test_a_bad_month_is_refused(month: str) -> None:
    with pytest.raises(BadInput):
        demo.demo_facts(month)


def test_the_support_amendment_is_sla_b_from_october() -> None:
    # docs/examples/sla-b-support.toml is sla-b.toml (support clause included) in force from 2026-10.
    shipped = load_policy((demo.EXAMPLES_DIR / "sla-b.toml").read_bytes())
    amendment = load_policy((README.parent / "sla-b-support.toml").read_bytes())
    assert amendment.contract.effective_from == "2026-10"
    assert shipped.contract.effective_from is None
    as_shipped = msgspec.structs.replace(amendment.contract, effective_from=None)
    assert msgspec.structs.replace(amendment, contract=as_shipped) == shipped


@pytest.mark.parametrize(("name", "promises"), [("sla-a.toml", False), ("sla-b.toml", True),
                                                ("sla-c-en.toml", True), ("sla-c-fr.toml", True),
                                                ("sla-d.toml", True)])
def test_the_agreements_that_promise_support_have_a_support_section(name: str, promises: bool) -> None:
    policy = resolve(load_policy((demo.EXAMPLES_DIR / name).read_bytes(), source=name))
    assert (policy.support is not None) == promises
    if policy.support is None:
        return
    if name.startswith("sla-c"):
        assert policy.support.max_data_loss is not None
    if name == "sla-d.toml":
        assert policy.support.engagement_level == "level3"
        assert [t.kind for t in policy.support.targets] == ["mean", "per_ticket", "per_ticket"]


def test_the_demo_tickets_leave_the_availability_story_as_it_was() -> None:
    # cli/demo/tickets.py draws no random number: with or without tickets, the other facts are the same.
    support = (TicketOpened, TicketResponded, TicketClassified, TicketSeverityChanged, SupportTimeLogged,
               SupportEngaged, RecoveryPerformed)
    month = demo.demo_month()
    full, bare = demo.demo_facts(month), demo.demo_facts(month, tickets=False)
    assert not any(isinstance(f, support) for f in bare)
    assert [f for f in full if not isinstance(f, support)] == bare
    kinds = Counter(type(f).__name__ for f in full if isinstance(f, support))
    # B: 10 tickets (September's and 01-09), 8 answered; C: 3 per version, 2 answered; D: 5, all answered.
    assert kinds == {"TicketOpened": 10 + 2 * 3 + 5, "TicketResponded": 8 + 2 * 2 + 5,
                     "TicketClassified": 3 + 2, "TicketSeverityChanged": 1, "SupportTimeLogged": 3,
                     "SupportEngaged": 2, "RecoveryPerformed": 4}
