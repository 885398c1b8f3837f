"""The follower checked from outside (issue 17, hAI): a ``projections run`` process killed and restarted.

Both stores. History of our own (not the examples), imported with its ``recorded_at`` in
pieces while a follower process runs: two contracts in New York and Sydney on one service,
the first amended back to an earlier month, a third registered months after its service's
facts, a service no contract covers, an incident open for months and resolved exactly at a
month boundary in the contract's zone, exclusions revoked months later. The follower is
killed with SIGKILL mid-way and started again; at the head its tables equal
``ledger report`` row by row and, but for each row's own position, what a rebuild writes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner

from cli.main import cli
from tests.integration.test_reporting import assert_tables_match_reports, ledger_cli, query

_POLICY = """
[contract]
id = "{id}"
customer = "C"
service = "{service}"
timezone = "{zone}"
currency = "EUR"
monthly_fee = "1000.00"
{effective}
[availability]
target = "{target}"
formula = "downtime_over_total"
outage_when = "any"
probes = ["p1", "p2"]
excludable = ["force_majeure", "third_party"]
[maintenance]
min_notice = "2h"
outside_business_hours = false
nonconforming = "emergency"
[credits]
tiers = [{{ below = "99.9", percent = "10" }}]
cap_percent = "50"
long_outage = {{ over = "4h", per_started_day = true }}
"""
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _policy(cid: str, service: str, zone: str, target: str = "99.9", effective: str = "") -> dict[str, Any]:
    text = _POLICY.format(id=cid, service=service, zone=zone, target=target, effective=effective)
    return tomllib.loads(text)


def _z(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _d(days: int) -> datetime:
    return T0 + timedelta(days=days)


def _history() -> list[dict[str, Any]]:
    """Facts with the ``recorded_at`` they arrive at, in arrival order (each after the last)."""
    facts: list[tuple[dict[str, Any], datetime]] = [
        ({"type": "contract_registered", "policy": _policy("c-ny", "svc-x", "America/New_York")}, T0),
        ({"type": "contract_registered", "policy": _policy("c-syd", "svc-x", "Australia/Sydney")}, _d(60)),
        ({"type": "contract_amended",
          "policy": _policy("c-ny", "svc-x", "America/New_York", "99.99", 'effective_from = "2026-02"')},
         _d(130)),
        ({"type": "contract_registered", "policy": _policy("c-par", "svc-y", "Europe/Paris")}, _d(300)),
        ({"type": "incident_opened", "service": "svc-x", "incident": "long", "at": _z(_d(20)),
          "impact": "outage"}, _d(20)),
        ({"type": "incident_resolved", "incident": "long", "at": "2026-04-01T00:00:00-04:00"}, _d(95)),
        ({"type": "exclusion_declared", "service": "svc-x", "exclusion": "ex", "category": "third_party",
          "starts_at": "2026-03-07T00:00:00Z", "ends_at": "2026-03-09T12:00:00Z", "reason": "upstream"},
         _d(70)),
        ({"type": "exclusion_revoked", "ref": "ex", "reason": "ours"}, _d(200)),
        ({"type": "probe_failed", "service": "svc-z", "probe": "q", "at": _z(_d(33))}, _d(33)),
        ({"type": "maintenance_announced", "service": "svc-x", "maintenance": "mw",
          "announced_at": _z(_d(60)),
          "starts_at": "2026-03-30T22:00:00Z", "ends_at": "2026-04-06T03:00:00Z"}, _d(60)),
        ({"type": "maintenance_completed", "maintenance": "mw", "at": "2026-04-05T01:00:00Z"}, _d(150)),
    ]
    for i in range(60):  # probes flapping on both services, reported up to a month late
        at = T0 + timedelta(hours=97 * i + 13)
        service, probe = ("svc-x", f"p{1 + i % 2}") if i % 3 else ("svc-y", "p1")
        kind = "probe_failed" if i % 4 < 2 else "probe_recovered"
        facts.append(({"type": kind, "service": service, "probe": probe, "at": _z(at)},
                      at + timedelta(hours=(i * 37) % 700)))
    facts.sort(key=lambda f: f[1])
    return [{**fact, "recorded_at": _z(at + timedelta(microseconds=k))} for k, (fact, at) in enumerate(facts)]


def _follower(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "cli.main", "--store", url, "projections", "run",
                             "--interval", "0.05"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stop(follower: subprocess.Popen[bytes], sig: int) -> tuple[int, bytes]:
    follower.send_signal(sig)
    code = follower.wait(30)
    assert follower.stderr is not None
    with follower.stderr:
        return code, follower.stderr.read()


def _caught_up(runner: CliRunner, url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = json.loads(ledger_cli(runner, url, "projections", "status", "--format", "json").stdout)
        if status[0]["lag"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"the follower did not catch up: {status}")


def _rows(url: str) -> list[list[str]]:
    out = []
    for table in ("report_monthly_availability", "report_credit_entitlements", "report_downtime_intervals"):
        got = query(url, f"SELECT * FROM {table}")  # noqa: S608
        rows = ({k: str(v) for k, v in r.items() if k != "as_of_position"} for r in got)
        out.append(sorted(json.dumps(r, sort_keys=True) for r in rows))
    return out


def test_a_killed_follower_resumes_to_the_tables_a_rebuild_writes(store_url: str, runner: CliRunner) -> None:
    ledger_cli(runner, store_url, "init")
    lines = _history()
    pieces = [lines[:15], lines[15:30], lines[30:45], lines[45:]]
    follower = _follower(store_url)
    try:
        for k, piece in enumerate(pieces):
            result = runner.invoke(cli, ["--store", store_url, "import", "-"],
                                   input="".join(json.dumps(line) + "\n" for line in piece))
            assert result.exit_code == 0, result.output
            if k == 1:
                _caught_up(runner, store_url)
                _stop(follower, signal.SIGKILL)
                follower = _follower(store_url)
        _caught_up(runner, store_url)
    finally:
        assert _stop(follower, signal.SIGTERM) == (0, b"")
    rows = query(store_url, "SELECT contract, month FROM report_monthly_availability")
    months = {(r["contract"], r["month"]) for r in rows}
    assert {("c-ny", "2026-01"), ("c-ny", "2026-10"), ("c-syd", "2026-01"), ("c-par", "2026-01")} <= months
    assert assert_tables_match_reports(store_url, runner, rebuilt=False) == len(months)
    followed = _rows(store_url)
    ledger_cli(runner, store_url, "projections", "rebuild")
    assert _rows(store_url) == followed
