"""The auditor's replay on both stores: `ledger audit --as-of` / `--position` answer as it was then."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from ledger.admission import fact_from_fields
from ledger.application import Ledger
from ledger.events import Fact
from ledger.policy_check import load_policy

MONTH = "2026-10"
POLICY = """
[contract]
id = "acme"
customer = "ACME"
service = "web"
timezone = "Europe/Paris"
currency = "EUR"
monthly_fee = "1000.00"
{effective}
[availability]
target = "{target}"
outage_when = "any"
probes = ["paris", "london"]
excludable = ["force_majeure"]

[maintenance]
min_notice = "24h"
nonconforming = "downtime"

[credits]
tiers = [{{ below = "99.9", percent = "10" }}]
cap_percent = "100"
"""


def f(kind: str, **fields: str) -> Fact:
    return fact_from_fields(kind, fields)


def cli_ok(runner: CliRunner, url: str, *args: str) -> Result:
    result = runner.invoke(cli, ["--store", url, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def audit(runner: CliRunner, url: str, *point: str) -> dict[str, Any]:
    out = cli_ok(runner, url, "audit", "--contract", "acme", "--month", MONTH, "--format", "json", *point)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def recorded_at(ledger: Ledger, position: int) -> str:
    rec = next(ledger.recorder.read_records(position, position))
    return rec.recorded_at.isoformat()


@pytest.fixture
def acme(ledger: Ledger) -> Ledger:
    ledger.register_contract(load_policy(POLICY.format(effective="", target="99.9").encode()))
    ledger.append_facts(
        [
            # 2 h outage on 4 October, inside force majeure; 1 h on 10 October, inside a window
            # announced three days ahead; 30 min on 12 October with a customer-ISP exclusion,
            # which this contract does not excuse.
            f("probe_failed", service="web", probe="paris", at="2026-10-04T08:00:00Z"),
            f("probe_recovered", service="web", probe="paris", at="2026-10-04T10:00:00Z"),
            f(
                "force_majeure_declared",
                service="web",
                declaration="fm-1",
                starts_at="2026-10-04T07:00:00Z",
                ends_at="2026-10-04T11:00:00Z",
                reason="regional power cut",
            ),
            f(
                "maintenance_announced",
                service="web",
                maintenance="mw-1",
                announced_at="2026-10-07T12:00:00Z",
                starts_at="2026-10-10T01:00:00Z",
                ends_at="2026-10-10T03:00:00Z",
            ),
            f("probe_failed", service="web", probe="london", at="2026-10-10T01:30:00Z"),
            f("probe_recovered", service="web", probe="london", at="2026-10-10T02:30:00Z"),
            f("probe_failed", service="web", probe="london", at="2026-10-12T06:00:00Z"),
            f("probe_recovered", service="web", probe="london", at="2026-10-12T06:30:00Z"),
            f(
                "exclusion_declared",
                service="web",
                exclusion="isp-1",
                category="customer_isp",
                starts_at="2026-10-12T05:00:00Z",
                ends_at="2026-10-12T07:00:00Z",
                reason="customer's ISP down",
            ),
        ]
    )
    return ledger


def test_revoked_exclusion_before_and_after(acme: Ledger, store_url: str, runner: CliRunner) -> None:
    before = acme.recorder.last_position()
    acme.append(f("exclusion_revoked", ref="fm-1", reason="it was our own change"))
    old_by_time = audit(runner, store_url, "--as-of", recorded_at(acme, before))
    old_by_position = audit(runner, store_url, "--position", str(before))
    new = audit(runner, store_url)
    for old in (old_by_time, old_by_position):
        assert old["as_of_position"] == before
        assert old["report"]["excused_seconds"] == 7200
        assert old["report"]["downtime_seconds"] == 1800
    assert new["report"]["excused_seconds"] == 0
    assert new["report"]["downtime_seconds"] == 1800 + 7200
    assert old_by_time["report"]["digest"] != new["report"]["digest"]
    assert any(x["kind"] == "revoked" and x["ref"] == "fm-1" for x in new["explanation"]["findings"])
    # Replaying the same point twice gives the same bytes.
    assert audit(runner, store_url, "--position", str(before)) == old_by_position


def test_cancelled_maintenance_before_and_after(acme: Ledger, store_url: str, runner: CliRunner) -> None:
    before = acme.recorder.last_position()
    acme.append(f("maintenance_cancelled", maintenance="mw-1", at="2026-10-09T12:00:00Z"))
    old = audit(runner, store_url, "--as-of", recorded_at(acme, before))
    new = audit(runner, store_url, "--position", str(before + 1))
    assert old["report"]["maintenance_seconds"] == 3600
    assert new["report"]["maintenance_seconds"] == 0
    assert new["report"]["downtime_seconds"] == old["report"]["downtime_seconds"] + 3600
    assert old["report"]["availability_percent"] != new["report"]["availability_percent"]


def test_audit_text_names_every_interval_refused_exclusion_and_formula(
    acme: Ledger, store_url: str, runner: CliRunner
) -> None:
    text = cli_ok(runner, store_url, "audit", "--contract", "acme", "--month", MONTH).stdout
    rep = audit(runner, store_url)["report"]
    assert len(rep["intervals"]) == 3
    for n, interval in enumerate(rep["intervals"], 1):
        assert f"  {n}. " in text
        assert interval["kind"].upper() in text
        assert interval["reason"] in text
        assert "events: " + ", ".join(str(p) for p in interval["events"]) in text
    assert "exclusion_refused isp-1" in text
    assert "customer_isp is not excludable" in text
    assert "A = (T - D) / T = (2682000 - 1800) / 2682000"  # 745 h: DST ends in October in text
    assert "D = outage - M - excused = 12600 - 3600 - 7200" in text


def test_as_of_before_anything_recorded_is_a_one_line_error(
    acme: Ledger, store_url: str, runner: CliRunner
) -> None:
    first = datetime.fromisoformat(recorded_at(acme, 1))
    result = runner.invoke(
        cli,
        [
            "--store",
            store_url,
            "audit",
            "--contract",
            "acme",
            "--month",
            MONTH,
            "--as-of",
            first.replace(year=2020).isoformat(),
        ],
    )
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output


def test_as_of_across_an_amendment_uses_the_version_then_in_force(
    acme: Ledger, store_url: str, runner: CliRunner
) -> None:
    before = acme.recorder.last_position()
    acme.amend_contract(
        load_policy(POLICY.format(effective='effective_from = "2026-10"', target="99.99").encode())
    )
    old = audit(runner, store_url, "--as-of", recorded_at(acme, before))
    new = audit(runner, store_url, "--as-of", recorded_at(acme, before + 1))
    assert (old["report"]["policy_version"], old["report"]["target_percent"]) == (1, "99.9")
    assert (new["report"]["policy_version"], new["report"]["target_percent"]) == (2, "99.99")
    assert old["report"]["target_met"] is True
    assert new["report"]["target_met"] is False
    # September is before the amendment's effective month: version 1 either way.
    sept = cli_ok(runner, store_url, "audit", "--contract", "acme", "--month", "2026-09", "--format", "json")
    assert json.loads(sept.stdout)["report"]["policy_version"] == 1
