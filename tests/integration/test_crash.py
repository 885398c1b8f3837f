"""Crash safety: an import killed with SIGKILL half way leaves the store as it was before it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from ledger.application import Ledger
from ledger.bootstrap import open_ledger, sqlite_path
from ledger.events import export_line
from ledger.verify import verify
from tests.conftest import StepClock
from tests.integration.test_store_contract import GOOD
from tests.lines import import_lines

REPO = Path(__file__).resolve().parents[2]
LINES = 60_000  # long enough (seconds) on both stores to be caught in the middle


def big_file(path: Path) -> Path:
    with path.open("wb") as f:
        for i in range(LINES):
            f.write(b'{"type":"probe_failed","service":"w","probe":"p%d","at":"2026-10-04T09:15:00Z"}\n' % i)
    return path


def export(led: Ledger) -> list[bytes]:
    return [export_line(r) for r in led.records()] + [repr(r).encode() for r in led.recorder.read_raw()]


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the import ended (rc={proc.returncode}) before {what}: {proc.stderr.read()!r}"
                        if proc.stderr else f"the import ended before {what}")
        if condition():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting until {what}")


def in_progress(url: str) -> Callable[[], bool]:
    """True once the importer holds the append lock and has written part of its batch."""
    if url.startswith("sqlite:"):
        wal = Path(sqlite_path(url) + "-wal")
        # Uncommitted pages spill to the WAL once the page cache is full: well into the import.
        return lambda: wal.exists() and wal.stat().st_size > 1024 * 1024

    def pg() -> bool:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.relation = 'stored_events'::regclass AND l.mode = 'ExclusiveLock' AND l.granted "
                "AND a.pid <> pg_backend_pid() AND a.state IN ('active', 'idle in transaction')"
            ).fetchone()
            size = conn.execute("SELECT pg_relation_size('stored_events')").fetchone()
        assert row is not None
        assert size is not None
        # The table file grows with uncommitted rows: the transaction is well under way.
        return bool(row[0]) and size[0] > 1024 * 1024

    return pg


def test_import_killed_half_way_leaves_no_trace(store_url: str, tmp_path: Path, clock: StepClock) -> None:
    led = open_ledger(store_url, clock=clock)
    try:
        import_lines(led, GOOD)
        before = export(led)
        head = verify(led.recorder).head
        file = big_file(tmp_path / "big.ndjson")
        with subprocess.Popen([sys.executable, "-m", "cli.main", "--store", store_url, "import", "-q",
                               str(file)], cwd=REPO, stderr=subprocess.PIPE) as proc:
            try:
                wait_for(in_progress(store_url), proc, "the import's transaction was under way")
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
        # Nothing of the killed import is visible, and the chain is intact.
        assert export(led) == before
        result = verify(led.recorder, expect=head)
        assert result.ok, result.problem
        assert result.position == len(GOOD)
        # No position was burnt: the next append takes the next one (this waits for the server
        # to notice the dead client and roll back, if it has not yet).
        extra = b'{"type":"probe_failed","service":"w","probe":"after-crash","at":"2026-10-04T09:15:00Z"}'
        assert import_lines(led, [extra]).first_position == len(GOOD) + 1
        # Running the import again completes it.
        again = subprocess.run([sys.executable, "-m", "cli.main", "--store", store_url, "import", str(file)],
                               cwd=REPO, capture_output=True, timeout=300, check=False)
        assert again.returncode == 0, again.stderr.decode()
        assert again.stderr.decode().startswith(f"imported {LINES} events, 0 already recorded")
        assert led.recorder.last_position() == len(GOOD) + 1 + LINES
        final = verify(led.recorder, expect=head)
        assert final.ok, final.problem
        assert final.position == len(GOOD) + 1 + LINES
    finally:
        led.close()
