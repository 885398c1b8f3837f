"""PostgreSQL backend: the eventsourcing PostgreSQL application recorder plus the ledger's key index.

Appends are serialised by an EXCLUSIVE lock on the log, taken through the owner's
``ledger_append_lock()`` (so that a writer needs no privilege that could lock
readers out), waiting at most LEDGER_LOCK_WAIT seconds. Under that lock positions
follow the table's maximum, so an import that rolled back (or was killed) leaves no
gap. Insert triggers refuse rows the ledger would not write (``sql/append_checks.sql``);
``roles_sql`` grants each role what it needs and no more (``sql/roles.sql``).
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, cast

import msgspec
import psycopg
from eventsourcing.persistence import BaseInfrastructureFactory, ProgrammingError
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresFactory
from eventsourcing.utils import Environment, EnvType
from psycopg import Connection, Cursor, ServerCursor
from psycopg.conninfo import conninfo_to_dict
from psycopg.errors import InsufficientPrivilege, LockNotAvailable, UndefinedFunction, UniqueViolation
from psycopg.rows import DictRow, dict_row, tuple_row
from psycopg.sql import SQL, Composed, Identifier, Literal

from ledger.consistency import CONTRACT, OPENING_TAGS, Lookup, first_uses
from ledger.errors import BadInput, LockWaitTimeout, StoreError
from ledger.events import FACT_TYPES, Recorded, decode_state
from ledger.packing import pack_binary
from ledger.runtime import IDLE_TIMEOUT, LOCK_WAIT, env_seconds
from ledger.store import GENESIS, OLD_FORMAT, Head, IdConflict, LedgerRecorder, Packed, Snapshot, prefix_end
from ledger.text import printable
from ledger.urls import redact, scrub

PAGE: Final = 5000
REFUSE_FUNCTION: Final = "ledger_refuse_change"  # trigger function behind append-only tables
SIDE_TABLES: Final = ("ledger_index", "ledger_names")  # written with the events, in the same transaction
SCHEMA_LOCK: Final = 0x1ED6E5  # advisory lock key held while creating the schema
LOCK_FUNCTION: Final = "ledger_append_lock"  # the append lock, taken as the owner (sql/append_checks.sql)
ANALYZE_FUNCTION: Final = "ledger_analyze"
TALLY: Final = "ledger_append_tally"  # per writing transaction: the positions it appended and indexed
# The object the schema creates last: a store where it exists has the whole current schema.
LAST_OBJECT: Final = ("ledger_append_complete", TALLY)  # (trigger, table)
# How every index key begins (ledger.store.index_key).
KEY_KINDS: Final = ("s:", "i:", "m:", "x:", "c:", "k:", "o:", "t:", "h:")
ANALYZE_AFTER: Final = 50_000  # an append of at least this many facts refreshes the planner's statistics
UNIT: Final = "\x1f"  # separates ids sent as one parameter (no id holds a control character)


class _Session:
    overlaps = True  # the server inserts while Python links the next batch

    def __init__(self, recorder: PostgresLedgerRecorder, curs: Cursor[DictRow], next_position: int) -> None:
        self.r = recorder
        self.curs = curs
        self.inserted = 0
        self._next = next_position

    def head(self) -> Head:
        self.curs.execute(self.r.sql_head)
        row = self.curs.fetchone()
        if row is None:
            return Head(0, GENESIS, None)
        link, recorded_at = envelope_head(bytes(row["state"]), row["originator_id"])
        return Head(row["notification_id"], link, recorded_at)

    def next_position(self) -> int:
        # Under the append lock nobody else takes positions, so the new ones follow the
        # current maximum without a gap: COPY (several times faster than the recorder's
        # INSERT of a composite array) writes them itself and needs no RETURNING. The lock
        # function found the maximum (and reset the sequence, for a writer that draws from
        # it); the insert trigger refuses rows anywhere else.
        return self._next

    def recorded(self, originator_ids: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        ids = list(originator_ids)
        joined = UNIT.join(ids)
        # Binary results and plain tuples: a re-import fetches every line's state (hex text
        # to parse and a dict per row cost the writer more than the server's lookups).
        with self.curs.connection.cursor(binary=True, row_factory=tuple_row) as curs:
            if joined.count(UNIT) == len(ids) - 1:
                # One text parameter split by the server: dumping a list of strings as an array
                # literal (quoting each) costs the client more than the lookups cost the server.
                # Ids never hold control characters; if one did, the array path below is exact.
                curs.execute(self.r.sql_recorded_joined, (joined,))
            else:
                curs.execute(self.r.sql_recorded, (ids,))
            return {row[0]: (row[1], row[2]) for row in curs.fetchall()}

    def lookup(self, wanted: tuple[Sequence[str], Sequence[str]]) -> Lookup:
        names, contracts = wanted
        found: dict[str, tuple[str, int]] = {}
        if names:
            self.curs.execute(self.r.sql_names, (list(names),))
            found = {row["name"]: (row["scope"], row["position"]) for row in self.curs.fetchall()}
        rows: list[tuple[int, bytes]] = []
        if contracts:
            self.curs.execute(self.r.sql_keyed_states, ([CONTRACT + cid for cid in contracts], 2**62))
            rows = [(row["notification_id"], bytes(row["state"])) for row in self.curs.fetchall()]
        return Lookup(found, contracts, rows)

    def pack(self, events: Sequence[tuple[str, int, str, bytes]], keys: Sequence[tuple[str, int]],
             start: int) -> Packed:
        return pack_binary(events, keys, start)

    def insert(self, packed: Packed, names: Sequence[tuple[str, str, int]] = ()) -> None:
        # Positions are given, not drawn from the sequence (a nextval per row cost a tenth
        # of the insert); the lock function resets the sequence for a writer that draws from it.
        try:
            with self.curs.copy(self.r.sql_copy_events) as copy:
                copy.write(cast(bytes, packed.events))
        except UniqueViolation as exc:  # only rows packed as if none were recorded meet one
            raise IdConflict(f"import: {exc.diag.message_detail or exc}") from None
        self.curs.execute(self.r.sql_last)
        top = self.curs.fetchone()
        end = int(top["last"]) if top is not None and top["last"] is not None else -1
        packed.check(end)
        with self.curs.copy(self.r.sql_copy_index) as copy:
            copy.write(cast(bytes, packed.index))
        if names:
            self.curs.execute(self.r.sql_insert_names, tuple(map(list, zip(*names, strict=True))))
        self.inserted += packed.count


class PostgresLedgerRecorder(PostgresApplicationRecorder, LedgerRecorder):
    """The eventsourcing PostgreSQL application recorder, with the ledger's key index."""

    packer = "ledger.packing:pack_binary"  # an import's child process builds the COPY data

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.events_table_name)
        self.sql_create_statements.extend(
            append_only_statements(self.datastore.schema, (self.events_table_name,))
        )
        index = Identifier("ledger_index")
        # Keys in byte order whatever the database's collation: a kind of key ("k:" for
        # contracts) is then one range, which a linguistic collation breaks ("k:a" sorts
        # after "k;" under en-US, and every contract went missing). Comparing bytes is
        # also cheaper for each of the index's inserts.
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{index} ("
                'key text COLLATE "C" NOT NULL, position bigint NOT NULL, PRIMARY KEY (key, position))'
            ).format(schema=schema, index=index)
        )
        # The index decides what a contract-month reads: it is as append-only as the log.
        self.sql_create_statements.extend(append_only_statements(self.datastore.schema, ("ledger_index",)))
        # Appends through the owner's lock function, rows checked on insert (last: LAST_OBJECT).
        self.sql_create_statements.extend(
            append_check_statements(self.datastore.schema, self.events_table_name, "ledger_index")
        )
        self.sql_lock = SQL("SELECT {schema}.{fn}() AS next").format(
            schema=schema, fn=Identifier(LOCK_FUNCTION)
        )
        self.sql_analyze_function = SQL("SELECT {schema}.{fn}()").format(
            schema=schema, fn=Identifier(ANALYZE_FUNCTION)
        )
        # What verify reads: every row, compared with nothing (any value it holds comes back).
        # The log by its position index, rows without a position first; the key index sorted.
        self.sql_snapshot_events = tuple(
            SQL(
                "SELECT notification_id, originator_id, topic, state FROM {schema}.{table} WHERE {where}"
            ).format(schema=schema, table=table, where=SQL(where))
            for where in ("notification_id IS NULL", "notification_id IS NOT NULL ORDER BY notification_id")
        )
        self.sql_snapshot_index = SQL(
            "SELECT position, key FROM {schema}.{index} ORDER BY position NULLS FIRST, key"
        ).format(schema=schema, index=index)
        self.sql_snapshot_names = SQL("SELECT name, scope, position FROM {schema}.ledger_names").format(
            schema=schema)
        self.sql_position_of = SQL(
            "SELECT notification_id FROM {schema}.{table} WHERE originator_id = %s"
        ).format(schema=schema, table=table)
        self.sql_copy_events = SQL(
            "COPY {schema}.{table} (notification_id, originator_id, originator_version, topic, state) "
            "FROM STDIN (FORMAT BINARY)"
        ).format(schema=schema, table=table)
        self.sql_copy_index = SQL("COPY {schema}.{index} (key, position) FROM STDIN (FORMAT BINARY)").format(
            schema=schema, index=index
        )
        # The rows of the positions found under the keys, in one statement. Not a join: the
        # planner guesses a join's row count from the commonest keys (a service's thousands
        # of facts), and for sixty reference keys holding 44 facts it merged the whole log
        # (6 s at 10M events). The positions come as one array from an InitPlan, which the
        # outer scan can only meet with an index walk. (Fetching the positions first and
        # sending them back as an array did the same in two round trips, and cost a rebuild
        # worker 15 % more time passing a million positions through Python.)
        self.sql_keyed_states = SQL(
            "SELECT notification_id, state FROM {schema}.{table} WHERE notification_id = ANY(ARRAY("
            "SELECT position FROM {schema}.{index} WHERE key = ANY(%s) AND position <= %s)) "
            "ORDER BY notification_id"
        ).format(schema=schema, table=table, index=index)
        self.sql_prefix_positions = self._prefix_positions(SQL("key"))
        self.sql_head = SQL(
            "SELECT notification_id, originator_id, state FROM {schema}.{table} "
            "ORDER BY notification_id DESC LIMIT 1"
        ).format(schema=schema, table=table)
        self.sql_recorded_joined = SQL(
            "SELECT originator_id, notification_id, state FROM {schema}.{table} "
            "WHERE originator_id = ANY(string_to_array(%s, E'\\x1f'))"
        ).format(schema=schema, table=table)
        self.sql_recorded = SQL(
            "SELECT originator_id, notification_id, state FROM {schema}.{table} "
            "WHERE originator_id = ANY(%s::text[])"
        ).format(schema=schema, table=table)
        self.sql_last = SQL("SELECT MAX(notification_id) AS last FROM {schema}.{table}").format(
            schema=schema, table=table
        )
        names = Identifier("ledger_names")
        # Each name an opening fact gives (``ledger.consistency``): its scope and first position.
        # Not among the statements create_table runs: see ``ensure_names``.
        self.sql_create_names = [
            SQL(
                "CREATE TABLE {schema}.{names} ("
                'name text COLLATE "C" PRIMARY KEY, scope text NOT NULL, position bigint NOT NULL)'
            ).format(schema=schema, names=names),
            *append_only_statements(self.datastore.schema, ("ledger_names",)),
        ]
        self.sql_names = SQL(
            "SELECT name, scope, position FROM {schema}.{names} WHERE name = ANY(%s::text[])"
        ).format(schema=schema, names=names)
        self.sql_insert_names = SQL(
            "INSERT INTO {schema}.{names} (name, scope, position) "
            "SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[])"
        ).format(schema=schema, names=names)
        self.sql_openings = SQL(
            "SELECT notification_id, state FROM {schema}.{table} WHERE notification_id > %s "
            "AND topic = ANY(%s) ORDER BY notification_id LIMIT %s"
        ).format(schema=schema, table=table)
        self.names_missing = False
        self.sql_read = SQL(
            "SELECT notification_id, state FROM {schema}.{table} "
            "WHERE notification_id >= %s AND notification_id <= %s ORDER BY notification_id LIMIT %s"
        ).format(schema=schema, table=table)
        self.sql_read_positions = SQL(
            "SELECT notification_id, state FROM {schema}.{table} "
            "WHERE notification_id = ANY(%s::text::bigint[]) ORDER BY notification_id"
        ).format(schema=schema, table=table)
        self.sql_lock_holders = SQL(
            "SELECT l.pid, a.application_name, a.state, a.state_change "
            "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid() "
            "AND l.mode <> 'AccessShareLock' AND l.relation = (SELECT c.oid FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = {s} AND c.relname = {t}) "
            "ORDER BY l.mode = 'ExclusiveLock' DESC, l.pid"
        ).format(s=Literal(self.datastore.schema), t=Literal(self.events_table_name))
        self.sql_read_raw = SQL(
            "SELECT notification_id, originator_id, topic, state FROM {schema}.{table} "
            "WHERE notification_id >= %s AND notification_id <= %s ORDER BY notification_id LIMIT %s"
        ).format(schema=schema, table=table)

    def ensure_names(self) -> None:
        """Create the names table of a store made before it, filled from the log, in one transaction.

        Under the append lock, so no fact slips in between; a table that exists was filled
        when it was made. A role that may not create it (a reader) goes on without: its
        appends would be refused (``write_session``) until the owner opens the store once.
        """
        try:
            with self.datastore.transaction(commit=True) as curs:
                self._lock_table(curs)
                curs.execute("SELECT to_regclass(%s) AS names", (f"{self.datastore.schema}.ledger_names",))
                row = curs.fetchone()
                if row is not None and row["names"] is not None:
                    return
                for statement in self.sql_create_names:
                    curs.execute(statement)
                uses = first_uses(self._openings(curs))
                if uses:
                    rows = [(name, scope, pos) for name, (scope, pos) in uses.items()]
                    curs.execute(self.sql_insert_names, tuple(map(list, zip(*rows, strict=True))))
        except ProgrammingError as exc:  # the library's name for psycopg's, which is the cause
            if not isinstance(exc.__cause__, InsufficientPrivilege):
                raise
            self.names_missing = True

    def _openings(self, curs: Cursor[DictRow]) -> Iterator[Recorded]:
        last = -(2**62)
        while True:
            curs.execute(self.sql_openings, (last, list(OPENING_TAGS), PAGE))
            rows = curs.fetchall()
            for row in rows:
                yield decode_state(row["notification_id"], bytes(row["state"]))
            if len(rows) < PAGE:
                return
            last = rows[-1]["notification_id"]

    @contextmanager
    def write_session(self) -> Iterator[_Session]:
        if self.names_missing:
            raise StoreError(
                "this store has no names table yet (it was made by an earlier version): open it once "
                "with the role that owns its tables (`ledger init`), then append"
            )
        with self.datastore.transaction(commit=True) as curs:
            next_position = self._append_lock(curs)
            self._notify_channel(curs)
            session = _Session(self, curs, next_position)
            yield session
        if session.inserted >= ANALYZE_AFTER:
            # Fresh statistics after a bulk load: without them the planner guesses, and
            # after ten million rows it chose a hash join over the whole log for a
            # contract-month's keyed read (10 s instead of 0.3 s) until autovacuum caught up.
            # Through the owner's function: only a table's owner may analyze it.
            with self.datastore.get_connection() as conn:
                conn.execute(self.sql_analyze_function)

    def _append_lock(self, curs: Cursor[DictRow]) -> int:
        """Take the append lock (waiting at most LEDGER_LOCK_WAIT); the next position.

        A writer that waited too long gets ``LockWaitTimeout`` naming the session that
        holds the lock. The lock is the owner's ``ledger_append_lock()``, so a writer needs
        no privilege that could lock the log against readers (UPDATE would allow
        ``LOCK ... ACCESS EXCLUSIVE``).
        """
        wait = env_seconds(LOCK_WAIT)
        # Whole milliseconds, at least one: 0 would mean waiting for ever.
        curs.execute("SELECT set_config('lock_timeout', %s, true)", (f"{max(1, math.ceil(wait * 1000))}ms",))
        started = time.monotonic()
        try:
            with curs.connection.transaction():  # a savepoint: the transaction survives a timeout
                curs.execute(self.sql_lock)
        except LockNotAvailable:
            raise LockWaitTimeout(self._lock_holders(curs, time.monotonic() - started)) from None
        except UndefinedFunction:
            raise StoreError(
                "this store's schema predates the append lock function: run `ledger init` "
                "as the owner of its tables to bring it up to date"
            ) from None
        row = curs.fetchone()
        assert row is not None
        # Who holds the lock, and since when, for any session to see (pg_stat_activity shows
        # another role's application_name, not its transaction start); reset at the end.
        curs.execute(
            "SELECT set_config('application_name', left(current_setting('application_name'), 30) "
            "|| ' locked ' || to_char(clock_timestamp() AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), true)"
        )
        return int(row["next"])

    def _lock_holders(self, curs: Cursor[DictRow], waited: float) -> str:
        """One line: who holds a lock on the log that the append lock waits for."""
        curs.execute(self.sql_lock_holders)
        # Another role's session shows its application name (``... locked <when>``, set by
        # the ledger once it holds the lock) but not its state, unless this role may see it.
        holders = [
            f"backend pid {r['pid']} ({printable(r['application_name'] or 'no application name')}"
            + (f", {r['state']} since {_instant(r['state_change'])}" if r["state"] else "")
            + ")"
            for r in curs.fetchall()
        ]
        who = "; ".join(holders) if holders else "a session that has let go of it since"
        return (
            f"gave up waiting for the append lock after {waited:.1f} s (LEDGER_LOCK_WAIT): "
            f"held by {who}; nothing was written"
        )

    def _fetch(self, query: SQL | Composed, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        # Binary results and plain tuples: bytea arrives as bytes (not hex text to parse)
        # and no dict is built per row; reads of whole service histories are dominated by it.
        with self.datastore.get_connection() as conn, conn.cursor(binary=True, row_factory=tuple_row) as curs:
            curs.execute(query, params)
            return curs.fetchall()

    def _pages(self, query: SQL | Composed, start: int, stop: int | None) -> Iterator[tuple[Any, ...]]:
        """Rows of ``query`` (parameters: first, last, limit; position first), a page at a time."""
        pos, end = start, stop if stop is not None else 2**62
        while pos <= end:
            rows = self._fetch(query, (pos, end, PAGE))
            yield from rows
            if len(rows) < PAGE:
                return
            pos = rows[-1][0] + 1

    def read_records(self, start: int = 1, stop: int | None = None) -> Iterator[Recorded]:
        for row in self._pages(self.sql_read, start, stop):
            yield decode_state(row[0], row[1])

    def read_raw(self, start: int = 1) -> Iterator[tuple[int, str, str, bytes]]:
        for row in self._pages(self.sql_read_raw, start, None):
            yield row[0], row[1], row[2], row[3]

    def read_keyed_states(self, keys: Sequence[str], upto: int) -> Iterator[tuple[int, bytes]]:
        for row in self._fetch(self.sql_keyed_states, (list(keys), upto)):
            yield row[0], row[1]

    def read_position_states(self, positions: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        for i in range(0, len(positions), PAGE):
            # A text array literal: psycopg's list dumper costs more per element than the fetch.
            literal = "{" + ",".join(map(str, positions[i : i + PAGE])) + "}"
            for row in self._fetch(self.sql_read_positions, (literal,)):
                yield row[0], row[1]

    def committed(self, wanted: tuple[Sequence[str], Sequence[str]]) -> Lookup:
        names, contracts = wanted
        found: dict[str, tuple[str, int]] = {}
        if names:
            found = {row[0]: (row[1], row[2]) for row in self._fetch(self.sql_names, (list(names),))}
        rows: list[tuple[int, bytes]] = []
        if contracts:
            keys = [CONTRACT + cid for cid in contracts]
            rows = [(row[0], row[1]) for row in self._fetch(self.sql_keyed_states, (keys, 2**62))]
        return Lookup(found, contracts, rows)

    def compare_keys_as_bytes(self) -> None:
        """Read key prefixes correctly from a key index not in byte order (one made before it was).

        The comparison is then not the index's, so the read scans the index table:
        correct, but slower in a large store than a new store's indexed range.
        """
        self.sql_prefix_positions = self._prefix_positions(SQL('key COLLATE "C"'))

    def _prefix_positions(self, key: SQL) -> Composed:
        """Positions under keys from one bound to the next, ``key`` being how keys are compared."""
        return SQL(
            "SELECT position FROM {schema}.{index} WHERE {key} >= %s AND {key} < %s AND position <= %s "
            "ORDER BY position"
        ).format(schema=Identifier(self.datastore.schema), index=Identifier("ledger_index"), key=key)

    def read_key_prefix(self, prefix: str, upto: int) -> Iterator[Recorded]:
        rows = self._fetch(self.sql_prefix_positions, (prefix, prefix_end(prefix), upto))
        yield from self.read_positions([row[0] for row in rows])

    def position_of(self, id_: str) -> int | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.sql_position_of, (id_,))
            row = curs.fetchone()
        return None if row is None else int(row["notification_id"])

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        with self.datastore.get_connection() as conn, conn.transaction(force_rollback=True):
            # One snapshot for every read of the check: appends committed meanwhile stay out
            # of it. A plain SELECT's lock, which an append's EXCLUSIVE lock lets through.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snap = _Snapshot(conn, self)
            try:
                yield snap
            finally:
                snap.close()

    def last_position(self) -> int:
        return self.max_notification_id() or 0

    def close(self) -> None:
        self.datastore.close()


class _Snapshot:
    """``Snapshot`` over server-side cursors in one REPEATABLE READ transaction."""

    def __init__(self, conn: Connection[Any], recorder: PostgresLedgerRecorder) -> None:
        self.conn = conn
        self.r = recorder
        self.cursors: list[ServerCursor[tuple[Any, ...]]] = []

    def events(self) -> Iterator[tuple[object, object, object, object]]:
        for query in self.r.sql_snapshot_events:
            yield from self._rows(query)

    def index(self) -> Iterator[tuple[object, object]]:
        yield from self._rows(self.r.sql_snapshot_index)

    def names(self) -> Iterator[tuple[object, object, object]]:
        yield from self._rows(self.r.sql_snapshot_names)

    def _rows(self, query: Composed) -> Iterator[Any]:
        # Streamed a page at a time (no LIMIT paging: that trusts positions to be unique).
        curs = self.conn.cursor(f"ledger_verify_{len(self.cursors)}", binary=True, row_factory=tuple_row)
        self.cursors.append(curs)
        curs.execute(query)
        while page := curs.fetchmany(PAGE):  # a page as a list: iterating the cursor costs per row
            yield from page

    def close(self) -> None:
        """Close the cursors still open, before the transaction ends."""
        for curs in self.cursors:
            curs.close()


# TCP keepalives, client and server side: a session whose peer machine vanished (not a
# stopped process: its kernel still answers) is noticed within about a minute.
KEEPALIVE: Final = {"idle": 30, "interval": 10, "count": 3}


class LedgerDatastore(PostgresDatastore):
    """The library's datastore, connecting with every libpq parameter of the store URL, JIT off.

    The library hands libpq five parameters (dbname, host, port, user, password),
    always: the URL's others (``sslmode``, ``connect_timeout``, ``host=/socket/dir``...)
    would be dropped, and an absent user or host sent as given defaults instead of
    libpq's own. The ledger's queries are short index walks; PostgreSQL's cost
    estimate for a keyed read of a long service history can pass
    ``jit_above_cost``, and compiling then takes longer than running the query.

    Sessions that stall let go: one idle inside a transaction for LEDGER_IDLE_TIMEOUT
    seconds is ended by the server (a writer stopped between statements frees the
    append lock), TCP keepalives notice a vanished peer, and the application name
    (``ledger[PID]`` unless the URL or ``PGAPPNAME`` gives one) tells a waiting writer
    whose the lock is.
    """

    def __init__(self, params: dict[str, str], **kwargs: Any) -> None:
        # At least a millisecond: the library sends whole milliseconds, and 0 would mean never.
        kwargs.setdefault("idle_in_transaction_session_timeout", max(0.001, env_seconds(IDLE_TIMEOUT)))
        super().__init__(
            params.get("dbname", ""), params.get("host", ""), params.get("port", ""),
            params.get("user", ""), params.get("password", ""), **kwargs,
        )
        self.pool.kwargs = {
            "fallback_application_name": f"ledger[{os.getpid()}]", "keepalives": "1",
            **{f"keepalives_{k}": str(v) for k, v in KEEPALIVE.items()},
            **params, "row_factory": dict_row,
        }

    def after_connect_func(self) -> Callable[[Connection[Any]], None]:
        library = super().after_connect_func()
        settings = "; ".join(f"SET tcp_keepalives_{k} = {v}" for k, v in KEEPALIVE.items())

        def after_connect(conn: Connection[Any]) -> None:
            library(conn)
            conn.execute("SET jit = off")
            conn.execute(settings)

        return after_connect


class LedgerFactory(PostgresFactory):
    """The library's factory (for ``ProjectionRunner``) on a ``LedgerDatastore`` of the store URL.

    The environment names the URL (``LEDGER_STORE_URL``) instead of the library's
    ``POSTGRES_*`` variables, which carry five parameters only.
    """

    def __init__(self, env: Environment | EnvType | None) -> None:
        BaseInfrastructureFactory.__init__(self, env)  # not the library's: it reads POSTGRES_*
        url = self.env.get("LEDGER_STORE_URL")
        assert url is not None, "LedgerFactory needs LEDGER_STORE_URL"
        self.datastore = LedgerDatastore(
            connection_params(url), pool_size=5, max_overflow=10, connect_timeout=30,
            idle_in_transaction_session_timeout=5, originator_id_type="text",
        )


def runner_env(url: str) -> dict[str, str]:
    """The eventsourcing environment of a ``ProjectionRunner`` on the ledger at ``url``."""
    return {
        "PERSISTENCE_MODULE": f"{__name__}:{LedgerFactory.__name__}",
        "LEDGER_STORE_URL": url,
        # The tables exist already (open_view made them under a lock); concurrent DDL fails.
        "CREATE_TABLE": "false",
    }


# libpq's URI keywords the ledger leaves to libpq's defaults; connect_timeout has one more:
# without it an unreachable host is waited for as long as the system's TCP timeout.
CONNECT_TIMEOUT: Final = "10"
_PORT: Final = re.compile(r"[0-9]{1,5}")


def connection_params(url: str) -> dict[str, str]:
    """The libpq parameters of a ``postgresql://`` URL, by libpq's own URI rules.

    Query parameters are kept, absent ones are libpq's defaults (its environment
    variables, the OS user, the local socket). A URL libpq cannot read, or without
    a database name, or with a port that is not one, is bad input.
    """
    shown = redact(url)
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise BadInput(f"store URL {shown}: {scrub(str(exc), url)}") from None
    if not params.get("dbname"):
        raise BadInput(f"store URL {shown}: no database name (postgresql://USER@HOST:PORT/DBNAME)")
    for port in str(params.get("port", "")).split(","):
        if port and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
            raise BadInput(f"store URL {shown}: port {printable(port)!r} is not a port number (1 to 65535)")
    out = {key: str(value) for key, value in params.items()}
    out.setdefault("connect_timeout", CONNECT_TIMEOUT)
    return out


def parse_postgres_url(url: str) -> dict[str, Any]:
    """The five arguments eventsourcing's ``PostgresDatastore`` takes (its other parameters are dropped).

    For tools that build the library's own datastore; the ledger connects with
    ``connection_params`` instead.
    """
    params = connection_params(url)
    return {
        "dbname": params["dbname"],
        "host": params.get("host", ""),
        "port": params.get("port", "5432"),
        "user": params.get("user", ""),
        "password": params.get("password", ""),
    }


def _where(params: dict[str, str]) -> str:
    """Database, host and port of ``params`` for a message (never the password)."""
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "the local socket"
    port = params.get("port") or os.environ.get("PGPORT")
    at = f"{host}:{port}" if port and not host.startswith("/") else host
    user = params.get("user") or os.environ.get("PGUSER")
    return printable(f'database "{params["dbname"]}" at {at}' + (f" as {user}" if user else ""))


def _connect(url: str, params: dict[str, str]) -> Connection[DictRow]:
    """One connection, or the server's reason at once (the pool would retry it for its whole timeout)."""
    try:
        return psycopg.connect(**params, autocommit=True, row_factory=dict_row)  # type: ignore[arg-type]
    except psycopg.Error as exc:
        text = str(exc).split("\n", 1)[0]  # libpq's hint ("Is the server running...?") follows
        for prefix in ("connection failed: ", "connection is bad: "):
            text = text.removeprefix(prefix)
        reason = scrub(" ".join(text.split()), url)
        raise StoreError(f"cannot connect to PostgreSQL {_where(params)}: {printable(reason)}") from None


def open_postgres(url: str, *, pool_size: int = 2, create: bool = True) -> PostgresLedgerRecorder:
    """Open the PostgreSQL ledger at ``url``, creating its tables if needed (only if ``create``).

    Without ``create``, a database holding no ledger is refused and left as it was.
    """
    params = connection_params(url)
    probe = _connect(url, params)
    # Stream ids are the facts' own ids (text), so the primary key is the idempotency key itself.
    datastore = LedgerDatastore(
        params, pool_size=pool_size, max_overflow=2, connect_timeout=10, originator_id_type="text"
    )
    recorder = PostgresLedgerRecorder(datastore)
    schema = datastore.schema
    events = f"{_ident(schema)}.{_ident(recorder.events_table_name)}"
    with probe as conn:
        # Ready when the last object the schema creates exists (older stores get the rest).
        # Only a role that may run the DDL tries: the tables' owner, or for a new store a
        # role that may create tables in the schema. Any other role reads an older store
        # as it is; its writes name the command that brings the schema up to date.
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = to_regclass(%s)) "
            "AS ready, to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL AS ledger, "
            "CASE WHEN to_regclass(%s) IS NULL THEN has_schema_privilege(%s, 'CREATE') ELSE "
            "pg_has_role((SELECT relowner FROM pg_class WHERE oid = to_regclass(%s)), 'USAGE') END AS may",
            (LAST_OBJECT[0], f"{_ident(schema)}.{_ident(LAST_OBJECT[1])}", events,
             f"{_ident(schema)}.ledger_index", events, schema, events),
        ).fetchone()
        assert row is not None
        if not row["ledger"] and not create:
            recorder.close()
            raise StoreError(f"not a ledger store: {redact(url)} (`ledger init` creates one)")
        if not row["ready"] and create and row["may"]:
            # DDL run by two processes at once fails ("tuple concurrently updated"):
            # whoever creates the schema holds an advisory lock while doing it.
            conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
            try:
                recorder.create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
        elif not row["ledger"]:
            recorder.close()
            raise StoreError(
                f"not a ledger store, and this role may not create one: {redact(url)} "
                "(`ledger init` as the role that is to own its tables creates it)"
            )
        names = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ready",
                             (f"{datastore.schema}.ledger_names",)).fetchone()
        kind = conn.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = %s AND column_name = 'originator_id'",
            (datastore.schema, recorder.events_table_name),
        ).fetchone()
        # A key index created before it was declared COLLATE "C" sorts by the database's
        # collation: byte order under C or C.UTF-8, but not under a linguistic one, where
        # a kind of key is no longer one range. Probes sorted both ways tell them apart.
        probes = sorted(_ORDER_PROBES, key=str.encode)
        order = conn.execute(
            "SELECT c.collname IN ('C', 'POSIX') OR (c.collname = 'default' AND %s::text[] = "
            "(SELECT array_agg(p ORDER BY p) FROM unnest(%s::text[]) p)) AS byte_ordered "
            "FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation "
            "WHERE a.attrelid = to_regclass(%s) AND a.attname = 'key'",
            (probes, probes[::-1], f"{datastore.schema}.ledger_index"),
        ).fetchone()
    if order is not None and not order["byte_ordered"]:
        recorder.compare_keys_as_bytes()
    if kind is not None and kind["data_type"] != "text":
        recorder.close()
        raise StoreError(OLD_FORMAT)
    if names is None or not names["ready"]:
        recorder.ensure_names()
    return recorder


# Keys of one kind in byte order, with what a linguistic collation reorders: punctuation,
# digits, case, accents, and the character after the kind's separator.
_ORDER_PROBES: Final = ("k:-1", "k:0", "k:A", "k:Z", "k:_", "k:a", "k:z", "k:é", "k;")


# --- append-only enforcement and least-privilege roles --------------------------


def append_only_statements(schema: str, tables: Sequence[str]) -> list[Composed]:
    """DDL making ``tables`` refuse UPDATE, DELETE and TRUNCATE for every role (idempotent).

    Privileges alone do not protect the ledger from its own owner or a superuser;
    triggers do, unless someone deliberately disables them (``ALTER TABLE ...
    DISABLE TRIGGER`` or ``session_replication_role = replica``), which is what
    the hash chain and a published head are there to catch.
    """
    s = Identifier(schema)
    fn = Identifier(REFUSE_FUNCTION)
    statements = [
        SQL(
            "CREATE OR REPLACE FUNCTION {s}.{fn}() RETURNS trigger LANGUAGE plpgsql AS $fn$ "
            "BEGIN RAISE EXCEPTION 'ledger: % on %.% refused: the ledger is append-only', "
            "TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege'; END $fn$"
        ).format(s=s, fn=fn)
    ]
    for table in tables:
        t = Identifier(table)
        # CREATE OR REPLACE TRIGGER (PostgreSQL 14+) keeps re-running the schema DDL harmless.
        statements.append(
            SQL(
                "CREATE OR REPLACE TRIGGER ledger_append_only_row BEFORE UPDATE OR DELETE ON {s}.{t} "
                "FOR EACH ROW EXECUTE FUNCTION {s}.{fn}()"
            ).format(s=s, t=t, fn=fn)
        )
        statements.append(
            SQL(
                "CREATE OR REPLACE TRIGGER ledger_append_only_truncate BEFORE TRUNCATE ON {s}.{t} "
                "FOR EACH STATEMENT EXECUTE FUNCTION {s}.{fn}()"
            ).format(s=s, t=t, fn=fn)
        )
    return statements


# The shapes of recorded_at that msgspec writes (digits as 0): UTC or an offset, with or
# without microseconds.
_INSTANT_MASKS: Final = tuple(
    f"0000-00-00T00:00:00{fraction}{zone}"
    for fraction in ("", ".000000")
    for zone in ("Z", "+00:00", "-00:00")
)


def _state_suffix(tag: str) -> bytes:
    """The bytes every state of ``tag`` has before its link (see ``append_check_statements``).

    `"type":"<tag>"},"` where `type` sorts last among the fact's keys; a type with a key
    after it (``holidays_pinned``: `year`) only ends its content with `},"`.
    """
    names = [f.encode_name for f in msgspec.structs.fields(FACT_TYPES[tag])]
    if any(name > "type" for name in names):
        return b'},"'
    return b'"type":"%s"},"' % tag.encode()


def append_check_statements(schema: str, events_table: str, index_table: str) -> list[Composed]:
    """DDL for appends that can neither lock the log against readers nor corrupt it (idempotent).

    ``ledger/sql/append_checks.sql``, filled in: ``ledger_append_lock()``, the append lock
    taken as the owner; a statement-level trigger on the log that refuses any row
    ``ledger append`` or ``import`` would not write; one on the key index that refuses
    rows not naming this transaction's positions in order; a deferred check that every
    appended position got its index row. Not checked: the fact's fields and the link's
    value (``ledger verify`` recomputes the chain), and which key an index row carries.
    """
    topics = sorted(FACT_TYPES)
    # The bytes each topic's state has before its link: `"type":"<topic>"},"`, and their
    # length without the `,"` (canonical JSON sorts keys, and `type` sorts last in every type).
    suffixes = SQL(", ").join(
        SQL("({}, {}::bytea, {})").format(Literal(tag), Literal(suffix), Literal(len(suffix) - 2))
        for tag in topics
        for suffix in [_state_suffix(tag)]
    )
    args = {
        "s": Identifier(schema), "e": Identifier(events_table), "i": Identifier(index_table),
        "t": Identifier(TALLY), "sn": Literal(schema), "tn": Literal(TALLY),
        "qualified": Literal(f"{_ident(schema)}.{_ident(events_table)}"),
        "definer": SQL("SECURITY DEFINER SET search_path = pg_catalog, pg_temp"),
        "topics": SQL(", ").join(Literal(tag) for tag in topics),
        "suffixes": suffixes,
        "masks": SQL(", ").join(Literal(m) for m in _INSTANT_MASKS),
        "kinds": SQL(", ").join(Literal(k) for k in KEY_KINDS),
    }
    return [SQL(text).format(**args) for text in _template_statements(_CHECKS_SQL)]


def _template_statements(template: str) -> list[str]:
    """The statements of a template (each ends at a ``-- end`` line), without comment lines."""
    statements = []
    for chunk in template.split("\n-- end\n"):
        lines = [line for line in chunk.splitlines() if not line.lstrip().startswith("--")]
        if text := "\n".join(lines).strip():
            statements.append(text)
    return statements


_CHECKS_SQL: Final = (Path(__file__).parent / "sql" / "append_checks.sql").read_text()


def envelope_head(state: bytes, originator_id: str) -> tuple[str, datetime]:
    """The link and recorded_at of a stored state, read from its envelope alone.

    The layout the append trigger guarantees (``ledger.events.state_bytes``): the fact
    itself is not decoded, so a row whose fact no longer decodes cannot stop appends.
    """
    prefix = b"[%s," % msgspec.json.encode(originator_id)
    start = len(prefix)
    end = state.find(b'",{', start)
    try:
        if end < 0 or not state.startswith(prefix) or state[-2:] != b'"]':
            raise ValueError("no envelope")
        return state[-66:-2].decode("ascii"), _instant_decoder.decode(state[start : end + 1])
    except (ValueError, msgspec.DecodeError):
        raise StoreError(f"the last row's state is not one the ledger wrote (id {originator_id!r})") from None


_instant_decoder: Final = msgspec.json.Decoder(datetime)


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ident(name: str) -> str:
    # Bare when safe, so that ledger/sql/roles.sql reads like hand-written SQL.
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


ROLES: Final = ("appender", "projector", "auditor", "reporting")


def roles_sql(schema: str = "public", events_table: str = "stored_events", prefix: str = "ledger") -> str:
    """The SQL script that creates the ledger's roles and grants (ledger/sql/roles.sql is its default)."""
    from ledger.reporting import FAILED_TABLE, TABLES, TRACKING_TABLE  # the reporting view's tables

    sc, ev = _ident(schema), _ident(events_table)
    # Every table the append path writes in one transaction: the log (with its chain) and the key index.
    log = ", ".join(f"{sc}.{_ident(t)}" for t in (events_table, *SIDE_TABLES))
    view = ", ".join(f"{sc}.{_ident(t)}" for t in (*TABLES, FAILED_TABLE))
    tracking = f"{sc}.{_ident(TRACKING_TABLE)}"
    appender, projector, auditor, reporting = (_ident(f"{prefix}_{r}") for r in ROLES)
    everyone = f"{appender}, {projector}, {auditor}, {reporting}"
    functions = ", ".join(
        f"{sc}.{fn}" for fn in (f"{LOCK_FUNCTION}()", f"{ANALYZE_FUNCTION}()", "ledger_unchecked()",
                                "ledger_row_problem(bigint, text, text, bytea)", "ledger_check_events()",
                                "ledger_check_index()", "ledger_check_commit()")
    )
    qualified = f"{sc}.{ev}".replace("'", "''")
    lines = ["-- Roles: created once per cluster, NOLOGIN; grant them to login roles."]
    for role in (appender, projector, auditor, reporting):
        lines.append(
            f"DO $roles$ BEGIN CREATE ROLE {role} NOLOGIN; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $roles$;"
        )
    lines += [
        "",
        "-- Start from nothing on the ledger's objects, so re-running this script also removes",
        "-- extras (and what earlier versions granted: UPDATE on the log, the sequence).",
        f"GRANT USAGE ON SCHEMA {sc} TO {everyone};",
        f"REVOKE ALL ON {log}, {view}, {tracking}, {sc}.{_ident(TALLY)} FROM {everyone};",
        f"REVOKE ALL ON FUNCTION {functions} FROM {everyone};",
        "DO $roles$ BEGIN EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %s', "
        f"pg_get_serial_sequence('{qualified}', 'notification_id'), "
        f"'{everyone.replace(chr(39), chr(39) * 2)}'); END $roles$;",
        "",
        "-- The appender adds facts and reads what it must check (head, recorded ids). It takes",
        "-- the append lock through the owner's function: no UPDATE, so no LOCK ... ACCESS",
        "-- EXCLUSIVE; and the insert triggers refuse any row the ledger would not write.",
        f"GRANT SELECT, INSERT ON {log} TO {appender};",
        f"GRANT EXECUTE ON FUNCTION {sc}.{LOCK_FUNCTION}(), {sc}.{ANALYZE_FUNCTION}() TO {appender};",
        "-- NOTIFY needs no privilege.",
        "",
        "-- The projector (ledger projections run, status, rebuild) reads the log and writes only",
        "-- the reporting view and its tracking. It runs no DDL: `ledger init` made the tables.",
        f"GRANT SELECT ON {log} TO {projector};",
        f"GRANT SELECT, INSERT, DELETE ON {view} TO {projector};",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tracking} TO {projector};",
        "",
        "-- Auditors (ledger verify, audit, report) read the log; reporting jobs read the log,",
        "-- the reporting view and how far it has got.",
        f"GRANT SELECT ON {log} TO {auditor}, {reporting};",
        f"GRANT SELECT ON {view}, {tracking} TO {reporting};",
        "",
    ]
    return "\n".join(lines)


def create_roles(recorder: PostgresLedgerRecorder, prefix: str = "ledger") -> list[str]:
    """Create (or bring up to date) the NOLOGIN roles ``{prefix}_appender``, ``_projector``, ``_auditor``...

    and ``_reporting``, with their grants, creating the reporting view's tables if missing.
    """
    from ledger.reporting import open_view

    open_view(recorder)
    script = roles_sql(recorder.datastore.schema, recorder.events_table_name, prefix)
    with recorder.datastore.transaction(commit=True) as curs:
        # Two processes granting on the same objects at once fail ("tuple concurrently
        # updated"); the schema lock serialises them as it does table creation.
        curs.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        curs.execute(script.encode(), prepare=False)
    return [f"{prefix}_{r}" for r in ROLES]
