"""Store-level properties of `ledger support`: batch splits change nothing; as-of replay = a prefix store."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import cli
from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.events import export_line
from ledger.policy_check import load_policy
from ledger.support_read import support_report
from projections.support_model import support_json
from tests.conftest import StepClock
from tests.integration.test_support_examples import POLICY_B
from tests.lines import import_lines

C = "sla-b"


def _facts(n: int) -> list[bytes]:
    out: list[dict[str, object]] = []
    for i in range(n):
        day = 5 + i % 20
        out.append({"type": "ticket_opened", "contract": C, "ticket": f"T-{i}",
                    "at": f"2026-10-{day:02d}T{8 + i % 10:02d}:15:00+02:00",
                    "severity": ["production_down", "moderate", "limited"][i % 3]})
        if i % 4 != 3:
            out.append({"type": "ticket_responded", "ticket": f"T-{i}",
                        "at": f"2026-10-{day + i % 3:02d}T{9 + i % 7:02d}:00:00+02:00"})
        if i % 2:
            out.append({"type": "support_time_logged", "ticket": f"T-{i}",
                        "at": f"2026-10-{day:02d}T16:00:00+02:00", "seconds": 600 * (i + 1)})
    return [json.dumps(x).encode() for x in out]


def _fresh(url: str) -> Ledger:
    led = open_ledger(url, clock=StepClock())
    led.register_contract(load_policy(POLICY_B))
    return led


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 8), split=st.integers(0, 30), position=st.integers(1, 30))
def test_batch_splits_and_prefix_replay_sqlite(n: int, split: int, position: int) -> None:
    lines = _facts(n)
    split = min(split, len(lines))
    with tempfile.TemporaryDirectory() as tmp:
        one, two = _fresh(f"sqlite:///{tmp}/one.db"), _fresh(f"sqlite:///{tmp}/two.db")
        try:
            import_lines(one, lines)
            import_lines(two, lines[:split])
            import_lines(two, lines[split:])
            a, b = support_report(one, C, "2026-10"), support_report(two, C, "2026-10")
            assert a.digest == b.digest
            assert [t.status for t in a.tickets] == [t.status for t in b.tickets]
            _prefix_equals_replay(one, Path(tmp), min(position, one.recorder.last_position()))
        finally:
            one.close()
            two.close()


def _prefix_equals_replay(led: Ledger, tmp: Path, position: int) -> None:
    exported = [export_line(r) for r in led.records(position)]
    # Its own clock is later than every exported recorded_at, which the import keeps.
    later = StepClock(datetime(2027, 1, 1, tzinfo=UTC))
    prefix = open_ledger(f"sqlite:///{tmp}/prefix-{position}.db", clock=later)
    try:
        import_lines(prefix, exported)
        replay = support_report(led, C, "2026-10", position=position)
        # The clock records everything after the month: the replay point is past its horizon.
        assert support_json(replay) == support_json(support_report(prefix, C, "2026-10"))
    finally:
        prefix.close()


def test_prefix_replay_on_both_stores(ledger: Ledger, tmp_path: Path) -> None:
    ledger.register_contract(load_policy(POLICY_B))
    import_lines(ledger, _facts(6))
    for position in (1, 5, ledger.recorder.last_position()):
        _prefix_equals_replay(ledger, tmp_path, position)


def test_cli_support_and_calendar(tmp_path: Path, runner: CliRunner) -> None:
    store = ["--store", f"sqlite:///{tmp_path / 'l.db'}"]
    (tmp_path / "b.toml").write_bytes(POLICY_B)
    (tmp_path / "e.ndjson").write_bytes(b"\n".join(_facts(3)) + b"\n")
    assert runner.invoke(cli, [*store, "contract", "register", str(tmp_path / "b.toml")]).exit_code == 0
    assert runner.invoke(cli, [*store, "import", "-q", str(tmp_path / "e.ndjson")]).exit_code == 0
    out = runner.invoke(cli, [*store, "support", "--contract", C, "--month", "2026-10", "--format", "json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert [t["ticket"] for t in report["tickets"]] == ["T-0", "T-1", "T-2"]
    every = runner.invoke(cli, [*store, "support", "--month", "2026-10", "--format", "json"])
    assert json.loads(every.output) == [report]
    csv = runner.invoke(cli, [*store, "support", "--month", "2026-10", "--format", "csv"])
    assert csv.output.splitlines()[0].startswith("contract,month,ticket,")
    assert len(csv.output.splitlines()) == 4
    table = runner.invoke(cli, [*store, "support", "--contract", C, "--month", "2026-10"])
    assert "T-0" in table.output
    assert "holidays CH 2026: holidays " in table.output
    pin = runner.invoke(cli, [*store, "calendar", "pin", "--country", "CH", "--years", "2026-2027"])
    assert pin.exit_code == 0, pin.output
    show = runner.invoke(cli, [*store, "calendar", "show", "--country", "CH", "--year", "2026"])
    assert show.output.splitlines()[0] == "CH 2026: pinned"
    pinned = runner.invoke(cli, [*store, "support", "--contract", C, "--month", "2026-10",
                                 "--format", "json"])
    after = json.loads(pinned.output)
    assert after["holidays"] == [{"country": "CH", "year": 2026, "source": "pinned"}]
    assert after["digest"] == report["digest"]  # the same dates: the same digest
    # Replayed before the pin: the package's dates, as then.
    before = runner.invoke(cli, [*store, "support", "--contract", C, "--month", "2026-10", "--position",
                                 str(report["as_of_position"]), "--format", "json"])
    assert json.loads(before.output)["holidays"][0]["source"].startswith("holidays ")
    for bad, message in ((["calendar", "pin", "--country", "XX", "--years", "2026"], "--country"),
                         (["calendar", "pin", "--country", "CH", "--years", "2027-2026"], "--years"),
                         (["support", "--month", "2026-13"], "--month"),
                         (["support", "--contract", "nope", "--month", "2026-10"], "nope")):
        res = runner.invoke(cli, [*store, *bad])
        assert res.exit_code in (1, 2), res.output
        assert message in res.output


def test_a_month_uses_the_support_terms_in_force(ledger: Ledger) -> None:
    ledger.register_contract(load_policy(POLICY_B))
    fee = b'annual_fee = "6500.00"'
    amended = POLICY_B.replace(fee, fee + b'\neffective_from = "2026-11"')
    amended = amended.replace(b'first_response = "1h"', b'first_response = "2h"')
    ledger.amend_contract(load_policy(amended))
    import_lines(ledger, [json.dumps(x).encode() for x in (
        {"type": "ticket_opened", "contract": C, "ticket": "A", "at": "2026-10-28T10:00:00+01:00",
         "severity": "production_down"},
        {"type": "ticket_opened", "contract": C, "ticket": "B", "at": "2026-11-04T10:00:00+01:00",
         "severity": "production_down"},
    )])
    october, november = support_report(ledger, C, "2026-10"), support_report(ledger, C, "2026-11")
    assert (october.policy_version, october.tickets[0].target) == (1, "1h")
    assert (november.policy_version, november.tickets[0].target) == (2, "2h")
