"""The support and month-at-once benchmarks (issues 18 and 20) in quick mode: every figure line is printed.

Targets are the scripts' PASS/FAIL, not asserted here (a slow machine fails no test).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from benchmarks.support_bench import history_lines, support_lines
from ledger.admission import decode_fact
from ledger.events import TicketOpened

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: a FAIL verdict, still every line
    return proc.stdout


def test_support_lines_are_valid_and_cover_every_support_fact() -> None:
    lines = support_lines(400)
    assert lines == support_lines(400)  # seeded
    kinds = {type(decode_fact(line.encode())).__struct_config__.tag for line in lines}
    assert kinds >= {"ticket_opened", "ticket_severity_changed", "ticket_responded", "ticket_classified",
                     "support_time_logged", "support_engaged", "recovery_performed", "holidays_pinned",
                     "probe_failed", "probe_recovered"}


def test_support_bench_quick_prints_its_figures() -> None:
    out = _run("benchmarks.support_bench", "--quick", "--growth", "none")
    assert re.search(r"^support cli sqlite tickets=300: wall median [0-9.]+ s .* (PASS|FAIL)", out, re.M), out
    assert re.search(r"^support cli sqlite tickets=300 cpu: median [0-9.]+ s .* (PASS|FAIL)$", out, re.M), out
    assert re.search(r"^support cli sqlite history: 12 months of history x[0-9.]+ CPU .* (PASS|FAIL) ", out,
                     re.M), out


def test_history_lines_are_months_before_with_their_own_tickets() -> None:
    lines = history_lines(50, 12)
    facts = [decode_fact(line.encode()) for line in lines]
    opened = [f for f in facts if isinstance(f, TicketOpened)]
    assert len(opened) == 600
    assert len({f.ticket for f in opened}) == 600  # every month its own tickets
    assert min(f.at for f in opened).isoformat() >= "2025-04"
    assert max(f.at for f in opened).isoformat() < "2026-04-01T05"  # before the month (Toronto)
    assert {type(f).__struct_config__.tag for f in facts} <= {
        "ticket_opened", "ticket_severity_changed", "ticket_responded", "ticket_classified",
        "support_time_logged"}


def test_month_all_quick_prints_its_figures() -> None:
    out = _run("benchmarks.month_all", "--quick")
    for what in ("wall", "cpu"):
        assert re.search(rf"^month_all sqlite {what} 20 contracts month 2025-01: one call median .* x[0-9.]+ "
                         r"faster, target >= x20: (PASS|FAIL)", out, re.M), out
    assert re.search(r"^month_all sqlite identical: .*: PASS$", out, re.M), out


def test_month_all_quick_support_prints_its_figures() -> None:
    out = _run("benchmarks.month_all", "--quick", "--command", "support")
    for what in ("wall", "cpu"):
        assert re.search(rf"^month_all sqlite support {what} 20 contracts month 2025-01: one call median .* "
                         r"x[0-9.]+ faster, target >= x20: (PASS|FAIL)", out, re.M), out
    assert re.search(r"^month_all sqlite support identical: .*: PASS$", out, re.M), out
