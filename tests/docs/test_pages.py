"""Docs that run, beyond the README's usage block (hAQ): the pages' other commands, the options
INTERFACE.md names, the test counts docs/reliability.md quotes, and the layout the docs describe."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


def _blocks(path: str, heading: str, lang: str = "") -> list[str]:
    """The fenced blocks of a page's section (from ``heading`` to the next ``## ``)."""
    text = (ROOT / path).read_text()
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def _invoke(runner: CliRunner, args: list[str]) -> str:
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, f"{args}\n{result.stderr}"
    return result.stdout


def test_the_pages_commands_run_as_the_readme_shows(sqlite_url: str, runner: CliRunner,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """README "Pages for people": every `ledger` line, on a fresh store instead of demo.db, and the
    claim that `scripts/html-examples` runs them."""
    monkeypatch.chdir(ROOT)
    script = (ROOT / "scripts" / "html-examples").read_text().replace("$out/", "docs/examples/")
    lines = [line for block in _blocks("README.md", "## Pages for people") for line in block.splitlines()
             if line.startswith("ledger ")]
    assert len(lines) >= 5
    pages = []
    for line in lines:
        command, _, target = line.partition(" > ")
        args = shlex.split(command)[1:]
        assert args[:2] == ["--store", "sqlite:///demo.db"], line
        assert " ".join(["ledger", *args[2:]]) in script, f"scripts/html-examples does not run: {line}"
        result = runner.invoke(cli, ["--store", sqlite_url, *args[2:]], catch_exceptions=False)
        assert result.exit_code == 0, f"{line}\n{result.stderr}"
        if target:
            assert target.endswith(".html")
            pages.append(result.stdout)
        if args[2] == "import":  # "the tickets the demo records for B, so importing them adds nothing"
            assert result.stderr.startswith("imported 0 events, "), result.stderr
    assert len(pages) == 2
    for page in pages:
        assert page.startswith("<!DOCTYPE html>")
        assert "<script" not in page


def test_moving_a_ledger_to_postgresql_keeps_it(sqlite_url: str, pg_url: str, runner: CliRunner,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """README: `ledger events | ledger --store postgresql://... import -` keeps every recorded_at
    (the target needs no `ledger init`), so as-of replays answer the same."""
    monkeypatch.chdir(ROOT)
    _invoke(runner, ["--store", sqlite_url, "contract", "register", "ledger/examples/sla-a.toml"])
    _invoke(runner, ["--store", sqlite_url, "import", "tests/data/sample.ndjson"])
    exported = _invoke(runner, ["--store", sqlite_url, "events"])
    result = runner.invoke(cli, ["--store", pg_url, "import", "-"], input=exported, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert _invoke(runner, ["--store", pg_url, "events"]) == exported
    first = json.loads(exported.splitlines()[0])["recorded_at"]
    for when in (["--as-of", first], ["--position", "5"], []):
        audit = ["audit", "--contract", "sla-a-2026", "--month", "2026-10", *when, "--format", "json"]
        moved, held = (_invoke(runner, ["--store", url, *audit]) for url in (pg_url, sqlite_url))
        assert moved == held
    heads = {_invoke(runner, ["--store", url, "verify"]) for url in (sqlite_url, pg_url)}
    assert len(heads) == 1


def test_projections_status_prints_what_reporting_md_shows(store_url: str, runner: CliRunner,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    _invoke(runner, ["--store", store_url, "contract", "register", "ledger/examples/sla-a.toml"])
    _invoke(runner, ["--store", store_url, "import", "tests/data/sample.ndjson"])
    done = _invoke(runner, ["--store", store_url, "projections", "run", "--once"])
    assert done == "reporting at position 10\n"
    status = _invoke(runner, ["--store", store_url, "projections", "status"])
    assert re.fullmatch(r"reporting\tposition=10\thead=10\tlag=0\n?", status), status
    shown = json.loads(_invoke(runner, ["--store", store_url, "projections", "status", "--format", "json"]))
    assert shown == [{"projection": "reporting", "position": 10, "head": 10, "lag": 0, "failed": 0,
                      "failures": []}]
    text = (ROOT / "docs" / "reporting.md").read_text()
    assert "reporting\tposition=1840\thead=1843\tlag=3" in text  # the page's example has this shape
    for flags in ("--once", "--interval 5"):
        assert f"ledger projections run {flags}" in text


# INTERFACE.md sections 4, 6.3, 7, 8 and 9: each command and the options it names.
SPEC_OPTIONS: dict[tuple[str, ...], tuple[str, ...]] = {
    (): ("--store",),
    ("init",): (),
    ("contract", "register"): (),
    ("contract", "amend"): (),
    ("contract", "list"): (),
    ("contract", "show"): (),
    ("append",): ("--json",),
    ("import",): (),
    ("events",): ("--service", "--since", "--until"),
    ("report",): ("--contract", "--month", "--format", "table", "json", "csv", "html", "ndjson"),
    ("audit",): ("--contract", "--month", "--as-of", "--position", "--format", "text", "json", "html"),
    ("verify",): (),
    ("support",): ("--contract", "--month", "--as-of", "--position", "--format", "table", "json", "csv",
                   "ndjson"),
    ("calendar", "pin"): ("--country", "--years"),
    ("calendar", "show"): ("--country", "--year"),
    ("checkpoint",): ("--size", "--sign"),
    ("checkpoint", "verify"): ("--key",),
    ("proof", "inclusion"): ("--position", "--size"),
    ("proof", "consistency"): ("--from", "--to"),
    ("serve",): ("--listen", "--map", "--insecure-local", "127.0.0.1:8080"),
}


def _commands(group: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in sorted(getattr(group, "commands", {}).items()):
        found += _commands(sub, (*path, name))
    return found


def test_every_option_the_interface_names_is_there(runner: CliRunner) -> None:
    for command, options in SPEC_OPTIONS.items():
        shown = _invoke(runner, [*command, "--help"])
        for option in options:
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", shown), (command, option)


def test_help_texts_show_no_source_markup(runner: CliRunner) -> None:
    """Click prints docstrings as written: reST markup (``x``, :func:) shows as it is."""
    commands = _commands(cli)
    assert {c for c in SPEC_OPTIONS} <= set(commands)
    for command in commands:
        shown = _invoke(runner, [*command, "--help"])
        assert "``" not in shown, (command, shown)
        assert not re.search(r":(func|class|mod|meth):", shown), (command, shown)


def test_the_test_counts_reliability_md_quotes() -> None:
    """Each "Re-run: `.venv/bin/pytest FILES -q` (N tests" names as many tests as pytest collects."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    quoted = re.findall(r"Re-run: `\.venv/bin/pytest ([^`]*?) -q`\s*\((\d+) tests", text)
    assert len(quoted) >= 4
    files = sorted({f for paths, _ in quoted for f in paths.split()})
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *files], cwd=ROOT, capture_output=True, text=True, check=False)
    per_file: dict[str, int] = {}
    for line in done.stdout.splitlines():
        if "::" in line:
            name = line.split("::", 1)[0]
            per_file[name] = per_file.get(name, 0) + 1
    for paths, count in quoted:
        assert sum(per_file.get(f, 0) for f in paths.split()) == int(count), (paths, count)


def test_the_layout_names_every_module_and_only_modules_that_exist() -> None:
    """docs/architecture.md and the README's Layout name each module of the three packages, and
    every path they name exists."""
    named = (ROOT / "docs" / "architecture.md").read_text() + (ROOT / "README.md").read_text().split(
        "## Layout", 1)[1]
    ticks = set(re.findall(r"`([^`\s]+)`", named))
    folders = ("ledger", "ledger/persistence", "ledger/ingest", "projections", "projections/tracked", "cli")
    for folder in folders:
        for module in sorted((ROOT / folder).glob("*.py")):
            if module.stem != "__init__":
                path = f"{folder}/{module.name}"
                assert {module.stem, module.name, path} & ticks, f"{path} is named nowhere"
    for path in set(re.findall(r"`((?:ledger|projections|cli|tests|benchmarks|scripts)/[\w/.-]+)`", named)):
        assert (ROOT / path.rstrip("/")).exists(), path


def test_the_targets_performance_md_states_are_the_benchmarks() -> None:
    """The "What each figure measures" table states the targets `benchmarks.run` checks."""
    from benchmarks import run

    table = (ROOT / "docs" / "performance.md").read_text().split("## What each figure measures", 1)[1]
    table = table.split("\n## ", 1)[0]
    rows = {cells[1].strip(): cells[-2].strip() for line in table.splitlines()
            if line.startswith("| `") and len(cells := line.split("|")) >= 4}
    assert f"ledger >= {run.IMPORT_VS_RAW} x raw" in rows["`import`"]
    assert f"ledger (largest size) >= {run.IMPORT_VS_NAIVE:.0f} x naive" in rows["`naive`"]
    assert rows["`report`, `audit`"] == f"report < {run.REPORT_MAX_S:.0f} s"
    assert rows["`report-growth`"] == f"< {run.REPORT_GROWTH}"
    assert f">= {run.REBUILD_MIN:,.0f} events/s" in rows["`rebuild`"]
    assert f"<= {run.MEMORY_FLAT}" in rows["`memory`"]


def test_every_name_where_things_plug_in_names_is_defined() -> None:
    """docs/architecture.md, "Where things plug in": each code name it gives (`_KEY_FIELD`,
    `Directory.owner`, ...) is defined in the sources, so a rename cannot leave the recipe behind."""
    text = (ROOT / "docs" / "architecture.md").read_text().split("## Where things plug in", 1)[1]
    names = {t for t in re.findall(r"`([A-Za-z_][\w.]*)`", text)
             if not t.endswith(".py") and ("_" in t or t != t.lower())}
    assert len(names) >= 20
    source = "\n".join(p.read_text() for folder in ("ledger", "projections", "cli", "tests")
                       for p in (ROOT / folder).rglob("*.py"))
    for name in sorted(names):
        last = name.rsplit(".", 1)[-1]
        defined = rf"^\s*(?:def|class) {last}\b|^\s*{last}\b\s*(?::[^=\n]*)?=|^\s*{last}: "
        assert re.search(defined, source, re.M), f"{name} is defined nowhere"


def test_events_since_until_keep_what_their_help_says(sqlite_url: str, runner: CliRunner,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`ledger events --help`: a point fact by its time, a window by its end (--since) and start
    (--until), and facts with no time of their own always."""
    monkeypatch.chdir(ROOT)
    _invoke(runner, ["--store", sqlite_url, "contract", "register", "ledger/examples/sla-a.toml"])
    _invoke(runner, ["--store", sqlite_url, "import", "tests/data/sample.ndjson"])
    help_text = " ".join(_invoke(runner, ["events", "--help"]).split())
    assert "(a window's: its end) is at or after this" in help_text
    assert "(a window's: its start) is before this" in help_text
    shown = _invoke(runner, ["--store", sqlite_url, "events", "--since", "2026-10-21T01:10:00Z",
                             "--until", "2026-10-21T01:20:00Z"])
    kept = [json.loads(line)["type"] for line in shown.splitlines()]
    # mw-7 runs 01:00-02:00 (kept), INC-8 opens at 01:05 and resolves at 01:35 (both outside).
    assert kept == ["contract_registered", "maintenance_announced"]
