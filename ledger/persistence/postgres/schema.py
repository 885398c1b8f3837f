"""PostgreSQL schema objects: append-only triggers, insert checks (``sql/append_checks.sql``), roles."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import msgspec
from psycopg.sql import SQL, Composed, Identifier, Literal

from ledger.events import FACT_TYPES
from ledger.persistence.keys import KEY_KINDS
from ledger.persistence.port import ROW_TABLES, TRACKING_TABLE

REFUSE_FUNCTION: Final = "ledger_refuse_change"  # trigger function behind append-only tables
# Written with the events, in the same transaction (ledger_merkle: the log's Merkle tree).
SIDE_TABLES: Final = ("ledger_index", "ledger_names", "ledger_merkle")
SCHEMA_LOCK: Final = 0x1ED6E5  # advisory lock key held while creating the schema
LOCK_FUNCTION: Final = "ledger_append_lock"  # the append lock, taken as the owner (sql/append_checks.sql)
ANALYZE_FUNCTION: Final = "ledger_analyze"
TALLY: Final = "ledger_append_tally"  # per writing transaction: the positions it appended and indexed
# The object the schema creates last: a store where it exists has the whole current schema.
LAST_OBJECT: Final = ("ledger_append_complete", TALLY)  # (trigger, table)
ANALYZE_AFTER: Final = 50_000  # an append of at least this many facts refreshes the planner's statistics
UNIT: Final = "\x1f"  # separates ids sent as one parameter (no id holds a control character)
# The reporting view: each report table is two tables (copies), the name readers use being a
# view over the live one, which LIVE_TABLE's one row names; a rebuild fills the other and flips.
COPIES: Final = ("a", "b")
LIVE_TABLE: Final = "reporting_live"


def copy_name(table: str, copy: str) -> str:
    """The physical table behind one copy of a report table (``report_x`` -> ``report_x__a``)."""
    return f"{table}__{copy}"



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

    `"type":"<tag>"},"` where `type` sorts last among the fact's keys (canonical JSON sorts
    keys); a type with a key after it (``holidays_pinned``: `year`) only ends its content with `},"`.
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
    # The bytes each topic's state has before its link (``_state_suffix``), and their
    # length without the `,"`.
    suffixes = SQL(", ").join(
        SQL("({}, {}::bytea, {})").format(Literal(tag), Literal(suffix), Literal(len(suffix) - 2))
        for tag in topics
        for suffix in [_state_suffix(tag)]
    )
    args = {
        "s": Identifier(schema), "e": Identifier(events_table), "i": Identifier(index_table),
        "t": Identifier(TALLY), "sn": Literal(schema), "tn": Literal(TALLY),
        "qualified": Literal(f"{ident(schema)}.{ident(events_table)}"),
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


_CHECKS_SQL: Final = (Path(__file__).parents[2] / "sql" / "append_checks.sql").read_text()  # ledger/sql



def ident(name: str) -> str:
    # Bare when safe, so that ledger/sql/roles.sql reads like hand-written SQL.
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'



ROLES: Final = ("appender", "projector", "auditor", "reporting")


def roles_sql(schema: str = "public", events_table: str = "stored_events", prefix: str = "ledger") -> str:
    """The SQL script that creates the ledger's roles and grants (ledger/sql/roles.sql is its default)."""
    sc, ev = ident(schema), ident(events_table)
    # Every table the append path writes in one transaction: the log (with its chain) and the key index.
    log = ", ".join(f"{sc}.{ident(t)}" for t in (events_table, *SIDE_TABLES))
    view = ", ".join(f"{sc}.{ident(t)}" for t in ROW_TABLES)
    copies = ", ".join(f"{sc}.{ident(copy_name(t, c))}" for t in ROW_TABLES for c in COPIES)
    live = f"{sc}.{ident(LIVE_TABLE)}"
    tracking = f"{sc}.{ident(TRACKING_TABLE)}"
    appender, projector, auditor, reporting = (ident(f"{prefix}_{r}") for r in ROLES)
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
        f"REVOKE ALL ON {log}, {view}, {tracking}, {sc}.{ident(TALLY)} FROM {everyone};",
        f"REVOKE ALL ON {copies}, {live} FROM {everyone};",
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
        "-- Each report table is a view over one of two copies: a rebuild empties and fills the",
        "-- other one, then flips the live copy's row.",
        f"GRANT SELECT ON {log} TO {projector};",
        f"GRANT SELECT ON {view} TO {projector};",
        f"GRANT SELECT, INSERT, DELETE, TRUNCATE ON {copies} TO {projector};",
        f"GRANT SELECT, UPDATE ON {live} TO {projector};",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tracking} TO {projector};",
        "",
        "-- Auditors (ledger verify, audit, report) read the log; reporting jobs read the log,",
        "-- the reporting view (its views: the copies behind them are read with the owner's rights)",
        "-- and how far it has got.",
        f"GRANT SELECT ON {log} TO {auditor}, {reporting};",
        f"GRANT SELECT ON {view}, {tracking} TO {reporting};",
        "",
    ]
    return "\n".join(lines)


