"""PostgreSQL backend: the eventsourcing PostgreSQL application recorder plus the ledger's key index.

The recorder serialises appends with an EXCLUSIVE table lock. Under that lock
the notification-id sequence is reset to the table's maximum before inserting,
so an import that rolled back (or was killed) leaves no gap in positions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, cast

import psycopg
from eventsourcing.persistence import BaseInfrastructureFactory, ProgrammingError
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresFactory
from eventsourcing.utils import Environment, EnvType
from psycopg import Connection, Cursor, ServerCursor
from psycopg.conninfo import conninfo_to_dict
from psycopg.errors import InsufficientPrivilege, UniqueViolation
from psycopg.rows import DictRow, dict_row, tuple_row
from psycopg.sql import SQL, Composed, Identifier

from ledger.consistency import CONTRACT, OPENING_TAGS, Lookup, first_uses
from ledger.errors import BadInput, StoreError
from ledger.events import Recorded, decode_state, decode_stored
from ledger.packing import pack_binary
from ledger.store import GENESIS, OLD_FORMAT, Head, IdConflict, LedgerRecorder, Packed, Snapshot, prefix_end
from ledger.text import printable
from ledger.urls import redact, scrub

PAGE: Final = 5000
REFUSE_FUNCTION: Final = "ledger_refuse_change"  # trigger function behind append-only tables
SIDE_TABLES: Final = ("ledger_index", "ledger_names")  # written with the events, in the same transaction
SCHEMA_LOCK: Final = 0x1ED6E5  # advisory lock key held while creating the schema
ANALYZE_AFTER: Final = 50_000  # an append of at least this many facts refreshes the planner's statistics
UNIT: Final = "\x1f"  # separates ids sent as one parameter (no id holds a control character)


class _Session:
    overlaps = True  # the server inserts while Python links the next batch

    def __init__(self, recorder: PostgresLedgerRecorder, curs: Cursor[DictRow]) -> None:
        self.r = recorder
        self.curs = curs
        self.inserted = 0

    def head(self) -> Head:
        self.curs.execute(self.r.sql_head)
        row = self.curs.fetchone()
        if row is None:
            return Head(0, GENESIS, None)
        rec, link = decode_stored(row["notification_id"], bytes(row["state"]))
        return Head(row["notification_id"], link, rec.recorded_at)

    def next_position(self) -> int:
        # Under the table lock nobody else takes ids, so the new positions follow the current
        # maximum without a gap: COPY (several times faster than the recorder's INSERT of a
        # composite array) writes them itself and needs no RETURNING. The sequence is reset
        # here too, for a writer that draws from it; each insert checks where its rows landed.
        self.curs.execute(self.r.sql_reset_sequence)
        row = self.curs.fetchone()
        assert row is not None
        return int(row["setval"])

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
        # of the insert); the sequence follows once the rows are in.
        try:
            with self.curs.copy(self.r.sql_copy_events) as copy:
                copy.write(cast(bytes, packed.events))
        except UniqueViolation as exc:  # only rows packed as if none were recorded meet one
            raise IdConflict(f"import: {exc.diag.message_detail or exc}") from None
        self.curs.execute(self.r.sql_follow_sequence)  # returns the log's new maximum
        top = self.curs.fetchone()
        end = int(top["setval"]) if top is not None else -1
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
            "SELECT notification_id, state FROM {schema}.{table} ORDER BY notification_id DESC LIMIT 1"
        ).format(schema=schema, table=table)
        self.sql_recorded_joined = SQL(
            "SELECT originator_id, notification_id, state FROM {schema}.{table} "
            "WHERE originator_id = ANY(string_to_array(%s, E'\\x1f'))"
        ).format(schema=schema, table=table)
        self.sql_recorded = SQL(
            "SELECT originator_id, notification_id, state FROM {schema}.{table} "
            "WHERE originator_id = ANY(%s::text[])"
        ).format(schema=schema, table=table)
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
        qualified = f"{self.datastore.schema}.{self.events_table_name}"
        self.sql_reset_sequence = SQL(
            "SELECT setval(pg_get_serial_sequence({qualified}, 'notification_id'), "
            "COALESCE((SELECT MAX(notification_id) FROM {schema}.{table}), 0) + 1, false)"
        ).format(qualified=qualified, schema=schema, table=table)
        self.sql_follow_sequence = SQL(
            "SELECT setval(pg_get_serial_sequence({qualified}, 'notification_id'), "
            "(SELECT MAX(notification_id) FROM {schema}.{table}))"
        ).format(qualified=qualified, schema=schema, table=table)
        self.sql_read = SQL(
            "SELECT notification_id, state FROM {schema}.{table} "
            "WHERE notification_id >= %s AND notification_id <= %s ORDER BY notification_id LIMIT %s"
        ).format(schema=schema, table=table)
        self.sql_analyze = SQL("ANALYZE {schema}.{table}, {schema}.{index}").format(
            schema=schema, table=table, index=index
        )
        self.sql_read_positions = SQL(
            "SELECT notification_id, state FROM {schema}.{table} "
            "WHERE notification_id = ANY(%s::text::bigint[]) ORDER BY notification_id"
        ).format(schema=schema, table=table)
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
            self._lock_table(curs)
            self._notify_channel(curs)
            session = _Session(self, curs)
            yield session
        if session.inserted >= ANALYZE_AFTER:
            # Fresh statistics after a bulk load: without them the planner guesses, and
            # after ten million rows it chose a hash join over the whole log for a
            # contract-month's keyed read (10 s instead of 0.3 s) until autovacuum caught up.
            # A role that does not own the tables gets a notice and no error.
            with self.datastore.get_connection() as conn:
                conn.execute(self.sql_analyze)

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


class LedgerDatastore(PostgresDatastore):
    """The library's datastore, connecting with every libpq parameter of the store URL, JIT off.

    The library hands libpq five parameters (dbname, host, port, user, password),
    always: the URL's others (``sslmode``, ``connect_timeout``, ``host=/socket/dir``...)
    would be dropped, and an absent user or host sent as given defaults instead of
    libpq's own. The ledger's queries are short index walks; PostgreSQL's cost
    estimate for a keyed read of a long service history can pass
    ``jit_above_cost``, and compiling then takes longer than running the query.
    """

    def __init__(self, params: dict[str, str], **kwargs: Any) -> None:
        super().__init__(
            params.get("dbname", ""), params.get("host", ""), params.get("port", ""),
            params.get("user", ""), params.get("password", ""), **kwargs,
        )
        self.pool.kwargs = {**params, "row_factory": dict_row}

    def after_connect_func(self) -> Callable[[Connection[Any]], None]:
        library = super().after_connect_func()

        def after_connect(conn: Connection[Any]) -> None:
            library(conn)
            conn.execute("SET jit = off")

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
    with probe as conn:
        # Ready when the last object the schema creates exists (older stores get the rest).
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'ledger_append_only_truncate' "
            "AND tgrelid = to_regclass(%s)) AS ready, to_regclass(%s) IS NOT NULL "
            "AND to_regclass(%s) IS NOT NULL AS ledger",
            (f"{schema}.ledger_index", f"{schema}.{recorder.events_table_name}", f"{schema}.ledger_index"),
        ).fetchone()
        assert row is not None
        if not row["ledger"] and not create:
            recorder.close()
            raise StoreError(f"not a ledger store: {redact(url)} (`ledger init` creates one)")
        if not row["ready"] and create:
            # DDL run by two processes at once fails ("tuple concurrently updated"):
            # whoever creates the schema holds an advisory lock while doing it.
            conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
            try:
                recorder.create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
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


def _ident(name: str) -> str:
    # Bare when safe, so that ledger/sql/roles.sql reads like hand-written SQL.
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def roles_sql(schema: str = "public", events_table: str = "stored_events", prefix: str = "ledger") -> str:
    """The SQL script that creates the ledger's roles and grants (ledger/sql/roles.sql is its default)."""
    sc, ev = _ident(schema), _ident(events_table)
    # Every table the append path writes in one transaction: the log (with its chain) and the key index.
    tables = ", ".join(f"{sc}.{_ident(t)}" for t in (events_table, *SIDE_TABLES))
    appender_literal = f"{prefix}_appender".replace("'", "''")
    appender, auditor, reporting = (_ident(f"{prefix}_{r}") for r in ("appender", "auditor", "reporting"))
    everyone = f"{appender}, {auditor}, {reporting}"
    qualified = f"{sc}.{ev}".replace("'", "''")
    lines = ["-- Roles: created once per cluster, NOLOGIN; grant them to login roles."]
    for role in (appender, auditor, reporting):
        lines.append(
            f"DO $roles$ BEGIN CREATE ROLE {role} NOLOGIN; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $roles$;"
        )
    lines += [
        "",
        "-- Start from nothing on the ledger's tables, so re-running this script also removes extras.",
        f"GRANT USAGE ON SCHEMA {sc} TO {everyone};",
        f"REVOKE ALL ON {tables} FROM {everyone};",
        "",
        "-- The appender writes new facts and reads what it must check (head, existing ids).",
        f"GRANT SELECT, INSERT ON {tables} TO {appender};",
        "-- LOCK TABLE ... IN EXCLUSIVE MODE (which serialises appends) needs UPDATE, DELETE or",
        "-- TRUNCATE privilege; UPDATE is the least of them, and the append-only trigger refuses",
        "-- every actual UPDATE for every role.",
        f"GRANT UPDATE ON {sc}.{ev} TO {appender};",
        "-- Positions come from the notification-id sequence: nextval needs USAGE, and the",
        "-- gap-free reset under the table lock (setval) needs UPDATE.",
        "DO $roles$ BEGIN EXECUTE format('GRANT USAGE, UPDATE ON SEQUENCE %s TO %I', "
        f"pg_get_serial_sequence('{qualified}', 'notification_id'), '{appender_literal}'); "
        "END $roles$;",
        "-- NOTIFY needs no privilege.",
        "",
        "-- Auditors (ledger verify, audit) and reporting jobs only read.",
        f"GRANT SELECT ON {tables} TO {auditor}, {reporting};",
        "",
    ]
    return "\n".join(lines)


def create_roles(recorder: PostgresLedgerRecorder, prefix: str = "ledger") -> list[str]:
    """Create (or bring up to date) the NOLOGIN roles ``{prefix}_appender``, ``_auditor``, ``_reporting``."""
    script = roles_sql(recorder.datastore.schema, recorder.events_table_name, prefix)
    with recorder.datastore.transaction(commit=True) as curs:
        # Two processes granting on the same objects at once fail ("tuple concurrently
        # updated"); the schema lock serialises them as it does table creation.
        curs.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        curs.execute(script.encode(), prepare=False)
    return [f"{prefix}_{r}" for r in ("appender", "auditor", "reporting")]
