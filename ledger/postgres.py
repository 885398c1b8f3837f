"""PostgreSQL backend: the eventsourcing PostgreSQL application recorder plus the ledger's chain.

The recorder serialises appends with an EXCLUSIVE table lock. Under that lock
the notification-id sequence is reset to the table's maximum before inserting,
so an import that rolled back (or was killed) leaves no gap in positions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final
from urllib.parse import unquote, urlsplit
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from ledger.errors import StoreError
from ledger.events import Recorded, decode_state
from ledger.store import GENESIS, ChainRow, Head, LedgerRecorder

PAGE: Final = 5000
SCHEMA_LOCK: Final = 0x1ED6E5  # advisory lock key held while creating the schema


class _Session:
    def __init__(self, recorder: PostgresLedgerRecorder, curs: Cursor[DictRow]) -> None:
        self.r = recorder
        self.curs = curs

    def head(self) -> Head:
        self.curs.execute(self.r.sql_head)
        row = self.curs.fetchone()
        if row is None:
            return Head(0, GENESIS, None)
        return Head(row["position"], row["hash"], row["recorded_at"])

    def existing(self, originator_ids: Sequence[UUID]) -> set[UUID]:
        self.curs.execute(self.r.sql_existing, (list(originator_ids),))
        return {row["originator_id"] for row in self.curs.fetchall()}

    def insert(self, events: Sequence[StoredEvent]) -> list[int]:
        # Under the table lock nobody else takes ids, so setting the sequence to the
        # current maximum makes the new positions follow on without a gap.
        self.curs.execute(self.r.sql_reset_sequence)
        pg_events = [
            self.r.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
            for e in events
        ]
        self.curs.execute(self.r.insert_events_statement, (pg_events,))
        return [row["notification_id"] for row in self.curs.fetchall()]

    def insert_chain(self, rows: Sequence[ChainRow]) -> None:
        with self.curs.copy(self.r.sql_copy_chain) as copy:
            for r in rows:
                copy.write_row((r.position, r.hash, r.recorded_at))


class PostgresLedgerRecorder(PostgresApplicationRecorder, LedgerRecorder):
    """The eventsourcing PostgreSQL application recorder, with the ledger's chain table."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.events_table_name)
        chain = Identifier("ledger_chain")
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{chain} ("
                "position bigint PRIMARY KEY, hash text NOT NULL, recorded_at timestamptz NOT NULL)"
            ).format(schema=schema, chain=chain)
        )
        self.sql_head = SQL(
            "SELECT position, hash, recorded_at FROM {schema}.{chain} ORDER BY position DESC LIMIT 1"
        ).format(schema=schema, chain=chain)
        self.sql_existing = SQL(
            "SELECT originator_id FROM {schema}.{table} WHERE originator_id = ANY(%s)"
        ).format(schema=schema, table=table)
        qualified = f"{self.datastore.schema}.{self.events_table_name}"
        self.sql_reset_sequence = SQL(
            "SELECT setval(pg_get_serial_sequence({qualified}, 'notification_id'), "
            "COALESCE((SELECT MAX(notification_id) FROM {schema}.{table}), 0) + 1, false)"
        ).format(qualified=qualified, schema=schema, table=table)
        self.sql_copy_chain = SQL("COPY {schema}.{chain} (position, hash, recorded_at) FROM STDIN").format(
            schema=schema, chain=chain
        )
        self.sql_read = SQL(
            "SELECT notification_id, state FROM {schema}.{table} "
            "WHERE notification_id >= %s AND notification_id <= %s ORDER BY notification_id LIMIT %s"
        ).format(schema=schema, table=table)
        self.sql_read_raw = SQL(
            "SELECT notification_id, originator_id, topic, state FROM {schema}.{table} "
            "WHERE notification_id >= %s ORDER BY notification_id LIMIT %s"
        ).format(schema=schema, table=table)
        self.sql_read_chain = SQL(
            "SELECT position, hash, recorded_at FROM {schema}.{chain} "
            "WHERE position >= %s ORDER BY position LIMIT %s"
        ).format(schema=schema, chain=chain)
        self.sql_position_at = SQL(
            "SELECT COALESCE(MAX(position), 0) AS p FROM {schema}.{chain} WHERE recorded_at <= %s"
        ).format(schema=schema, chain=chain)

    @contextmanager
    def write_session(self) -> Iterator[_Session]:
        with self.datastore.transaction(commit=True) as curs:
            self._lock_table(curs)
            self._notify_channel(curs)
            yield _Session(self, curs)

    def read_records(self, start: int = 1, stop: int | None = None) -> Iterator[Recorded]:
        pos, end = start, stop if stop is not None else 2**62
        while pos <= end:
            with self.datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(self.sql_read, (pos, end, PAGE))
                rows = curs.fetchall()
            for row in rows:
                yield decode_state(row["notification_id"], bytes(row["state"]))
            if len(rows) < PAGE:
                return
            pos = rows[-1]["notification_id"] + 1

    def read_chain(self, start: int = 1) -> Iterator[ChainRow]:
        pos = start
        while True:
            with self.datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(self.sql_read_chain, (pos, PAGE))
                rows = curs.fetchall()
            for row in rows:
                yield ChainRow(row["position"], row["hash"], row["recorded_at"])
            if len(rows) < PAGE:
                return
            pos = rows[-1]["position"] + 1

    def read_raw(self, start: int = 1) -> Iterator[tuple[int, UUID, str, bytes]]:
        pos = start
        while True:
            with self.datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(self.sql_read_raw, (pos, PAGE))
                rows = curs.fetchall()
            for row in rows:
                yield row["notification_id"], row["originator_id"], row["topic"], bytes(row["state"])
            if len(rows) < PAGE:
                return
            pos = rows[-1]["notification_id"] + 1

    def last_position(self) -> int:
        return self.max_notification_id() or 0

    def position_at(self, instant: datetime) -> int:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.sql_position_at, (instant,))
            row = curs.fetchone()
        assert row is not None
        return int(row["p"])

    def close(self) -> None:
        self.datastore.close()


def parse_postgres_url(url: str) -> dict[str, Any]:
    """Split ``postgresql://user[:password]@host[:port]/dbname`` into datastore arguments."""
    parts = urlsplit(url)
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise StoreError(f"store URL {url!r}: no database name")
    return {
        "dbname": dbname,
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or ""),
    }


def open_postgres(url: str, *, pool_size: int = 2) -> PostgresLedgerRecorder:
    """Open the PostgreSQL ledger at ``url``, creating its tables if needed."""
    args = parse_postgres_url(url)
    datastore = PostgresDatastore(**args, pool_size=pool_size, max_overflow=2, connect_timeout=10)
    recorder = PostgresLedgerRecorder(datastore)
    with datastore.get_connection() as conn:
        row = conn.execute("SELECT to_regclass('ledger_chain') IS NOT NULL AS ready").fetchone()
        if row is None or not row["ready"]:
            # DDL run by two processes at once fails ("tuple concurrently updated"):
            # whoever creates the schema holds an advisory lock while doing it.
            conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
            try:
                recorder.create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
    return recorder
