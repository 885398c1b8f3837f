"""The same facts in SQLite and PostgreSQL give the same reports and audits, byte for byte."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner

from cli.demo import demo_facts, example_policy_paths
from cli.main import cli
from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.events import Fact
from ledger.policy_check import load_policy
from tests.conftest import StepClock

MONTHS = ("2026-09", "2026-10")
START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def contracts() -> list[str]:
    return [load_policy(p.read_bytes()).contract.id for p in example_policy_paths()]


def fill(ledger: Ledger, facts: list[Fact]) -> None:
    for path in example_policy_paths():
        ledger.register_contract(load_policy(path.read_bytes(), source=path.name))
    half = len(facts) // 2
    ledger.append_facts(facts[:half])  # two imports: an as-of point between them
    ledger.append_facts(facts[half:])


@pytest.fixture
def stores(sqlite_url: str, pg_url: str) -> tuple[str, str]:
    facts = demo_facts("2026-10")
    opened = [open_ledger(url, clock=StepClock(START)) for url in (sqlite_url, pg_url)]
    try:
        for led in opened:
            fill(led, facts)
    finally:
        for led in opened:
            led.close()
    return sqlite_url, pg_url


def out(runner: CliRunner, url: str, *args: str) -> bytes:
    result = runner.invoke(cli, ["--store", url, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def outputs(runner: CliRunner, url: str, *point: str) -> dict[tuple[str, str, str], bytes]:
    """`report --format json` and `audit --format json` for every demo contract-month."""
    got = {}
    for contract in contracts():
        for month in MONTHS:
            base = ("--contract", contract, "--month", month, "--format", "json")
            if not point:
                got[("report", contract, month)] = out(runner, url, "report", *base)
            got[("audit", contract, month)] = out(runner, url, "audit", *base, *point)
    return got


def test_sqlite_and_postgres_give_byte_identical_reports_and_audits(
    stores: tuple[str, str], runner: CliRunner
) -> None:
    sqlite_url, pg_url = stores
    assert outputs(runner, sqlite_url) == outputs(runner, pg_url)
    # As-of replays too, at a point between the two imports.
    middle = _middle_instant(runner, sqlite_url)
    assert outputs(runner, sqlite_url, "--as-of", middle) == outputs(runner, pg_url, "--as-of", middle)


def _middle_instant(runner: CliRunner, url: str) -> str:
    lines = out(runner, url, "events").splitlines()
    return str(json.loads(lines[len(lines) // 2])["recorded_at"])


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    """A report without what depends on positions (they differ when the import order does)."""
    # The checkpoint names the log, whose order is what differs.
    rest = {k: v for k, v in report.items() if k not in ("as_of_position", "checkpoint")}
    rest["intervals"] = [{k: v for k, v in i.items() if k != "events"} for i in report["intervals"]]
    return rest


def test_another_import_order_gives_the_same_digest_and_figures(
    stores: tuple[str, str], pg_admin_url: str, runner: CliRunner, tmp_path: Any
) -> None:
    sqlite_url, _ = stores
    shuffled = demo_facts("2026-10")
    random.Random(11).shuffle(shuffled)
    other = f"sqlite:///{tmp_path / 'shuffled.db'}"
    led = open_ledger(other, clock=StepClock(START))
    try:
        fill(led, shuffled)
    finally:
        led.close()
    a, b = outputs(runner, sqlite_url), outputs(runner, other)
    assert a.keys() == b.keys()
    differs = 0
    for key in a:
        if key[0] != "report":
            continue
        ra, rb = json.loads(a[key]), json.loads(b[key])
        assert ra["digest"] == rb["digest"], key
        assert _figures(ra) == _figures(rb), key
        differs += a[key] != b[key]
    assert differs, "positions differ with the order, so some bytes must"


def test_events_piped_into_postgres_give_byte_identical_reports_and_as_of_audits(
    stores: tuple[str, str], pg_admin_url: str, runner: CliRunner
) -> None:
    from tests.pgserver import scratch_database

    sqlite_url, _ = stores
    exported = out(runner, sqlite_url, "events")
    with scratch_database(pg_admin_url) as target:
        imported = runner.invoke(
            cli, ["--store", target, "import", "-"], input=exported, catch_exceptions=False
        )
        assert imported.exit_code == 0, imported.output
        assert out(runner, target, "events") == exported
        assert outputs(runner, sqlite_url) == outputs(runner, target)
        middle = _middle_instant(runner, sqlite_url)
        assert outputs(runner, sqlite_url, "--as-of", middle) == outputs(runner, target, "--as-of", middle)
        last = str(len(exported.splitlines()) - 3)
        assert outputs(runner, sqlite_url, "--position", last) == outputs(runner, target, "--position", last)



def test_postgres_back_to_sqlite_through_a_real_pipe(stores: tuple[str, str], runner: CliRunner,
                                                     tmp_path: Any) -> None:
    """`ledger events | ledger import -` between two processes, PostgreSQL to SQLite: the same log;
    then a new fact recorded before the store's last is refused, the store unchanged."""
    _, pg_url = stores
    target = f"sqlite:///{tmp_path / 'back.db'}"
    command = [sys.executable, "-m", "cli.main", "--store"]
    with subprocess.Popen([*command, pg_url, "events"], stdout=subprocess.PIPE) as source:
        moved = subprocess.run([*command, target, "import", "-"], stdin=source.stdout, capture_output=True,
                               check=False)
    assert (source.wait(), moved.returncode) == (0, 0), moved.stderr

    def log(url: str) -> list[bytes]:
        return [out(runner, url, *c) for c in (("events",), ("checkpoint",), ("verify",))]

    assert log(target) == log(pg_url)
    exported = out(runner, target, "events").splitlines()
    first = json.loads(exported[0])["recorded_at"]
    late = json.dumps({"type": "probe_failed", "service": "late", "probe": "p", "at": "2026-10-04T09:15:00Z",
                       "recorded_at": first}).encode()
    refused = subprocess.run([*command, target, "import", "-"], input=exported[-1] + b"\n" + late + b"\n",
                             capture_output=True, check=False)
    assert refused.returncode == 2
    assert refused.stderr.decode().startswith(f"error: line 2: field `recorded_at`: {first[:19]}")
    assert log(target) == log(pg_url)
