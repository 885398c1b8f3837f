"""The Merkle tree's table on PostgreSQL (``persistence.merkle_store``): DDL and ``Tree`` on a cursor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg.sql import SQL, Composed, Identifier

from ledger.persistence.merkle_store import TABLE
from ledger.persistence.postgres.schema import append_only_statements, ident


def tree_statements(schema: str) -> list[Composed]:
    """The table and its append-only triggers (idempotent)."""
    return [
        SQL(
            "CREATE TABLE IF NOT EXISTS {t} (level smallint NOT NULL, idx bigint NOT NULL, "
            "hash bytea NOT NULL, PRIMARY KEY (level, idx))"
        ).format(t=Identifier(schema, TABLE)),
        *append_only_statements(schema, (TABLE,)),
    ]


class TreeSQL:
    """The tree's statements in one schema (built once per recorder)."""

    def __init__(self, schema: str, events_table: str) -> None:
        t = Identifier(schema, TABLE)
        self.qualified = f"{ident(schema)}.{ident(TABLE)}"
        self.size = SQL("SELECT COALESCE(MAX(idx) + 1, 0) FROM {t} WHERE level = 0").format(t=t)
        self.read = SQL(
            "SELECT n.level, n.idx, n.hash FROM {t} n "
            "JOIN unnest(%s::smallint[], %s::bigint[]) AS k(level, idx) USING (level, idx)"
        ).format(t=t)
        self.write = SQL(
            "INSERT INTO {t} (level, idx, hash) "
            "SELECT * FROM unnest(%s::smallint[], %s::bigint[], %s::bytea[])"
        ).format(t=t)
        # One statement: one snapshot under READ COMMITTED (appends go on meanwhile).
        self.sizes = SQL(
            "SELECT (SELECT COALESCE(MAX(idx) + 1, 0) FROM {t} WHERE level = 0) AS tree, "
            "(SELECT COALESCE(MAX(notification_id), 0) FROM {e}) AS log"
        ).format(t=t, e=Identifier(schema, events_table))


def _values(row: Any) -> tuple[Any, ...]:
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)


class PostgresTree:
    """``Tree`` on a psycopg cursor (any row factory)."""

    def __init__(self, curs: Any, sql: TreeSQL) -> None:
        self.curs = curs
        self.sql = sql

    def _rows(self) -> list[tuple[Any, ...]]:
        return [_values(r) for r in self.curs.fetchall()]

    def size(self) -> int | None:
        self.curs.execute("SELECT to_regclass(%s) IS NOT NULL", (self.sql.qualified,))
        if not self._rows()[0][0]:
            return None
        self.curs.execute(self.sql.size)
        return int(self._rows()[0][0])

    def read(self, keys: Sequence[tuple[int, int]]) -> Mapping[tuple[int, int], bytes]:
        if not keys:
            return {}
        self.curs.execute(self.sql.read, ([k[0] for k in keys], [k[1] for k in keys]))
        return {(r[0], r[1]): bytes(r[2]) for r in self._rows()}

    def write(self, rows: Sequence[tuple[int, int, bytes]]) -> None:
        if rows:
            self.curs.execute(self.sql.write, tuple(map(list, zip(*rows, strict=True))))
