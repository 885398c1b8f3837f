"""``ledger demo``: record the example contracts and a generated month, then report on them."""

from __future__ import annotations

from cli.demo.cast import demo_month, example_policy_paths
from cli.demo.story import demo_facts
from ledger.application import Ledger
from ledger.errors import BadInput
from ledger.events import ContractRegistered, fact_id
from ledger.policy import PolicyFile
from ledger.policy_check import load_policy
from projections.model import Report


def _policies() -> list[PolicyFile]:
    return [load_policy(path.read_bytes(), source=path.name) for path in example_policy_paths()]


def check_demo_store(ledger: Ledger, shown: str, month: str | None = None) -> None:
    """Refuse a store holding any fact that is not one of the demo's own (an empty one is fine).

    A store holding only demo facts (a second run, or one that stopped half-way)
    is accepted: running the demo again appends nothing it does not already hold.
    """
    held = ledger.recorder.last_position()
    if held == 0:
        return
    month = month or demo_month()
    ours = {fact_id(ContractRegistered(policy=p)) for p in _policies()}
    ours.update(fact_id(f) for f in demo_facts(month))
    # Counting first: a store larger than the demo is refused without reading it.
    if held > len(ours) or any(rec.id not in ours for rec in ledger.records()):
        raise BadInput(
            f"demo: the store at {shown} already holds {held} facts that are not only the demo's; "
            "give the demo an empty store (--store sqlite:///demo.db)"
        )


def run_demo(ledger: Ledger, month: str | None = None, *, tickets: bool = True) -> list[Report]:
    """Register the examples, import the month's facts (idempotent), return each contract's report."""
    month = month or demo_month()
    contracts = [ledger.register_contract(policy).contract for policy in _policies()]
    ledger.append_facts(demo_facts(month, tickets=tickets))
    return [ledger.report(cid, month).report for cid in contracts]
