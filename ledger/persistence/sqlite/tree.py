"""The Merkle tree's table on SQLite (``ledger.persistence.merkle_store``): DDL and ``Tree`` on a cursor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from ledger.persistence.merkle_read import STORED_FROM, TABLE

DDL: Final = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (level INTEGER NOT NULL, idx INTEGER NOT NULL, "
    "hash BLOB NOT NULL, PRIMARY KEY (level, idx)) WITHOUT ROWID"
)
EXISTS: Final = f"SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '{TABLE}'"  # noqa: S608
# The leaves covered by the stored nodes of the lowest stored level (an index descent).
COVERED: Final = f"SELECT COALESCE(MAX(idx) + 1, 0) FROM {TABLE} WHERE level = {STORED_FROM}"  # noqa: S608
LOWER: Final = f"SELECT MAX(idx) + 1 FROM {TABLE} WHERE level = 0"  # noqa: S608
CHUNK: Final = 400  # keys per read: SQLite binds at most 32766 parameters, and short statements plan fast


class SQLiteTree:
    """``Tree`` on a SQLite cursor (the transaction it runs in)."""

    def __init__(self, c: Any, events_table: str) -> None:
        self.c = c
        self.sql_states = (
            f"SELECT rowid, state FROM {events_table} WHERE rowid >= ? AND rowid <= ? ORDER BY rowid"  # noqa: S608
        )
        # A node of 64 leaves or more that the log does not complete (or with no place at all),
        # the log's end read by the same statement: an append commits its facts and nodes together.
        self.sql_stray = (
            f"SELECT level, idx FROM {TABLE}, (SELECT COALESCE(MAX(rowid), 0) AS n FROM {events_table}) "  # noqa: S608
            f"WHERE level >= {STORED_FROM} AND (idx < 0 OR level > 62 OR idx + 1 > (n >> level)) "
            "ORDER BY level, idx LIMIT 1"
        )

    def covered(self) -> int | None:
        self.c.execute(EXISTS)
        if self.c.fetchone() is None:
            return None
        self.c.execute(COVERED)
        return int(self.c.fetchone()[0]) << STORED_FROM

    def lower(self) -> int | None:
        self.c.execute(LOWER)
        got = self.c.fetchone()[0]
        return None if got is None else int(got)

    def stray(self) -> tuple[int, int] | None:
        self.c.execute(self.sql_stray)
        got = self.c.fetchone()
        return None if got is None else (int(got[0]), int(got[1]))

    def states(self, start: int, stop: int) -> list[tuple[int, bytes]]:
        self.c.execute(self.sql_states, (start, stop))
        return [(r[0], bytes(r[1])) for r in self.c.fetchall()]

    def read(self, keys: Sequence[tuple[int, int]]) -> Mapping[tuple[int, int], bytes]:
        got: dict[tuple[int, int], bytes] = {}
        for i in range(0, len(keys), CHUNK):
            chunk = keys[i : i + CHUNK]
            where = " OR ".join(["(level = ? AND idx = ?)"] * len(chunk))
            self.c.execute(f"SELECT level, idx, hash FROM {TABLE} WHERE {where}",  # noqa: S608
                           [v for key in chunk for v in key])
            got.update(((r[0], r[1]), bytes(r[2])) for r in self.c.fetchall())
        return got

    def write(self, rows: Sequence[tuple[int, int, bytes]]) -> None:
        self.c.executemany(f"INSERT INTO {TABLE} (level, idx, hash) VALUES (?, ?, ?)", rows)  # noqa: S608
