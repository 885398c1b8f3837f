"""Scale-out with PostgreSQL's own means (issue 17): read-only commands on a hot standby.

A throwaway primary of the test's own, a streaming replica made from it with
``pg_basebackup -R`` on another port; facts appended on the primary, read on the
standby once replayed: every read-only command prints byte for byte what it prints
on the primary, and writes are refused there in one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import psycopg
import pytest
from click.testing import CliRunner

from cli.main import cli
from ledger.bootstrap import in_recovery, open_ledger
from tests.pgserver import hot_standby, throwaway_cluster, wait_for_replay, with_db

ROOT = Path(__file__).resolve().parents[2]
READS = (
    ("report", "--contract", "sla-a-2026", "--month", "2026-10", "--format", "json"),
    ("report", "--month", "2026-10", "--format", "csv"),
    ("audit", "--contract", "sla-b-2026", "--month", "2026-10", "--position", "40"),
    ("audit", "--contract", "sla-a-2026", "--month", "2026-10", "--as-of", "2999-01-01T00:00:00Z",
     "--format", "json"),
    ("checkpoint",),
    ("checkpoint", "--size", "10"),
    ("proof", "inclusion", "--position", "5"),
    ("proof", "consistency", "--from", "3", "--to", "40"),
    ("report", "--contract", "sla-a-2026", "--month", "2026-10", "--format", "html"),
    ("events", "--service", "workspace"),
    ("verify", "--format", "json"),
    ("contract", "list"),
    ("contract", "show", "sla-c-en-2026"),
    ("projections", "status", "--format", "json"),
    ("support", "--month", "2026-10", "--format", "json"),
)
WRITES = (
    ("init",),
    ("append", "--json", '{"type":"probe_failed","service":"x","probe":"p","at":"2026-10-01T00:00:00Z"}'),
    ("import", "-"),
    ("contract", "register", str(ROOT / "ledger/examples/sla-a.toml")),
    ("projections", "rebuild"),
    ("projections", "run", "--once"),
)


class _Done(NamedTuple):
    returncode: int
    stdout: bytes
    stderr: bytes


def _ledger(url: str, *args: str) -> _Done:
    # In-process (CliRunner): the same commands, without paying a start-up per call.
    result = CliRunner().invoke(cli, ["--store", url, *args], input=b"")
    return _Done(result.exit_code, result.stdout_bytes, result.stderr_bytes)


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[str, str]]:
    """(primary URL, standby URL) of one database holding the demo and its reporting view."""
    with throwaway_cluster() as primary, hot_standby(primary) as standby:
        with psycopg.connect(primary.url, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "ledger"')  # after the base backup: it reaches the standby by WAL
        on_primary, on_standby = with_db(primary.url, "ledger"), with_db(standby.url, "ledger")
        for args in (("demo",), ("projections", "rebuild")):
            done = _ledger(on_primary, *args)
            assert done.returncode == 0, done.stderr
        wait_for_replay(primary.url, standby.url)
        yield on_primary, on_standby


@pytest.mark.parametrize("args", READS, ids=lambda a: " ".join(a[:3]) + f"-{len(a)}")
def test_reads_on_the_standby_match_the_primary(pair: tuple[str, str], args: tuple[str, ...]) -> None:
    primary, standby = (_ledger(url, *args) for url in pair)
    assert primary.returncode == 0, primary.stderr
    assert standby.returncode == 0, standby.stderr
    assert standby.stdout == primary.stdout
    assert len(primary.stdout) > 40


def test_appended_on_the_primary_read_on_the_standby(pair: tuple[str, str]) -> None:
    on_primary, on_standby = pair
    fact = '{"type":"probe_failed","service":"workspace","probe":"late","at":"2026-10-30T10:00:00Z"}'
    done = _ledger(on_primary, "append", "--json", fact)
    assert done.returncode == 0, done.stderr
    wait_for_replay(on_primary, on_standby)
    shown = [_ledger(url, "events", "--after-position", str(int(done.stdout) - 1)).stdout for url in pair]
    assert b'"probe":"late"' in shown[0]
    assert shown[1] == shown[0]


@pytest.mark.parametrize("args", WRITES, ids=lambda a: " ".join(a[:2]))
def test_writes_on_the_standby_fail_in_one_line(pair: tuple[str, str], args: tuple[str, ...]) -> None:
    done = _ledger(pair[1], *args)
    assert done.returncode == 1
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1
    assert "a hot standby (PostgreSQL in recovery, read-only)" in lines[0]


def test_in_recovery(pair: tuple[str, str], tmp_path: Path) -> None:
    for url, standby in ((pair[0], False), (pair[1], True), (f"sqlite:///{tmp_path / 'x.db'}", False)):
        ledger = open_ledger(url, create=not standby)
        try:
            assert in_recovery(ledger.recorder) is standby
        finally:
            ledger.close()
