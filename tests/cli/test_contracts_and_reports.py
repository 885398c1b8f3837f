"""Contracts and reports through the command line, on both stores."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import cli

SPEC_KEYS = [
    "contract", "month", "timezone", "policy_version", "total_seconds", "outage_seconds",
    "maintenance_seconds", "excused_seconds", "downtime_seconds", "availability_percent",
    "target_percent", "target_met", "credit", "intervals", "holidays", "as_of_position", "digest",
    "checkpoint",
]
CREDIT_KEYS = ["percent", "amount", "long_outage_amount", "currency", "claim", "payable"]
INTERVAL_KEYS = ["start", "end", "seconds", "kind", "reason", "events"]

POLICY = """
[contract]
id = "acme-2026"
customer = "ACME SA"
service = "platform"
timezone = "Europe/Paris"
currency = "EUR"
monthly_fee = "1200.00"
{extra}

[availability]
target = "{target}"
formula = "downtime_over_total"
outage_when = "all"
probes = ["paris", "frankfurt"]
excludable = ["force_majeure"]

[maintenance]
min_notice = "24h"

[credits]
tiers = [ {{ below = "99.97", percent = "100" }} ]
cap_percent = "100"
"""

# Both probes down 2026-10-04 09:00-09:30 UTC: 1800 s of downtime in October (744 h + 1 h DST = 2682000 s).
EVENTS = "".join(
    json.dumps(e) + "\n"
    for e in [
        {"type": "probe_failed", "service": "platform", "probe": "paris", "at": "2026-10-04T09:00:00Z"},
        {"type": "probe_failed", "service": "platform", "probe": "frankfurt",
         "at": "2026-10-04T08:59:00Z"},
        {"type": "probe_recovered", "service": "platform", "probe": "paris", "at": "2026-10-04T09:30:00Z"},
        {"type": "probe_recovered", "service": "platform", "probe": "frankfurt",
         "at": "2026-10-04T09:31:00Z"},
        {"type": "probe_failed", "service": "platform", "probe": "paris", "at": "2026-11-04T09:00:00Z"},
        {"type": "probe_failed", "service": "platform", "probe": "frankfurt", "at": "2026-11-04T09:00:00Z"},
        {"type": "probe_recovered", "service": "platform", "probe": "paris", "at": "2026-11-04T09:01:00Z"},
        {"type": "probe_recovered", "service": "platform", "probe": "frankfurt",
         "at": "2026-11-04T09:01:00Z"},
    ]
)


def run(runner: CliRunner, url: str, *args: str, input: str | None = None) -> Result:
    return runner.invoke(cli, ["--store", url, *args], input=input, catch_exceptions=False)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "acme.toml"
    path.write_text(POLICY.format(extra="", target="99.97"))
    return path


@pytest.fixture
def url(store_url: str, runner: CliRunner, policy_file: Path) -> str:
    assert run(runner, store_url, "contract", "register", str(policy_file)).exit_code == 0
    assert run(runner, store_url, "import", "-", input=EVENTS).exit_code == 0
    return store_url


def report(runner: CliRunner, url: str, month: str) -> dict[str, object]:
    result = run(runner, url, "report", "--contract", "acme-2026", "--month", month, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_report_json_has_the_spec_fields_in_order(runner: CliRunner, url: str) -> None:
    r = report(runner, url, "2026-10")
    assert list(r) == SPEC_KEYS
    size = r["as_of_position"]
    cp = json.loads(run(runner, url, "checkpoint", "--size", str(size)).stdout)
    assert r["checkpoint"] == {"size": size, "root": cp["root"]}
    assert list(r["credit"]) == CREDIT_KEYS  # type: ignore[call-overload]
    assert all(list(i) == INTERVAL_KEYS for i in r["intervals"])  # type: ignore[attr-defined]
    assert r["total_seconds"] == 2682000  # October in Paris: 745 h (DST ends)
    assert r["downtime_seconds"] == 1800
    # (2682000 - 1800) / 2682000 = 99.93288590...% -> truncated
    assert r["availability_percent"] == "99.9328"
    assert r["target_met"] is False
    assert r["credit"] == {"percent": "100", "amount": "1200.00", "long_outage_amount": "0.00",
                           "currency": "EUR", "claim": "automatic", "payable": True}
    assert r["intervals"] == [{
        "start": "2026-10-04T11:00:00+02:00", "end": "2026-10-04T11:30:00+02:00", "seconds": 1800,
        "kind": "downtime", "reason": r["intervals"][0]["reason"],  # type: ignore[index]
        "events": [2, 3, 4, 5],  # position 1 is the contract; each probe's failure and recovery
    }]
    assert str(r["digest"]).startswith("sha256:")


def test_report_is_byte_identical_on_every_run(runner: CliRunner, url: str) -> None:
    args = ("report", "--contract", "acme-2026", "--month", "2026-10", "--format", "json")
    assert run(runner, url, *args).stdout == run(runner, url, *args).stdout


def test_csv_and_table(runner: CliRunner, url: str) -> None:
    base = ("report", "--contract", "acme-2026", "--month", "2026-10")
    out = run(runner, url, *base, "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1
    assert rows[0]["availability_percent"] == "99.9328"
    assert rows[0]["credit_amount"] == "1200.00"
    out = run(runner, url, "report", "--contract", "acme-2026", "--month", "2026-10", "--format", "csv",
              "--intervals").stdout
    intervals = list(csv.DictReader(io.StringIO(out)))
    assert [(i["kind"], i["seconds"], i["events"]) for i in intervals] == [("downtime", "1800", "2 3 4 5")]
    table = run(runner, url, "report", "--contract", "acme-2026", "--month", "2026-10").stdout
    assert "99.9328 %" in table
    assert "downtime" in table


def test_amendment_applies_from_its_month(runner: CliRunner, url: str, tmp_path: Path) -> None:
    amended = tmp_path / "acme-v2.toml"
    amended.write_text(POLICY.format(extra='effective_from = "2026-11"', target="99.5"))
    result = run(runner, url, "contract", "amend", str(amended))
    assert result.exit_code == 0, result.stderr
    assert "version 2" in result.stdout
    october, november = report(runner, url, "2026-10"), report(runner, url, "2026-11")
    assert (october["policy_version"], october["target_percent"]) == (1, "99.97")
    assert (november["policy_version"], november["target_percent"]) == (2, "99.5")
    listing = run(runner, url, "contract", "list").stdout
    assert "acme-2026" in listing
    assert "versions=2" in listing
    shown = json.loads(run(runner, url, "contract", "show", "acme-2026").stdout)
    assert [v["version"] for v in shown] == [1, 2]


def test_register_twice_is_idempotent_but_a_changed_file_is_refused(
    runner: CliRunner, url: str, policy_file: Path, tmp_path: Path
) -> None:
    assert run(runner, url, "contract", "register", str(policy_file)).exit_code == 0
    changed = tmp_path / "changed.toml"
    changed.write_text(POLICY.format(extra="", target="99.9"))
    result = run(runner, url, "contract", "register", str(changed))
    assert result.exit_code == 2
    assert "amend" in result.stderr


@pytest.mark.parametrize(
    ("mutate", "names"),
    [
        (lambda t: t.replace('timezone = "Europe/Paris"', 'timezone = "Mars/Olympus"'), "contract.timezone"),
        (lambda t: t.replace('target = "99.97"', "target = 99.97"), "availability.target"),
        (lambda t: t.replace('outage_when = "all"', 'outage_when = "most"'), "availability.outage_when"),
        (lambda t: t.replace('min_notice = "24h"', 'min_notice = "soon"'), "maintenance.min_notice"),
        (lambda t: t.replace('monthly_fee = "1200.00"', 'monthly_fee = "1200.00"\nannual_fee = "1"'),
         "monthly_fee"),
        (lambda t: t + "\n[surprise]\nx = 1\n", "surprise"),
        (lambda t: t.replace("[credits]", "[credits"), "TOML"),
    ],
)
def test_bad_policy_is_one_line(runner: CliRunner, store_url: str, tmp_path: Path, mutate: object,
                                names: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(mutate(POLICY.format(extra="", target="99.97")))  # type: ignore[operator]
    result = run(runner, store_url, "contract", "register", str(path))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert names in lines[0], lines[0]
    assert run(runner, store_url, "contract", "list").stdout == ""


def test_unknown_contract_and_bad_month(runner: CliRunner, url: str) -> None:
    missing = run(runner, url, "report", "--contract", "nobody", "--month", "2026-10")
    assert missing.exit_code == 1
    assert "nobody" in missing.stderr
    bad = run(runner, url, "report", "--contract", "acme-2026", "--month", "2026-13")
    assert bad.exit_code == 2
    assert "--month" in bad.stderr


def test_audit_as_of_and_position(runner: CliRunner, url: str) -> None:
    text = run(runner, url, "audit", "--contract", "acme-2026", "--month", "2026-10").stdout
    assert "1800 s  DOWNTIME" in text
    assert "A = (T - D) / T" in text or "(T - D) / T" in text
    early = run(runner, url, "audit", "--contract", "acme-2026", "--month", "2026-10", "--position", "2",
                "--format", "json")
    a = json.loads(early.stdout)
    assert a["as_of_position"] == 2
    assert a["report"]["as_of_position"] == 2
