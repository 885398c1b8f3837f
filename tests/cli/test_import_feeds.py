"""`ledger import --from statuspage|alertmanager|uptime-kuma`, on both stores."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tests.cli.test_cli import events, one_line_error, run
from tests.unit.test_feeds import alert, incident, kuma, maintenance, page, webhook


def test_import_statuspage_twice_changes_nothing(runner: CliRunner, store_url: str, tmp_path: Path) -> None:
    doc = tmp_path / "incidents.json"
    doc.write_bytes(page(incidents=[incident()], scheduled_maintenances=[maintenance("m2", "completed")]))
    first = run(runner, store_url, "import", "--from", "statuspage", str(doc))
    assert first.exit_code == 0, first.stderr
    assert "imported 4 events, 0 already recorded" in first.stderr
    again = run(runner, store_url, "import", "--from", "statuspage", str(doc))
    assert "imported 0 events, 4 already recorded" in again.stderr
    recorded = events(runner, store_url)
    assert sorted(e["type"] for e in recorded) == [
        "incident_opened", "incident_resolved", "maintenance_announced", "maintenance_completed"]
    assert [e["position"] for e in recorded] == [1, 2, 3, 4]


def test_import_statuspage_bad_entry_keeps_nothing(runner: CliRunner, store_url: str, tmp_path: Path) -> None:
    doc = tmp_path / "incidents.json"
    doc.write_bytes(page(incidents=[incident(), incident("i2", impact="huge")]))
    result = run(runner, store_url, "import", "--from", "statuspage", str(doc))
    assert result.exit_code == 2
    assert "field `incidents[1].impact`" in one_line_error(result)
    doc.write_bytes(page(incidents=[incident(components=())]))
    result = run(runner, store_url, "import", "--from", "statuspage", "--service", "platform", str(doc))
    assert result.exit_code == 0, result.stderr
    assert {e.get("service") for e in events(runner, store_url)} == {"platform", None}


def test_import_webhook_payloads_with_a_map(runner: CliRunner, sqlite_url: str, tmp_path: Path) -> None:
    hook = tmp_path / "hook.json"
    hook.write_bytes(webhook({**alert("f1", "resolved", end="2026-10-04T10:00:00Z"),
                              "labels": {"instance": "api", "job": "paris"}}))
    result = run(runner, sqlite_url, "import", "--from", "alertmanager",
                 "--map", "service=instance,probe=job", str(hook))
    assert result.exit_code == 0, result.stderr
    result = run(runner, sqlite_url, "import", "--from", "alertmanager", "--map", "region=x", str(hook))
    assert "--map: unknown key `region`" in one_line_error(result)
    hook.write_bytes(kuma(0))
    assert run(runner, sqlite_url, "import", "--from", "uptime-kuma", str(hook)).exit_code == 0
    assert [(e["type"], e["service"]) for e in events(runner, sqlite_url)] == [
        ("probe_failed", "api"), ("probe_recovered", "api"), ("probe_failed", "web")]
    assert json.dumps(events(runner, sqlite_url)[0]["id"]) == '"alertmanager:f1:failed:2026-10-04T09:15:00Z"'
