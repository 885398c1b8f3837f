"""The Merkle tree's table on PostgreSQL (``persistence.merkle_store``): DDL and ``Tree`` on a cursor."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final

from psycopg.sql import SQL, Composed, Identifier

from ledger.persistence.merkle_read import STORED_FROM, TABLE
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
        # The leaves covered by the nodes of the lowest stored level (an index descent).
        self.covered = SQL("SELECT COALESCE(MAX(idx) + 1, 0) FROM {t} WHERE level = {k}").format(
            t=t, k=STORED_FROM)
        self.lower = SQL("SELECT MAX(idx) + 1 FROM {t} WHERE level = 0").format(t=t)
        # A node of 64 leaves or more that the log does not complete (or with no place at all),
        # the log's end read by the same statement: an append commits its facts and nodes together.
        self.stray = SQL(
            "SELECT level, idx FROM {t}, (SELECT COALESCE(MAX(notification_id), 0) AS n FROM {e}) AS log "
            "WHERE level >= {k} AND (idx < 0 OR level > 62 OR idx + 1 > (log.n >> level::int)) "
            "ORDER BY level, idx LIMIT 1"
        ).format(t=t, k=STORED_FROM, e=Identifier(schema, events_table))
        self.states = SQL(
            "SELECT notification_id, state FROM {e} "
            "WHERE notification_id >= %s AND notification_id <= %s ORDER BY notification_id"
        ).format(e=Identifier(schema, events_table))
        # One index probe per key (LATERAL): a plain join let the planner hash the whole
        # table once it was small enough (a node every 64 facts), which grows with the log.
        self.read = SQL(
            "SELECT k.level, k.idx, n.hash FROM unnest(%s::smallint[], %s::bigint[]) AS k(level, idx) "
            "CROSS JOIN LATERAL (SELECT hash FROM {t} WHERE level = k.level AND idx = k.idx) n"
        ).format(t=t)
        self.copy = SQL("COPY {t} (level, idx, hash) FROM STDIN (FORMAT BINARY)").format(t=t)
        # One statement: one snapshot under READ COMMITTED (appends go on meanwhile).
        self.sizes = SQL(
            "SELECT (SELECT COALESCE(MAX(idx) + 1, 0) FROM {t} WHERE level = {k}) AS tree, "
            "(SELECT COALESCE(MAX(notification_id), 0) FROM {e}) AS log"
        ).format(t=t, k=STORED_FROM, e=Identifier(schema, events_table))


def _values(row: Any) -> tuple[Any, ...]:
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)


class PostgresTree:
    """``Tree`` on a psycopg cursor (any row factory)."""

    def __init__(self, curs: Any, sql: TreeSQL) -> None:
        self.curs = curs
        self.sql = sql

    def _rows(self) -> list[tuple[Any, ...]]:
        return [_values(r) for r in self.curs.fetchall()]

    def covered(self) -> int | None:
        self.curs.execute("SELECT to_regclass(%s) IS NOT NULL", (self.sql.qualified,))
        if not self._rows()[0][0]:
            return None
        self.curs.execute(self.sql.covered)
        return int(self._rows()[0][0]) << STORED_FROM

    def lower(self) -> int | None:
        self.curs.execute(self.sql.lower)
        got = self._rows()[0][0]
        return None if got is None else int(got)

    def stray(self) -> tuple[int, int] | None:
        self.curs.execute(self.sql.stray)
        got = self._rows()
        return None if not got else (int(got[0][0]), int(got[0][1]))

    def states(self, start: int, stop: int) -> list[tuple[int, bytes]]:
        self.curs.execute(self.sql.states, (start, stop))
        return [(int(r[0]), bytes(r[1])) for r in self._rows()]

    def read(self, keys: Sequence[tuple[int, int]]) -> Mapping[tuple[int, int], bytes]:
        if not keys:
            return {}
        self.curs.execute(self.sql.read, ([k[0] for k in keys], [k[1] for k in keys]))
        return {(r[0], r[1]): bytes(r[2]) for r in self._rows()}

    def write(self, rows: Sequence[tuple[int, int, bytes]]) -> None:
        # Binary COPY: an INSERT from unnest() of three arrays cost 70 us a leaf (psycopg
        # dumps a bytea array as hex text), COPY 9 (two rows a leaf, on a loaded machine).
        if rows:
            with self.curs.copy(self.sql.copy) as copy:
                copy.write(binary_rows(rows))


_SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_ROW: Final = struct.Struct("!hihiqi").pack  # 3 fields: level (int2), idx (int8), the hash's length


def binary_rows(rows: Sequence[tuple[int, int, bytes]]) -> bytes:
    """(level, idx, hash) rows as binary COPY data."""
    out = bytearray(_SIGNATURE)
    for level, idx, h in rows:
        out += _ROW(3, 2, level, 8, idx, len(h))
        out += h
    out += b"\xff\xff"
    return bytes(out)
