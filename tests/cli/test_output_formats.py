"""Section 8 outputs through the CLI on both stores: byte-identical across stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from ledger.application import open_ledger
from ledger.demo_run import run_demo
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
