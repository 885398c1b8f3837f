"""The reporting view on PostgreSQL: the report tables in the ledger's schema, with their tracking."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, ClassVar, Final

import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from ledger.errors import StoreError
from ledger.persistence.port import (
    APP_NAME,
    ROW_TABLES,
    SUPPORT_TABLES,
    TABLES,
    TRACKING_TABLE,
    LedgerRecorder,
    Pair,
    ReportingView,
    ViewRows,
    refuse_backwards,
)

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

# PostgreSQL: the fence is the advisory lock (_FENCE_LOCK, hashtext(schema)), one per ledger schema.
_FENCE_LOCK: Final = 0x1ED6E7


class PostgresReportingView(PostgresTrackingRecorder, ReportingView):
    """The report tables in the ledger's PostgreSQL schema, with the library's tracking table."""

    text = False
    holds_appends = False
    reader_class: ClassVar[Callable[[PostgresDatastore], LedgerRecorder]]  # set by the recorder's module

    def __init__(
        self, datastore: PostgresDatastore, *, tracking_table_name: str = TRACKING_TABLE,
        **kwargs: Any,
    ) -> None:
        super().__init__(datastore, tracking_table_name=tracking_table_name, **kwargs)
        schema = Identifier(self.datastore.schema)
        tracking = Identifier(self.tracking_table_name)
        self.sql_create_statements.extend(SQL(t).format(schema=schema) for t in _PG_TABLES)
        # "Every contract of a month" is a range read (the primary keys start with the contract).
        self.sql_create_statements.extend(
            SQL("CREATE INDEX IF NOT EXISTS {index} ON {schema}.{table} (month, contract)").format(
                index=Identifier(f"{t}_by_month"), schema=schema, table=Identifier(t))
            for t in _BY_MONTH
        )
        self.sql_delete_pairs = [
            SQL(
                "DELETE FROM {schema}.{table} "
                "WHERE (contract, month) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
            ).format(schema=schema, table=Identifier(t))
            for t in ROW_TABLES
        ]
        self.sql_delete_all = [SQL("DELETE FROM {schema}.{table}").format(schema=schema, table=Identifier(t))
                               for t in ROW_TABLES]
        self.sql_copy = [SQL("COPY {schema}.{table} FROM STDIN").format(schema=schema, table=Identifier(t))
                         for t in ROW_TABLES]
        self.sql_current_tracking = SQL(
            "SELECT notification_id FROM {schema}.{table} WHERE application_name = %s FOR UPDATE"
        ).format(schema=schema, table=tracking)
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
            for stmt in self.sql_delete_pairs:
                curs.execute(stmt, ([k[0] for k in keys], [k[1] for k in keys]))
            self._write(curs, rows)

    @contextmanager
    def replacing(self, tracking: Tracking | None) -> Iterator[Callable[[ViewRows], None]]:
        """One transaction: empty the view and its tracking, let the block write, then ``tracking``.

        The view's tables are the only ones it locks, so appends go on while a rebuild
        writes; readers see the old view until the commit.
        """
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self.sql_current_tracking, (APP_NAME,))
            row = curs.fetchone()
            refuse_backwards(row["notification_id"] if row else None, tracking)
            curs.execute(self.sql_reset_tracking, (APP_NAME,))
            for stmt in self.sql_delete_all:
                curs.execute(stmt)
            yield lambda rows: self._write(curs, rows)
            if tracking is not None:
                self._insert_tracking(curs, tracking)

    def _write(self, curs: Cursor[DictRow], rows: ViewRows) -> None:
        for stmt, values in zip(self.sql_copy, rows, strict=True):
            if values:
                with curs.copy(stmt) as copy:
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




def open_view(datastore: PostgresDatastore) -> PostgresReportingView:
    """The reporting view in the ledger's schema (tables created where one is missing).

    A role without the right to create tables (``ledger_projector``, ``ledger_reporting``)
    runs no DDL at all, and is told to run ``ledger init`` if the view has not been made yet.
    """
    pg_view = PostgresReportingView(datastore)
    schema = pg_view.datastore.schema
    made = [*ROW_TABLES, pg_view.tracking_table_name]
    indexes = [f"{t}_by_month" for t in _BY_MONTH]
    names = [f"{schema}.{t}" for t in made]
    with datastore.get_connection() as conn:
        row = conn.execute(
            "SELECT bool_and(to_regclass(format('%%I.%%I', %s::text, t)) IS NOT NULL) AS found, "
            "(SELECT bool_and(to_regclass(format('%%I.%%I', %s::text, i)) IS NOT NULL) "
            " FROM unnest(%s::text[]) i) AS indexed, "
            "has_schema_privilege(%s, 'CREATE') AS may FROM unnest(%s::text[]) t",
            (schema, schema, indexes, schema, made),
        ).fetchone()
        # A view made before its month indexes gets them from a role that may create them.
        if row is not None and row["found"] and (row["indexed"] or not row["may"]):
            return pg_view
        if row is None or not row["may"]:
            raise StoreError(
                f"the reporting view's tables ({', '.join(names)}) do not exist and this role may not "
                "create them: run `ledger init` as the owner of the ledger's tables"
            )
        # Two workers creating tables at once fail ("tuple concurrently updated").
        conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
        try:
            pg_view.create_table()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))
    return pg_view


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
