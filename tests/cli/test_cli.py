"""The command line through click's CliRunner: parse, one call, render, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import cli

LINES = (
    '{"type":"probe_failed","service":"web","probe":"paris","at":"2026-10-04T09:15:00Z","id":"a1"}\n'
    '{"type":"probe_recovered","service":"web","probe":"paris","at":"2026-10-04T09:45:00Z","id":"a2"}\n'
)


def run(runner: CliRunner, url: str, *args: str, input: str | bytes | None = None) -> Result:
    return runner.invoke(cli, ["--store", url, *args], input=input, catch_exceptions=False)


def one_line_error(result: Result) -> str:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def events(runner: CliRunner, url: str) -> list[dict[str, object]]:
    result = run(runner, url, "events")
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def url(store_url: str) -> str:
    return store_url


def test_init_is_idempotent(runner: CliRunner, url: str) -> None:
    assert run(runner, url, "init").exit_code == 0
    second = run(runner, url, "init")
    assert second.exit_code == 0
    assert "0 events" in second.stdout


def test_append_with_fields_prints_the_position(runner: CliRunner, url: str) -> None:
    first = run(runner, url, "append", "probe_failed", "--service", "web", "--probe", "paris",
                "--at", "2026-10-04T09:15:00Z")
    assert first.exit_code == 0, first.stderr
    assert first.stdout.strip() == "1"
    second = run(runner, url, "append", "incident_opened", "--service=web", "--incident", "INC-1",
                 "--at", "2026-10-04T09:20:00+02:00", "--impact", "outage", "--title", "DB down")
    assert second.stdout.strip() == "2"
    recorded = events(runner, url)
    assert [e["position"] for e in recorded] == [1, 2]
    assert recorded[1]["at"] == "2026-10-04T09:20:00+02:00"
    assert recorded[1]["title"] == "DB down"


def test_append_json(runner: CliRunner, url: str) -> None:
    result = run(runner, url, "append", "--json", LINES.splitlines()[0])
    assert result.stdout.strip() == "1"
    again = run(runner, url, "append", "--json", LINES.splitlines()[0])
    assert again.exit_code == 0
    assert again.stdout.strip() == "1"  # the position it was recorded at
    assert "already recorded" in again.stderr
    assert len(events(runner, url)) == 1


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["probe_failed", "--service", "web", "--probe", "p", "--at", "2026-10-04T09:15:00"], "`at`"),
        (["probe_failed", "--service", "web", "--at", "2026-10-04T09:15:00Z"], "`probe`"),
        (["probe_failed", "--service", "web", "--probe", "p", "--at", "2026-10-04T09:15:00Z",
          "--colour", "red"], "colour"),
        (["probe_vanished", "--service", "web"], "probe_vanished"),
        (["--json", "{not json"], "JSON"),
        (["--json", '{"type":"maintenance_announced","service":"w","maintenance":"m",'
          '"announced_at":"2026-10-01T00:00:00Z","starts_at":"2026-10-02T02:00:00Z",'
          '"ends_at":"2026-10-02T01:00:00Z"}'], "ends_at"),
        (["probe_failed", "--service"], "--service"),
        ([], "TYPE"),
    ],
)
def test_bad_append_is_one_line_and_changes_nothing(runner: CliRunner, url: str, args: list[str],
                                                     names: str) -> None:
    assert run(runner, url, "init").exit_code == 0
    line = one_line_error(run(runner, url, "append", *args))
    assert names in line
    assert events(runner, url) == []


def test_import_from_stdin_then_reimport(runner: CliRunner, url: str) -> None:
    first = run(runner, url, "import", "-", input=LINES)
    assert first.exit_code == 0, first.stderr
    assert "imported 2 events, 0 already recorded" in first.stderr
    again = run(runner, url, "import", "-", input=LINES)
    assert "imported 0 events, 2 already recorded" in again.stderr
    assert [e["id"] for e in events(runner, url)] == ["a1", "a2"]


def test_one_event_is_counted_in_the_singular(runner: CliRunner, url: str) -> None:
    assert run(runner, url, "import", "-", input=LINES.splitlines(keepends=True)[0]).stderr.startswith(
        "imported 1 event, 0 already recorded")
    assert run(runner, url, "verify").stdout.startswith("ok: 1 event, chain intact")
    assert "(1 event)" in run(runner, url, "init").stdout


def test_bad_line_names_the_line_and_keeps_nothing(runner: CliRunner, url: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.ndjson"
    path.write_text(LINES + '{"type":"probe_failed","service":"web","probe":"x","at":"2026-10-04"}\n')
    line = one_line_error(run(runner, url, "import", str(path)))
    assert line.startswith("error: line 3: field `at`"), line
    assert events(runner, url) == []


def test_missing_import_file(runner: CliRunner, url: str, tmp_path: Path) -> None:
    line = one_line_error(run(runner, url, "import", str(tmp_path / "nope.ndjson")))
    assert "nope.ndjson" in line


def test_events_output_imports_into_another_store(runner: CliRunner, url: str, tmp_path: Path) -> None:
    run(runner, url, "import", "-", input=LINES)
    exported = run(runner, url, "events").stdout
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert run(runner, other, "import", "-", input=exported).exit_code == 0
    assert run(runner, other, "events").stdout == exported


def test_events_filters_by_service_and_time(runner: CliRunner, url: str) -> None:
    run(runner, url, "import", "-", input=LINES
        + '{"type":"probe_failed","service":"api","probe":"p","at":"2026-10-09T00:00:00Z"}\n')
    api = run(runner, url, "events", "--service", "api").stdout.splitlines()
    assert [json.loads(x)["service"] for x in api] == ["api"]
    late = run(runner, url, "events", "--since", "2026-10-04T09:30:00Z").stdout.splitlines()
    assert [json.loads(x)["position"] for x in late] == [2, 3]
    bad = one_line_error(run(runner, url, "events", "--since", "2026-10-04"))
    assert "--since" in bad


def test_verify_reports_the_head(runner: CliRunner, url: str) -> None:
    run(runner, url, "import", "-", input=LINES)
    result = run(runner, url, "verify")
    assert result.exit_code == 0
    head = result.stdout.split("head ")[1].strip()
    assert head.startswith("sha256:")
    assert run(runner, url, "verify", "--expect", head).exit_code == 0
    wrong = run(runner, url, "verify", "--expect", "sha256:" + "f" * 64)
    assert wrong.exit_code == 3


def test_unknown_store_scheme(runner: CliRunner) -> None:
    line = one_line_error(run(runner, "mysql://x/y", "init"))
    assert "mysql://x/y" in line


def test_report_on_missing_sqlite_file(runner: CliRunner, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'absent.db'}"
    line = one_line_error(run(runner, url, "report", "--contract", "c", "--month", "2026-10"))
    assert "ledger init" in line
    assert not (tmp_path / "absent.db").exists()


def test_unreachable_postgres_is_one_line(runner: CliRunner) -> None:
    line = one_line_error(run(runner, "postgresql://postgres@127.0.0.1:1/none", "init"))
    assert line.startswith('error: cannot connect to PostgreSQL database "none" at 127.0.0.1:1')
    assert "Connection refused" in line


def test_store_from_environment(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("LEDGER_STORE", url)
    assert runner.invoke(cli, ["init"]).exit_code == 0
    assert (tmp_path / "env.db").exists()
