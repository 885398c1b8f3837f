"""Reading a SQLite ledger with ``sqlite3`` alone: the reads both SQLite recorders share, and the reader.

``SQLiteReader`` is what read-only commands open (``ledger.bootstrap.open_ledger(...,
read_only=True)``): the same queries as the full recorder (``SQLiteReads``), on one
connection of its own, without importing the eventsourcing library, which is most of
a report's start-up (issue 17, a fast start). Anything that is not a read of the log,
its index or its Merkle tree (a write, the reporting view, ``verify``'s snapshot) opens
the full recorder on the same file, once, and is done there.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Final

import msgspec

from ledger.errors import BadInput, StoreError
from ledger.events import Recorded, decode_state
from ledger.persistence.keys import prefix_end
from ledger.persistence.paged import OLD_FORMAT, PagedReader
from ledger.persistence.port import LedgerRecorder, ReportingView, WriteSession
from ledger.persistence.sqlite import tree
from ledger.runtime import LOCK_WAIT, env_seconds
from ledger.text import printable

if TYPE_CHECKING:  # types only (ledger.persistence.port)
    from ledger.persistence.port import Snapshot, Tree

EVENTS: Final = "stored_events"  # the library's table of the log


_EDGE: Final = "SELECT key FROM ledger_index WHERE key >= ? AND key < ? AND position <= ? ORDER BY key "
EDGE: Final = (_EDGE + "ASC LIMIT 1", _EDGE + "DESC LIMIT 1")
# ``unclosed_openings``: an opening's key is <prefix><at, 27 characters>/<incident> and a
# resolution's r:<incident>@<at>, the incident escaped in both (no "@" in it: the range
# 'r:<incident>@...' holds that incident's resolutions only).
UNCLOSED: Final = (
    "SELECT o.position FROM ledger_index o WHERE o.key >= ?1 AND o.key < ?2 AND o.position <= ?3 "
    "AND (substr(o.key, ?4, 27) >= ?5 OR NOT EXISTS (SELECT 1 FROM ledger_index r "
    "WHERE r.key > 'r:' || substr(o.key, ?4 + 28) || '@' || substr(o.key, ?4, 27) "
    "AND r.key < 'r:' || substr(o.key, ?4 + 28) || '@' || ?6 AND r.position <= ?3))"
)


class SQLiteReads(PagedReader):
    """The log's reads on SQLite, each a read transaction of ``datastore`` (the library's or the reader's)."""

    datastore: Any  # ``transaction(commit=False)`` gives a cursor in a read transaction
    events_table_name: str

    def _fetch(self, query: Any, params: Sequence[Any]) -> list[Any]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(query, params)
            return list(c.fetchall())

    def read_keyed_states(self, keys: Sequence[str], upto: int) -> Iterator[tuple[int, bytes]]:
        rows: list[tuple[int, bytes]] = []
        with self.datastore.transaction(commit=False) as c:
            for i in range(0, len(keys), 500):
                chunk = list(keys[i : i + 500])
                c.execute(
                    f"SELECT e.rowid, e.state FROM ledger_index i JOIN {self.events_table_name} e "  # noqa: S608
                    f"ON e.rowid = i.position WHERE i.key IN ({','.join('?' * len(chunk))}) "
                    "AND i.position <= ?",
                    [*chunk, upto],
                )
                rows.extend((r[0], r[1]) for r in c.fetchall())
        rows.sort()
        yield from rows

    def read_position_states(self, positions: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        for i in range(0, len(positions), 500):
            chunk = list(positions[i : i + 500])
            with self.datastore.transaction(commit=False) as c:
                c.execute(
                    f"SELECT rowid, state FROM {self.events_table_name} "  # noqa: S608
                    f"WHERE rowid IN ({','.join('?' * len(chunk))}) ORDER BY rowid",
                    chunk,
                )
                rows = c.fetchall()
            for row in rows:
                yield row[0], row[1]

    def read_key_prefix(self, prefix: str, upto: int) -> Iterator[Recorded]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT e.rowid, e.state FROM ledger_index i JOIN {self.events_table_name} e "  # noqa: S608
                "ON e.rowid = i.position WHERE i.key >= ? AND i.key < ? AND i.position <= ? "
                "ORDER BY i.position",
                (prefix, prefix_end(prefix), upto),
            )
            rows = c.fetchall()
        for row in rows:
            yield decode_state(row[0], row[1])

    def read_key_prefixes(self, prefixes: Sequence[str], upto: int) -> Iterator[Recorded]:
        for position, state in self.read_key_ranges_states([(p, prefix_end(p)) for p in prefixes], upto):
            yield decode_state(position, state)

    def read_key_ranges_states(self, ranges: Sequence[tuple[str, str]],
                               upto: int) -> Iterator[tuple[int, bytes]]:
        rows: dict[int, bytes] = {}
        for i in range(0, len(ranges), 200):
            chunk = list(ranges[i : i + 200])
            where = " OR ".join(["(i.key >= ? AND i.key < ?)"] * len(chunk))
            params: list[Any] = [v for lo_hi in chunk for v in lo_hi]
            found = self._fetch(
                f"SELECT e.rowid, e.state FROM ledger_index i JOIN {self.events_table_name} e "  # noqa: S608
                f"ON e.rowid = i.position WHERE ({where}) AND i.position <= ?", [*params, upto])
            rows.update((r[0], r[1]) for r in found)
        for position in sorted(rows):
            yield position, rows[position]

    def read_names(self, names: Sequence[str]) -> dict[str, tuple[str, int]] | None:
        found: dict[str, tuple[str, int]] = {}
        try:
            for i in range(0, len(names), 500):
                chunk = list(names[i : i + 500])
                marks = ",".join("?" * len(chunk))
                rows = self._fetch(f"SELECT name, scope, position FROM ledger_names WHERE name IN ({marks})",  # noqa: S608
                                   chunk)
                found.update((r[0], (r[1], int(r[2]))) for r in rows)
        except sqlite3.OperationalError:  # a store made before the names table, opened read-only
            return None
        return found
    def read_key_range_states(self, lo: str, hi: str, upto: int) -> Iterator[tuple[int, bytes]]:
        rows = self._fetch(
            f"SELECT rowid, state FROM {self.events_table_name} WHERE rowid IN ("  # noqa: S608
            "SELECT position FROM ledger_index WHERE key >= ? AND key < ? AND position <= ?) ORDER BY rowid",
            (lo, hi, upto),
        )
        for row in rows:
            yield row[0], row[1]

    def edge_key(self, lo: str, hi: str, upto: int, *, last: bool = False) -> str | None:
        rows = self._fetch(EDGE[last], (lo, hi, upto))
        return str(rows[0][0]) if rows else None

    def edge_keys(self, ranges: Sequence[tuple[str, str]], upto: int, *,
                  last: bool = False) -> list[str | None]:
        # One statement per 300 ranges (an index seek each) instead of a read transaction per range.
        out: list[str | None] = []
        order = "DESC" if last else "ASC"
        for i in range(0, len(ranges), 300):
            chunk = ranges[i : i + 300]
            values = ",".join(["(?, ?, ?)"] * len(chunk))
            rows = self._fetch(
                f"WITH r(n, lo, hi) AS (VALUES {values}) SELECT (SELECT key FROM ledger_index "  # noqa: S608
                f"WHERE key >= r.lo AND key < r.hi AND position <= ? ORDER BY key {order} LIMIT 1) "
                "FROM r ORDER BY r.n",
                [*(v for n, (lo, hi) in enumerate(chunk) for v in (n, lo, hi)), upto])
            out.extend(None if row[0] is None else str(row[0]) for row in rows)
        return out

    def unclosed_openings(self, prefix: str, since: str, until: str, upto: int) -> list[int]:
        rows = self._fetch(UNCLOSED, (prefix, prefix_end(prefix), upto, len(prefix) + 1, since, until))
        return sorted({int(r[0]) for r in rows})

    def first_filed(self, key: str, topics: Sequence[str], upto: int) -> tuple[int, bytes] | None:
        rows = self._fetch(
            f"SELECT e.rowid, e.state FROM ledger_index i JOIN {self.events_table_name} e "  # noqa: S608
            f"ON e.rowid = i.position WHERE i.key = ? AND i.position <= ? AND e.topic IN "
            f"({','.join('?' * len(topics))}) ORDER BY i.position LIMIT 1",
            (key, upto, *topics),
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def filed_under(self, key: str, position: int) -> bool:
        return bool(self._fetch("SELECT 1 FROM ledger_index WHERE key = ? AND position = ?", (key, position)))

    def position_of(self, id_: str) -> int | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid FROM {self.events_table_name} WHERE originator_id = ?",  # noqa: S608
                (id_,),
            )
            row = c.fetchone()
        return None if row is None else int(row[0])

    @contextmanager
    def merkle_tree(self) -> Iterator[Tree]:
        with self.datastore.transaction(commit=False) as c:
            yield tree.SQLiteTree(c, self.events_table_name)

    def merkle_sizes(self) -> tuple[int | None, int]:
        with self.datastore.transaction(commit=False) as c:  # one read transaction: one instant
            size = tree.SQLiteTree(c, self.events_table_name).covered()
            # The statement ``max_notification_id`` prepares too (one statement fewer to compile).
            c.execute(f"SELECT MAX(rowid) FROM {self.events_table_name}")  # noqa: S608
            return size, int(c.fetchone()[0] or 0)


class _Connection:
    """One ``sqlite3`` connection, each ``transaction`` a deferred read transaction rolled back at its end."""

    def __init__(self, path: str, timeout: int) -> None:
        # As the library opens it: a URI filename, autocommit (transactions are explicit).
        self.conn = sqlite3.connect(path, uri=True, isolation_level=None, timeout=timeout,
                                    check_same_thread=False)

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[sqlite3.Cursor]:
        assert not commit, "the reader only reads"
        c = self.conn.cursor()
        c.execute("BEGIN")
        try:
            yield c
        finally:
            self.conn.rollback()
            c.close()

    def close(self) -> None:
        self.conn.close()


class SQLiteReader(SQLiteReads):
    """A SQLite ledger opened by a read-only command: reads here, anything else on the full recorder."""

    packing: ClassVar[str] = "rows"
    store_errors: ClassVar[tuple[type[BaseException], ...]] = (StoreError, sqlite3.Error)

    def __init__(self, path: str, timeout: int, full: Callable[[str, int], LedgerRecorder]) -> None:
        self.path = path  # absolute
        self.timeout = timeout
        self._opener = full  # (path, lock timeout) -> the full recorder (``ledger.bootstrap`` chooses it)
        self.events_table_name = EVENTS
        self.datastore = _Connection(path, timeout)
        self.sql_read = (
            f"SELECT rowid, state FROM {EVENTS} WHERE rowid >= ? AND rowid <= ? ORDER BY rowid LIMIT ?"  # noqa: S608
        )
        self.sql_read_raw = (
            f"SELECT rowid, originator_id, topic, state FROM {EVENTS} "  # noqa: S608
            "WHERE rowid >= ? AND rowid <= ? ORDER BY rowid LIMIT ?"
        )
        self._full: LedgerRecorder | None = None

    def max_notification_id(self) -> int | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT MAX(rowid) FROM {EVENTS}")  # noqa: S608
            got = c.fetchone()[0]
        return None if got is None else int(got)

    def full(self) -> LedgerRecorder:
        """The full recorder on the same file (the eventsourcing library's), opened on first use."""
        if self._full is None:
            self._full = self._opener(self.path, self.timeout)
        return self._full

    def write_session(self) -> AbstractContextManager[WriteSession]:
        return self.full().write_session()

    def snapshot(self) -> AbstractContextManager[Snapshot]:
        return self.full().snapshot()

    def create_merkle(self) -> None:
        self.full().create_merkle()

    def open_view(self) -> ReportingView:
        return self.full().open_view()

    def existing_view(self) -> tuple[ReportingView, set[str]] | None:
        return self.full().existing_view()

    def close(self) -> None:
        if self._full is not None:
            self._full.close()
            self._full = None
        self.datastore.close()


def open_reader(path: str, full: Callable[[str, int], LedgerRecorder]) -> SQLiteReader:
    """Open the SQLite ledger at ``path`` for reading: refused as ``open_sqlite(create=False)`` refuses it.

    ``full(path, lock timeout)`` opens the full recorder, for whatever is not a read.
    """
    refuse_non_ledger(path)
    reader = SQLiteReader(os.path.abspath(path), math.ceil(env_seconds(LOCK_WAIT)), full)
    try:
        with reader.datastore.transaction(commit=False) as c:
            c.execute(FIRST_ROW)
            row = c.fetchone()
    except BaseException:
        reader.close()
        raise
    if row is not None and earlier_format(row[0], row[1]):
        reader.close()
        raise StoreError(OLD_FORMAT)
    return reader


# --- what a file must be to be read as a ledger ------------------------------------

# Stream ids are fact ids; a store whose first stream id is not its fact's id predates that.
# The log starts at 1: a row below is not a format, it is an insertion (verify says so).
FIRST_ROW: Final = f"SELECT originator_id, state FROM {EVENTS} WHERE rowid >= 1 ORDER BY rowid LIMIT 1"  # noqa: S608
_HEADER: Final = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def refuse_non_ledger(path: str) -> None:
    """Raise StoreError unless ``path`` is a SQLite file holding a ledger (nothing is created or written).

    A file that is no SQLite database at all is BadInput (``refuse_non_sqlite``).
    """
    if os.path.isfile(path) and sqlite_file(path):
        tables = sqlite_tables(path)
    else:
        refuse_non_sqlite(path)
        tables = None
    if tables is None or not {EVENTS, "ledger_index"} <= tables:
        why = "" if os.path.exists(path) else "no such file; "
        raise StoreError(f"not a ledger store: {printable(path)} ({why}`ledger init` creates one)")


def refuse_non_sqlite(path: str) -> None:
    """BadInput (exit 2) if ``path`` is a non-empty file without a SQLite database's header.

    Named for what it is not, by read and write commands alike: ``ledger init`` refuses it too,
    so a hint to run it would lead nowhere. An empty file is a new database.
    """
    try:
        foreign = os.path.isfile(path) and os.path.getsize(path) > 0 and not sqlite_file(path)
    except OSError:
        foreign = False
    if foreign:
        raise _not_a_database(path)


def _not_a_database(path: str) -> BadInput:
    return BadInput(f"{printable(path)}: not a SQLite database")


def sqlite_file(path: str) -> bool:
    """Whether ``path`` starts as a SQLite database file does."""
    try:
        with open(path, "rb") as f:
            return f.read(len(_HEADER)) == _HEADER
    except OSError:
        return False


def sqlite_tables(path: str) -> frozenset[str]:
    """The tables of the SQLite file at ``path``, read without writing anything.

    BadInput as ``refuse_non_sqlite`` if SQLite finds no database behind the header;
    StoreError with SQLite's words if it cannot read it (a read-only directory, a full disk:
    WAL needs the ``-shm`` file even to read), not "not a ledger store" (``ledger init``).
    """
    uri = "file:" + _uri_path(os.path.abspath(path)) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        try:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return frozenset(row[0] for row in rows)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
            raise _not_a_database(path) from None
        raise _unreadable(path, exc) from None


def _unreadable(path: str, exc: sqlite3.Error) -> StoreError:
    hint = (" (SQLite makes a -shm file beside a ledger even to read it: is the directory read-only?)"
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_CANTOPEN else "")
    return StoreError(f"store: cannot read {printable(path)}: {' '.join(str(exc).split())}{hint}")


# What ``urllib.parse.quote`` leaves as it is (its default ``safe="/"``).
_URI_SAFE: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~/")


def _uri_path(path: str) -> str:
    """``urllib.parse.quote(path)``; the module imported only for a path it changes (start-up, issue 17)."""
    if _URI_SAFE.issuperset(path):
        return path
    from urllib.parse import quote

    return quote(path)


_EARLIER_STATE: Final = msgspec.json.Decoder(tuple[str, msgspec.Raw, msgspec.Raw])


def earlier_format(originator_id: object, state: object) -> bool:
    """Whether a row is of the earlier format: a uuid5 stream id, and a state without chain link.

    Only that shape: anything else wrong with a row is for ``ledger verify`` to report, as tampering.
    """
    if not isinstance(state, bytes):
        return False
    try:
        return _EARLIER_STATE.decode(state)[0] != originator_id
    except msgspec.MsgspecError:
        return False
