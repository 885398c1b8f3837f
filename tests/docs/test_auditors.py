"""docs/auditors.md: the hashlib-only script checks real proofs, and refuses altered ones."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from tests.integration.test_merkle_store import lines

ROOT = Path(__file__).resolve().parents[2]


def script() -> str:
    text = (ROOT / "docs" / "auditors.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block is not None
    return block.group(1)


def test_the_script_is_ten_lines_or_so() -> None:
    assert len(script().strip().splitlines()) <= 14


def test_the_script_checks_inclusion_proofs(sqlite_url: str, runner: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"\n".join(lines(0, 13)) + b"\n")
    assert runner.invoke(cli, ["--store", sqlite_url, "import", str(data)]).exit_code == 0
    events = runner.invoke(cli, ["--store", sqlite_url, "events"]).stdout.splitlines()
    (tmp_path / "check.py").write_text(script())

    def check(position: int, size: int, line: str, root: str | None = None) -> int:
        out = runner.invoke(cli, ["--store", sqlite_url, "proof", "inclusion", "--position", str(position),
                                  "--size", str(size)])
        proof = json.loads(out.stdout)
        (tmp_path / "proof.json").write_text(out.stdout)
        (tmp_path / "line.txt").write_text(line + "\n")
        done = subprocess.run([sys.executable, "-I", "check.py", root or proof["root"]], cwd=tmp_path,
                              capture_output=True, check=False)
        return done.returncode

    for position, size in ((1, 1), (1, 13), (6, 9), (12, 13), (13, 13), (8, 8)):
        assert check(position, size, events[position - 1]) == 0
    assert check(4, 13, events[4]) == 1  # another fact's line
    assert check(4, 13, events[3].replace("svc-3", "svc-4")) == 1  # an altered line
    cp = json.loads(runner.invoke(cli, ["--store", sqlite_url, "checkpoint", "--size", "12"]).stdout)
    assert check(4, 13, events[3], cp["root"]) == 1  # another log's root


@pytest.mark.parametrize("name", ["auditors.md"])
def test_the_page_names_the_commands(name: str) -> None:
    text = (ROOT / "docs" / name).read_text()
    for command in ("ledger checkpoint", "ledger checkpoint verify", "ledger proof inclusion",
                    "ledger proof consistency"):
        assert command in text
