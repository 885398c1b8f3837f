"""A fast start (issue 17): a read-only command imports only what it uses; ``--help`` still lists all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cli.main import LAZY_COMMANDS, cli

ROOT = Path(__file__).resolve().parents[2]
# What a report never needs: writing, importing, serving, the support clocks, the holiday package, the
# eventsourcing library (SQLite is read with sqlite3 alone).
NOT_FOR_REPORT = ("holidays", "eventsourcing", "ledger.ingest", "ledger.persistence.append",
                  "concurrent.futures", "starlette", "uvicorn", "csv", "socket", "ledger.support_hours",
                  "cli.support", "cli.serve", "cli.server", "cli.projections", "psycopg", "tomllib",
                  # OpenSSL (ledger.hashing), the dataclass machinery, the support report's types
                  "hashlib", "_hashlib", "dataclasses", "projections.support_model",
                  # a checkpoint key file, a password in a message, a site hook of the editable install
                  "pathlib", "urllib.parse",
                  # the other commands (`cli.commands`: their click options are made when it is imported)
                  "cli.commands",
                  # click translates its --help and --version texts with gettext, which imports locale
                  "locale",
                  # signatures and proofs, the tree's writes (a report names its log by merkle_read.root_of)
                  "ledger.checkpoint", "ledger.persistence.merkle_store",
                  # what a new fact or policy must hold, the write path's row tuples
                  "ledger.admission", "ledger.policy_check", "ledger.persistence.rows",
                  # exact ratios are integer pairs (projections.credit): the import compiles a pattern
                  "fractions")

_PROBE = """
import sys
from cli.main import cli
try:
    cli.main(sys.argv[1:], prog_name="ledger")
except SystemExit as exc:
    assert not exc.code, exc.code
print("\\n".join(sorted(sys.modules)), file=sys.stderr)
"""


def _modules(url: str, *args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", _PROBE, "--store", url, *args], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return set(proc.stderr.split())


def _loaded(modules: set[str], name: str) -> bool:
    return name in modules or any(m.startswith(name + ".") for m in modules)


def test_report_imports_only_what_it_uses(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert CliRunner().invoke(cli, ["--store", url, "demo"]).exit_code == 0
    report = ("report", "--contract", "sla-a-2026", "--month", "2026-10", "--format", "json")
    _modules(url, *report)  # the first run may fill the holiday cache
    modules = _modules(url, *report)
    assert [m for m in NOT_FOR_REPORT if _loaded(modules, m)] == []
    for m in ("ledger.persistence.sqlite.reads", "projections.availability"):
        assert m in modules  # the probe sees what the command did load
    events = _modules(url, "events", "--type", "contract_registered")
    assert [m for m in ("holidays", "ledger.ingest", "concurrent.futures", "csv", "projections.availability")
            if _loaded(events, m)] == []


def test_help_lists_every_command() -> None:
    out = CliRunner().invoke(cli, ["--help"]).output
    listed = {line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()}
    assert set(LAZY_COMMANDS) <= listed
    assert {"report", "audit", "events", "verify", "contract", "import", "init", "demo"} <= listed
    for name in LAZY_COMMANDS:
        sub = CliRunner().invoke(cli, [name, "--help"])
        assert sub.exit_code == 0
        assert "Usage: " in sub.output


def test_the_console_script_ends_with_the_commands_output_and_code(tmp_path: Path) -> None:
    # main() skips the interpreter's teardown after a read: same bytes, same exit code.
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert CliRunner().invoke(cli, ["--store", url, "demo"]).exit_code == 0
    args = ["--store", url, "report", "--contract", "sla-d-2026", "--month", "2026-10"]
    run = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, capture_output=True,
                         check=False)
    assert run.returncode == 0
    assert run.stdout == CliRunner().invoke(cli, args).stdout_bytes
    assert run.stdout.count(b"\n") > 10
    bad = subprocess.run([sys.executable, "-m", "cli.main", *args[:3], "--contract", "nope", "--month",
                          "2026-10"], cwd=ROOT, capture_output=True, check=False)
    assert (bad.returncode, bad.stdout, bad.stderr) == (1, b"", b"error: contract `nope` is not registered\n")


# The CLI's own process: ``cli`` is first imported as the parent of ``-m cli.main`` (argv[0] "-m").
_GC_PROBE = """
import sys
sys.argv[0] = "-m"
import gc
import click
import cli.main as m
print("paused" if not gc.isenabled() else "running")
@m.cli.command()
def probe() -> None:
    click.echo(f"enabled={gc.isenabled()} frozen={gc.get_freeze_count() > 0}")
sys.argv[1:] = ["probe"]
m.main()
"""


def test_the_cli_pauses_the_collector_while_importing_and_resumes_it_for_the_command() -> None:
    proc = subprocess.run([sys.executable, "-c", _GC_PROBE], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["paused", "enabled=True frozen=True"]


def test_another_process_importing_cli_keeps_its_collector() -> None:
    code = "import gc, cli, cli.main\nprint(gc.isenabled(), gc.get_freeze_count())"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["True", "0"]


def test_help_and_version_options_read_as_clicks() -> None:
    # Made without gettext (cli/context.py): the same text click's own options print.
    from importlib.metadata import version

    out = CliRunner().invoke(cli, ["--version"], prog_name="ledger")
    assert (out.exit_code, out.output) == (0, f"ledger, version {version('availability-ledger')}\n")
    for args in (["--help"], ["report", "--help"]):
        out = CliRunner().invoke(cli, args)
        assert out.exit_code == 0
        assert "  --help " in out.output
        assert "Show this message and exit." in out.output
    assert "Show the version and exit." in CliRunner().invoke(cli, ["--help"]).output
