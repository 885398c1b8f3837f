"""``ledger report --month`` shared among worker processes: the single reports, byte for byte, both stores."""

from __future__ import annotations

from cli.demo.run import run_demo
from ledger.bootstrap import open_ledger
from ledger.monthly import month_reports
from projections.model import to_json
from tests.conftest import StepClock


def test_workers_give_the_single_reports(store_url: str) -> None:
    led = open_ledger(store_url, clock=StepClock())
    try:
        run_demo(led)
        head = led.recorder.last_position()
        for month in ("2026-10", "2026-09"):
            singles = [to_json(led.report(cid, month).report) for cid in sorted(led.contracts())]
            # Two workers for five contracts: one contract a task, the order kept across tasks.
            spread = [to_json(r) for r in month_reports(led, month, workers=2)]
            alone = [to_json(r) for r in month_reports(led, month, workers=1)]
            assert spread == alone == singles
            assert all(r.as_of_position == head for r in month_reports(led, month, ["sla-d-2026"], workers=2))
    finally:
        led.close()


def test_support_workers_give_the_single_reports(store_url: str) -> None:
    """``ledger support --month`` shared among workers: the single reports, at the head and at a replay."""
    from ledger.monthly import month_support
    from ledger.support_read import support_report
    from projections.support_model import support_json
    from tests.cli.test_support_output import fill

    led = open_ledger(store_url, clock=StepClock())
    try:
        middle = fill(led)
        ids = sorted(led.contracts())
        for position in (None, middle):
            known = sorted(led.contracts(position)) if position is not None else ids
            singles = [support_json(support_report(led, cid, "2026-10", position=position)) for cid in known]
            spread = [support_json(r) for r in month_support(led, "2026-10", position=position, workers=2)]
            alone = [support_json(r) for r in month_support(led, "2026-10", position=position, workers=1)]
            assert spread == alone == singles
            assert len(singles) == (len(ids) if position is None else len(ids) - 1)
    finally:
        led.close()
