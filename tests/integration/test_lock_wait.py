"""A writer that waits for a stopped writer's lock gives up clearly: who holds it, how long it waited.

The holder is a real `ledger import` process reading a FIFO (so it holds the append lock while
it waits for input), stopped with SIGSTOP; the waiter runs with a short LEDGER_LOCK_WAIT.
Both stores; on PostgreSQL also the server ending a stalled writer's session (LEDGER_IDLE_TIMEOUT).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

import psycopg
import pytest
from click.testing import CliRunner

from cli.main import cli
from ledger.application import Ledger
from ledger.bootstrap import open_ledger, sqlite_path
from ledger.persistence.sqlite.recorder import _lock_holder
from tests.conftest import StepClock
from tests.lines import import_lines

REPO = Path(__file__).resolve().parents[2]
LINE = b'{"type":"probe_failed","service":"web","probe":"p%d","at":"2026-10-04T09:15:00Z"}\n'
APPEND = '{"type":"probe_recovered","service":"web","probe":"p1","at":"2026-10-04T10:15:00Z"}'


def holds_the_lock(url: str, pid: int) -> bool:
    """Whether process ``pid`` holds the store's append (write) lock, and has said so.

    On PostgreSQL the ledger names the lock in its application name (``... locked <when>``)
    just after taking it: waiting for that, not only for the granted lock, keeps a test
    from stopping the importer between the two (its message would then show no "locked").
    """
    if url.startswith("sqlite"):
        return _lock_holder(os.path.abspath(sqlite_path(url))) == pid
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.relation = 'stored_events'::regclass AND l.mode = 'ExclusiveLock' AND l.granted "
            "AND a.application_name LIKE %s", (f"ledger[{pid}] locked %",)).fetchone()
    return row is not None


@contextmanager
def stalled_importer(url: str, tmp_path: Path,
                     **env: str) -> Iterator[tuple[subprocess.Popen[bytes], IO[bytes]]]:
    """A `ledger import` of a FIFO that has taken the lock and waits for more input; killed at the end."""
    fifo = tmp_path / "input.ndjson"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "--store", url, "import", "-q", str(fifo)],
                            cwd=REPO, env={**os.environ, **env}, stderr=subprocess.PIPE)
    writer = open(fifo, "wb")  # noqa: SIM115  (closed below, or by the test to end the input)
    try:
        writer.write(LINE % 1)
        writer.flush()
        deadline = time.monotonic() + 60
        while not holds_the_lock(url, proc.pid):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            assert time.monotonic() < deadline, "the importer never took the lock"
            time.sleep(0.05)
        yield proc, writer
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait(30)
        if proc.stderr is not None:
            proc.stderr.close()
        if not writer.closed:
            with suppress(BrokenPipeError):
                writer.close()


@pytest.fixture
def led(store_url: str, clock: StepClock) -> Iterator[Ledger]:
    led = open_ledger(store_url, clock=clock)
    import_lines(led, [LINE % 0])
    yield led
    led.close()


def ledger(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The command line in a process of its own: a waiter that never gives up fails the test, not hangs."""
    return subprocess.run([sys.executable, "-m", "cli.main", "--store", url, *args], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False)


def test_a_writer_waiting_on_a_stopped_importer_says_who_holds_the_lock(
        led: Ledger, store_url: str, tmp_path: Path, runner: CliRunner,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with stalled_importer(store_url, tmp_path) as (importer, writer):
        importer.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        result = ledger(store_url, "append", "--json", APPEND, LEDGER_LOCK_WAIT="1")
        waited = time.monotonic() - started
        assert result.returncode == 1, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        line = lines[0]
        assert line.startswith("error: gave up waiting for the "), line
        assert "lock after 1." in line, line
        assert "(LEDGER_LOCK_WAIT)" in line, line
        assert str(importer.pid) in line, line  # the holder, by its process id
        assert line.endswith("nothing was written"), line
        if store_url.startswith("sqlite"):
            assert f"held by process {importer.pid} (stopped: " in line, line
            assert " import -q " in line, line
        else:  # the backend, and the client's pid in its application name, with the time it took the lock
            assert f"(ledger[{importer.pid}] locked 20" in line, line
        assert 1 <= waited < 30
        assert led.recorder.last_position() == 1  # nothing written
        # The importer resumes and finishes; then the writer goes through.
        importer.send_signal(signal.SIGCONT)
        writer.write(LINE % 2)
        writer.close()
        assert importer.wait(60) == 0
    assert led.recorder.last_position() == 3
    result = runner.invoke(cli, ["--store", store_url, "append", "--json", APPEND])
    assert (result.exit_code, result.stdout.strip()) == (0, "4"), result.output


def test_a_holder_the_system_does_not_name_is_still_reported(
        tmp_path: Path, clock: StepClock, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.db"
    url = f"sqlite:///{path}"
    open_ledger(url, clock=clock).close()
    other = sqlite3.connect(path, isolation_level=None)  # in this process: F_GETLK reports no other
    try:
        other.execute("BEGIN IMMEDIATE")
        monkeypatch.setenv("LEDGER_LOCK_WAIT", "0.3")
        result = runner.invoke(cli, ["--store", url, "append", "--json", APPEND])
    finally:
        other.close()
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: gave up waiting for the write lock after 0.3 s (LEDGER_LOCK_WAIT): held by another "
        "connection (its process is not known); nothing was written"
    ]


@pytest.mark.postgres
def test_the_server_ends_a_stalled_writer_and_frees_the_lock(pg_url: str, tmp_path: Path, clock: StepClock,
                                                            runner: CliRunner,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    led = open_ledger(pg_url, clock=clock)
    try:
        import_lines(led, [LINE % 0])
        with stalled_importer(pg_url, tmp_path, LEDGER_IDLE_TIMEOUT="1") as (importer, writer):
            importer.send_signal(signal.SIGSTOP)
            # Idle in its transaction for a second, the importer's session is ended by the
            # server, and with it the lock: the waiting writer goes through.
            started = time.monotonic()
            result = ledger(pg_url, "append", "--json", APPEND, LEDGER_LOCK_WAIT="30")
            assert (result.returncode, result.stdout.strip()) == (0, "2"), result.stderr
            assert time.monotonic() - started < 20
            importer.send_signal(signal.SIGCONT)
            writer.write(LINE % 2)
            writer.close()
            assert importer.wait(60) == 1
            assert importer.stderr is not None
            errors = importer.stderr.read().decode().splitlines()
            assert len(errors) == 1, errors
            assert errors[0].startswith("error: store: "), errors
        assert led.recorder.last_position() == 2  # the importer's lines: none
    finally:
        led.close()


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan"])
def test_a_bad_wait_setting_is_one_line(store_url: str, runner: CliRunner, monkeypatch: pytest.MonkeyPatch,
                                        value: str) -> None:
    monkeypatch.setenv("LEDGER_LOCK_WAIT", value)
    result = runner.invoke(cli, ["--store", store_url, "append", "--json", APPEND])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: LEDGER_LOCK_WAIT={value!r}: expected a number of seconds greater than 0"
    ]


@pytest.mark.parametrize(("configured", "in_session"), [("4MB", "32MB"), ("64MB", "64MB")])
def test_a_write_session_has_memory_for_its_transition_tables(pg_url: str, configured: str,
                                                              in_session: str) -> None:
    # Raised for the write's transaction only (an insert's rows then stay in memory for the
    # append checks' trigger), never lowered.
    from ledger.persistence.postgres.recorder import open_postgres

    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE \"{name}\" SET work_mem = '{configured}'")
    recorder = open_postgres(pg_url)
    try:
        with recorder.write_session() as session:
            session.curs.execute("SHOW work_mem")
            assert session.curs.fetchone() == {"work_mem": in_session}
        with recorder.datastore.get_connection() as conn:
            assert conn.execute("SHOW work_mem").fetchone() == {"work_mem": configured}
    finally:
        recorder.close()
