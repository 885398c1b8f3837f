"""Several processes appending and importing at once, through the command line, on both stores."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec

from ledger.application import Ledger
from ledger.verify import verify
from tests.lines import import_lines

REPO = Path(__file__).resolve().parents[2]
LINE = '{"type":"probe_failed","service":"w","probe":"%s","at":"2026-10-04T09:15:00Z","id":"%s"}'


def ndjson(path: Path, ids: list[str]) -> Path:
    path.write_text("\n".join(LINE % (i, i) for i in ids) + "\n")
    return path


def ledger_cmd(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", "--store", url, *args]


def run_all(commands: list[list[str]]) -> list[tuple[str, str]]:
    """Start every command at once, wait for all; fail on any non-zero exit."""
    procs = [subprocess.Popen(c, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in commands]
    outputs = []
    for cmd, p in zip(commands, procs, strict=True):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"{cmd}: {err.decode()}"
        outputs.append((out.decode(), err.decode()))
    return outputs


def check_store(ledger: Ledger, expected_ids: set[str]) -> None:
    """Nothing lost, nothing duplicated, positions gap-free, chain valid."""
    records = list(ledger.records())
    ids = Counter(r.id for r in records)
    assert [i for i, n in ids.items() if n > 1] == []
    assert set(ids) == expected_ids
    assert [r.position for r in records] == list(range(1, len(expected_ids) + 1))
    assert ledger.recorder.last_position() == len(expected_ids)
    result = verify(ledger.recorder)
    assert result.ok, result.problem
    assert result.position == len(expected_ids)


def test_importers_and_appenders_at_once(store_url: str, ledger: Ledger, tmp_path: Path) -> None:
    a = [f"a{i}" for i in range(2000)]
    b = [f"b{i}" for i in range(2000)]
    # c overlaps b by half: shared facts must be recorded once, whoever wins.
    c = [f"b{i}" for i in range(1000, 2000)] + [f"c{i}" for i in range(1000)]
    files = {name: ndjson(tmp_path / f"{name}.ndjson", ids) for name, ids in (("a", a), ("b", b), ("c", c))}
    singles = [f"s{i}" for i in range(4)]
    commands = [
        ledger_cmd(store_url, "import", str(files["a"])),
        ledger_cmd(store_url, "import", str(files["a"])),  # the same file, twice at once
        ledger_cmd(store_url, "import", "-q", str(files["b"])),
        ledger_cmd(store_url, "import", "-q", str(files["c"])),
        *(ledger_cmd(store_url, "append", "--json", LINE % (s, s)) for s in singles),
        *(ledger_cmd(store_url, "append", "probe_recovered", "--service", "w", "--probe", s,
                     "--at", "2026-10-04T10:00:00Z", "--id", f"r-{s}") for s in singles),
    ]
    outputs = run_all(commands)
    # The two imports of `a` are all-or-nothing under the append lock: one did all, one nothing.
    summaries = sorted(err.strip() for _, err in outputs[:2])
    assert summaries[0].startswith("imported 0 events, 2000 already recorded"), summaries
    assert summaries[1].startswith("imported 2000 events, 0 already recorded"), summaries
    # Each append printed its own position, and no two printed the same one.
    positions = [int(out) for out, _ in outputs[4:]]
    assert len(set(positions)) == len(positions) == 8
    check_store(ledger, set(a) | set(b) | set(c) | set(singles) | {f"r-{s}" for s in singles})
    by_position = {r.position: r.id for r in ledger.records()}
    assert sorted(by_position[p] for p in positions) == sorted(singles + [f"r-{s}" for s in singles])


def test_one_file_imported_by_many_processes(store_url: str, ledger: Ledger, tmp_path: Path) -> None:
    ids = [f"x{i}" for i in range(3000)]
    file = ndjson(tmp_path / "x.ndjson", ids)
    outputs = run_all([ledger_cmd(store_url, "import", str(file)) for _ in range(4)])
    appended = [int(err.split()[1]) for _, err in outputs]
    assert sorted(appended) == [0, 0, 0, 3000]
    check_store(ledger, set(ids))
    # And the store is still writable where it should be: next position follows on.
    assert import_lines(ledger, [msgspec.json.encode({"type": "probe_failed", "service": "w", "probe": "z",
                                                     "at": "2026-10-04T09:15:00Z"})]).first_position == 3001
