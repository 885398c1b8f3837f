"""PostgreSQL backend: the eventsourcing PostgreSQL application recorder plus the ledger's key index.

Size: over 400 lines because the recorder's statements, its write session, the append lock's
diagnosis and opening a store are one unit (schema, connections and the view are apart).

Appends are serialised by an EXCLUSIVE lock on the log, taken through the owner's
``ledger_append_lock()`` (so that a writer needs no privilege that could lock
readers out), waiting at most LEDGER_LOCK_WAIT seconds. Under that lock positions
follow the table's maximum, so an import that rolled back (or was killed) leaves no
gap. Insert triggers refuse rows the ledger would not write (``sql/append_checks.sql``);
``roles_sql`` grants each role what it needs and no more (``sql/roles.sql``).
"""


from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast

import msgspec
import psycopg
from eventsourcing.persistence import (
    InterfaceError,
    OperationalError,
    ProgrammingError,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Connection, Cursor, ServerCursor
from psycopg.errors import InsufficientPrivilege, LockNotAvailable, UndefinedFunction, UniqueViolation
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier, Literal

from ledger.errors import LockWaitTimeout, StoreError
from ledger.events import Recorded, decode_state
from ledger.persistence.chain import GENESIS
from ledger.persistence.consistency import OPENING_TAGS, Lookup, first_uses
from ledger.persistence.keys import CONTRACT, prefix_end
from ledger.persistence.merkle_read import STORED_FROM
from ledger.persistence.merkle_store import append_leaves
from ledger.persistence.port import PAGE, IdConflict, Packed
from ledger.persistence.postgres.connect import LedgerDatastore, connect, connection_params
from ledger.persistence.postgres.schema import (
    ANALYZE_FUNCTION,
    LAST_OBJECT,
    LOCK_FUNCTION,
    ROLES,
    SCHEMA_LOCK,
    append_check_statements,
    append_only_statements,
    ident,
    roles_sql,
)
from ledger.persistence.postgres.tree import PostgresTree, TreeSQL, tree_statements
from ledger.persistence.postgres.view import PostgresReportingView, existing_view, open_view
from ledger.persistence.rows import Head
from ledger.persistence.sql import OLD_FORMAT, SQLRecorder
from ledger.runtime import LOCK_WAIT, env_seconds
from ledger.text import printable
from ledger.urls import redact

if TYPE_CHECKING:  # types only (ledger.persistence.port)
    from ledger.persistence.port import Snapshot, Tree

ANALYZE_AFTER: Final = 50_000  # an append of at least this many facts refreshes the planner's statistics
UNIT: Final = "\x1f"  # separates ids sent as one parameter (no id holds a control character)
WRITE_WORK_MEM: Final = "32MB"  # at least this much work_mem in a write session (``_append_lock``)

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
        # Planned at each call, never prepared: a prepared statement's generic plan, chosen
        # while the log was small, is a sequential scan that splits the parameter again for
        # every row it reads (the server's group commit, whose check runs once per
        # transaction, spent 20 to 370 ms in it at 20,000 facts); planned with the ids in
        # hand it is an index probe per id, for the planning's fraction of a millisecond.
        with self.curs.connection.cursor(binary=True, row_factory=tuple_row) as curs:
            if joined.count(UNIT) == len(ids) - 1:
                # One text parameter split by the server: dumping a list of strings as an array
                # literal (quoting each) costs the client more than the lookups cost the server.
                # Ids never hold control characters; if one did, the array path below is exact.
                curs.execute(self.r.sql_recorded_joined, (joined,), prepare=False)
            else:
                curs.execute(self.r.sql_recorded, (ids,), prepare=False)
            return {row[0]: (row[1], row[2]) for row in curs.fetchall()}

    def lookup(self, wanted: tuple[Sequence[str], Sequence[str]]) -> Lookup:
        names, contracts = wanted
        found: dict[str, tuple[str, int]] = {}
        # Planned per call like `committed` above: a generic plan chosen while the tables
        # were small must not stay with them as they grow.
        if names:
            self.curs.execute(self.r.sql_names, (list(names),), prepare=False)
            found = {row["name"]: (row["scope"], row["position"]) for row in self.curs.fetchall()}
        rows: list[tuple[int, bytes]] = []
        if contracts:
            keys = text_array([CONTRACT + cid for cid in contracts])
            self.curs.execute(self.r.sql_keyed_states, (keys, 2**62), prepare=False)
            rows = [(row["notification_id"], bytes(row["state"])) for row in self.curs.fetchall()]
        return Lookup(found, contracts, rows)

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
        append_leaves(self.tree(), packed.start, packed.count, packed.leaves)  # the tree, in this transaction
        self.inserted += packed.count

    def tree(self) -> Tree:
        return PostgresTree(self.curs, self.r.sql_tree)

    def states(self, start: int, stop: int) -> list[tuple[int, bytes]]:
        self.curs.execute(self.r.sql_read, (start, stop, stop - start + 1))
        return [(r["notification_id"], bytes(r["state"])) for r in self.curs.fetchall()]


class PostgresLedgerRecorder(PostgresApplicationRecorder, SQLRecorder):
    """The eventsourcing PostgreSQL application recorder, with the ledger's key index."""

    view_opener = staticmethod(open_view)  # the backend's reporting view (``SQLRecorder.open_view``)
    view_finder = staticmethod(existing_view)

    subscribes = True  # LISTEN/NOTIFY: the reporting view's notifications()
    packing = "binary"  # COPY data, built by whoever links the rows (an import's child process too)
    store_errors = (*SQLRecorder.store_errors, psycopg.Error)
    # What a lost connection or a restarting server raises (the library wraps psycopg's errors).
    connection_errors = (psycopg.OperationalError, psycopg.InterfaceError, OperationalError, InterfaceError)

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        # A rebuild worker's reads run on one session it keeps, which plans generically
        # (``serve_rebuild``); ``_held`` is that session once taken.
        self._serving = False
        self._held: Connection[DictRow] | None = None
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.events_table_name)
        # The library's table, its ids compared as bytes (COLLATE "C", as the key index's
        # keys): the id's primary key index then compares with memcmp, not through the
        # database's locale (C.UTF-8 is not "C" to PostgreSQL 15), which cost an import's
        # server about 0.4 us a row of its 5.8 (docs/decisions.md, issue 17, hAG). Ids
        # are only ever compared for equality, the same under any deterministic collation.
        # A store made before keeps its column as it is (IF NOT EXISTS).
        self.sql_create_statements[self.create_table_statement_index] = SQL(
            "CREATE TABLE IF NOT EXISTS {schema}.{table} ("
            'originator_id text COLLATE "C" NOT NULL, originator_version bigint NOT NULL, '
            "topic text, state bytea, notification_id bigserial, "
            "PRIMARY KEY (originator_id, originator_version)) "
            "WITH (autovacuum_enabled = true, autovacuum_vacuum_threshold = 100000000, "
            "autovacuum_vacuum_scale_factor = 0.5, autovacuum_analyze_threshold = 1000, "
            "autovacuum_analyze_scale_factor = 0.01)"
        ).format(schema=schema, table=table)
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
        # The log's Merkle tree, written by every append in its transaction (``merkle_store``).
        self.sql_create_statements.extend(tree_statements(self.datastore.schema))
        self.sql_tree = TreeSQL(self.datastore.schema, self.events_table_name)
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
            "SELECT notification_id, state FROM {schema}.{table} WHERE notification_id = ANY(ARRAY({keyed})) "
            "ORDER BY notification_id"
        ).format(schema=schema, table=table, keyed=self._keyed_positions())
        self.sql_prefix_positions = self._prefix_positions(SQL("key"))
        self.sql_range_states = self._range_states(SQL("key"))
        self._parts_queries: dict[tuple[tuple[int, bool, bool], ...], Composed] = {}  # ``_parts_query``
        # Many prefixes' ranges in one statement (an index range scan each).
        self.sql_prefixes_positions: Composed | None = SQL(
            "SELECT DISTINCT i.position FROM unnest(%s::text[], %s::text[]) AS r(lo, hi) "
            "JOIN {schema}.{index} i ON i.key >= r.lo AND i.key < r.hi AND i.position <= %s "
            "ORDER BY i.position"
        ).format(schema=schema, index=Identifier("ledger_index"))
        # ``read_key_ranges_states``: each range its own index range scan (a LATERAL subquery the
        # planner cannot pull up: OFFSET 0). A join of the ranges with the index let it merge a
        # thousand probe ranges with the whole index (19 s a statement at 10M events), and a hash
        # of the distinct positions planned for the estimate spilled (70 s); 1.6 s for 2,000 ranges.
        self.sql_ranges_positions = self._ranges_positions(SQL("::text[]"))
        # ``edge_keys``: one index seek per range, in one statement.
        self.sql_edge_keys = tuple(SQL(
            "SELECT ({first}) FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS r(lo, hi, n) "
            "ORDER BY r.n"
        ).format(first=self._first_key(SQL("r.lo"), SQL("r.hi"), SQL("%s"), order))
            for order in ("ASC", "DESC"))
        # ``first_keys_by_name``: a skip scan, one index seek per name, in one statement.
        self.sql_first_by_name = SQL(
            "WITH RECURSIVE r(n, hi, k) AS ("
            "SELECT b.n, b.hi, ({first}) "
            "FROM unnest(%(lo)s::text[], %(hi)s::text[]) WITH ORDINALITY AS b(lo, hi, n) "
            "UNION ALL "
            "SELECT r.n, r.hi, ({next}) "
            "FROM r WHERE r.k IS NOT NULL) "
            'SELECT n, k FROM r WHERE k IS NOT NULL ORDER BY n, k COLLATE "C"'
        ).format(first=self._first_key(SQL("b.lo"), SQL("b.hi"), SQL("%(upto)s"), "ASC"),
                 next=self._first_key(SQL("left(r.k, length(r.k) - %(skip)s) || 'A'"), SQL("r.hi"),
                                      SQL("%(upto)s"), "ASC"))
        self.sql_first_filed = SQL(
            "SELECT e.notification_id, e.state FROM {schema}.{index} i JOIN {schema}.{table} e "
            "ON e.notification_id = i.position WHERE i.key = %s AND i.position <= %s "
            "AND e.topic = ANY(%s::text[]) ORDER BY i.position LIMIT 1"
        ).format(schema=schema, table=table, index=index)
        self.sql_edge_key = tuple(self._first_key(SQL("%s"), SQL("%s"), SQL("%s"), order)
                                  for order in ("ASC", "DESC"))
        # ``unclosed_openings``: as ``ledger.persistence.sqlite.reads.UNCLOSED`` says.
        self.sql_unclosed = SQL(
            'SELECT o.position FROM {schema}.{index} o WHERE o.key COLLATE "C" >= %(lo)s '
            'AND o.key COLLATE "C" < %(hi)s AND o.position <= %(upto)s '
            'AND (substr(o.key, %(n)s::int, 27) COLLATE "C" >= %(since)s OR NOT EXISTS ('
            "SELECT 1 FROM {schema}.{index} r "
            "WHERE r.key COLLATE \"C\" > 'r:' || substr(o.key, %(n)s::int + 28) || '@' "
            "|| substr(o.key, %(n)s::int, 27) "
            "AND r.key COLLATE \"C\" < 'r:' || substr(o.key, %(n)s::int + 28) || '@' || %(until)s "
            "AND r.position <= %(upto)s))"
        ).format(schema=schema, index=index)
        self.sql_filed_under = SQL(
            "SELECT 1 FROM {schema}.{index} WHERE key = %s AND position = %s"
        ).format(schema=schema, index=index)
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
        # Each name an opening fact gives (``ledger.persistence.consistency``): its scope and first position.
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
        # Whole milliseconds, at least one: 0 would mean waiting for ever. And memory enough
        # for an insert's transition table (the append checks' trigger captures every row of
        # a COPY, checked or not): at the default 4 MB a batch of 15,000 facts spilled to a
        # temporary file, about 0.13 us a row of the server's time (decisions.md, issue 17, hAG).
        curs.execute(
            "SELECT set_config('lock_timeout', %s, true), "
            "CASE WHEN pg_size_bytes(current_setting('work_mem')) "
            "< pg_size_bytes(%s) THEN set_config('work_mem', %s, true) END",
            (f"{max(1, math.ceil(wait * 1000))}ms", WRITE_WORK_MEM, WRITE_WORK_MEM),
        )
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
        if self._serving:
            return self._fetch_held(query, params)
        with self.datastore.get_connection() as conn, conn.cursor(binary=True, row_factory=tuple_row) as curs:
            curs.execute(query, params)
            return curs.fetchall()

    def _fetch_held(self, query: SQL | Composed, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """``_fetch`` on the session a rebuild worker keeps (``serve_rebuild``): taken from the pool at
        its first read, given back (and another taken at the next read) when a statement fails, or at
        ``close``. Errors are psycopg's own (``store_errors`` and ``connection_errors`` name them)."""
        conn = self._held
        if conn is None:
            pool = self.datastore.pool
            pool.open()
            conn = pool.getconn()
            try:
                if conn.info.server_version >= _GENERIC_PLANS_FROM:
                    conn.execute("SET plan_cache_mode = force_generic_plan")
            except BaseException:
                pool.putconn(conn)
                raise
            self._held = conn
        try:
            with conn.cursor(binary=True, row_factory=tuple_row) as curs:
                curs.execute(query, params)
                return curs.fetchall()
        except BaseException:
            self._release_held()  # the pool resets it, or replaces it if it broke
            raise

    def _release_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            with suppress(Exception):
                self.datastore.pool.putconn(held)

    def close(self) -> None:
        self._release_held()
        super().close()

    def read_keyed_states(self, keys: Sequence[str], upto: int) -> Iterator[tuple[int, bytes]]:
        for row in self._fetch(self.sql_keyed_states, (text_array(keys), upto)):
            yield row[0], row[1]

    def read_position_states(self, positions: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        for i in range(0, len(positions), PAGE):
            # A text array literal: psycopg's list dumper costs more per element than the fetch.
            literal = "{" + ",".join(map(str, positions[i : i + PAGE])) + "}"
            for row in self._fetch(self.sql_read_positions, (literal,)):
                yield row[0], row[1]

    def read_names(self, names: Sequence[str]) -> dict[str, tuple[str, int]] | None:
        if not names:
            return {}
        try:
            rows = self._fetch(self.sql_names, (list(names),))
        except (psycopg.errors.UndefinedTable, InsufficientPrivilege):  # a store made before the table
            return None
        return {row[0]: (row[1], int(row[2])) for row in rows}

    def committed(self, wanted: tuple[Sequence[str], Sequence[str]]) -> Lookup:
        names, contracts = wanted
        found: dict[str, tuple[str, int]] = {}
        if names:
            found = {row[0]: (row[1], row[2]) for row in self._fetch(self.sql_names, (list(names),))}
        rows: list[tuple[int, bytes]] = []
        if contracts:
            keys = [CONTRACT + cid for cid in contracts]
            rows = [(row[0], row[1]) for row in self._fetch(self.sql_keyed_states, (text_array(keys), 2**62))]
        return Lookup(found, contracts, rows)

    def compare_keys_as_bytes(self) -> None:
        """Read key prefixes correctly from a key index not in byte order (one made before it was).

        The comparison is then not the index's, so the read scans the index table:
        correct, but slower in a large store than a new store's indexed range.
        """
        self.sql_prefix_positions = self._prefix_positions(SQL('key COLLATE "C"'))
        self.sql_range_states = self._range_states(SQL('key COLLATE "C"'))
        self.sql_prefixes_positions = None  # one prefix at a time, as compared above

    def serve_rebuild(self) -> None:
        """Reads on one session this recorder keeps (``_fetch_held``), which plans each statement once
        (``plan_cache_mode = force_generic_plan``).

        A rebuild's keyed read of a group (``read_key_parts_states``) was planned afresh at every
        run: the server keeps custom plans when the generic one's estimate is higher (each unnest
        of bounds counted as ten rows, not one), though both are the same plan. Planning was a
        quarter of the group reads' server CPU (a hundred groups replayed: 0.18 s against 0.24 s).
        From the pool, a worker's statements went round its three sessions in turn (it hands out
        the one idle longest), each warming its own caches and plans; on one session, 200 groups'
        reads replayed took 0.45-0.46 s of server CPU against 0.49-0.52 s, and 1.83-1.86 s of the
        client's against 1.90-2.08 s (3 alternated pairs; issue 17, hAF). The view's fills still
        take a session from the pool. Worker processes alone, whose every statement is the
        rebuild's: other sessions keep the server's choice. A server before 12 has no such setting:
        its session is left as it is.
        """
        self._serving = True

    def _prefix_positions(self, key: SQL) -> Composed:
        """Positions under keys from one bound to the next, ``key`` being how keys are compared."""
        return SQL(
            "SELECT position FROM {schema}.{index} WHERE {key} >= %s AND {key} < %s AND position <= %s "
            "ORDER BY position"
        ).format(schema=Identifier(self.datastore.schema), index=Identifier("ledger_index"), key=key)

    def _first_key(self, lo: SQL, hi: SQL, upto: SQL, order: str) -> Composed:
        """The first (``ASC``) or last (``DESC``) key from ``lo`` to before ``hi`` up to ``upto``: one
        index seek, keys compared as bytes (``edge_key``, ``edge_keys``, ``first_keys_by_name``)."""
        return SQL(
            'SELECT key FROM {schema}.{index} WHERE key COLLATE "C" >= {lo} AND key COLLATE "C" < {hi} '
            'AND position <= {upto} ORDER BY key COLLATE "C" {order} LIMIT 1'
        ).format(schema=Identifier(self.datastore.schema), index=Identifier("ledger_index"), lo=lo, hi=hi,
                 upto=upto, order=SQL(order))

    def _keyed_positions(self) -> Composed:
        """Positions under the keys of one ``text[]`` literal (``text_array``), up to a position."""
        return SQL(
            "SELECT position FROM {schema}.{index} WHERE key = ANY(%s::text::text[]) AND position <= %s"
        ).format(schema=Identifier(self.datastore.schema), index=Identifier("ledger_index"))

    def _ranges_positions(self, cast: SQL) -> Composed:
        """Positions under key ranges given as two arrays (lower and upper bounds, ``cast`` to ``text[]``),
        each range its own index range scan (``sql_ranges_positions``' comment says why)."""
        return SQL(
            "SELECT x.position FROM unnest(%s{cast}, %s{cast}) AS r(lo, hi), LATERAL ("
            "SELECT position FROM {schema}.{index} WHERE key >= r.lo AND key < r.hi AND position <= %s "
            "OFFSET 0) AS x"
        ).format(schema=Identifier(self.datastore.schema), index=Identifier("ledger_index"), cast=cast)

    def _range_states(self, key: SQL) -> Composed:
        """The rows under keys from one bound to the next, in one statement (as ``sql_keyed_states``)."""
        return SQL(
            "SELECT notification_id, state FROM {schema}.{table} WHERE notification_id = ANY(ARRAY("
            "SELECT position FROM {schema}.{index} WHERE {key} >= %s AND {key} < %s AND position <= %s)) "
            "ORDER BY notification_id"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name),
                 index=Identifier("ledger_index"), key=key)

    def read_key_prefixes(self, prefixes: Sequence[str], upto: int) -> Iterator[Recorded]:
        if self.sql_prefixes_positions is None or not prefixes:
            yield from super().read_key_prefixes(prefixes, upto)
            return
        rows = self._fetch(self.sql_prefixes_positions,
                           (list(prefixes), [prefix_end(p) for p in prefixes], upto))
        yield from self.read_positions([row[0] for row in rows])

    def read_key_prefix(self, prefix: str, upto: int) -> Iterator[Recorded]:
        rows = self._fetch(self.sql_prefix_positions, (prefix, prefix_end(prefix), upto))
        yield from self.read_positions([row[0] for row in rows])

    def read_key_range_states(self, lo: str, hi: str, upto: int) -> Iterator[tuple[int, bytes]]:
        for row in self._fetch(self.sql_range_states, (lo, hi, upto)):
            yield row[0], row[1]

    def edge_key(self, lo: str, hi: str, upto: int, *, last: bool = False) -> str | None:
        rows = self._fetch(self.sql_edge_key[last], (lo, hi, upto))
        return str(rows[0][0]) if rows else None

    def edge_keys(self, ranges: Sequence[tuple[str, str]], upto: int, *,
                  last: bool = False) -> list[str | None]:
        if not ranges:
            return []
        rows = self._fetch(self.sql_edge_keys[last], (upto, [lo for lo, _ in ranges], [h for _, h in ranges]))
        return [None if row[0] is None else str(row[0]) for row in rows]

    def first_keys_by_name(self, prefixes: Sequence[str], upto: int, tail: int) -> list[list[str]]:
        out: list[list[str]] = [[] for _ in prefixes]
        if prefixes:
            params = {"lo": list(prefixes), "hi": [prefix_end(p) for p in prefixes], "upto": upto,
                      "skip": tail + 1}
            for n, key in self._fetch(self.sql_first_by_name, params):  # type: ignore[arg-type]
                out[int(n) - 1].append(str(key))
        return out

    def read_key_ranges_states(self, ranges: Sequence[tuple[str, str]],
                               upto: int) -> Iterator[tuple[int, bytes]]:
        if self.sql_prefixes_positions is None or not ranges:
            yield from super().read_key_ranges_states(ranges, upto)
            return
        bounds = ([lo for lo, _ in ranges], [hi for _, hi in ranges], upto)
        positions = sorted({row[0] for row in self._fetch(self.sql_ranges_positions, bounds)})
        yield from self.read_position_states(positions)

    def read_key_parts_states(self, parts: Sequence[tuple[Sequence[str], Sequence[tuple[str, str]]]],
                              upto: int) -> list[tuple[int, int, bytes]]:
        """Every part in one statement: each part's positions as one array from an InitPlan, as in
        ``sql_keyed_states`` (its keys) and ``sql_ranges_positions`` (its ranges), the parts'
        rows joined. Each fact comes once per part, as this store's keyed read gives it too."""
        if self.sql_prefixes_positions is None:  # keys compared in another order than the index's
            return super().read_key_parts_states(parts, upto)
        shape = tuple((part, bool(keys), bool(ranges)) for part, (keys, ranges) in enumerate(parts)
                      if keys or ranges)
        if not shape:
            return []
        params: list[object] = []
        for part, has_keys, has_ranges in shape:
            keys, ranges = parts[part]
            if has_keys:
                params += (text_array(keys), upto)
            if has_ranges:
                params += (text_array([lo for lo, _ in ranges]), text_array([hi for _, hi in ranges]), upto)
        rows = self._fetch(self._parts_query(shape), params)
        rows.sort()  # here, not by the server: a sort node there cost it more (it copies every row)
        return rows

    def _parts_query(self, shape: tuple[tuple[int, bool, bool], ...]) -> Composed:
        """``read_key_parts_states``' statement for parts of this shape ((index, has keys, has ranges)),
        made once per shape (a rebuild's groups have two)."""
        query = self._parts_queries.get(shape)
        if query is None:
            schema, table = Identifier(self.datastore.schema), Identifier(self.events_table_name)
            keyed, ranged = self._keyed_positions(), self._ranges_positions(SQL("::text::text[]"))
            branches = []
            for part, has_keys, has_ranges in shape:
                positions = SQL(" UNION ALL ").join([q for q, has in ((keyed, has_keys), (ranged, has_ranges))
                                                     if has])
                branches.append(SQL("SELECT {part}::int, notification_id, state FROM {schema}.{table} "
                                    "WHERE notification_id = ANY(ARRAY({positions}))").format(
                    part=Literal(part), schema=schema, table=table, positions=positions))
            query = self._parts_queries[shape] = SQL(" UNION ALL ").join(branches)
        return query

    def unclosed_openings(self, prefix: str, since: str, until: str, upto: int) -> list[int]:
        params = {"lo": prefix, "hi": prefix_end(prefix), "upto": upto, "n": len(prefix) + 1, "since": since,
                  "until": until}
        return sorted({int(r[0]) for r in self._fetch(self.sql_unclosed, params)})  # type: ignore[arg-type]

    def first_filed(self, key: str, topics: Sequence[str], upto: int) -> tuple[int, bytes] | None:
        rows = self._fetch(self.sql_first_filed, (key, upto, list(topics)))
        return (rows[0][0], rows[0][1]) if rows else None

    def filed_under(self, key: str, position: int) -> bool:
        return bool(self._fetch(self.sql_filed_under, (key, position)))

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
            with closing(_Snapshot(conn, self)) as snap:
                yield snap

    @contextmanager
    def merkle_tree(self) -> Iterator[Tree]:
        with self.datastore.transaction(commit=False) as curs:
            yield PostgresTree(curs, self.sql_tree)

    def merkle_sizes(self) -> tuple[int | None, int]:
        with self.datastore.transaction(commit=False) as curs:
            if PostgresTree(curs, self.sql_tree).covered() is None:
                return None, self.last_position()
            curs.execute(self.sql_tree.sizes)
            row = curs.fetchone()
            assert row is not None
            return int(row["tree"]) << STORED_FROM, int(row["log"])

    def create_merkle(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            # Concurrent DDL fails ("tuple concurrently updated"): the schema lock, as for the tables.
            curs.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            for statement in tree_statements(self.datastore.schema):
                curs.execute(statement)

    def reachable(self, url: str) -> None:
        # A probe fails at once while the server is down; the pool would wait its timeout.
        psycopg.connect(url, connect_timeout=5).close()


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


def open_postgres(url: str, *, pool_size: int = 2, create: bool = True) -> PostgresLedgerRecorder:
    """Open the PostgreSQL ledger at ``url``, creating its tables if needed (only if ``create``).

    Without ``create``, a database holding no ledger is refused and left as it was.
    """
    params = connection_params(url)
    probe = connect(url, params)
    # Stream ids are the facts' own ids (text), so the primary key is the idempotency key itself.
    datastore = LedgerDatastore(
        params, pool_size=pool_size, max_overflow=2, connect_timeout=10, originator_id_type="text"
    )
    recorder = PostgresLedgerRecorder(datastore)
    schema = datastore.schema
    events = f"{ident(schema)}.{ident(recorder.events_table_name)}"
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
            (LAST_OBJECT[0], f"{ident(schema)}.{ident(LAST_OBJECT[1])}", events,
             f"{ident(schema)}.ledger_index", events, schema, events),
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


_GENERIC_PLANS_FROM: Final = 120000  # the first server version with plan_cache_mode (12)


# --- append-only enforcement and least-privilege roles --------------------------

def text_array(values: Sequence[str]) -> str:
    """A ``text[]`` literal of ``values``, sent as one string: psycopg's list dumper costs about
    35 us a statement in a rebuild worker's keyed reads, several times the quoting's."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


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



def create_roles(recorder: PostgresLedgerRecorder, prefix: str = "ledger") -> list[str]:
    """Create (or bring up to date) the NOLOGIN roles ``{prefix}_appender``, ``_projector``, ``_auditor``...

    and ``_reporting``, with their grants, creating the reporting view's tables if missing.
    """
    open_view(recorder.datastore)
    script = roles_sql(recorder.datastore.schema, recorder.events_table_name, prefix)
    with recorder.datastore.transaction(commit=True) as curs:
        # Two processes granting on the same objects at once fail ("tuple concurrently
        # updated"); the schema lock serialises them as it does table creation.
        curs.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        curs.execute(script.encode(), prepare=False)
    return [f"{prefix}_{r}" for r in ROLES]



PostgresReportingView.reader_class = PostgresLedgerRecorder
