"""Append-only in the database itself: triggers on both stores, least-privilege roles on PostgreSQL."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from cli.main import cli
from ledger.application import Ledger, open_ledger
from ledger.postgres import PostgresLedgerRecorder, create_roles, roles_sql
from ledger.sqlite import SQLiteLedgerRecorder
from ledger.verify import verify
from tests.conftest import StepClock
from tests.integration.test_store_contract import GOOD, snapshot
from tests.pgserver import scratch_database

REPO = Path(__file__).resolve().parents[2]
TABLES = ("stored_events", "ledger_index", "ledger_names")
LINE = b'{"type":"probe_failed","service":"w","probe":"p%d","at":"2026-10-04T09:15:00Z"}'


class TestSQLiteAppendOnly:
    @pytest.fixture
    def path(self, tmp_path: Path) -> str:
        return str(tmp_path / "ledger.db")

    @pytest.fixture
    def led(self, path: str, clock: StepClock) -> Iterator[Ledger]:
        led = open_ledger(f"sqlite:///{path}", clock=clock)
        led.import_lines(GOOD)
        yield led
        led.close()

    @pytest.mark.parametrize("table", TABLES)
    @pytest.mark.parametrize("statement", [
        "UPDATE {t} SET {c} = {c} WHERE {c} = 3",
        "DELETE FROM {t} WHERE {c} = 3",
        "DELETE FROM {t}",  # SQLite's TRUNCATE: triggers turn the truncate optimisation off
    ])
    def test_changes_are_refused(self, led: Ledger, path: str, table: str, statement: str) -> None:
        before = snapshot(led)
        column = "rowid" if table == "stored_events" else "position"  # the index has no rowid
        conn = sqlite3.connect(path)
        try:
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement.format(t=table, c=column))
            conn.rollback()
        finally:
            conn.close()
        assert snapshot(led) == before
        assert verify(led.recorder).ok

    def test_schema_creation_is_idempotent(self, led: Ledger, path: str) -> None:
        assert isinstance(led.recorder, SQLiteLedgerRecorder)
        led.recorder.create_table()
        led.recorder.create_table()
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
            names = sorted(r[0] for r in rows)
        finally:
            conn.close()
        assert names == ["ledger_index_no_delete", "ledger_index_no_update",
                         "ledger_names_no_delete", "ledger_names_no_update",
                         "stored_events_no_delete", "stored_events_no_update"]

    def test_append_lock_is_still_taken_first(self, led: Ledger, path: str) -> None:
        """The lock statement updates no row, so the row triggers never fire, yet it takes the write lock."""
        assert isinstance(led.recorder, SQLiteLedgerRecorder)
        entered, release = threading.Event(), threading.Event()

        def hold() -> None:
            with led.recorder.write_session():  # type: ignore[attr-defined]
                entered.set()
                release.wait(10)

        t = threading.Thread(target=hold)
        t.start()
        try:
            assert entered.wait(10)
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
            finally:
                other.close()
        finally:
            release.set()
            t.join(10)
        assert led.import_lines([LINE % 1]).first_position == len(GOOD) + 1
        assert verify(led.recorder).ok


@pytest.mark.postgres
class TestPostgresAppendOnly:
    @pytest.fixture
    def url(self, pg_admin_url: str) -> Iterator[str]:
        with scratch_database(pg_admin_url) as url:
            yield url

    @pytest.fixture
    def led(self, url: str, clock: StepClock) -> Iterator[Ledger]:
        led = open_ledger(url, clock=clock)
        led.import_lines(GOOD)
        yield led
        led.close()

    @pytest.mark.parametrize("table", TABLES)
    @pytest.mark.parametrize("statement", [
        "UPDATE {t} SET {c} = {c} WHERE {c} = 3",
        "DELETE FROM {t} WHERE {c} = 3",
        "TRUNCATE {t}",
        "TRUNCATE {t} CASCADE",
    ])
    def test_changes_are_refused_even_for_a_superuser(self, led: Ledger, url: str, table: str,
                                                      statement: str) -> None:
        before = snapshot(led)
        column = "notification_id" if table == "stored_events" else "position"
        with psycopg.connect(url) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement.format(t=table, c=column).encode())
            conn.rollback()
        assert snapshot(led) == before
        assert verify(led.recorder).ok

    def test_schema_creation_is_idempotent(self, led: Ledger, url: str) -> None:
        assert isinstance(led.recorder, PostgresLedgerRecorder)
        led.recorder.create_table()
        led.recorder.create_table()
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE NOT t.tgisinternal ORDER BY 1, 2"
            ).fetchall()
        assert rows == [(table, name) for table in ("ledger_index", "ledger_names", "stored_events")
                        for name in ("ledger_append_only_row", "ledger_append_only_truncate")]
        assert led.import_lines([LINE % 1]).first_position == len(GOOD) + 1


@pytest.mark.postgres
class TestPostgresRoles:
    @pytest.fixture
    def url(self, pg_admin_url: str) -> Iterator[str]:
        with scratch_database(pg_admin_url) as url:
            yield url

    @pytest.fixture
    def prefix(self, url: str) -> Iterator[str]:
        # Roles belong to the whole cluster: a unique prefix per test, dropped afterwards.
        prefix = "lt" + uuid.uuid4().hex[:8]
        yield prefix
        names = [f"{prefix}_{r}" for r in ("appender", "auditor", "reporting")]
        with psycopg.connect(url, autocommit=True) as conn:
            for name in names:
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
                if exists:
                    conn.execute(f'DROP OWNED BY "{name}"'.encode())
                    conn.execute(f'DROP ROLE "{name}"'.encode())

    @pytest.fixture
    def led(self, url: str, prefix: str, clock: StepClock) -> Iterator[Ledger]:
        led = open_ledger(url, clock=clock)
        led.import_lines(GOOD[:2])
        assert isinstance(led.recorder, PostgresLedgerRecorder)
        assert create_roles(led.recorder, prefix) == [f"{prefix}_appender", f"{prefix}_auditor",
                                                      f"{prefix}_reporting"]
        create_roles(led.recorder, prefix)  # idempotent
        yield led
        led.close()

    def test_roles_are_nologin(self, led: Ledger, url: str, prefix: str) -> None:
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT rolname, rolcanlogin, rolsuper FROM pg_roles WHERE rolname LIKE %s "
                                "ORDER BY 1", (prefix + "%",)).fetchall()
        assert rows == [(f"{prefix}_{r}", False, False) for r in ("appender", "auditor", "reporting")]

    def test_appender_appends_through_the_ledger(self, led: Ledger, url: str, prefix: str, clock: StepClock,
                                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        # Every connection the ledger opens starts with SET ROLE <appender>.
        monkeypatch.setenv("PGOPTIONS", f"-c role={prefix}_appender")
        app = open_ledger(url, clock=clock)
        try:
            with app.recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
                row = conn.execute("SELECT current_user AS u").fetchone()
            assert row["u"] == f"{prefix}_appender"
            result = app.import_lines(GOOD[2:])
            assert (result.first_position, result.last_position) == (3, len(GOOD))
            assert app.import_lines(GOOD).appended == 0  # idempotence check reads as the appender
            assert verify(app.recorder).ok
        finally:
            app.close()
        # The command line, in another process, under the same role.
        file = tmp_path / "more.ndjson"
        file.write_bytes(b"\n".join(LINE % i for i in range(50)))
        proc = subprocess.run([sys.executable, "-m", "cli.main", "--store", url, "import", "-q", str(file)],
                              cwd=REPO, capture_output=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr.decode()
        assert led.recorder.last_position() == len(GOOD) + 50
        # What the appender may not do.
        with psycopg.connect(url, options=f"-c role={prefix}_appender") as conn:
            for statement, error in [
                ("UPDATE stored_events SET topic = topic", psycopg.errors.InsufficientPrivilege),  # trigger
                ("UPDATE ledger_index SET key = key", psycopg.errors.InsufficientPrivilege),
                ("DELETE FROM stored_events", psycopg.errors.InsufficientPrivilege),
                ("DELETE FROM ledger_index", psycopg.errors.InsufficientPrivilege),
                ("TRUNCATE stored_events", psycopg.errors.InsufficientPrivilege),
                ("DROP TABLE ledger_index", psycopg.errors.InsufficientPrivilege),
                ("ALTER TABLE stored_events DISABLE TRIGGER ALL", psycopg.errors.InsufficientPrivilege),
                ("SET session_replication_role = replica", psycopg.errors.InsufficientPrivilege),
            ]:
                with pytest.raises(error):
                    conn.execute(statement.encode())
                conn.rollback()
        assert verify(led.recorder).ok

    @pytest.mark.parametrize("role", ["auditor", "reporting"])
    def test_readers_read_and_cannot_write(self, led: Ledger, url: str, prefix: str, role: str,
                                           runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PGOPTIONS", f"-c role={prefix}_{role}")
        ok = runner.invoke(cli, ["--store", url, "verify"])
        assert ok.exit_code == 0, ok.output
        events = runner.invoke(cli, ["--store", url, "events"])
        assert events.exit_code == 0, events.output
        assert len(events.stdout.splitlines()) == 2
        refused = runner.invoke(cli, ["--store", url, "append", "--json", GOOD[3].decode()])
        assert refused.exit_code == 1
        lines = refused.stderr.splitlines()
        assert len(lines) == 1, refused.stderr
        assert lines[0].startswith("error: store: permission denied"), lines[0]
        monkeypatch.delenv("PGOPTIONS")
        assert led.recorder.last_position() == 2

    def test_roles_sql_file_is_the_default_script(self) -> None:
        text = (REPO / "ledger" / "sql" / "roles.sql").read_text()
        body = text[text.index("-- Roles:"):]
        assert body == roles_sql()
