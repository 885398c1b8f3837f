"""A replay point before the first fact or past the head (issue 17, hAI): one line naming the option.

Both stores. ``ledger audit`` and ``ledger support`` (one contract and the whole month)
take ``--position`` / ``--as-of``: position 0 is outside the log as -1 and head + 1 are
(bad input, exit 2, like ``ledger proof inclusion --position 0``), and an as-of before the
first ``recorded_at`` names the option and where the log starts (exit 1). Nothing is
printed on stdout and nothing is written.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.main import cli
from ledger.application import Ledger
from ledger.events import ProbeFailed
from tests.conftest import StepClock
from tests.integration.test_reporting import register

COMMANDS = (
    ("audit", "--contract", "sla-a-2026", "--month", "2026-10"),
    ("audit", "--contract", "sla-a-2026", "--month", "2026-10", "--format", "json"),
    ("support", "--contract", "sla-a-2026", "--month", "2026-10"),
    ("support", "--month", "2026-10", "--format", "json"),
)


def _one_line(runner: CliRunner, url: str, args: tuple[str, ...], code: int, named: str) -> str:
    result = runner.invoke(cli, ["--store", url, *args])
    assert result.exit_code == code, (args, result.output)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {named}"), lines[0]
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda a: " ".join(a[:1] + a[-2:]))
def test_points_outside_the_log_are_refused_in_one_line(ledger: Ledger, store_url: str, runner: CliRunner,
                                                         clock: StepClock, command: tuple[str, ...]) -> None:
    register(ledger)
    ledger.append(ProbeFailed(service="workspace", probe="paris", at=clock.now, id="hai-point"))
    head = ledger.recorder.last_position()
    first = next(ledger.recorder.read_records(1, 1)).recorded_at
    for position in (0, -1, head + 1):
        at = (*command, "--position", str(position))
        line = _one_line(runner, store_url, at, 2, f"--position {position}")
        assert f"the ledger holds positions 1 to {head}" in line
    before = "2020-01-01T00:00:00+00:00"
    line = _one_line(runner, store_url, (*command, "--as-of", before), 1, f"--as-of {before}")
    assert f"the first fact was recorded at {first.isoformat()}" in line
    assert ledger.recorder.last_position() == head


def test_on_an_empty_ledger_a_point_says_nothing_is_recorded(ledger: Ledger, store_url: str,
                                                             runner: CliRunner) -> None:
    args = ("audit", "--contract", "sla-a-2026", "--month", "2026-10")
    line = _one_line(runner, store_url, (*args, "--position", "0"), 2, "--position 0")
    assert "nothing is recorded yet" in line
    as_of = (*args, "--as-of", "2026-10-01T00:00:00Z")
    _one_line(runner, store_url, as_of, 1, "--as-of 2026-10-01T00:00:00+00:00")
    assert ledger.recorder.last_position() == 0


NAMED = ("support", "--month", "2026-10", "--contract", "sla-a-2026")


@pytest.mark.parametrize("command", [*COMMANDS, NAMED], ids=lambda a: " ".join(a[:1] + a[-2:]))
def test_a_point_before_the_registration_names_both_positions(ledger: Ledger, store_url: str,
                                                              runner: CliRunner, clock: StepClock,
                                                              command: tuple[str, ...]) -> None:
    # It said only "contract `sla-a-2026` is not registered", of a contract registered since.
    first = ledger.append(ProbeFailed(service="workspace", probe="paris", at=clock.now, id="before"))
    assert first.first_position == 1
    register(ledger)
    registered = ledger.contracts()["sla-a-2026"][0].position
    as_of = next(ledger.recorder.read_records(1, 1)).recorded_at.isoformat()
    if "--contract" not in command:  # the whole month: the contracts registered by then, none
        result = runner.invoke(cli, ["--store", store_url, *command, "--position", "1"])
        assert (result.exit_code, result.stdout) == (0, "[]\n")
        return
    for point in (("--position", "1"), ("--as-of", as_of)):
        line = _one_line(runner, store_url, (*command, *point), 1, "contract `sla-a-2026`")
        assert line == ("error: contract `sla-a-2026` was not registered yet at the replay point, position 1 "
                        f"(it was registered at position {registered})")
    unknown = tuple("nope" if arg == "sla-a-2026" else arg for arg in command)
    line = _one_line(runner, store_url, (*unknown, "--position", "1"), 1, "contract")
    assert line == "error: contract `nope` is not registered"
