"""The support reporting tables on both stores: equal to `ledger support --format json`, rebuilt or run.

The worked examples of agreements B, C and D (tests/integration/test_support_examples.py)
go in, in one go or in shuffled batches with corrections after; the tables are read with
plain SQL, grouped by contract-month, and compared with `ledger support` for every
contract-month the view holds.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from cli.projections import projections
from ledger.application import Ledger
from ledger.policy_check import load_policy
from tests.integration.test_reporting import query
from tests.integration.test_support_examples import POLICY_B, POLICY_C, POLICY_D, _resp, _ticket
from tests.lines import import_lines

Pair = tuple[str, str]


@pytest.fixture(autouse=True, scope="module")
def _register_group() -> Iterator[None]:
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


def register(ledger: Ledger) -> None:
    for policy in (POLICY_B, POLICY_C, POLICY_D):
        ledger.register_contract(load_policy(policy))


def scenario() -> list[dict[str, Any]]:
    """The three agreements' worked examples, across April to October 2026, with their downtime."""
    b, c, d = "sla-b", "sla-c", "sla-d"
    return [
        # B: DST's end and a weekend, a severity raised before and after a response, an unknown
        # severity, a bug's time exempt from the quota, September's time drawn in October's year.
        _ticket(b, "T-1", "2026-10-23T16:30:00+02:00", "production_down"),
        _resp("T-1", "2026-10-26T08:29:00+01:00"),
        _ticket(b, "T-2", "2026-10-23T18:00:00+02:00", "moderate"),
        _resp("T-2", "2026-10-27T07:59:00+01:00"),
        _ticket(b, "T-3", "2026-10-26T16:45:00+01:00", "production_down"),
        {"type": "ticket_classified", "ticket": "T-3", "kind": "bug"},
        _ticket(b, "T-4", "2026-10-28T10:00:00+01:00", "limited"),
        {"type": "ticket_severity_changed", "ticket": "T-4", "at": "2026-10-28T10:10:00+01:00",
         "severity": "production_down"},
        _resp("T-4", "2026-10-28T11:30:00+01:00"),
        _ticket(b, "T-5", "2026-10-29T09:00:00+01:00", "moderate"),
        _resp("T-5", "2026-10-29T09:30:00+01:00"),
        {"type": "ticket_severity_changed", "ticket": "T-5", "at": "2026-10-29T10:00:00+01:00",
         "severity": "production_down"},
        _ticket(b, "T-6", "2026-10-29T09:00:00+01:00", "urgent"),
        {"type": "support_time_logged", "ticket": "T-2", "at": "2026-10-27T09:00:00+01:00", "seconds": 5400},
        {"type": "support_time_logged", "ticket": "T-3", "at": "2026-10-27T10:00:00+01:00", "seconds": 1800},
        _ticket(b, "T-0", "2026-09-10T09:00:00+02:00", "limited"),
        {"type": "support_time_logged", "ticket": "T-0", "at": "2026-09-10T10:00:00+02:00", "seconds": 3600},
        _resp("T-404", "2026-10-27T09:00:00+01:00"),
        # C: Labour Day, recoveries within and beyond the recovery point.
        _ticket(c, "H-1", "2026-09-04T16:30:00-04:00", "high"),
        _resp("H-1", "2026-09-08T11:59:00-04:00"),
        _ticket(c, "M-1", "2026-09-04T10:00:00-04:00", "medium"),
        _resp("M-1", "2026-09-08T10:01:00-04:00"),
        _ticket(c, "L-1", "2026-09-05T12:00:00-04:00", "low"),
        {"type": "recovery_performed", "service": "optimy", "recovery": "r-1", "at": "2026-09-15T12:00:00Z",
         "restored_to": "2026-09-14T11:00:00Z"},
        {"type": "recovery_performed", "service": "optimy", "recovery": "r-2", "at": "2026-09-20T12:00:00Z",
         "restored_to": "2026-09-19T12:00:00Z"},
        # D: Good Friday's three closures, a UK bank holiday, the mean target, engagement of
        # two downtime stretches (one in time, one late), one answered only in the next month.
        _ticket(d, "D-1", "2026-04-02T19:50:00-04:00", "level1"),
        _resp("D-1", "2026-04-06T05:05:00-04:00"),
        _ticket(d, "D-2", "2026-04-07T10:00:00-04:00", "level1"),
        _resp("D-2", "2026-04-07T10:16:00-04:00"),
        _ticket(d, "D-3", "2026-04-02T10:00:00-04:00", "level2"),
        _resp("D-3", "2026-04-06T05:30:00-04:00"),
        {"type": "probe_failed", "service": "bi", "probe": "http", "at": "2026-04-02T14:00:00Z"},
        {"type": "probe_recovered", "service": "bi", "probe": "http", "at": "2026-04-02T15:00:00Z"},
        {"type": "support_engaged", "service": "bi", "level": "level3", "at": "2026-04-02T14:08:00Z"},
        {"type": "probe_failed", "service": "bi", "probe": "http", "at": "2026-04-20T10:00:00Z"},
        {"type": "probe_recovered", "service": "bi", "probe": "http", "at": "2026-04-20T10:30:00Z"},
        {"type": "support_engaged", "service": "bi", "level": "level2", "at": "2026-04-20T10:01:00Z"},
        {"type": "support_engaged", "service": "bi", "level": "level3", "at": "2026-04-20T10:12:00Z"},
        _ticket(d, "U-1", "2026-05-04T06:00:00-04:00", "level1"),
        _resp("U-1", "2026-05-04T09:05:00-04:00"),
        _ticket(d, "U-2", "2026-05-04T10:00:00-04:00", "level1"),
        _resp("U-2", "2026-05-04T10:20:00-04:00"),
        _ticket(d, "U-3", "2026-05-29T15:50:00-04:00", "level3"),
        _resp("U-3", "2026-06-02T09:00:00-04:00"),
    ]


def corrections() -> list[dict[str, Any]]:
    """Facts that change what the view holds: later classifications, late answers, pins, engagements."""
    return [
        # T-0 was a bug after all: its September hour is no longer drawn (October's quota changes).
        {"type": "ticket_classified", "ticket": "T-0", "kind": "bug"},
        # An earlier response to T-3, recorded late: only the earliest counts.
        _resp("T-3", "2026-10-27T08:40:00+01:00"),
        # L-1's answer, recorded a month later; T-404 is opened at last (its response counts now).
        _resp("L-1", "2026-09-10T08:59:00-04:00"),
        _ticket("sla-b", "T-404", "2026-10-27T08:30:00+01:00", "serious"),
        # Switzerland's 2026 holidays pinned with 26 October closed: T-1's and T-3's clocks move.
        {"type": "holidays_pinned", "country": "CH", "year": 2026, "dates": ["2026-10-26"]},
        # A level 3 engagement for April's second stretch, earlier than the late one.
        {"type": "support_engaged", "service": "bi", "level": "level3", "at": "2026-04-20T10:05:00Z"},
        # A new downtime in May, engaged in June: breached, in May's row.
        {"type": "probe_failed", "service": "bi", "probe": "http", "at": "2026-05-31T23:00:00Z"},
        {"type": "probe_recovered", "service": "bi", "probe": "http", "at": "2026-06-01T01:00:00Z"},
        {"type": "support_engaged", "service": "bi", "level": "level3", "at": "2026-06-01T00:30:00Z"},
        # A late September recovery.
        {"type": "recovery_performed", "service": "optimy", "recovery": "r-9", "at": "2026-09-29T12:00:00Z",
         "restored_to": "2026-09-27T12:00:00Z"},
    ]


def lines(facts: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(f).encode() for f in facts]


# --- reading the tables as a reporting job would -----------------------------------------


def _instant(value: Any) -> datetime | None:
    if value is None:
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _grouped(url: str, table: str) -> dict[Pair, list[dict[str, Any]]]:
    out: dict[Pair, list[dict[str, Any]]] = {}
    for r in query(url, f"SELECT * FROM {table} ORDER BY contract, month, seq"):  # noqa: S608
        out.setdefault((r["contract"], r["month"]), []).append(r)
    return out


def tracked(url: str) -> int:
    table = "tracking" if url.startswith("sqlite") else "reporting_tracking"
    return int(query(url, f"SELECT * FROM {table} WHERE application_name = 'ledger'")[0]["notification_id"])  # noqa: S608


def assert_support_tables_match(url: str, runner: CliRunner, *, rebuilt: bool) -> tuple[int, int]:
    """Every contract-month of the view: its support rows equal `ledger support --format json`, by field.

    The months are those of report_monthly_availability (every held month), so a month whose
    report lists tickets or targets but whose rows are missing fails too. Returns the numbers
    of ticket rows and target rows compared.
    """
    tickets, targets = _grouped(url, "report_support_tickets"), _grouped(url, "report_support_targets")
    months = query(url, "SELECT contract, month FROM report_monthly_availability")
    held = {(r["contract"], r["month"]) for r in months}
    assert set(tickets) | set(targets) <= held
    position = tracked(url)
    counted = [0, 0]
    for contract, month in sorted(held):
        out = ledger_cli(runner, url, "support", "--contract", contract, "--month", month, "--format", "json")
        rep = json.loads(out.stdout, parse_float=Decimal)
        got_t, got_g = tickets.get((contract, month), []), targets.get((contract, month), [])
        assert [r["ticket"] for r in got_t] == [t["ticket"] for t in rep["tickets"]], (contract, month)
        assert len(got_g) == len(rep["targets"]), (contract, month)
        for r in [*got_t, *got_g]:
            assert (r["policy_version"], r["digest"]) == (rep["policy_version"], rep["digest"]), month
            if rebuilt:
                assert r["as_of_position"] == rep["as_of_position"]
            else:
                # A row keeps the position it was computed at; the view as a whole is at `tracked`.
                assert r["as_of_position"] <= position == rep["as_of_position"]
        for seq, (r, t) in enumerate(zip(got_t, rep["tickets"], strict=True), 1):
            assert r["seq"] == seq
            for name in ("ticket", "severity", "kind", "target", "status"):
                assert r[name] == t[name], (contract, month, t["ticket"], name)
            for name in ("opened_at", "responded_at", "deadline"):
                want = datetime.fromisoformat(t[name]) if t[name] is not None else None
                assert _instant(r[name]) == want, (contract, month, t["ticket"], name)
            assert str(r["response_seconds"]) == str(t["response_seconds"]), "exact decimal text, no float"
            assert r["events"] == " ".join(str(p) for p in t["events"])
            counted[0] += 1
        for seq, (r, g) in enumerate(zip(got_g, rep["targets"], strict=True), 1):
            assert r["seq"] == seq
            for name in ("severity", "target", "kind", "tickets"):
                assert r[name] == g[name], (contract, month, g["severity"], name)
            if g["kind"] == "mean":
                assert (r["met"], r["breached"], r["pending"]) == (None, None, None)
                assert r["mean_seconds"] == g["mean_seconds"]
                assert bool(r["mean_met"]) is g["met"]
            else:
                assert (r["met"], r["breached"], r["pending"]) == (g["met"], g["breached"], g["pending"])
                assert (r["mean_seconds"], r["mean_met"]) == (None, None)
            counted[1] += 1
    return counted[0], counted[1]


# --- tests ---------------------------------------------------------------------------------


def test_rebuild_fills_the_support_tables_as_ledger_support_reports(
    ledger: Ledger, store_url: str, runner: CliRunner
) -> None:
    register(ledger)
    import_lines(ledger, lines(scenario()))
    ledger_cli(runner, store_url, "projections", "rebuild")
    n_tickets, n_targets = assert_support_tables_match(store_url, runner, rebuilt=True)
    # B's September (1) and October (5 tickets, T-6 unknown), C's September (3), D's April (3)
    # and May (3).
    assert n_tickets == 15
    # Every held month of each contract has a row per target, with or without tickets.
    assert n_targets == 4 * 3 + 3 * 3 + 3 * 8
    rows = query(store_url, "SELECT * FROM report_support_targets "
                            "WHERE contract = 'sla-d' AND month = '2026-04' ORDER BY seq")
    assert (rows[0]["kind"], rows[0]["tickets"], rows[0]["mean_seconds"], bool(rows[0]["mean_met"])) == (
        "mean", 2, "930", False)
    t1 = query(store_url, "SELECT * FROM report_support_tickets WHERE ticket = 'T-1'")[0]
    assert _instant(t1["deadline"]) == datetime.fromisoformat("2026-10-26T08:30:00+01:00")
    assert str(t1["response_seconds"]) == "3540"


def test_runs_with_facts_out_of_order_and_corrections_keep_the_tables_equal(
    ledger: Ledger, store_url: str, runner: CliRunner
) -> None:
    register(ledger)
    ledger_cli(runner, store_url, "projections", "run", "--once")
    facts = scenario()
    random.Random(18).shuffle(facts)  # responses before their tickets, engagements before their downtime
    third = len(facts) // 3
    for batch in (facts[:third], facts[third : 2 * third], facts[2 * third :], corrections()):
        import_lines(ledger, lines(batch))
        ledger_cli(runner, store_url, "projections", "run", "--once")
        assert assert_support_tables_match(store_url, runner, rebuilt=False)[0] > 0
    snapshot = {r["ticket"]: r for r in query(store_url, "SELECT * FROM report_support_tickets")}
    assert snapshot["T-404"]["status"] == "met"  # opened late: its earlier response counts
    assert snapshot["L-1"]["responded_at"] is not None
    ledger_cli(runner, store_url, "projections", "rebuild")
    assert assert_support_tables_match(store_url, runner, rebuilt=True)[0] == 16


def test_a_view_made_before_the_support_tables(ledger: Ledger, store_url: str, runner: CliRunner) -> None:
    register(ledger)
    import_lines(ledger, lines(scenario()[:10]))
    ledger_cli(runner, store_url, "projections", "run", "--once")
    drop = "DROP TABLE report_support_tickets; DROP TABLE report_support_targets"
    if store_url.startswith("sqlite"):
        conn = sqlite3.connect(store_url[len("sqlite:///") :])
        conn.executescript(drop)
        conn.close()
    else:
        import psycopg

        with psycopg.connect(store_url, autocommit=True) as pg:  # views, over two copies each
            for table in ("report_support_tickets", "report_support_targets"):
                pg.execute(f"DROP VIEW {table}".encode())
                pg.execute(f"DROP TABLE {table}__a, {table}__b".encode())
    assert "lag=0" in ledger_cli(runner, store_url, "projections", "status").stdout
    import_lines(ledger, lines(scenario()[10:]))
    # The follower makes the tables and fills every month, not only those the new facts change.
    ledger_cli(runner, store_url, "projections", "run", "--once")
    assert assert_support_tables_match(store_url, runner, rebuilt=False)[0] == 15
    ledger_cli(runner, store_url, "projections", "rebuild")
    assert assert_support_tables_match(store_url, runner, rebuilt=True)[0] == 15
