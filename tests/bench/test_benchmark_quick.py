"""The benchmark tooling: the generator's guarantees, and the quick run printing every figure.

Performance targets are not asserted here: they live in the script's output
(PASS/FAIL per figure), so a slow machine fails no test.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

from benchmarks import generate
from ledger.admission import decode_fact
from ledger.events import OPS_TYPES, SUPPORT_TAGS, ProbeFailed, ProbeRecovered
from ledger.policy import resolve
from ledger.policy_check import load_policy

ROOT = Path(__file__).resolve().parents[2]


def _lines(events: int, services: int = 20, seed: int = 3, per: int = 60) -> list[str]:
    return list(generate.generate_lines(events, services, seed, per_service_month=per))


def test_generator_is_deterministic_for_a_seed() -> None:
    assert _lines(3000) == _lines(3000)
    assert _lines(3000) != _lines(3000, seed=4)


def test_smaller_file_is_a_prefix_of_a_larger_one() -> None:
    # Per-(month, service) seeding: a 1M store holds the same first months as a 10M one.
    assert _lines(5000)[:1700] == _lines(1700)


def test_every_line_decodes_and_every_event_type_occurs() -> None:
    lines = _lines(30_000)
    assert len(lines) == 30_000
    facts = [decode_fact(line.encode()) for line in lines]
    # The generator makes no support facts (issue 18) yet.
    assert {type(f).__struct_config__.tag for f in facts} == set(OPS_TYPES) - SUPPORT_TAGS
    ids = [f.id for f in facts]
    assert None not in ids
    assert len(set(ids)) == len(ids)


def test_arrival_order_differs_from_event_time_order() -> None:
    # Realistic exports: some probe reports reach the ledger after later ones.
    facts = [decode_fact(line.encode()) for line in _lines(5000)]
    probe_times = [f.at for f in facts if isinstance(f, ProbeFailed | ProbeRecovered)]
    assert probe_times != sorted(probe_times)


def test_generator_streams_without_materialising() -> None:
    # A trillion-event stream yields its first lines at once: nothing is built up front.
    stream = generate.generate_lines(10**12, 1000, 1)
    assert isinstance(stream, types.GeneratorType)
    first = list(itertools.islice(stream, 10))
    assert len(first) == 10


def test_write_events_writes_exactly_n_lines(tmp_path: Path) -> None:
    out = tmp_path / "events.ndjson"
    with open(out, "w", encoding="ascii") as f:
        n = generate.write_events(f, 12_345, 7, 2)
    assert n == 12_345
    assert out.read_text().count("\n") == 12_345


def test_contract_files_are_valid_policies_for_the_generated_services(tmp_path: Path) -> None:
    paths = generate.write_contracts(10, tmp_path)
    assert len(paths) == 10
    services = set()
    for i, path in enumerate(paths):
        policy = load_policy(path.read_bytes(), source=str(path))
        resolve(policy)
        assert policy.contract.id == generate.contract_id(i)
        services.add(policy.contract.service)
    assert services == {generate.service_name(i) for i in range(10)}


def test_generate_command_line(tmp_path: Path) -> None:
    out = tmp_path / "e.ndjson"
    subprocess.run(
        [sys.executable, "-m", "benchmarks.generate", "--events", "2000", "--services", "5", "--seed", "9",
         "--out", str(out), "--contracts-dir", str(tmp_path / "contracts")],
        cwd=ROOT, check=True, capture_output=True, timeout=60,
    )
    assert out.read_text().count("\n") == 2000
    assert len(list((tmp_path / "contracts").glob("*.toml"))) == 5


FIGURES = (
    r"startup {s} cli --version \d+ ms \(info: .*\)",
    r"import {s} ledger 5000 events [\d.]+ s \d+ ev/s peak \d+ MiB"
    r" \| raw (executemany|copy) [\d.]+ s \d+ ev/s \| ratio [\d.]+"
    r" \(median of 3 alternated pairs: ([\d.]+/[\d.]+ s [\d.]+(, )?){{3}}\); CPU ledger/raw"
    r" ([\d.]+/[\d.]+ s(, )?){{3}} \(clients only\); load .* on \d+ cores \(target >= 0.6\) (PASS|FAIL)",
    r"import {s} ledger 15000 events .* (PASS|FAIL)",
    r"report {s} 5000 events median \d+ ms \(runs \d+, \d+, \d+, \d+, \d+\)"
    r" \(target < 1000 ms\) (PASS|FAIL)",
    r"report {s} 15000 events median \d+ ms .* (PASS|FAIL)",
    r"audit {s} 5000 events median \d+ ms .* (PASS|FAIL)",
    r"audit {s} 15000 events median \d+ ms .* (PASS|FAIL)",
    r"rebuild {s} 50\d\d events [\d.]+ s \d+ ev/s peak \d+ MiB .*\(target >= 200000 ev/s\) (PASS|FAIL)",
    r"rebuild {s} 15\d\d\d events .* (PASS|FAIL)",
    r"naive {s} eventsourcing save-per-event 1000 events [\d.]+ s \d+ ev/s \| ledger import \d+ ev/s"
    r" \| ratio [\d.]+ \(target >= 30\) (PASS|FAIL)",
    r"report-growth {s} 5000 -> 15000 events \d+ ms -> \d+ ms ratio [\d.]+ \(target < 1.5\) (PASS|FAIL)",
    r"memory {s} import 5000 events \d+ MiB -> 15000 events \d+ MiB ratio [\d.]+ .* (PASS|FAIL)",
    r"memory {s} rebuild 5000 events \d+ MiB -> 15000 events \d+ MiB ratio [\d.]+ .* (PASS|FAIL)",
)


def test_quick_run_prints_every_figure_on_both_stores(tmp_path: Path, pg_admin_url: str) -> None:
    out = tmp_path / "results.json"
    env = {**os.environ, "LEDGER_BENCH_PG": pg_admin_url}
    env.pop("LEDGER_STORE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out), "--workdir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for store in ("sqlite", "postgres"):
        for pattern in FIGURES:
            rx = re.compile(pattern.format(s=store))
            found = any(rx.fullmatch(line) for line in lines)
            assert found, f"no line matches {rx.pattern!r}:\n{proc.stdout}"
    results = json.loads(out.read_text())
    assert {r["figure"] for r in results} >= {
        "import", "report", "audit", "rebuild", "naive", "report-growth", "memory-import", "memory-rebuild"
    }
    assert all(r["line"] in lines for r in results)
    # Everything the run created in its working directory is left for tmp_path to remove,
    # but no store is kept: SQLite files are deleted after each size.
    assert not list(tmp_path.glob("ledger-*.db"))


def test_proofs_quick_run_prints_every_figure(tmp_path: Path) -> None:
    """``benchmarks.proofs --quick`` on SQLite: the import pair, the proofs at two sizes, the ratios."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.proofs", "--quick", "--stores", "sqlite",
         "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = [line for line in done.stdout.splitlines() if not line.startswith("#")]
    assert re.fullmatch(r"merkle import sqlite 5000 events: with tree / without, .* (PASS|FAIL)", figures[0])
    assert [line.split(":")[0] for line in figures[1:]] == [
        "merkle proofs sqlite 2000 events", "merkle proofs sqlite 8000 events",
        "merkle flat sqlite checkpoint", "merkle flat sqlite inclusion", "merkle flat sqlite consistency"]
