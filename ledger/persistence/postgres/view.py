"""The reporting view on PostgreSQL: the report tables in the ledger's schema, with their tracking.

Each report table (``report_x``) is a view over one of two tables, ``report_x__a`` and
``report_x__b`` (copies), chosen by the one row of ``reporting_live``. The follower writes the
live copy; a rebuild empties the other one, fills it in short transactions and flips the row
with its tracking in one (``replacing``): readers see the whole old view, then the whole new
one, no rebuild holds a transaction open, and the emptied copy gives its space back at once
(TRUNCATE), so repeated rebuilds do not grow the tables. ``ledger init`` (or the first open by a
role that may create) makes the copies, or turns the tables an earlier version made into copy
``a`` with their rows and grants; a role that may not create keeps using those tables as they are.

Size: over 400 lines: the two layouts, and the making and upgrading of the copies, belong together.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, ClassVar, Final

import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Connection, Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier, Literal

from ledger.errors import StoreError
from ledger.persistence.port import (
    APP_NAME,
    ROW_TABLES,
    SUPPORT_TABLES,
    TABLES,
    TRACKING_TABLE,
    Filling,
    LedgerRecorder,
    Pair,
    ProjectionError,
    ReportingView,
    refuse_backwards,
)
from ledger.persistence.postgres.schema import COPIES, LIVE_TABLE, copy_name
from ledger.persistence.rows import ViewRows

_PG_TABLES: Final = (
    "CREATE TABLE IF NOT EXISTS {schema}.report_monthly_availability ("
    "contract text NOT NULL, month text NOT NULL, policy_version integer NOT NULL, timezone text NOT NULL, "
    "total_seconds numeric NOT NULL, outage_seconds numeric NOT NULL, maintenance_seconds numeric NOT NULL, "
    "excused_seconds numeric NOT NULL, downtime_seconds numeric NOT NULL, "
    "availability_percent text NOT NULL, target_percent text NOT NULL, target_met boolean NOT NULL, "
    "as_of_position bigint NOT NULL, digest text NOT NULL, PRIMARY KEY (contract, month))",
    "CREATE TABLE IF NOT EXISTS {schema}.report_downtime_intervals ("
    "contract text NOT NULL, month text NOT NULL, seq integer NOT NULL, start timestamptz NOT NULL, "
    '"end" timestamptz NOT NULL, seconds numeric NOT NULL, kind text NOT NULL, reason text NOT NULL, '
    "events text NOT NULL, PRIMARY KEY (contract, month, seq))",
    "CREATE TABLE IF NOT EXISTS {schema}.report_credit_entitlements ("
    "contract text NOT NULL, month text NOT NULL, percent text NOT NULL, amount text NOT NULL, "
    "long_outage_amount text NOT NULL, currency text NOT NULL, claim text NOT NULL, "
    "payable boolean NOT NULL, PRIMARY KEY (contract, month))",
    "CREATE TABLE IF NOT EXISTS {schema}.report_failed_months ("
    "contract text NOT NULL, month text NOT NULL, position bigint NOT NULL, error text NOT NULL, "
    "PRIMARY KEY (contract, month))",
    "CREATE TABLE IF NOT EXISTS {schema}.report_support_tickets ("
    "contract text NOT NULL, month text NOT NULL, seq integer NOT NULL, ticket text NOT NULL, "
    "severity text NOT NULL, kind text NOT NULL, opened_at timestamptz NOT NULL, responded_at timestamptz, "
    "target text NOT NULL, deadline timestamptz, response_seconds numeric NOT NULL, status text NOT NULL, "
    "events text NOT NULL, policy_version integer NOT NULL, as_of_position bigint NOT NULL, "
    "digest text NOT NULL, PRIMARY KEY (contract, month, seq))",
    "CREATE TABLE IF NOT EXISTS {schema}.report_support_targets ("
    "contract text NOT NULL, month text NOT NULL, seq integer NOT NULL, severity text NOT NULL, "
    "target text NOT NULL, kind text NOT NULL, tickets integer NOT NULL, met integer, breached integer, "
    "pending integer, mean_seconds text, mean_met boolean, policy_version integer NOT NULL, "
    "as_of_position bigint NOT NULL, digest text NOT NULL, PRIMARY KEY (contract, month, seq))",
)
_BY_MONTH: Final = (*TABLES, *SUPPORT_TABLES)  # tables with a (month, contract) index
# Each table's column types, in order, from its DDL: rows are written by binary COPY, whose
# values psycopg dumps by these types (a third less client time than text COPY's per-value lookups).
_COLUMN_TYPES: Final = {
    table: re.findall(r'(?:\(|, )"?\w+"? (text|integer|bigint|numeric|boolean|timestamptz)\b', ddl)
    for table, ddl in zip(ROW_TABLES, _PG_TABLES, strict=True)
}

# PostgreSQL: the fence is the advisory lock (_FENCE_LOCK, hashtext(schema)), one per ledger schema.
_FENCE_LOCK: Final = 0x1ED6E7
# A rebuild empties its copy with TRUNCATE, which waits for the queries reading the view (they
# lock both copies) and holds new ones behind it while it waits: so it waits this long at most,
# then lets them through and tries again, up to TRUNCATE_TRIES times.
TRUNCATE_WAIT: Final = "2s"
TRUNCATE_TRIES: Final = 30
_LEGACY: Final = ""  # the target of a view still in the earlier layout: the tables readers name


def _other(copy: str) -> str:
    return COPIES[1 - COPIES.index(copy)]


class PostgresReportingView(PostgresTrackingRecorder, ReportingView):
    """The report tables in the ledger's PostgreSQL schema, with the library's tracking table.

    ``copies``: the report tables are views over two copies (``open_view`` makes them); False
    for a view an earlier version made, which a role that may not create keeps as it is.
    """

    text = False
    holds_appends = False
    reader_class: ClassVar[Callable[[PostgresDatastore], LedgerRecorder]]  # set by the recorder's module

    def __init__(
        self, datastore: PostgresDatastore, *, tracking_table_name: str = TRACKING_TABLE,
        copies: bool = True, **kwargs: Any,
    ) -> None:
        super().__init__(datastore, tracking_table_name=tracking_table_name, **kwargs)
        self.copies = copies
        schema = Identifier(self.datastore.schema)
        tracking = Identifier(self.tracking_table_name)
        targets = COPIES if copies else (_LEGACY,)

        def tables(target: str) -> list[Identifier]:
            return [Identifier(copy_name(t, target) if target else t) for t in ROW_TABLES]

        self.sql_delete_pairs = {target: [
            SQL(
                "DELETE FROM {schema}.{table} "
                "WHERE (contract, month) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
            ).format(schema=schema, table=t)
            for t in tables(target)
        ] for target in targets}
        self.sql_delete_all = [SQL("DELETE FROM {schema}.{table}").format(schema=schema, table=t)
                               for t in tables(_LEGACY)]
        self.sql_copy = {target: [
            SQL("COPY {schema}.{table} FROM STDIN (FORMAT BINARY)").format(schema=schema, table=t)
            for t in tables(target)] for target in targets}
        self.sql_truncate = {c: SQL("TRUNCATE {tables}").format(tables=SQL(", ").join(
            SQL("{schema}.{table}").format(schema=schema, table=t) for t in tables(c))) for c in COPIES}
        live = Identifier(LIVE_TABLE)
        self.sql_live = SQL("SELECT live FROM {schema}.{table}").format(schema=schema, table=live)
        self.sql_flip = SQL("UPDATE {schema}.{table} SET live = %s WHERE live = %s").format(
            schema=schema, table=live)
        self.sql_tracking = SQL(
            "SELECT notification_id FROM {schema}.{table} WHERE application_name = %s"
        ).format(schema=schema, table=tracking)
        self.sql_current_tracking = SQL("{0} FOR UPDATE").format(self.sql_tracking)
        self.sql_reset_tracking = SQL("DELETE FROM {schema}.{table} WHERE application_name = %s").format(
            schema=schema, table=tracking
        )
        self.sql_wall_to_wall = SQL(
            "WITH k AS (SELECT * FROM unnest(%s::text[], %s::text[]) AS k(c, m)) "
            "SELECT r.contract, r.month FROM k JOIN {schema}.report_monthly_availability r "
            "ON r.contract = k.c AND r.month = k.m WHERE r.downtime_seconds = r.total_seconds "
            "UNION ALL SELECT f.contract, f.month FROM k JOIN {schema}.report_failed_months f "
            "ON f.contract = k.c AND f.month = k.m"
        ).format(schema=schema)
        self.sql_failures = SQL(
            "SELECT contract, month, position, error FROM {schema}.report_failed_months "
            "ORDER BY contract, month LIMIT %s"
        ).format(schema=schema)
        self.sql_count_failures = SQL("SELECT count(*) AS n FROM {schema}.report_failed_months").format(
            schema=schema
        )
        self.fence_key = (_FENCE_LOCK, self.datastore.schema)

    @contextmanager
    def fence(self) -> Iterator[None]:
        # A session lock on a connection of its own, for the whole rebuild; the server drops
        # it with the session if the process dies.
        with self.datastore.get_connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", self.fence_key)
            try:
                yield
            finally:
                with suppress(psycopg.Error):  # the connection is gone, and the lock with it
                    conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", self.fence_key)

    @contextmanager
    def notifications(self) -> Iterator[Callable[[float], bool]]:
        # The channel the library's recorder notifies on each append, on a connection of its own.
        channel = Identifier(getattr(self.ledger_recorder(), "channel_name"))  # noqa: B009
        with self.datastore.get_connection() as conn:
            conn.execute(SQL("LISTEN {0}").format(channel))

            def wait(seconds: float) -> bool:
                # One is enough: the catch-up reads every fact there is (others queued wake it
                # again, cheaply).
                return any(True for _ in conn.notifies(timeout=seconds, stop_after=1))

            try:
                yield wait
            finally:
                with suppress(psycopg.Error):  # back to the pool listening to nothing
                    conn.execute(SQL("UNLISTEN {0}").format(channel))

    def replace(self, pairs: Iterable[Pair], rows: ViewRows, tracking: Tracking) -> None:
        keys = list(pairs)
        with self.datastore.transaction(commit=True) as curs:
            # Shared: followers do not wait for each other here, only for a rebuild.
            curs.execute("SELECT pg_advisory_xact_lock_shared(%s, hashtext(%s))", self.fence_key)
            # Tracking next: it takes the tracking row's lock, so concurrent workers queue here
            # and the loser fails (position not ahead any more) before touching a row.
            self._insert_tracking(curs, tracking)
            # The live copy, read after the fence (a rebuild that held it may have flipped it).
            target = self._live(curs) if self.copies else _LEGACY
            for stmt in self.sql_delete_pairs[target]:
                curs.execute(stmt, ([k[0] for k in keys], [k[1] for k in keys]))
            self._write(curs, rows, target)

    def _live(self, curs: Cursor[DictRow]) -> str:
        row = curs.execute(self.sql_live).fetchone()
        if row is None or row["live"] not in COPIES:
            raise ProjectionError(f"{LIVE_TABLE} names no live copy of the reporting view: run `ledger init`")
        return str(row["live"])

    @contextmanager
    def replacing(self, tracking: Tracking | None) -> Iterator[Callable[[ViewRows], None]]:
        """Fill the copy readers do not see in short transactions, then make it live with ``tracking``.

        Appends and readers go on while a rebuild writes; readers see the old copy until the
        flip commits. Other processes may fill it too (the ``Filling``'s target, ``fill``). A view
        in the earlier layout (``copies`` False) is replaced in one transaction, as before.
        """
        if not self.copies:
            with self._replacing_in_one(tracking) as write:
                yield write
            return
        with self.datastore.transaction(commit=False) as curs:
            row = curs.execute(self.sql_tracking, (APP_NAME,)).fetchone()
            refuse_backwards(row["notification_id"] if row else None, tracking)  # before any work
            live = self._live(curs)
        shadow = _other(live)
        self._truncate(shadow, TRUNCATE_TRIES)
        try:
            # The rebuild's workers fill the copy too, each on its own connection (``fill``).
            yield Filling(lambda rows: self.fill(shadow, rows), shadow)
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(self.sql_current_tracking, (APP_NAME,))
                row = curs.fetchone()
                refuse_backwards(row["notification_id"] if row else None, tracking)
                if curs.execute(self.sql_flip, (shadow, live)).rowcount != 1:
                    raise ProjectionError("the reporting view's live copy changed during the rebuild")
                curs.execute(self.sql_reset_tracking, (APP_NAME,))
                if tracking is not None:
                    self._insert_tracking(curs, tracking)
        except BaseException:
            # The old copy stays live; the half-filled one gives its space back if it can at once.
            with suppress(Exception):
                self._truncate(shadow, 1)
            raise

    def fill(self, target: str, rows: ViewRows) -> None:
        """Write ``rows`` into copy ``target`` in a short transaction (refused if it is the live one).

        No wait for the disk: the flip's commit is durable only once every earlier record of the
        log is, these rows' included.
        """
        if not self.copies or target not in COPIES:
            raise ProjectionError(f"no such copy of the reporting view to fill: {target!r}")
        with self.datastore.transaction(commit=True) as w:
            w.execute("SET LOCAL synchronous_commit = off")
            if self._live(w) == target:
                raise ProjectionError(f"refusing to fill the live copy {target!r} of the reporting view")
            self._write(w, rows, target)

    def _truncate(self, copy: str, tries: int) -> None:
        """Empty one copy, waiting at most ``TRUNCATE_WAIT`` a try for the queries holding it.

        Every query on the view locks both copies, so a reader of the live one delays this
        too; between the tries the queries queued behind the TRUNCATE go through.
        """
        with self.datastore.get_connection() as conn:
            for attempt in range(1, tries + 1):
                try:
                    with conn.transaction():
                        conn.execute(SQL("SET LOCAL lock_timeout = {0}").format(TRUNCATE_WAIT))
                        conn.execute(self.sql_truncate[copy])
                    return
                except psycopg.errors.LockNotAvailable:
                    if attempt == tries:
                        raise StoreError(
                            f"the reporting view's copy {copy!r} stayed locked by its readers "
                            f"({tries} waits of {TRUNCATE_WAIT}): try the rebuild again") from None
                    time.sleep(0.1)

    @contextmanager
    def _replacing_in_one(self, tracking: Tracking | None) -> Iterator[Callable[[ViewRows], None]]:
        """One transaction: empty the earlier tables and tracking, let the block write, then tracking."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self.sql_current_tracking, (APP_NAME,))
            row = curs.fetchone()
            refuse_backwards(row["notification_id"] if row else None, tracking)
            curs.execute(self.sql_reset_tracking, (APP_NAME,))
            for stmt in self.sql_delete_all:
                curs.execute(stmt)
            yield lambda rows: self._write(curs, rows, _LEGACY)
            if tracking is not None:
                self._insert_tracking(curs, tracking)

    def _write(self, curs: Cursor[DictRow], rows: ViewRows, target: str) -> None:
        for stmt, table, values in zip(self.sql_copy[target], ROW_TABLES, rows, strict=True):
            if values:
                with curs.copy(stmt) as copy:
                    copy.set_types(_COLUMN_TYPES[table])
                    for row in values:
                        copy.write_row(row)

    def wall_to_wall(self, pairs: Collection[Pair]) -> set[Pair]:
        keys = sorted(set(pairs))
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.sql_wall_to_wall, ([k[0] for k in keys], [k[1] for k in keys]))
            return {(r["contract"], r["month"]) for r in curs.fetchall()}

    def failures(self, limit: int) -> tuple[int, list[tuple[str, str, int, str]]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            counted = curs.execute(self.sql_count_failures).fetchone()
            count = int(counted["n"]) if counted else 0
            found = curs.execute(self.sql_failures, (limit,)).fetchall() if count else []
            return count, [(r["contract"], r["month"], r["position"], r["error"]) for r in found]

    def ledger_recorder(self) -> LedgerRecorder:
        return type(self).reader_class(self.datastore)


_SCHEMA_LOCK: Final = 0x1ED6E6  # advisory lock held while creating the view's tables


def _wanted(schema: str, tracking: str) -> dict[str, str]:
    """Every object of the view in the copies' layout, with its kind (pg_class.relkind)."""
    wanted = {t: "v" for t in ROW_TABLES}
    wanted |= {copy_name(t, c): "r" for t in ROW_TABLES for c in COPIES}
    wanted |= {f"{copy_name(t, c)}_by_month": "i" for t in _BY_MONTH for c in COPIES}
    return wanted | {LIVE_TABLE: "r", tracking: "r"}


def _kinds(conn: Connection[DictRow], schema: str, names: Iterable[str]) -> dict[str, str | None]:
    rows = conn.execute(
        "SELECT t, c.relkind::text AS kind FROM unnest(%s::text[]) t "
        "LEFT JOIN pg_class c ON c.oid = to_regclass(format('%%I.%%I', %s::text, t))",
        (list(names), schema),
    ).fetchall()
    return {r["t"]: r["kind"] for r in rows}


def open_view(datastore: PostgresDatastore) -> PostgresReportingView:
    """The reporting view in the ledger's schema (made, or brought to the copies' layout, where needed).

    A role without the right to create tables (``ledger_projector``, ``ledger_reporting``)
    runs no DDL at all: it uses a view of the earlier layout as it is, and is told to run
    ``ledger init`` if the view has not been made yet.
    """
    pg_view = PostgresReportingView(datastore)
    schema = pg_view.datastore.schema
    wanted = _wanted(schema, pg_view.tracking_table_name)
    with datastore.get_connection() as conn:
        kinds = _kinds(conn, schema, wanted)
        if all(kinds[n] == k for n, k in wanted.items()):
            return pg_view
        may = conn.execute("SELECT has_schema_privilege(%s, 'CREATE') AS may", (schema,)).fetchone()
        if may is None or not may["may"]:
            tables = [*ROW_TABLES, pg_view.tracking_table_name]
            if all(kinds[n] == k for n, k in wanted.items() if k != "i"):
                return pg_view  # made before its month indexes: read by scans until `ledger init`
            if all(kinds[t] == "r" for t in tables):
                return PostgresReportingView(datastore, copies=False)
            names = ", ".join(f"{schema}.{t}" for t in tables)
            raise StoreError(
                f"the reporting view's tables ({names}) do not exist and this role may not "
                "create them: run `ledger init` as the owner of the ledger's tables"
            )
        # Two workers creating tables at once fail ("tuple concurrently updated").
        conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
        try:
            pg_view.create_table()  # the library's tracking table
            with conn.transaction():
                for statement in _making(conn, schema):
                    conn.execute(statement, prepare=False)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))
    return pg_view


def _making(conn: Connection[DictRow], schema: str) -> Iterator[Composed]:
    """The DDL that makes the copies' layout from what there is (idempotent, under the schema lock).

    A report table of the earlier layout becomes copy ``a`` (rows, indexes and all), and the
    roles granted on it get what the roles script grants now (``schema.roles_sql``): a reader
    SELECT on the view, a writer the copies and the live row.
    """
    s = Identifier(schema)
    live = Identifier(LIVE_TABLE)
    kinds = _kinds(conn, schema, ROW_TABLES)
    grants: dict[str, list[tuple[int, str, str]]] = {}
    for table, ddl in zip(ROW_TABLES, _PG_TABLES, strict=True):
        first = copy_name(table, COPIES[0])
        if kinds[table] == "r":
            grants[table] = [(r["grantee"], r["role"], r["privilege_type"]) for r in conn.execute(
                "SELECT a.grantee, pg_get_userbyid(a.grantee) AS role, a.privilege_type "
                "FROM pg_class c, aclexplode(c.relacl) a "
                "WHERE c.oid = to_regclass(format('%%I.%%I', %s::text, %s::text)) "
                "AND a.grantee <> c.relowner",
                (schema, table)).fetchall()]
            yield SQL("ALTER TABLE {s}.{t} RENAME TO {c}").format(
                s=s, t=Identifier(table), c=Identifier(first))
            for suffix in ("_pkey", "_by_month"):
                yield SQL("ALTER INDEX IF EXISTS {s}.{old} RENAME TO {new}").format(
                    s=s, old=Identifier(table + suffix), new=Identifier(first + suffix))
        for copy in COPIES:
            name = copy_name(table, copy)
            yield SQL(ddl.replace(f".{table} (", f".{name} (", 1)).format(schema=s)
            if table in _BY_MONTH:
                yield SQL("CREATE INDEX IF NOT EXISTS {index} ON {s}.{table} (month, contract)").format(
                    index=Identifier(f"{name}_by_month"), s=s, table=Identifier(name))
    yield SQL(
        "CREATE TABLE IF NOT EXISTS {s}.{live} (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), "
        "live text NOT NULL CHECK (live IN ({copies})))"
    ).format(s=s, live=live, copies=SQL(", ").join(map(Literal, COPIES)))
    yield SQL("INSERT INTO {s}.{live} (live) VALUES ({first}) ON CONFLICT DO NOTHING").format(
        s=s, live=live, first=Literal(COPIES[0]))
    for table in ROW_TABLES:
        if kinds[table] != "v":
            union = SQL(" UNION ALL ").join(
                SQL("SELECT * FROM {s}.{c} WHERE (SELECT live FROM {s}.{live}) = {copy}").format(
                    s=s, c=Identifier(copy_name(table, copy)), live=live, copy=Literal(copy))
                for copy in COPIES)
            yield SQL("CREATE VIEW {s}.{t} AS {union}").format(s=s, t=Identifier(table), union=union)
        for oid, role, privilege in grants.get(table, []):
            who = SQL("PUBLIC") if oid == 0 else Identifier(role)
            copies = SQL(", ").join(
                SQL("{s}.{c}").format(s=s, c=Identifier(copy_name(table, c))) for c in COPIES)
            yield SQL("REVOKE ALL ON {s}.{c} FROM {who}").format(
                s=s, c=Identifier(copy_name(table, COPIES[0])), who=who)
            if privilege == "SELECT":
                yield SQL("GRANT SELECT ON {s}.{t} TO {who}").format(s=s, t=Identifier(table), who=who)
            if privilege in ("INSERT", "DELETE"):
                yield SQL("GRANT SELECT, INSERT, DELETE, TRUNCATE ON {copies} TO {who}").format(
                    copies=copies, who=who)
                yield SQL("GRANT SELECT, UPDATE ON {s}.{live} TO {who}").format(s=s, live=live, who=who)


def existing_view(datastore: PostgresDatastore) -> tuple[ReportingView, set[str]] | None:
    """The view and which of its tables exist, if its tracking table was ever made (creates nothing)."""
    pg_view = PostgresReportingView(datastore)
    tracking = pg_view.tracking_table_name
    wanted = [*ROW_TABLES, tracking]
    with datastore.get_connection() as conn:
        rows = conn.execute(
            "SELECT t FROM unnest(%s::text[]) t "
            "WHERE to_regclass(format('%%I.%%I', %s::text, t)) IS NOT NULL",
            (wanted, datastore.schema),
        ).fetchall()
    found = {row["t"] for row in rows}
    return (pg_view, found) if tracking in found else None
