"""Hostile text from facts and policies through every table, text and CSV output, on both stores.

Free text (reasons, titles, the customer) may hold tab, LF and CR; an old store may
hold anything, ids included. None of it may reach the terminal raw, break a row or
start a spreadsheet formula; JSON keeps it exact.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from ledger.bootstrap import open_ledger
from ledger.events import ContractRegistered, Fact, ForceMajeureDeclared
from ledger.ingest.lines import prepare_fact
from ledger.persistence.append import append_prepared
from ledger.policy import AvailabilitySection, ContractSection, PolicyFile
from tests.conftest import StepClock

UNSAFE = {*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0)), "\u200e", "\u200f", "\u2028",
          "\u2029", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}

FORMULA_ID = '=HYPERLINK("http://evil.example","x")'
CUSTOMER = "ACME\tSA\nsecond line\rreturn"  # what new input may hold
REASON = "=cmd|' /C calc'!A0\tTAB\nNEWLINE\rCR"
# What only an old store can hold: a title bar and clear-screen escape, C1 CSI, DEL, an RTL override,
# an isolate, a line separator.
OLD = "\x1b]0;owned\x07\x1b[2J\x9b31m\x7f\u202eevil\u2066x\u2069\u2028end"
OLD_ID = "red\x9b31m\u202eevil"  # a policy id never held C0 or DEL, but C1 and bidi controls passed

POLICY = f"""
[contract]
id = {json.dumps(FORMULA_ID)}
customer = {json.dumps(CUSTOMER)}
service = "web"
timezone = "Europe/Paris"
currency = "EUR"
monthly_fee = "100.00"

[availability]
target = "99.9"
probes = ["paris"]
excludable = ["force_majeure"]
"""

EVENTS = "".join(json.dumps(e) + "\n" for e in [
    {"type": "probe_failed", "service": "web", "probe": "paris", "at": "2026-10-04T09:00:00Z"},
    {"type": "probe_recovered", "service": "web", "probe": "paris", "at": "2026-10-04T10:00:00Z"},
    {"type": "force_majeure_declared", "service": "web", "declaration": "fm-1",
     "starts_at": "2026-10-04T09:00:00Z", "ends_at": "2026-10-04T09:20:00Z", "reason": REASON},
])  # fmt: skip


def _at(hh: int, mm: int) -> datetime:
    return datetime(2026, 10, 4, hh, mm, tzinfo=UTC)


def record_as_an_old_store(url: str, facts: list[Fact]) -> None:
    """Write facts the way a store made before today's input checks may hold them (no check at all)."""
    ledger = open_ledger(url, clock=StepClock())
    try:
        append_prepared(ledger.recorder, [[prepare_fact(n, f) for n, f in enumerate(facts, 1)]], ledger.clock)
    finally:
        ledger.close()


def run(runner: CliRunner, url: str, *args: str, input: str | None = None) -> Result:
    result = runner.invoke(cli, ["--store", url, *args], input=input, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result


def safe(text: str, own: str = "\n") -> str:
    """``text`` checked to hold nothing a terminal acts on, but its own separators (``own``)."""
    found = UNSAFE - set(own) & set(text)
    assert not found, sorted(found)
    return text


@pytest.fixture
def url(store_url: str, runner: CliRunner, tmp_path: Path) -> str:
    policy = tmp_path / "hostile.toml"
    policy.write_text(POLICY)
    run(runner, store_url, "contract", "register", str(policy))
    run(runner, store_url, "import", "-", input=EVENTS)
    old_policy = PolicyFile(
        contract=ContractSection(id=OLD_ID, customer=OLD, service="web", timezone="Europe/Paris",
                                 currency="EUR", monthly_fee="100.00"),
        availability=AvailabilitySection(target="99.9", probes=("paris",), excludable=("force_majeure",)),
    )
    record_as_an_old_store(store_url, [
        ContractRegistered(policy=old_policy),
        ForceMajeureDeclared(service="web", declaration="fm-\x1b[2J", starts_at=_at(9, 40),
                             ends_at=_at(9, 50), reason=OLD),
    ])  # fmt: skip
    return store_url


def test_contract_list_is_one_line_per_contract(runner: CliRunner, url: str) -> None:
    out = safe(run(runner, url, "contract", "list").stdout, own="\n\t")
    lines = out.splitlines()
    assert len(lines) == 2
    assert all(len(line.split("\t")) == 5 for line in lines)  # a tab in the customer adds no column
    assert "ACME\\tSA\\nsecond line\\rreturn" in out
    assert "red\\x9b31m\\u202eevil" in out
    assert "\\x1b]0;owned" in out


@pytest.mark.parametrize("contract", [FORMULA_ID, OLD_ID])
def test_report_table_and_audit_text_escape_every_control(runner: CliRunner, url: str, contract: str) -> None:
    table = safe(run(runner, url, "report", "--contract", contract, "--month", "2026-10").stdout)
    audit = safe(run(runner, url, "audit", "--contract", contract, "--month", "2026-10").stdout)
    for out in (table, audit):
        # Each excused interval, whatever its reason holds, is one line.
        assert sum("force majeure fm-1:" in line for line in out.splitlines()) == 1
        assert sum("force majeure fm-\\x1b[2J:" in line for line in out.splitlines()) == 1
        assert "TAB\\nNEWLINE\\rCR" in out
        assert "\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\x7f\\u202eevil\\u2066x\\u2069\\u2028end" in out


def test_report_csv_has_no_formula_and_one_line_per_row(runner: CliRunner, url: str) -> None:
    summary = safe(run(runner, url, "report", "--contract", FORMULA_ID, "--month", "2026-10",
                       "--format", "csv").stdout)
    rows = list(csv.DictReader(io.StringIO(summary)))
    assert len(summary.splitlines()) == 2
    assert len(rows) == 1
    assert rows[0]["contract"] == "'" + FORMULA_ID
    assert rows[0]["downtime_seconds"] == "1800"  # numbers as they are: 09:20-09:40 and 09:50-10:00
    intervals = safe(run(runner, url, "report", "--contract", OLD_ID, "--month", "2026-10",
                         "--format", "csv", "--intervals").stdout)
    rows = list(csv.DictReader(io.StringIO(intervals)))
    assert len(intervals.splitlines()) == len(rows) + 1 == 5
    assert {r["contract"] for r in rows} == {"red\\x9b31m\\u202eevil"}
    assert [r["kind"] for r in rows] == ["excused", "downtime", "excused", "downtime"]
    assert rows[0]["reason"].startswith("force majeure fm-1: =cmd|' /C calc'!A0\\tTAB\\nNEWLINE\\rCR -- ")
    assert rows[2]["reason"].startswith("force majeure fm-\\x1b[2J: \\x1b]0;owned")


def test_json_keeps_the_text_exact(runner: CliRunner, url: str) -> None:
    report = json.loads(run(runner, url, "report", "--contract", OLD_ID, "--month", "2026-10",
                            "--format", "json").stdout)
    assert report["contract"] == OLD_ID
    reasons = [i["reason"] for i in report["intervals"] if i["kind"] == "excused"]
    assert reasons[0].startswith(f"force majeure fm-1: {REASON} -- ")
    assert reasons[1].startswith(f"force majeure fm-\x1b[2J: {OLD} -- ")
    shown = json.loads(run(runner, url, "contract", "show", FORMULA_ID).stdout)
    assert shown[0]["policy"]["contract"]["customer"] == CUSTOMER


def test_an_error_echoing_hostile_input_is_escaped(runner: CliRunner, url: str) -> None:
    result = runner.invoke(cli, ["--store", url, "report", "--contract", "\x1b]0;x\x07\u202e", "--month",
                                 "2026-10"])
    assert result.exit_code != 0
    err = safe(result.stderr)
    assert len(err.splitlines()) == 1
    assert "\\x1b]0;x\\x07\\u202e" in err
