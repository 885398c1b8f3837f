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
