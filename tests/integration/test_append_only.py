"""Append-only in the database itself: triggers on both stores (the roles: test_roles.py)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.persistence.postgres.recorder import PostgresLedgerRecorder
from ledger.persistence.sqlite.recorder import SQLiteLedgerRecorder
from ledger.verify import verify
from tests.conftest import StepClock
from tests.integration.test_store_contract import GOOD, snapshot
from tests.lines import import_lines
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
        import_lines(led, GOOD)
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
                         "ledger_merkle_no_delete", "ledger_merkle_no_update",
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
        assert import_lines(led, [LINE % 1]).first_position == len(GOOD) + 1
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
        import_lines(led, GOOD)
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
        guarded = ("ledger_append_check", "ledger_append_only_row", "ledger_append_only_truncate")
        assert rows == [("ledger_append_tally", "ledger_append_complete"),
                        *(("ledger_index", name) for name in guarded),
                        *(("ledger_merkle", name) for name in guarded[1:]),
                        *(("ledger_names", name) for name in guarded[1:]),
                        *(("stored_events", name) for name in guarded)]
        assert import_lines(led, [LINE % 1]).first_position == len(GOOD) + 1
