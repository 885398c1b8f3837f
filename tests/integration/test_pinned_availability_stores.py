"""Pinned holidays in `ledger report` / `audit` on both stores (issue 18, INTERFACE.md section 6.1).

A maintenance window needs 2 business days of notice in Toronto time. Announced Monday
29 June 2026 10:00, it starts Wednesday 1 July 12:00: with the package's Canadian holidays
(Canada Day on 1 July) the notice runs to Thursday 2 July 10:00, too late, so the hour of
outage is downtime; a pin of Canada 2026 without 1 July makes the notice run to Wednesday
10:00, and the hour is maintenance. The probe is down for the whole window.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import msgspec
from click.testing import CliRunner

from cli.main import cli
from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.calendar import holiday_dates, package_version
from ledger.events import HolidaysPinned
from ledger.policy_check import load_policy
from tests.conftest import StepClock
from tests.integration.test_reporting import assert_tables_match_reports, query
from tests.unit.factories import fact
from tests.unit.test_pinned_availability import POLICY

C, MONTH = "pin-2026", "2026-07"
START = datetime(2026, 8, 1, tzinfo=UTC)
CA_2026 = sorted(holiday_dates("CA", 2026))
NO_CANADA_DAY = [d.isoformat() for d in CA_2026 if d != date(2026, 7, 1)]
FACTS = [
    {"type": "maintenance_announced", "service": "web", "maintenance": "w1",
     "announced_at": "2026-06-29T10:00:00-04:00", "starts_at": "2026-07-01T12:00:00-04:00",
     "ends_at": "2026-07-01T13:00:00-04:00"},
    {"type": "probe_failed", "service": "web", "probe": "p", "at": "2026-07-01T12:00:00-04:00"},
    {"type": "probe_recovered", "service": "web", "probe": "p", "at": "2026-07-01T13:00:00-04:00"},
]


def _fill(url: str) -> Ledger:
    led = open_ledger(url, clock=StepClock(START))
    led.register_contract(load_policy(POLICY.format(notice="2 business days", hours="false").encode()))
    led.append_facts([fact(str(f["type"]), **{k: v for k, v in f.items() if k != "type"}) for f in FACTS])
    return led


def _pin(led: Ledger, dates: list[str], year: int = 2026) -> int:
    pos = led.append(HolidaysPinned(country="CA", year=year, dates=tuple(dates)))
    assert pos.first_position is not None
    return pos.first_position


def _cli(runner: CliRunner, url: str, *args: str) -> bytes:
    result = runner.invoke(cli, ["--store", url, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def _report(runner: CliRunner, url: str) -> dict[str, Any]:
    out = _cli(runner, url, "report", "--contract", C, "--month", MONTH, "--format", "json")
    return dict(json.loads(out))


def _audit(runner: CliRunner, url: str, position: int) -> dict[str, Any]:
    out = _cli(runner, url, "audit", "--contract", C, "--month", MONTH, "--position", str(position),
               "--format", "json")
    return dict(json.loads(out)["report"])


def test_a_pin_flips_the_verdict_from_its_position_on(store_url: str, runner: CliRunner) -> None:
    led = _fill(store_url)
    try:
        before = _report(runner, store_url)
        assert (before["maintenance_seconds"], before["downtime_seconds"]) == (0, 3600)
        assert before["holidays"] == [{"country": "CA", "year": 2026, "source": package_version()}]
        head = led.recorder.last_position()
        pin = _pin(led, NO_CANADA_DAY)
    finally:
        led.close()
    after = _report(runner, store_url)
    assert (after["maintenance_seconds"], after["downtime_seconds"]) == (3600, 0)
    assert after["holidays"] == [{"country": "CA", "year": 2026, "source": "pinned"}]
    assert after["digest"] != before["digest"]
    # Section 5's fields, then the holidays, as `ledger support` places them.
    keys = list(after)
    assert keys[keys.index("intervals") + 1 : keys.index("as_of_position")] == ["holidays"]
    # Replayed before the pin: the package's verdict, exactly the report as it was then.
    assert _audit(runner, store_url, head) == before
    assert _audit(runner, store_url, pin) == after
    # People see it too.
    table = _cli(runner, store_url, "report", "--contract", C, "--month", MONTH).decode()
    assert "holidays     CA 2026 (pinned)" in table
    audit = _cli(runner, store_url, "audit", "--contract", C, "--month", MONTH, "--position", str(head))
    text = audit.decode()
    assert f"Public holidays: CA 2026 ({package_version()})" in text
    page = _cli(runner, store_url, "report", "--contract", C, "--month", MONTH, "--format", "html").decode()
    assert 'data-country="CA" data-year="2026" data-source="pinned"' in page


def test_json_is_byte_identical_across_stores(sqlite_url: str, pg_url: str, runner: CliRunner) -> None:
    heads = []
    for url in (sqlite_url, pg_url):
        led = _fill(url)
        try:
            heads.append(led.recorder.last_position())
            _pin(led, NO_CANADA_DAY)
            _pin(led, [], year=2027)
        finally:
            led.close()
    assert heads[0] == heads[1]

    def outputs(url: str) -> list[bytes]:
        base = ("--contract", C, "--month", MONTH, "--format", "json")
        return [_cli(runner, url, "report", *base),
                *(_cli(runner, url, "audit", *base, "--position", str(p)) for p in (heads[0], heads[0] + 1))]

    got = outputs(sqlite_url)
    assert got == outputs(pg_url)
    assert b'"source":"pinned"' in got[0]
    assert b'"source":"pinned"' not in got[1]


def test_the_digest_covers_the_dates_not_their_source(store_url: str, runner: CliRunner) -> None:
    led = _fill(store_url)
    led.close()
    before = _report(runner, store_url)
    # `ledger calendar pin` records the package's own dates: every figure and the digest stay.
    _cli(runner, store_url, "calendar", "pin", "--country", "CA", "--years", "2025-2027")
    same = _report(runner, store_url)
    assert same["holidays"] == [{"country": "CA", "year": 2026, "source": "pinned"}]
    assert {k: v for k, v in same.items() if k not in ("holidays", "as_of_position", "checkpoint")} == {
        k: v for k, v in before.items() if k not in ("holidays", "as_of_position", "checkpoint")}
    # Dates that change no verdict (Christmas dropped) still change the dates used, so the digest.
    led = open_ledger(store_url, clock=StepClock(datetime(2026, 9, 1, tzinfo=UTC)))
    try:
        _pin(led, [d.isoformat() for d in CA_2026 if d != date(2026, 12, 25)])
    finally:
        led.close()
    other = _report(runner, store_url)
    assert (other["maintenance_seconds"], other["downtime_seconds"]) == (0, 3600)
    assert other["digest"] != before["digest"]


def test_rebuild_and_follower_recompute_the_months_a_pin_changes(store_url: str, runner: CliRunner) -> None:
    led = _fill(store_url)
    led.close()
    _cli(runner, store_url, "projections", "rebuild")
    assert assert_tables_match_reports(store_url, runner, rebuilt=True) >= 1
    row = f"FROM report_monthly_availability WHERE contract = '{C}' AND month = '{MONTH}'"
    digest_sql = f"SELECT digest {row}"
    old = query(store_url, digest_sql)[0]["digest"]
    led = open_ledger(store_url, clock=StepClock(datetime(2026, 9, 1, tzinfo=UTC)))
    try:
        _pin(led, NO_CANADA_DAY)
    finally:
        led.close()
    _cli(runner, store_url, "projections", "run", "--once")
    assert assert_tables_match_reports(store_url, runner, rebuilt=False) >= 1
    new = query(store_url, digest_sql)[0]["digest"]
    assert new != old
    assert new == _report(runner, store_url)["digest"]
    downtime = query(store_url, f"SELECT downtime_seconds {row}")[0]["downtime_seconds"]
    assert msgspec.json.decode(str(downtime)) == 0
    _cli(runner, store_url, "projections", "rebuild")
    assert assert_tables_match_reports(store_url, runner, rebuilt=True) >= 1
    assert query(store_url, digest_sql)[0]["digest"] == new


# The same month on a contract whose [support] section engages every downtime stretch: the
# stretches come from the availability fold, whose maintenance verdict reads Canada's holidays.
SUPPORT = """
[support]
hours = ["Mon-Fri 09:00-17:00"]
targets = [{ severity = "high", first_response = "4h" }]
engagement = { level = "l3", within = "10m" }
"""


def _support(runner: CliRunner, url: str) -> dict[str, Any]:
    out = _cli(runner, url, "support", "--contract", C, "--month", MONTH, "--format", "json")
    return dict(json.loads(out))


def test_the_holidays_that_shaped_the_stretches_are_named_and_digested(store_url: str,
                                                                       runner: CliRunner) -> None:
    led = open_ledger(store_url, clock=StepClock(START))
    try:
        text = POLICY.format(notice="2 business days", hours="false") + SUPPORT
        led.register_contract(load_policy(text.encode()))
        led.append_facts([fact(str(f["type"]), **{k: v for k, v in f.items() if k != "type"}) for f in FACTS])
        package = _support(runner, store_url)
        # The package's Canada Day makes the notice late: the hour is downtime, a stretch not engaged.
        assert [e["status"] for e in package["engagements"]] == ["breached"]
        assert package["holidays"] == [{"country": "CA", "year": 2026, "source": package_version()}]
        # A pin that drops only Christmas: the same verdict and engagement, other dates used.
        _pin(led, [d.isoformat() for d in CA_2026 if d != date(2026, 12, 25)])
        no_christmas = _support(runner, store_url)
        assert no_christmas["engagements"] == package["engagements"]
        assert no_christmas["holidays"] == [{"country": "CA", "year": 2026, "source": "pinned"}]
        assert no_christmas["digest"] != package["digest"]
        # A pin without Canada Day: the notice is in time, the hour maintenance, no stretch.
        _pin(led, NO_CANADA_DAY)
        pinned = _support(runner, store_url)
        assert pinned["engagements"] == []
        assert pinned["holidays"] == [{"country": "CA", "year": 2026, "source": "pinned"}]
        # The reporting tables hold the same support figures (their digest included).
        _cli(runner, store_url, "projections", "rebuild")
        rows = query(store_url, "SELECT digest FROM report_support_targets "
                                "WHERE contract = 'pin-2026' AND month = '2026-07'")
        assert {r["digest"] for r in rows} == {pinned["digest"]}
    finally:
        led.close()
