"""Reading a contract-month through the key index gives exactly the figures of a full replay."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from cli.demo import demo_facts, demo_month
from cli.demo.run import run_demo
from ledger.application import Ledger
from ledger.contracts import contract_versions, in_force
from ledger.events import CreditClaimFiled, ExclusionRevoked, IncidentResolved, ProbeFailed
from ledger.policy import resolve
from projections.availability import evaluate
from projections.model import to_json


def full_replay(ledger: Ledger, contract: str, month: str) -> bytes:
    records = list(ledger.records())
    version = in_force(contract_versions(records)[contract], month)
    ev = evaluate(records, resolve(version.policy), version.version, month,
                  as_of_position=records[-1].position)
    return to_json(ev.report)


@pytest.mark.parametrize("month", ["2026-09", "2026-10", "2026-11"])
def test_indexed_read_equals_full_replay(ledger: Ledger, month: str) -> None:
    reports = run_demo(ledger)
    ledger.append_facts(demo_facts("2026-11", seed=3))
    # noise on other services and references to unknown ids must not matter
    ledger.append_facts([
        ProbeFailed(service="elsewhere", probe="x", at=datetime(2026, 10, 3, tzinfo=UTC)),
        IncidentResolved(incident="nobody", at=datetime(2026, 10, 3, tzinfo=UTC)),
        ExclusionRevoked(ref="nothing", reason="noise"),
        CreditClaimFiled(contract="someone-else", month="2026-10", at=datetime(2026, 11, 2, tzinfo=UTC)),
    ])
    assert len(reports) == 5
    for contract in sorted(ledger.contracts()):
        # Without the log's checkpoint, which the full replay does not compute.
        indexed = msgspec.structs.replace(ledger.report(contract, month).report, checkpoint=None)
        assert to_json(indexed) == full_replay(ledger, contract, month)
    assert demo_month() == "2026-10"
