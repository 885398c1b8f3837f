"""Section 8 outputs through the CLI on both stores: byte-identical across stores."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.demo.run import run_demo
from cli.main import cli
from ledger.bootstrap import open_ledger
from tests.conftest import StepClock


def run(url: str, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, ["--store", url, *args], catch_exceptions=False)
    assert result.exit_code == code, result.stderr
    return result.stdout if code == 0 else result.stderr


@pytest.fixture
def twins(store_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The demo month on the store under test and on a second SQLite store, recorded alike."""
    urls = (store_url, f"sqlite:///{tmp_path / 'twin.db'}")
    for url in urls:
        led = open_ledger(url, clock=StepClock())
        try:
            run_demo(led)
        finally:
            led.close()
    return urls


PAGES = [
    ("report", "--contract", "sla-a-2026", "--month", "2026-10", "--format", "html"),
    ("report", "--contract", "sla-b-2026", "--month", "2026-10", "--format", "html"),
    ("audit", "--contract", "sla-d-2026", "--month", "2026-10", "--position", "200", "--format", "html"),
    ("audit", "--contract", "sla-c-fr-2026", "--month", "2026-10", "--format", "html"),
]


def test_html_pages_are_byte_identical_across_stores(twins: tuple[str, str]) -> None:
    a, b = twins
    for args in PAGES:
        page = run(a, *args)
        assert page.startswith("<!DOCTYPE html>")
        assert page == run(b, *args), args
        assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "https://" not in page


CONTRACTS = ["sla-a-2026", "sla-b-2026", "sla-c-en-2026", "sla-c-fr-2026", "sla-d-2026"]


@pytest.mark.parametrize("month", ["2026-10", "2026-09", "2026-11", "2025-01"])
def test_every_contract_of_a_month_equals_the_single_reports(twins: tuple[str, str], month: str) -> None:
    a, b = twins
    singles = [run(a, "report", "--contract", c, "--month", month, "--format", "json") for c in CONTRACTS]
    as_json = run(a, "report", "--month", month, "--format", "json")
    assert as_json == "[" + ",".join(s.rstrip("\n") for s in singles) + "]\n"
    assert run(a, "report", "--month", month, "--format", "ndjson") == "".join(singles)
    csv_singles = [run(a, "report", "--contract", c, "--month", month, "--format", "csv") for c in CONTRACTS]
    header = csv_singles[0].splitlines()[0]
    assert all(s.splitlines()[0] == header for s in csv_singles)
    as_csv = run(a, "report", "--month", month, "--format", "csv")
    assert as_csv == header + "\n" + "".join(s.split("\n", 1)[1] for s in csv_singles)
    table = run(a, "report", "--month", month)
    assert [line.split()[0] for line in table.splitlines()[2:]] == CONTRACTS
    for fmt in ("json", "ndjson", "csv", "table"):
        assert run(b, "report", "--month", month, "--format", fmt) == run(a, "report", "--month", month,
                                                                              "--format", fmt), fmt


def test_repeated_contract_options_pick_and_sort(twins: tuple[str, str]) -> None:
    a, _ = twins
    picked = json.loads(run(a, "report", "--month", "2026-10", "--contract", "sla-d-2026", "--contract",
                            "sla-a-2026", "--contract", "sla-d-2026", "--format", "json"))
    assert [r["contract"] for r in picked] == ["sla-a-2026", "sla-d-2026"]
    with_intervals = run(a, "report", "--month", "2026-10", "--contract", "sla-b-2026", "--contract",
                         "sla-a-2026", "--format", "csv", "--intervals")
    assert with_intervals.count("contract,month,start") == 1
    assert "not registered" in run(a, "report", "--month", "2026-10", "--contract", "nope", "--contract",
                                   "sla-a-2026", code=1)
    assert "exactly one --contract" in run(a, "report", "--month", "2026-10", "--format", "html", code=2)


def test_every_contract_of_an_empty_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    run(url, "init")
    assert run(url, "report", "--month", "2026-10", "--format", "json") == "[]\n"
    assert run(url, "report", "--month", "2026-10", "--format", "ndjson") == ""


def test_json_of_contract_list_and_verify(twins: tuple[str, str]) -> None:
    a, b = twins
    listed = json.loads(run(a, "contract", "list", "--format", "json"))
    assert [c["contract"] for c in listed] == CONTRACTS
    assert listed[0] == {"contract": "sla-a-2026", "customer": "Atelier Durand SARL", "service": "workspace",
                         "versions": 1, "timezone": "Europe/Paris", "effective_from": None, "position": 1}
    text = run(a, "verify")
    verified = json.loads(run(a, "verify", "--format", "json"))
    assert verified["ok"] is True
    assert f"head {verified['head']}" in text
    assert f"ok: {verified['position']} events" in text
    for args in (("contract", "list", "--format", "json"), ("verify", "--format", "json")):
        assert run(a, *args) == run(b, *args)


def test_events_after_a_position_and_of_a_type(twins: tuple[str, str]) -> None:
    a, b = twins
    every = [json.loads(line) for line in run(a, "events").splitlines()]
    after = [json.loads(line) for line in run(a, "events", "--after-position", "300").splitlines()]
    assert after == [e for e in every if e["position"] > 300]
    assert run(a, "events", "--after-position", str(len(every))) == ""
    typed = run(a, "events", "--type", "credit_claim_filed", "--type", "maintenance_completed",
                "--after-position", "10", "--service", "workspace")
    want = [e for e in every if e["type"] in ("credit_claim_filed", "maintenance_completed")
            and e["position"] > 10]
    assert [json.loads(line) for line in typed.splitlines()] == [
        e for e in want if e.get("contract") == "sla-a-2026" or e["id"].startswith("demo:workspace")]
    assert typed
    assert run(a, "events", "--after-position", "100", "--type", "probe_failed") == run(
        b, "events", "--after-position", "100", "--type", "probe_failed")
    assert "--type 'nope'" in run(a, "events", "--type", "nope", code=2)
