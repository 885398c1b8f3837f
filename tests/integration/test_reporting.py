"""The reporting tables on both stores: equal to `ledger report --format json`, rebuilt or incremental.

Reporting jobs read the tables with plain SQL, so that is how these tests read them.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg.rows import dict_row

from cli.demo import demo_facts, example_policy_paths
from cli.main import cli
from cli.projections import projections
from ledger.admission import fact_from_fields
from ledger.application import Ledger
from ledger.events import ExclusionRevoked, Fact
from ledger.policy_check import load_policy
from projections.affected import Known
from projections.model import Report, to_json
from projections.tracked import Evaluator, open_view

MONTH = "2026-10"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="module")
def _register_group() -> Iterator[None]:
    """The lead wires `projections` into cli.main; until then the tests add it themselves."""
    added = "projections" not in cli.commands
    if added:
        cli.add_command(projections)
    yield
    if added:
        cli.commands.pop("projections", None)


def ledger_cli(runner: CliRunner, url: str, *args: str) -> Result:
    result = runner.invoke(cli, ["--store", url, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def register(ledger: Ledger) -> list[str]:
    return [
        ledger.register_contract(load_policy(p.read_bytes(), source=p.name)).contract
        for p in example_policy_paths()
    ]


# --- reading the tables as a reporting job would -----------------------------------


def query(url: str, sql: str) -> list[dict[str, Any]]:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql).fetchall()]
        finally:
            conn.close()
    with psycopg.connect(url, row_factory=dict_row) as pg:
        return list(pg.execute(sql.encode()).fetchall())


def _instant(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def assert_tables_match_reports(url: str, runner: CliRunner, *, rebuilt: bool) -> int:
    """Every row of the three tables equals `ledger report --format json`, field by field."""
    monthly = {
        (r["contract"], r["month"]): r for r in query(url, "SELECT * FROM report_monthly_availability")
    }
    credits = {(r["contract"], r["month"]): r for r in query(url, "SELECT * FROM report_credit_entitlements")}
    intervals: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in query(url, "SELECT * FROM report_downtime_intervals ORDER BY contract, month, seq"):
        intervals.setdefault((r["contract"], r["month"]), []).append(r)
    assert monthly.keys() == credits.keys()
    assert set(intervals) <= set(monthly)
    table = "tracking" if url.startswith("sqlite") else "reporting_tracking"
    tracked = query(url, f"SELECT * FROM {table} WHERE application_name = 'ledger'")[0]["notification_id"]  # noqa: S608
    for (contract, month), row in sorted(monthly.items()):
        out = ledger_cli(runner, url, "report", "--contract", contract, "--month", month, "--format", "json")
        rep = msgspec.json.decode(out.stdout, type=Report)
        for name in ("policy_version", "timezone", "availability_percent", "target_percent", "digest"):
            assert row[name] == getattr(rep, name), (contract, month, name)
        for name in (
            "total_seconds",
            "outage_seconds",
            "maintenance_seconds",
            "excused_seconds",
            "downtime_seconds",
        ):
            assert Decimal(str(row[name])) == getattr(rep, name), (contract, month, name)
            assert str(row[name]) == str(getattr(rep, name)), "exact decimal text, no float"
        assert bool(row["target_met"]) is rep.target_met
        if rebuilt:
            assert row["as_of_position"] == rep.as_of_position
        else:
            # A row keeps the position it was computed at; the view as a whole is at `tracked`.
            assert row["as_of_position"] <= tracked == rep.as_of_position
        c = credits[(contract, month)]
        for name in ("percent", "amount", "long_outage_amount", "currency", "claim"):
            assert c[name] == getattr(rep.credit, name), (contract, month, name)
        assert bool(c["payable"]) is rep.credit.payable
        got = intervals.get((contract, month), [])
        assert len(got) == len(rep.intervals)
        for seq, (r, i) in enumerate(zip(got, rep.intervals, strict=True), 1):
            assert r["seq"] == seq
            assert _instant(r["start"]) == i.start
            assert _instant(r["end"]) == i.end
            assert Decimal(str(r["seconds"])) == i.seconds
            assert (r["kind"], r["reason"]) == (i.kind, i.reason)
            assert r["events"] == " ".join(str(p) for p in i.events)
    return len(monthly)


def held_pairs(ledger: Ledger) -> set[tuple[str, str]]:
    known = Known()
    known.add_all(ledger.records())
    return {(c, m) for c, months in known.all_held().items() for m in months}


# --- tests ---------------------------------------------------------------------------


def test_grouped_evaluation_is_byte_identical_to_ledger_report(ledger: Ledger) -> None:
    from cli.demo.run import run_demo

    run_demo(ledger)
    run_demo(ledger, "2026-11")
    known = Known()
    known.add_all(ledger.records())
    evaluator = Evaluator(known, ledger.recorder)
    pairs = held_pairs(ledger)
    assert len(pairs) >= 15
    for contract, month in sorted(pairs):
        assert to_json(evaluator.report((contract, month), known.position)) == to_json(
            # The view's reports carry no checkpoint (only `report` and `audit` name the log).
            msgspec.structs.replace(ledger.report(contract, month).report, checkpoint=None)
        )


def test_rebuild_gives_tables_equal_to_reports(ledger: Ledger, store_url: str, runner: CliRunner) -> None:
    from cli.demo.run import run_demo

    run_demo(ledger)
    out = ledger_cli(runner, store_url, "projections", "rebuild")
    # Five contracts x September to November: facts from late September (the demo's lead-in),
    # October's, and the clock (recorded_at) in November, a quiet month.
    assert "rebuilt reporting: 15 contract-months" in out.stdout
    assert assert_tables_match_reports(store_url, runner, rebuilt=True) == len(held_pairs(ledger)) == 15
    assert {m for _, m in held_pairs(ledger)} == {"2026-09", "2026-10", "2026-11"}
    head = ledger.recorder.last_position()
    status = ledger_cli(runner, store_url, "projections", "status").stdout
    assert status == f"reporting\tposition={head}\thead={head}\tlag=0\n"


def test_every_contract_of_a_month_is_a_range_read_and_a_rebuild_leaves_no_shadow(
    ledger: Ledger, store_url: str, runner: CliRunner
) -> None:
    from cli.demo.run import run_demo

    run_demo(ledger)
    ledger_cli(runner, store_url, "projections", "rebuild")
    ledger_cli(runner, store_url, "projections", "rebuild")  # twice: the swap replaces a swapped view
    month = "SELECT contract FROM report_monthly_availability WHERE month = '2026-10' ORDER BY contract"
    assert len(query(store_url, month)) == 5
    three = ("report_monthly_availability", "report_downtime_intervals", "report_credit_entitlements")
    if store_url.startswith("sqlite"):
        plan = " ".join(str(r["detail"]) for r in query(store_url, "EXPLAIN QUERY PLAN " + month))
        assert "report_monthly_availability_by_month" in plan
        names = {r["name"] for r in query(store_url, "SELECT name FROM sqlite_master")}
        indexed = list(three)
    else:
        # The names readers use are views over two copies (a rebuild flips them): each copy indexed.
        names = {r["relname"] for r in query(store_url, "SELECT relname FROM pg_class")}
        indexed = [f"{t}__{c}" for t in three for c in "ab"]
    assert {f"{t}_by_month" for t in indexed} <= names
    assert not {n for n in names if "__rebuild" in n}
    assert assert_tables_match_reports(store_url, runner, rebuilt=True) == 15


def test_parallel_rebuild_writes_the_same_tables(ledger: Ledger, store_url: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.demo.run import run_demo
    from projections.tracked import rebuild, rebuilding

    monkeypatch.setattr(rebuilding, "GROUPS_PER_TASK", 1)  # one task per service: really shared out

    run_demo(ledger)
    tables = ("report_monthly_availability", "report_downtime_intervals", "report_credit_entitlements")

    def snapshot() -> list[list[dict[str, Any]]]:
        return [query(store_url, f"SELECT * FROM {t} ORDER BY 1, 2, 3") for t in tables]  # noqa: S608

    serial = rebuild(ledger, workers=1)
    before = snapshot()
    parallel = rebuild(ledger, workers=2)
    assert (parallel.pairs, parallel.events) == (serial.pairs, serial.events) == (15, serial.events)
    assert snapshot() == before
    monkeypatch.setattr(rebuilding, "WRITE_BATCH", 3)  # statements joining groups, and a short last one
    assert rebuild(ledger, workers=2).pairs == 15
    assert snapshot() == before


def test_a_rebuild_that_fails_part_way_leaves_the_view_as_it_was(
    ledger: Ledger, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL writes the new view while groups are still being evaluated (SQLite at the
    # end): either way in one transaction, so a failure keeps the old view and its tracking.
    from cli.demo.run import run_demo
    from projections.tracked import rebuild, rebuilding

    run_demo(ledger)
    tables = ("report_monthly_availability", "report_downtime_intervals", "report_credit_entitlements",
              "tracking" if store_url.startswith("sqlite") else "reporting_tracking")

    def snapshot() -> list[list[dict[str, Any]]]:
        return [query(store_url, f"SELECT * FROM {t} ORDER BY 1, 2{'' if 'tracking' in t else ', 3'}")  # noqa: S608
                for t in tables]

    assert rebuild(ledger, workers=1).pairs == 15
    before = snapshot()
    assert all(before)
    real = rebuilding._groups_reports
    calls: list[int] = []

    def fails_on_the_third_task(*args: Any) -> list[tuple[int, bytes]]:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("worker lost")
        return real(*args)

    monkeypatch.setattr(rebuilding, "GROUPS_PER_TASK", 1)
    monkeypatch.setattr(rebuilding, "WRITE_BATCH", 1)  # PostgreSQL has written two groups when it fails
    monkeypatch.setattr(rebuilding, "_groups_reports", fails_on_the_third_task)
    with pytest.raises(RuntimeError, match="worker lost"):
        rebuild(ledger, workers=1)
    assert len(calls) == 3
    assert snapshot() == before


def _batches() -> list[list[Fact]]:
    """The demo month in three batches, shuffled (facts arrive out of time order), then corrections."""
    facts = demo_facts(MONTH)
    shuffled = facts[:]
    random.Random(3).shuffle(shuffled)
    third = len(shuffled) // 3
    revocation = ExclusionRevoked(ref="workspace-2026-10-fm-1", reason="it was our own change", id="rev-late")
    late_claim = fact_from_fields(
        "credit_claim_filed",
        {"contract": "sla-d-2026", "month": "2026-09", "at": "2026-11-20T10:00:00Z", "id": "claim-late"},
    )
    return [shuffled[:third], shuffled[third : 2 * third], shuffled[2 * third :], [revocation, late_claim]]


def test_incremental_runs_keep_tables_equal_to_reports(
    ledger: Ledger, store_url: str, runner: CliRunner
) -> None:
    register(ledger)
    assert any(getattr(f, "declaration", None) == "workspace-2026-10-fm-1" for f in demo_facts(MONTH))
    ledger_cli(runner, store_url, "projections", "run", "--once")
    for batch in _batches():
        ledger.append_facts(batch)
        lag = ledger_cli(runner, store_url, "projections", "status").stdout
        assert f"lag={len(batch)}" in lag
        out = ledger_cli(runner, store_url, "projections", "run", "--once")
        assert out.stdout == f"reporting at position {ledger.recorder.last_position()}\n"
        assert assert_tables_match_reports(store_url, runner, rebuilt=False) == len(held_pairs(ledger))
    ledger_cli(runner, store_url, "projections", "rebuild")
    assert assert_tables_match_reports(store_url, runner, rebuilt=True) == len(held_pairs(ledger))


def test_projection_commands_on_a_missing_store_fail_in_one_line(tmp_path: Path, runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--store", f"sqlite:///{tmp_path / 'none.db'}", "projections", "status"])
    assert result.exit_code != 0
    assert result.stderr.strip().startswith("error: not a ledger store: ")
    assert len(result.stderr.strip().splitlines()) == 1


def _worker(url: str, *args: str) -> subprocess.Popen[str]:
    code = (
        "import sys; from cli.main import cli; from cli.projections import projections; "
        "cli.add_command(projections); cli.main(sys.argv[1:], prog_name='ledger')"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, "--store", url, "projections", "run", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_workers_on_one_postgres_never_double_count(
    pg_url: str, make_ledger: Any, runner: CliRunner
) -> None:
    ledger: Ledger = make_ledger(pg_url)
    register(ledger)
    open_view(ledger.recorder)  # the view's tables (`projections status` only reads)
    ledger.append_facts(_batches()[0])
    # Two catch-up workers race for the same backlog: one commits it, the other's tracking
    # insert fails, and it skips ahead instead of crashing.
    once = [_worker(pg_url, "--once") for _ in range(2)]
    for w in once:
        out, err = w.communicate(timeout=60)
        assert w.returncode == 0, err
        assert out == f"reporting at position {ledger.recorder.last_position()}\n"
    # Two long-running workers follow new facts through LISTEN/NOTIFY (ProjectionRunner).
    workers = [_worker(pg_url, "--interval", "0.2") for _ in range(2)]
    try:
        for batch in _batches()[1:]:
            for fact in batch:
                ledger.append(fact)  # one notification each: both workers race for every position
        head = ledger.recorder.last_position()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if f"position={head}\t" in ledger_cli(runner, pg_url, "projections", "status").stdout:
                break
            time.sleep(0.2)
        assert all(w.poll() is None for w in workers), [w.communicate()[1] for w in workers]
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        results = [w.communicate(timeout=30) for w in workers]
    for w, (_out, err) in zip(workers, results, strict=True):
        assert w.returncode == 0, err
    assert (
        f"position={head}\thead={head}\tlag=0" in ledger_cli(runner, pg_url, "projections", "status").stdout
    )
    assert assert_tables_match_reports(pg_url, runner, rebuilt=False) == len(held_pairs(ledger))


def test_tables_hold_every_contract_for_every_month_to_the_clock(
    ledger: Ledger, store_url: str, runner: CliRunner, clock: Any
) -> None:
    # Followed incrementally while the ledger's clock (recorded_at) moves on: contracts without
    # facts, a long open incident, and a clock that enters a month in Paris before Toronto.
    paris = {"sla-a-2026", "sla-b-2026"}  # Europe/Paris and Europe/Zurich
    contracts = set(register(ledger))  # registered at 12:00 UTC on 1 November 2026
    toronto = contracts - paris

    def step(expected: set[tuple[str, str]]) -> None:
        ledger_cli(runner, store_url, "projections", "run", "--once")
        assert held_pairs(ledger) == expected
        assert assert_tables_match_reports(store_url, runner, rebuilt=False) == len(expected)

    rows = {(c, "2026-11") for c in contracts}
    step(rows)  # no fact at all: each contract's month of registration
    # 15 January 2027: an outage incident on sla-a's service, opened on 20 November, still open.
    clock.now = datetime(2027, 1, 15, tzinfo=UTC)
    ledger.append(fact_from_fields("incident_opened", {
        "service": "workspace", "incident": "inc-long", "impact": "outage", "at": "2026-11-20T00:00:00Z"}))
    rows |= {(c, m) for c in contracts for m in ("2026-12", "2027-01")}
    step(rows)
    a = {r["month"]: r for r in query(store_url, "SELECT * FROM report_monthly_availability "
                                                 "WHERE contract = 'sla-a-2026'")}
    assert str(a["2026-12"]["downtime_seconds"]) == str(a["2026-12"]["total_seconds"])  # wall to wall
    # 1 February 02:00 UTC, a fact about no contract: already February in Paris, not in Toronto.
    clock.now = datetime(2027, 2, 1, 2, tzinfo=UTC)
    ledger.append(fact_from_fields(
        "probe_failed", {"service": "elsewhere", "probe": "x", "at": "2027-02-01T01:00:00Z"}))
    rows |= {(c, "2027-02") for c in paris}
    step(rows)
    clock.now = datetime(2027, 2, 1, 6, tzinfo=UTC)
    ledger.append(fact_from_fields(
        "probe_recovered", {"service": "elsewhere", "probe": "x", "at": "2027-02-01T05:00:00Z"}))
    rows |= {(c, "2027-02") for c in toronto}
    step(rows)
    # A rebuild writes the same rows.
    ledger_cli(runner, store_url, "projections", "rebuild")
    assert assert_tables_match_reports(store_url, runner, rebuilt=True) == len(rows) == 5 * 4
    # The walk back looks up the months it asks about by key, not the whole view.
    view = open_view(ledger.recorder)
    down = {("sla-a-2026", m) for m in ("2026-12", "2027-01", "2027-02")}
    months = ("2026-11", "2026-12", "2027-01", "2027-02")
    asked = {(c, m) for c in ("sla-a-2026", "sla-b-2026") for m in months}
    assert view.wall_to_wall(asked) == down
    assert view.wall_to_wall({("sla-a-2026", "2027-01")}) == {("sla-a-2026", "2027-01")}
    assert view.wall_to_wall({("sla-b-2026", "2027-01")}) == view.wall_to_wall([]) == set()
