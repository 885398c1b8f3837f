"""docs/auditors.md: the hashlib-only script checks real proofs, and refuses altered ones."""

from __future__ import annotations

import hashlib
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


def script(which: int = 0) -> str:
    """The page's first Python block (inclusion), or its second (consistency)."""
    text = (ROOT / "docs" / "auditors.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)[which]


def test_the_script_is_ten_lines_or_so() -> None:
    assert len(script().strip().splitlines()) <= 14
    assert len(script(1).strip().splitlines()) <= 20


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
        held = {"size": size, "root": root or proof["root"]}  # the checkpoint the auditor holds
        (tmp_path / "cp.json").write_text(json.dumps(held))
        done = subprocess.run([sys.executable, "-I", "check.py", "cp.json"], cwd=tmp_path,
                              capture_output=True, check=False)
        return done.returncode

    for position, size in ((1, 1), (1, 13), (6, 9), (12, 13), (13, 13), (8, 8)):
        assert check(position, size, events[position - 1]) == 0
    assert check(4, 13, events[4]) == 1  # another fact's line
    assert check(4, 13, events[3].replace("svc-3", "svc-4")) == 1  # an altered line
    cp = json.loads(runner.invoke(cli, ["--store", sqlite_url, "checkpoint", "--size", "12"]).stdout)
    assert check(4, 13, events[3], cp["root"]) == 1  # another log's root


def test_the_script_takes_the_size_from_the_checkpoint(sqlite_url: str, runner: CliRunner,
                                                       tmp_path: Path) -> None:
    """A proof for another size than the auditor's checkpoint is refused (hAN). The page's script
    read the size from the vendor's proof: a proof "position 1 of size 1" with the path [leaf 1]
    reached the root of size 2 from the line of position 2, and the script said the line was at
    position 1; "position 2 of size 2" did the same for the line of position 3 under a size-3 root."""
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"\n".join(lines(0, 3)) + b"\n")
    assert runner.invoke(cli, ["--store", sqlite_url, "import", str(data)]).exit_code == 0
    events = runner.invoke(cli, ["--store", sqlite_url, "events"]).stdout.splitlines()
    (tmp_path / "check.py").write_text(script())

    def leaf(line: str) -> str:
        return "sha256:" + hashlib.sha256(b"\0" + line.encode()).hexdigest()

    def node(left: str, right: str) -> str:
        both = bytes.fromhex(left[7:]) + bytes.fromhex(right[7:])
        return "sha256:" + hashlib.sha256(b"\1" + both).hexdigest()

    def check(held: int, proof: dict[str, object], line: str) -> int:
        cp = runner.invoke(cli, ["--store", sqlite_url, "checkpoint", "--size", str(held)]).stdout
        (tmp_path / "cp.json").write_text(cp)  # as `ledger checkpoint` printed it
        (tmp_path / "proof.json").write_text(json.dumps(proof))
        (tmp_path / "line.txt").write_text(line + "\n")
        return subprocess.run([sys.executable, "-I", "check.py", "cp.json"], cwd=tmp_path,
                              capture_output=True, check=False).returncode

    two = node(leaf(events[0]), leaf(events[1]))
    assert check(2, {"position": 2, "size": 2, "path": [leaf(events[0])]}, events[1]) == 0  # the honest proof
    assert check(2, {"position": 1, "size": 1, "path": [leaf(events[0])]}, events[1]) == 1
    assert check(3, {"position": 2, "size": 2, "path": [two]}, events[2]) == 1
    assert check(3, {"position": 4, "size": 3, "path": [two]}, events[2]) == 1  # beyond the checkpoint


def test_the_script_checks_consistency_proofs(sqlite_url: str, runner: CliRunner, tmp_path: Path) -> None:
    """Every pair of sizes up to 13, and proofs or checkpoints that do not go together."""
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"\n".join(lines(0, 13)) + b"\n")
    assert runner.invoke(cli, ["--store", sqlite_url, "import", str(data)]).exit_code == 0
    (tmp_path / "extends.py").write_text(script(1))

    def out(*args: str) -> str:
        result = runner.invoke(cli, ["--store", sqlite_url, *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    cps = {n: out("checkpoint", "--size", str(n)) for n in range(1, 14)}

    def check(old: int | str, new: int | str, proof: str) -> int:
        (tmp_path / "old.json").write_text(cps[old] if isinstance(old, int) else old)
        (tmp_path / "new.json").write_text(cps[new] if isinstance(new, int) else new)
        (tmp_path / "consistency.json").write_text(proof)
        return subprocess.run([sys.executable, "-I", "extends.py", "old.json", "new.json"], cwd=tmp_path,
                              capture_output=True, check=False).returncode

    proofs = {(m, n): out("proof", "consistency", "--from", str(m), "--to", str(n))
              for n in range(1, 14) for m in range(1, n + 1)}
    for (m, n), proof in proofs.items():
        assert check(m, n, proof) == 0, (m, n)
    report_cp = json.dumps({"size": 5, "root": json.loads(cps[5])["root"]})  # a report's checkpoint
    assert check(report_cp, 13, proofs[5, 13]) == 0
    assert check(4, 13, proofs[5, 13]) == 1  # not the proof between these two
    assert check(5, 12, proofs[5, 13]) == 1
    other = json.dumps({**json.loads(cps[5]), "root": json.loads(cps[6])["root"]})
    assert check(other, 13, proofs[5, 13]) == 1  # the log shown was not this one
    for m, n in ((5, 13), (4, 13), (1, 2), (8, 12)):
        body = json.loads(proofs[m, n])
        for i in range(len(body["path"])):
            path = list(body["path"])
            path[i] = "sha256:" + ("0" * 64 if path[i] != "sha256:" + "0" * 64 else "1" * 64)
            assert check(m, n, json.dumps({**body, "path": path})) == 1, (m, n, i)
        assert check(m, n, json.dumps({**body, "path": body["path"][:-1]})) == 1
        assert check(m, n, json.dumps({**body, "path": [*body["path"], body["path"][0]]})) == 1
    assert check(3, 3, json.dumps({**json.loads(proofs[3, 3]), "path": [json.loads(cps[3])["root"]]})) == 1
    assert check(6, 7, json.dumps({**json.loads(proofs[6, 7]), "path": []})) == 1


@pytest.mark.parametrize("name", ["auditors.md"])
def test_the_page_names_the_commands(name: str) -> None:
    text = (ROOT / "docs" / name).read_text()
    for command in ("ledger checkpoint", "ledger checkpoint verify", "ledger proof inclusion",
                    "ledger proof consistency"):
        assert command in text
