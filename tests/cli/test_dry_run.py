"""`import --dry-run`, `contract validate` and `append --help` (issue 20): every check, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from ledger.events import OPS_TYPES

EXAMPLES = Path(__file__).resolve().parents[2] / "ledger" / "examples"


def run(url: str, *args: str, code: int = 0) -> tuple[str, str]:
    result = CliRunner().invoke(cli, ["--store", url, *args], catch_exceptions=False)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result.stdout, result.stderr


def state(url: str) -> tuple[str, str]:
    """What the store holds, as an auditor would compare it: every event, and verify's head."""
    return run(url, "events")[0], run(url, "verify")[0]


@pytest.fixture
def url(store_url: str) -> str:
    run(store_url, "init")
    run(store_url, "contract", "register", str(EXAMPLES / "sla-a.toml"))
    run(store_url, "append", "probe_failed", "--service", "workspace", "--probe", "paris",
        "--at", "2026-10-04T09:15:00Z", "--id", "p-1")
    return store_url


def lines(*facts: dict[str, object]) -> str:
    return "".join(json.dumps(f) + "\n" for f in facts)


NEW = lines(
    {"type": "probe_failed", "service": "workspace", "probe": "london", "at": "2026-10-04T09:16:00Z"},
    {"type": "incident_opened", "service": "workspace", "incident": "inc-1", "at": "2026-10-04T09:20:00Z",
     "impact": "outage"},
    # Already recorded, same content: skipped, as a real import would.
    {"type": "probe_failed", "service": "workspace", "probe": "paris", "at": "2026-10-04T09:15:00Z",
     "id": "p-1"},
)


def test_a_dry_run_says_what_the_import_would_do_and_writes_nothing(url: str, tmp_path: Path) -> None:
    path = tmp_path / "new.ndjson"
    path.write_text(NEW)
    before = state(url)
    _, said = run(url, "import", "--dry-run", str(path))
    assert state(url) == before
    assert said == "dry run: would import 2 events, 1 already recorded, 0 conflicting (positions 3-4); " \
                   "nothing written\n"
    # The real import does exactly what the dry run said.
    _, done = run(url, "import", str(path))
    assert done == "imported 2 events, 1 already recorded, 0 conflicting (positions 3-4)\n"


def test_a_dry_run_refuses_what_the_import_refuses(url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.ndjson"
    # Line 2 reuses incident id inc-9 for another service: a name the append path checks against the store.
    bad.write_text(NEW + lines(
        {"type": "incident_opened", "service": "workspace", "incident": "inc-9", "at": "2026-10-05T09:00:00Z",
         "impact": "outage"},
        {"type": "incident_opened", "service": "other", "incident": "inc-9", "at": "2026-10-05T09:00:00Z",
         "impact": "outage"},
    ))
    before = state(url)
    _, dry = run(url, "import", "--dry-run", str(bad), code=2)
    _, real = run(url, "import", str(bad), code=2)
    assert dry == real
    assert len(dry.splitlines()) == 1
    assert "line 5" in dry
    assert state(url) == before
    broken = tmp_path / "broken.ndjson"
    broken.write_text(NEW + "{not json\n")
    _, said = run(url, "import", "--dry-run", str(broken), code=2)
    assert "line 4" in said
    assert state(url) == before


def test_a_dry_run_of_a_webhook_payload(url: str, tmp_path: Path) -> None:
    payload = {"version": "4", "status": "firing", "alerts": [{
        "status": "firing", "labels": {"service": "workspace", "probe": "frankfurt"},
        "startsAt": "2026-10-06T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "ab12"}]}
    path = tmp_path / "hook.json"
    path.write_text(json.dumps(payload))
    before = state(url)
    _, said = run(url, "import", "--from", "alertmanager", "--dry-run", str(path))
    assert said.startswith("dry run: would import 1 event,")
    assert state(url) == before


def test_a_dry_run_creates_no_store(tmp_path: Path) -> None:
    path = tmp_path / "new.ndjson"
    path.write_text(NEW)
    missing = tmp_path / "none.db"
    _, said = run(f"sqlite:///{missing}", "import", "--dry-run", str(path), code=1)
    assert "not a ledger store" in said
    assert not missing.exists()


def amended(tmp_path: Path, extra: str, name: str = "amended.toml") -> Path:
    text = (EXAMPLES / "sla-a.toml").read_text()
    text = text.replace('id = "sla-a-2026"\n', f'id = "sla-a-2026"\n{extra}\n')
    path = tmp_path / name
    path.write_text(text.replace('target = "99.97"', 'target = "99.9"'))
    return path


def test_contract_validate_runs_the_checks_of_register_and_amend(url: str, tmp_path: Path) -> None:
    before = state(url)
    out, _ = run(url, "contract", "validate", str(EXAMPLES / "sla-b.toml"))
    assert out == "contract `sla-b-2026`: valid; `ledger contract register` would record it as version 1\n"
    out, _ = run(url, "contract", "validate", str(EXAMPLES / "sla-a.toml"))
    assert out == "contract `sla-a-2026`: valid; recorded as it is (version 1), nothing to do\n"
    good = amended(tmp_path, 'effective_from = "2026-11"', "good.toml")
    out, _ = run(url, "contract", "validate", str(good))
    assert out == "contract `sla-a-2026`: valid; `ledger contract amend` would record it as version 2\n"
    assert state(url) == before
    # The errors are the ones `register` and `amend` give, word for word.
    _, said = run(url, "contract", "validate", str(amended(tmp_path, "")), code=2)
    _, real = run(url, "contract", "register", str(amended(tmp_path, "")), code=2)
    assert said == real
    assert "use `ledger contract amend`" in said
    for extra in ('effective_from = "2026-13"', 'effective_from = "2026-11"\ntimezone = "Europe/Zurich"'):
        bad = amended(tmp_path, extra).read_text()
        if "Europe/Zurich" in bad:  # the amended zone replaces the registered one
            bad = bad.replace('timezone = "Europe/Paris"\n', "")
        bad_path = tmp_path / "bad.toml"
        bad_path.write_text(bad)
        bad = str(bad_path)
        _, said = run(url, "contract", "validate", bad, code=2)
        _, real = run(url, "contract", "amend", bad, code=2)
        assert said == real
        assert len(said.splitlines()) == 1
    assert state(url) == before
    run(url, "contract", "amend", str(good))
    out, _ = run(url, "contract", "validate", str(good))
    assert out == "contract `sla-a-2026`: valid; recorded as it is (version 2), nothing to do\n"


def test_append_help_lists_every_event_type_and_its_fields() -> None:
    result = CliRunner().invoke(cli, ["append", "--help"])
    assert result.exit_code == 0
    listed = {line.split()[0]: line.split()[1:] for line in result.stdout.split("(name?: optional):\n")[1]
              .splitlines() if line.startswith("  ") and not line.startswith("   ")}
    assert list(listed) == list(OPS_TYPES)
    assert listed["probe_failed"] == ["service", "probe", "at", "detail?", "id?"]
    assert "recorded_at" not in result.stdout.split("optional):")[1]
