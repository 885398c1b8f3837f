"""Every contract of a month in one call (``ledger report --month M``, INTERFACE.md section 8).

The rebuild's way, for one month: contracts are grouped by the services their
versions name (``_service_groups``), each group's facts are read once through the
key index and folded into a ``Known`` (``_group_reports``), and each contract's
month evaluates only the facts ``positions_for`` names. The reports are the single
reports' own, byte for byte: the same fold over the same facts, at the same head.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ledger.application import Ledger
from ledger.calendar import check_month
from ledger.contracts import find
from ledger.errors import LedgerError
from ledger.runtime import paused_gc
from projections.model import Report
from projections.tracked.rebuilding import _group_reports, _service_groups
from projections.tracked.rows import Failed


def month_reports(ledger: Ledger, month: str, contracts: Sequence[str] = ()) -> list[Report]:
    """The month's report of each contract named (none: every registered contract), in contract id order."""
    check_month(month, "--month")
    head = ledger.recorder.last_position()
    versions = ledger.contracts(head)
    wanted = sorted(set(contracts)) if contracts else sorted(versions)
    chosen = {cid: find(versions, cid) for cid in wanted}
    done: dict[str, Report] = {}
    checkpoint = ledger.log_checkpoint(head)  # the single reports' own: every one names this log
    with paused_gc():  # a group's decoded facts, no cycles
        for services, cids in _service_groups(chosen):
            for r in _group_reports(ledger.recorder, sorted(services), sorted(cids), head, None, month):
                if isinstance(r, Failed):
                    raise LedgerError(f"contract {r.contract}, month {r.month}: {r.error}")
                done[r.contract] = msgspec.structs.replace(r, checkpoint=checkpoint)
    return [done[cid] for cid in wanted]
