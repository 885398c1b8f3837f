"""`ledger demo` writes only into a store of its own; options and policy fields that used to
surface as raw exception names (RecursionError, OverflowError, a busy loop) are refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import cli

FOREIGN = '{"type":"probe_failed","service":"web","probe":"paris","at":"2026-10-04T09:15:00Z","id":"mine"}\n'


def invoke(runner: CliRunner, url: str | None, *args: str, input: str | None = None) -> Result:
    return runner.invoke(cli, [*(["--store", url] if url else []), *args], input=input)


def one_line_error(result: Result) -> str:
    assert result.exit_code != 0, result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def events(runner: CliRunner, url: str) -> str:
    result = invoke(runner, url, "events")
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_demo_twice_prints_the_same_and_adds_nothing(runner: CliRunner, store_url: str) -> None:
    first = invoke(runner, store_url, "demo")
    assert first.exit_code == 0, first.stderr
    availability, support = first.stdout.split("\n\n", 1)
    assert len(availability.splitlines()) == 2 + 5  # header, rule, five contracts
    # Then the support tables: `ledger support --month 2026-10`'s, each ticket explained.
    assert support == invoke(runner, store_url, "support", "--month", "2026-10").stdout
    held = events(runner, store_url)
    second = invoke(runner, store_url, "demo")
    assert second.exit_code == 0, second.stderr
    assert second.stdout == first.stdout
    assert events(runner, store_url) == held


def test_the_demo_month_has_tickets_for_b_c_and_d(runner: CliRunner, sqlite_url: str) -> None:
    # The tickets of cli/demo/tickets.py, worked out by hand (docs/examples/README.md, "The demo month").
    assert invoke(runner, sqlite_url, "demo").exit_code == 0
    got = invoke(runner, sqlite_url, "support", "--month", "2026-10", "--format", "json")
    reports = {r["contract"]: r for r in json.loads(got.stdout)}
    status = {c: {t["ticket"]: t["status"] for t in r["tickets"]} for c, r in reports.items()}
    assert status["sla-a-2026"] == {}
    assert list(status["sla-b-2026"].values()) == ["met", "met", "breached", "met", "met", "breached", "met",
                                                   "pending"]
    assert reports["sla-b-2026"]["unknown_severity"] == ["T-2610-07"]
    # 2.5 h (September) + 2 h on account questions drawn, 1 h on a bug exempt: 6 h - 4.5 h = 1.5 h left.
    quota = reports["sla-b-2026"]["quota"]
    assert (quota["used_seconds"], quota["exempt_seconds"], quota["remaining_seconds"], quota["warning"]) == (
        16200, 3600, 5400, True)
    # Friday 9 October 17:00, 1 business day: Monday 12th is Thanksgiving in Ontario (Tuesday 17:00, met
    # at Tuesday 10:00) but not in Belgium (Monday 17:00, breached).
    assert status["sla-c-en-2026"]["optimy-ca-2610-02"] == "met"
    assert status["sla-c-fr-2026"]["optimy-be-2610-02"] == "breached"
    assert [(r["data_loss_seconds"], r["status"]) for r in reports["sla-c-en-2026"]["recoveries"]] == [
        (14 * 3600, "met"), (30 * 3600, "breached")]
    # Level 1: 25, 12 and 5 minutes of open time, mean 14 min = 840 s, below 15: met.
    mean = reports["sla-d-2026"]["targets"][0]
    assert (mean["severity"], mean["tickets"], mean["mean_seconds"]) == ("level1", 3, "840")
    assert mean["met"] is True
    assert [e["status"] for e in reports["sla-d-2026"]["engagements"]][:2] == ["met", "breached"]


def test_demo_refuses_a_store_holding_other_facts(runner: CliRunner, store_url: str) -> None:
    assert invoke(runner, store_url, "import", "-", input=FOREIGN).exit_code == 0
    held = events(runner, store_url)
    line = one_line_error(invoke(runner, store_url, "demo"))
    assert "demo: the store at " in line
    assert "already holds 1 facts that are not only the demo's" in line
    assert events(runner, store_url) == held


def test_demo_refuses_a_store_holding_the_demo_and_more(runner: CliRunner, store_url: str) -> None:
    assert invoke(runner, store_url, "demo").exit_code == 0
    assert invoke(runner, store_url, "import", "-", input=FOREIGN).exit_code == 0
    held = events(runner, store_url)
    one_line_error(invoke(runner, store_url, "demo"))
    assert events(runner, store_url) == held


def test_the_readme_demo_runs_again_on_its_own_ledger_db(runner: CliRunner, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # scripts/demo runs `ledger demo` on ./ledger.db: a second run (ledger.db left by the first) works.
    monkeypatch.chdir(tmp_path)
    first = invoke(runner, None, "demo")
    assert first.exit_code == 0, first.stderr
    assert (tmp_path / "ledger.db").exists()
    again = invoke(runner, None, "demo")
    assert again.exit_code == 0, again.stderr
    assert again.stdout == first.stdout


def test_scripts_demo_uses_the_readme_store() -> None:
    script = (Path(__file__).resolve().parents[2] / "scripts" / "demo").read_text()
    assert 'demo "$@"' in script
    assert "sqlite:///ledger.db" in script


# --- bounds ----------------------------------------------------------------------------

POLICY = """
[contract]
id = "c-1"
customer = "C"
service = "web"
timezone = "UTC"
currency = "EUR"
monthly_fee = "100.00"

[availability]
target = "99.9"
{extra}
"""


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ("x = " + "[" * 5000 + "]" * 5000, "not valid TOML: arrays or tables nested too deeply"),
        ("[maintenance]\nmin_notice = \"99999999999d\"",
         "field `maintenance.min_notice`: duration too long: '99999999999d'"),
        ("[maintenance]\nmin_notice = \"9999999999999999999999h\"", "field `maintenance.min_notice`"),
        ("[maintenance]\nmin_notice = \"5000000000 business days\"",
         "field `maintenance.min_notice`: at most 366 business days"),
        ("[credits]\ntiers = [{below = \"99\", percent = \"10\"}]\nlong_outage = {over = \"999999999999s\"}",
         "field `credits.long_outage.over`"),
    ],
)
def test_policy_fields_beyond_reason_are_one_line(runner: CliRunner, sqlite_url: str, tmp_path: Path,
                                                  extra: str, says: str) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(POLICY.format(extra=extra))
    line = one_line_error(invoke(runner, sqlite_url, "contract", "register", str(policy)))
    assert says in line, line
    assert "Error" not in line  # no RecursionError / OverflowError
    assert invoke(runner, sqlite_url, "contract", "show", "c-1").exit_code != 0  # nothing recorded


def test_the_longest_notice_still_reports(runner: CliRunner, store_url: str, tmp_path: Path) -> None:
    # At the bound, a month is still evaluated (the notice runs a year and more on).
    policy = tmp_path / "p.toml"
    policy.write_text(POLICY.format(extra='[maintenance]\nmin_notice = "366 business days"\n\n[calendar]'))
    assert invoke(runner, store_url, "contract", "register", str(policy)).exit_code == 0
    window = {"type": "maintenance_announced", "service": "web", "maintenance": "m", "announced_at":
              "2026-10-01T00:00:00Z", "starts_at": "2026-10-02T00:00:00Z", "ends_at": "2026-10-02T01:00:00Z"}
    down = {"type": "probe_failed", "service": "web", "probe": "p", "at": "2026-10-02T00:10:00Z"}
    lines = f"{json.dumps(window)}\n{json.dumps(down)}\n"
    assert invoke(runner, store_url, "import", "-", input=lines).exit_code == 0
    result = invoke(runner, store_url, "report", "--contract", "c-1", "--month", "2026-10",
                    "--format", "json")
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e999", "0", "-1", "abc", "86401"])
def test_projections_run_interval_must_be_a_finite_number_of_seconds(runner: CliRunner, sqlite_url: str,
                                                                     value: str) -> None:
    assert invoke(runner, sqlite_url, "init").exit_code == 0
    # --once: on the code before, nan was accepted, and without --once it spun for ever.
    line = one_line_error(invoke(runner, sqlite_url, "projections", "run", "--once", "--interval", value))
    assert line.startswith("error: Invalid value for '--interval'"), line
