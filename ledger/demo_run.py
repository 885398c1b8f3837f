"""``ledger demo``: record the example contracts and a generated month, then report on them."""

from __future__ import annotations

from ledger.application import Ledger
from ledger.demo import demo_facts, demo_month, example_policy_paths
from ledger.policy import load_policy
from projections.model import Report


def run_demo(ledger: Ledger, month: str | None = None) -> list[Report]:
    """Register the examples, import the month's facts (idempotent), return each contract's report."""
    month = month or demo_month()
    contracts = []
    for path in example_policy_paths():
        policy = load_policy(path.read_bytes(), source=path.name)
        contracts.append(ledger.register_contract(policy).contract)
    ledger.append_facts(demo_facts(month))
    return [ledger.report(cid, month).report for cid in contracts]
