"""A window announced after it started, on both stores: `ledger report`, `audit` and the tables agree.

Seed C's terms (emergency maintenance counts in M): the part of a window before its
announcement is downtime all the same, and an audit replayed before the announcement was
recorded does not know the window at all.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from click.testing import CliRunner, Result

from cli.demo import example_policy_paths
from cli.main import cli
from ledger.admission import fact_from_fields
from ledger.application import Ledger
from ledger.events import Fact
from ledger.policy_check import load_policy
from tests.conftest import StepClock
from tests.integration.test_reporting import assert_tables_match_reports, ledger_cli

CONTRACT = "sla-c-en-2026"
MONTH = "2026-10"


def f(kind: str, **fields: str) -> Fact:
    return fact_from_fields(kind, fields)


def cli_json(runner: CliRunner, url: str, *args: str) -> dict[str, Any]:
    result: Result = runner.invoke(cli, ["--store", url, *args, "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def report(runner: CliRunner, url: str) -> dict[str, Any]:
    return cli_json(runner, url, "report", "--contract", CONTRACT, "--month", MONTH)


def audit(runner: CliRunner, url: str, *point: str) -> dict[str, Any]:
    return cli_json(runner, url, "audit", "--contract", CONTRACT, "--month", MONTH, *point)


def seconds(rep: dict[str, Any]) -> tuple[int, int, int]:
    return rep["outage_seconds"], rep["maintenance_seconds"], rep["downtime_seconds"]


def at(clock: StepClock, text: str) -> None:
    """Facts appended next are recorded from this instant on (one second apart)."""
    clock.now = datetime.fromisoformat(text)


def test_late_announcements_through_report_audit_and_tables(
    ledger: Ledger, store_url: str, runner: CliRunner, clock: StepClock
) -> None:
    path = next(p for p in example_policy_paths() if p.name == "sla-c-en.toml")
    at(clock, "2026-10-01T00:00:00+00:00")
    ledger.register_contract(load_policy(path.read_bytes(), source=path.name))
    # Monday 5 October: Toronto and Brussels down 14:00-17:00 UTC (two of three: outage).
    at(clock, "2026-10-05T14:01:00+00:00")
    ledger.append_facts([f("probe_failed", service="optimy-ca", probe=p, at="2026-10-05T14:00:00Z")
                         for p in ("toronto", "brussels")])
    # A window 14:00-18:00 announced at 15:30, when it was recorded.
    at(clock, "2026-10-05T15:30:00+00:00")
    ledger.append(f(
        "maintenance_announced", service="optimy-ca", maintenance="mw-mid",
        announced_at="2026-10-05T15:30:00Z", starts_at="2026-10-05T14:00:00Z", ends_at="2026-10-05T18:00:00Z",
    ))
    at(clock, "2026-10-05T17:01:00+00:00")
    ledger.append_facts([f("probe_recovered", service="optimy-ca", probe=p, at="2026-10-05T17:00:00Z")
                         for p in ("toronto", "brussels")])
    # Tuesday 6 October 10:00-11:00 UTC down; its "window" announced ten days later.
    at(clock, "2026-10-06T11:01:00+00:00")
    ledger.append_facts([
        *(f("probe_failed", service="optimy-ca", probe=p, at="2026-10-06T10:00:00Z")
          for p in ("toronto", "virginia")),
        *(f("probe_recovered", service="optimy-ca", probe=p, at="2026-10-06T11:00:00Z")
          for p in ("toronto", "virginia")),
    ])
    at(clock, "2026-10-16T09:00:00+00:00")
    ledger.append(f(
        "maintenance_announced", service="optimy-ca", maintenance="mw-after",
        announced_at="2026-10-16T09:00:00Z", starts_at="2026-10-06T10:00:00Z", ends_at="2026-10-06T11:00:00Z",
    ))

    # The report: 5 October 14:00-15:30 D (5400), 15:30-17:00 M (5400); 6 October D (3600).
    rep = report(runner, store_url)
    assert seconds(rep) == (10800 + 3600, 5400, 5400 + 3600)
    kinds = [(i["start"], i["kind"], i["seconds"]) for i in rep["intervals"]]
    assert kinds == [
        ("2026-10-05T10:00:00-04:00", "downtime", 5400),
        ("2026-10-05T11:30:00-04:00", "maintenance", 5400),
        ("2026-10-06T06:00:00-04:00", "downtime", 3600),
    ]
    first, second, third = (i["reason"] for i in rep["intervals"])
    assert first.startswith("maintenance mw-mid not yet announced (announced at 2026-10-05 11:30 EDT")
    assert "in force only from its announcement at 2026-10-05 11:30 EDT" in second
    assert third.startswith("maintenance mw-after not yet announced")

    # The audit names both late announcements and what counted for nothing.
    now = audit(runner, store_url)
    late = {x["ref"]: x["text"] for x in now["explanation"]["findings"] if x["kind"] == "announced_late"}
    assert "its first 1 h 30 min counted for nothing" in late["mw-mid"]
    assert "after its end at 2026-10-06T11:00:00+00:00" in late["mw-after"]
    assert now["report"] == rep | {"as_of_position": now["report"]["as_of_position"]}

    # Replayed before the first announcement was recorded: no window, outage cut at the point.
    before = audit(runner, store_url, "--as-of", "2026-10-05T15:00:00+00:00")
    assert seconds(before["report"]) == (3600, 0, 3600)
    assert not any(x["ref"] == "mw-mid" for x in before["explanation"]["findings"])
    # After it (16:00): 14:00-15:30 downtime, 15:30-16:00 emergency maintenance.
    during = audit(runner, store_url, "--as-of", "2026-10-05T16:00:00+00:00")
    assert seconds(during["report"]) == (7200, 1800, 5400)
    # Before the second announcement was recorded: the same figures as with it (it excuses nothing).
    week = audit(runner, store_url, "--as-of", "2026-10-10T00:00:00+00:00")
    assert seconds(week["report"]) == seconds(rep)

    # The reporting tables say the same, followed incrementally and rebuilt.
    ledger_cli(runner, store_url, "projections", "run", "--once")
    # Two rows: September (registered at 20:00 on 30 September, Toronto time) and October.
    assert assert_tables_match_reports(store_url, runner, rebuilt=False) == 2
    ledger_cli(runner, store_url, "projections", "rebuild")
    assert assert_tables_match_reports(store_url, runner, rebuilt=True) == 2
