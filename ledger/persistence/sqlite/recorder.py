"""SQLite backend: the eventsourcing SQLite application recorder plus the ledger's key index.

Size: about 500 lines, the longest backend module: the recorder, its write session and
snapshot, the lock-holder diagnosis and opening a file belong together (the view is ``.view``).

The recorder's ``rowid`` is the position: SQLite reuses no rowid while nothing
is deleted, and a rolled-back import leaves no gap.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import sqlite3
import struct
import sys
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing, contextmanager
from itertools import chain
from typing import TYPE_CHECKING, Any, Final, cast

from eventsourcing.persistence import OperationalError
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteCursor,
    SQLiteDatastore,
)

from ledger.errors import LockWaitTimeout, StoreError
from ledger.events import decode_state, decode_stored
from ledger.persistence.chain import GENESIS
from ledger.persistence.consistency import OPENING_TAGS, Lookup, first_uses
from ledger.persistence.keys import CONTRACT
from ledger.persistence.merkle_read import TABLE as TREE_TABLE
from ledger.persistence.merkle_store import append_leaves
from ledger.persistence.port import PAGE, IdConflict, Packed
from ledger.persistence.rows import Head
from ledger.persistence.sql import OLD_FORMAT, SQLRecorder
from ledger.persistence.sqlite import tree
from ledger.persistence.sqlite.reads import (
    FIRST_ROW,
    SQLiteReads,
    earlier_format,
    refuse_non_ledger,
    refuse_non_sqlite,
    sqlite_file,
    sqlite_tables,
)
from ledger.persistence.sqlite.view import SQLiteReportingView, existing_view, open_view
from ledger.runtime import LOCK_WAIT, env_seconds
from ledger.text import printable

if TYPE_CHECKING:  # types only (ledger.persistence.port)
    from ledger.persistence.port import Snapshot, Tree

# Page size of a new store. Rows of the log are a few hundred bytes and every import appends
# to one B-tree hot spot per service in the key index; 16 KiB pages make a 1M-event import
# about 8 % faster than SQLite's 4 KiB default (4 % at 10M) and cost reads nothing measurable.
PAGE_SIZE: Final = 16384


INSERT_NAMES: Final = "INSERT INTO ledger_names (name, scope, position) VALUES (?, ?, ?)"
# Each name an opening fact gives (``ledger.persistence.consistency``): its scope and first position.
NAMES_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS ledger_names ("
    "name TEXT NOT NULL PRIMARY KEY, scope TEXT NOT NULL, position INTEGER NOT NULL) WITHOUT ROWID"
)


# Rows per INSERT statement of the log and the key index: one statement of many VALUES rows
# does one bind-step-reset round (and one release of the interpreter lock) where executemany
# does one a row; the rows go in in the same order, so each gets the same rowid. 100 rows of
# the log bind 400 parameters, under SQLite's limit (32766 since 3.32, 999 before).
ROWS_PER_INSERT: Final = 100
_TEMP_STORE_MEMORY: Final = 2  # ``PRAGMA temp_store``'s value for MEMORY
INSERT_INDEX: Final = "INSERT INTO ledger_index (key, position) VALUES "


def _values(width: int, rows: int) -> str:
    """``(?,?),(?,?)...``: ``rows`` rows of ``width`` parameters."""
    return ",".join(["(" + ",".join("?" * width) + ")"] * rows)


def _insert_flat(c: Any, head: str, width: int, flat: Sequence[object]) -> None:
    """Rows given as one flat list of ``width`` values each, inserted in order through ``head``.

    ``head`` is ``INSERT ... VALUES``; whole statements of ``ROWS_PER_INSERT`` rows, then
    one of the rows left.
    """
    step = width * ROWS_PER_INSERT
    whole = len(flat) - len(flat) % step
    if whole:
        statements = [flat[i : i + step] for i in range(0, whole, step)]
        c.executemany(head + _values(width, ROWS_PER_INSERT), statements)
    if whole < len(flat):
        c.execute(head + _values(width, (len(flat) - whole) // width), flat[whole:])


def _chunks(values: Sequence[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(values), size):
        yield list(values[i : i + size])


class _Session:
    overlaps = False  # executemany binds each row holding the interpreter lock

    def __init__(self, recorder: SQLiteLedgerRecorder, c: SQLiteCursor) -> None:
        self.recorder = recorder
        self.c = c

    def head(self) -> Head:
        self.c.execute(
            f"SELECT rowid, state FROM {self.recorder.events_table_name} ORDER BY rowid DESC LIMIT 1"  # noqa: S608
        )
        row = self.c.fetchone()
        if row is None:
            return Head(0, GENESIS, None)
        rec, link = decode_stored(row[0], row[1])
        return Head(row[0], link, rec.recorded_at)

    def next_position(self) -> int:
        # SQLite gives MAX(rowid) + 1 to each new row while nothing is deleted.
        self.c.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {self.recorder.events_table_name}")  # noqa: S608
        return int(self.c.fetchone()[0]) + 1

    def recorded(self, originator_ids: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        found: dict[str, tuple[int, bytes]] = {}
        for chunk in _chunks(originator_ids):
            self.c.execute(
                f"SELECT originator_id, rowid, state FROM {self.recorder.events_table_name} "  # noqa: S608
                f"WHERE originator_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update((r[0], (r[1], r[2])) for r in self.c.fetchall())
        return found

    def lookup(self, wanted: tuple[Sequence[str], Sequence[str]]) -> Lookup:
        names, contracts = wanted
        found: dict[str, tuple[str, int]] = {}
        for chunk in _chunks(names):
            marks = ",".join("?" * len(chunk))
            self.c.execute(f"SELECT name, scope, position FROM ledger_names WHERE name IN ({marks})", chunk)  # noqa: S608
            found.update((r[0], (r[1], r[2])) for r in self.c.fetchall())
        rows: list[tuple[int, bytes]] = []
        for chunk in _chunks([CONTRACT + cid for cid in contracts]):
            self.c.execute(
                f"SELECT e.rowid, e.state FROM ledger_index i JOIN {self.recorder.events_table_name} e "  # noqa: S608
                f"ON e.rowid = i.position WHERE i.key IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            rows.extend((r[0], r[1]) for r in self.c.fetchall())
        rows.sort()
        return Lookup(found, contracts, rows)

    def insert(self, packed: Packed, names: Sequence[tuple[str, str, int]] = ()) -> None:
        # The recorder's own insert runs one statement per event to learn each rowid; under
        # the write lock they are known in advance, so one executemany does the same work.
        try:
            # The log's values come flat (``packing.pack_rows``).
            _insert_flat(self.c, self.recorder.insert_events_head, 4, cast("list[object]", packed.events))
        except sqlite3.IntegrityError as exc:  # only rows packed as if none were recorded meet one
            raise IdConflict(f"import: {exc}") from None
        self.c.execute(f"SELECT MAX(rowid) FROM {self.recorder.events_table_name}")  # noqa: S608
        end = int(self.c.fetchone()[0])
        packed.check(end)
        index = cast("list[tuple[str, int]]", packed.index)
        _insert_flat(self.c, INSERT_INDEX, 2, list(chain.from_iterable(index)))
        if names:
            self.c.executemany(INSERT_NAMES, names)
        append_leaves(self.tree(), packed.start, packed.count, packed.leaves)  # the tree, in this transaction

    def tree(self) -> Tree:
        return tree.SQLiteTree(self.c, self.recorder.events_table_name)

    def states(self, start: int, stop: int) -> list[tuple[int, bytes]]:
        return self.tree().states(start, stop)

    def insert_new(self, packed: Packed, names: Sequence[tuple[str, str, int]] = ()) -> bool:
        # The log's primary key (originator_id, originator_version) refuses a recorded fact id
        # (``insert`` raises IdConflict); the savepoint takes back the rows inserted before it.
        self.c.execute("SAVEPOINT ledger_batch")
        try:
            self.insert(packed, names)
        except IdConflict:
            self.c.execute("ROLLBACK TO ledger_batch")
            self.c.execute("RELEASE ledger_batch")
            return False
        self.c.execute("RELEASE ledger_batch")
        return True


class _Snapshot:
    """``Snapshot`` over one connection's read transaction."""

    def __init__(self, conn: SQLiteConnection, events_table: str) -> None:
        self.conn = conn
        self.events_table = events_table
        self.open: list[Generator[Any, None, None]] = []

    def events(self) -> Iterator[tuple[object, object, object, object]]:
        return self._rows(
            f"SELECT rowid, originator_id, topic, state FROM {self.events_table} ORDER BY rowid"  # noqa: S608
        )

    def index(self) -> Iterator[tuple[object, object]]:
        # SQLite sorts NULL first, then numbers, text and blobs: any value a row may hold.
        return self._rows("SELECT position, key FROM ledger_index ORDER BY position, key")

    def names(self) -> Iterator[tuple[object, object, object]]:
        return self._rows("SELECT name, scope, position FROM ledger_names")

    def _rows(self, query: str) -> Generator[Any, None, None]:
        rows = self._stream(query)
        self.open.append(rows)
        return rows

    def _stream(self, query: str) -> Generator[Any, None, None]:
        with self.conn.cursor() as c:  # several statements can be open at once in one transaction
            c.execute(query)
            while page := c.fetchmany(PAGE):
                yield from page

    def close(self) -> None:
        """Close the statements still open, before the transaction ends."""
        for rows in self.open:
            rows.close()


class SQLiteLedgerRecorder(SQLiteApplicationRecorder, SQLiteReads, SQLRecorder):
    """The eventsourcing SQLite application recorder, with the ledger's key index and append lock."""

    view_opener = staticmethod(open_view)  # the backend's reporting view (``SQLRecorder.open_view``)
    view_finder = staticmethod(existing_view)

    packing = "rows"  # executemany takes the rows as they are
    store_errors = (*SQLRecorder.store_errors, sqlite3.Error)

    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name)
        self.sql_read = (
            f"SELECT rowid, state FROM {self.events_table_name} "  # noqa: S608
            "WHERE rowid >= ? AND rowid <= ? ORDER BY rowid LIMIT ?"
        )
        self.sql_read_raw = (
            f"SELECT rowid, originator_id, topic, state FROM {self.events_table_name} "  # noqa: S608
            "WHERE rowid >= ? AND rowid <= ? ORDER BY rowid LIMIT ?"
        )
        self.names_missing: str | None = None  # why appends are refused, if the names table is missing
        # The library's one-row insert (``INSERT INTO <table> VALUES (?,?,?,?)``) for many rows.
        self.insert_events_head = f"INSERT INTO {self.events_table_name} VALUES "  # noqa: S608

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        statements.append(
            "CREATE TABLE IF NOT EXISTS ledger_index ("
            "key TEXT NOT NULL, position INTEGER NOT NULL, PRIMARY KEY (key, position)) WITHOUT ROWID"
        )
        statements.extend(append_only_statements((self.events_table_name, "ledger_index")))
        statements.extend((tree.DDL, *append_only_statements((TREE_TABLE,))))  # the Merkle tree
        return statements

    def create_merkle(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            for statement in (tree.DDL, *append_only_statements((TREE_TABLE,))):
                c.execute(statement)

    def ensure_names(self) -> None:
        """Create the names table of a store made before it, filled from the log (once, under the lock).

        A store that cannot be written (a read-only file) is still read; its appends are
        refused until the table exists.
        """
        if self._has_names():
            return
        try:
            self._create_names()
        except OperationalError as exc:
            self.names_missing = f"this store has no names table yet and it could not be made ({exc})"

    def _create_names(self) -> None:
        with self.write_session() as session:
            c = session.c
            c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger_names'")
            if c.fetchone() is not None:
                return  # another process did it while this one waited for the lock
            for statement in (NAMES_TABLE, *append_only_statements(("ledger_names",))):
                c.execute(statement)
            c.execute(
                f"SELECT rowid, state FROM {self.events_table_name} "  # noqa: S608
                f"WHERE topic IN ({','.join('?' * len(OPENING_TAGS))}) ORDER BY rowid",
                OPENING_TAGS,
            )
            uses = first_uses(decode_state(row[0], row[1]) for row in iter(c.fetchone, None))
            c.executemany(INSERT_NAMES, [(name, scope, pos) for name, (scope, pos) in uses.items()])

    def _has_names(self) -> bool:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger_names'")
            return c.fetchone() is not None

    @contextmanager
    def write_session(self) -> Iterator[_Session]:
        if self.names_missing is not None:
            raise StoreError(self.names_missing)
        wait = env_seconds(LOCK_WAIT)
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"PRAGMA busy_timeout = {math.ceil(wait * 1000)}")
            # Statement journals in memory, not in temporary files: an INSERT of many rows
            # (``_insert_flat``) keeps one, the prior content of each page it changes, so that a
            # failing row can take back the statement's earlier rows; SQLite spills one of more
            # than 64 KiB to a file (writes and reads the kernel does for nothing: it is dropped
            # at the statement's end). Only a transaction begun after the setting takes it: hence
            # before the first write; the connection's own setting is back for whoever uses it
            # next. A statement journal never holds anything a crash needs (the WAL does).
            # SQLite refuses the change inside a transaction once the connection's temporary
            # database is open (an earlier rebuild on a pooled connection opens it): the session
            # then keeps the connection's setting, which costs time, not correctness.
            c.execute("PRAGMA temp_store")
            temp_store = int(c.fetchone()[0])
            changed = False
            if temp_store != _TEMP_STORE_MEMORY:
                with contextlib.suppress(sqlite3.OperationalError):
                    c.execute("PRAGMA temp_store = MEMORY")
                    changed = True
            try:
                yield from self._locked(c)
            finally:
                if changed:
                    with contextlib.suppress(sqlite3.Error):
                        c.execute(f"PRAGMA temp_store = {temp_store}")

    def _locked(self, c: SQLiteCursor) -> Iterator[_Session]:
        """The write lock taken in ``c``'s transaction, then the session."""
        started = time.monotonic()
        try:
            # A write as the first statement takes SQLite's write lock at once, so
            # concurrent importers queue on the busy timeout instead of failing later.
            c.execute("UPDATE ledger_index SET key = key WHERE 0")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            pool = self.datastore.pool
            holder = None if pool.is_sqlite_memory_mode else _lock_holder(pool.db_name)
            raise LockWaitTimeout(
                f"gave up waiting for the write lock after {time.monotonic() - started:.1f} s "
                f"(LEDGER_LOCK_WAIT): held by {_describe_process(holder)}; nothing was written"
            ) from None
        # A large import touches many pages of the log's primary key and of the key index
        # (one hot spot per service); a bigger page cache, bounded whatever the store's
        # size, keeps them in memory until the commit.
        c.execute("PRAGMA cache_size = -65536")
        yield _Session(self, c)

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        # One read transaction for the whole check: in WAL mode it reads the database as of
        # its first read whatever is committed meanwhile, and holds no lock a writer waits on.
        with (self.datastore.get_connection(commit=False) as conn, conn.transaction(commit=False),
              closing(_Snapshot(conn, self.events_table_name)) as snap):
            yield snap


def append_only_statements(tables: Sequence[str]) -> list[str]:
    """Triggers making ``tables`` refuse UPDATE and DELETE (idempotent).

    Anyone who can write the file can drop them; they stop mistakes and casual
    edits, and the hash chain catches the rest. SQLite has no TRUNCATE: a
    ``DELETE`` without ``WHERE`` fires the DELETE trigger (triggers disable the
    truncate optimisation). The append lock (``UPDATE ledger_index ... WHERE 0``)
    touches no row, so a FOR EACH ROW trigger never fires for it.
    """
    statements = []
    for table in tables:
        for op in ("UPDATE", "DELETE"):
            statements.append(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'ledger: {op} on {table} refused: "
                "the ledger is append-only'); END"
            )
    return statements


# struct flock as Linux lays it out: l_type, l_whence, l_start, l_len, l_pid (and padding).
_FLOCK: Final = struct.Struct("hhqqixxxx")
# Where SQLite's unix VFS takes its write lock: byte 120 of the -shm file in WAL mode (the
# wal-index's WAL_WRITE_LOCK, sqlite.org/walformat.html), the RESERVED byte of the database
# file (PENDING_BYTE + 1) in rollback-journal mode.
_WRITE_LOCKS: Final = (("-shm", 120), ("", 0x40000001))


def _lock_holder(path: str) -> int | None:
    """The process holding SQLite's write lock on ``path``, if the system says (Linux: F_GETLK)."""
    if not sys.platform.startswith("linux"):
        return None
    for suffix, offset in _WRITE_LOCKS:
        try:
            fd = os.open(path + suffix, os.O_RDONLY)
        except OSError:
            continue
        try:
            got = fcntl.fcntl(fd, fcntl.F_GETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0))
        except OSError:
            continue
        finally:
            os.close(fd)
        kind, _, _, _, pid = _FLOCK.unpack(got)
        if kind != fcntl.F_UNLCK and pid > 0:
            return int(pid)
    return None


def _describe_process(pid: int | None) -> str:
    """``process PID (stopped: its command line)``, or what can be said without knowing it."""
    if pid is None:
        # The system reports no other process: a connection of this one, or not Linux.
        return "another connection (its process is not known)"
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().decode("utf-8", "replace").split("\0")
    except (OSError, IndexError):
        return f"process {pid}"
    command = " ".join([os.path.basename(args[0]), *args[1:]]).strip()[:200]
    return f"process {pid} ({'stopped' if state in ('T', 't') else 'running'}: {printable(command)})"


def _create_file(path: str) -> None:
    """Give a new database file ``PAGE_SIZE`` pages (an existing one keeps its own)."""
    if os.path.exists(path) and os.path.getsize(path) > 0:
        return
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode = WAL")  # writes the header: the page size is fixed from here
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot create {printable(path)}: {exc}") from None


def open_sqlite(path: str, *, create: bool = True, lock_timeout: int | None = None) -> SQLiteLedgerRecorder:
    """Open the SQLite ledger at ``path``; with ``create``, make the file and the tables if needed.

    Without ``create`` a missing file, a file that is not a SQLite database and a
    database without the ledger's tables are refused and left as they were.
    """
    if not create:
        refuse_non_ledger(path)
    else:
        refuse_non_sqlite(path)
        if os.path.isfile(path) and sqlite_file(path):
            sqlite_tables(path)  # a SQLite header over something else: refused as a file without one
    if create:
        _create_file(path)
    # Every statement's busy timeout (a write session sets its own: LEDGER_LOCK_WAIT).
    timeout = math.ceil(env_seconds(LOCK_WAIT)) if lock_timeout is None else lock_timeout
    # Absolute: the library opens it as a URI filename, where a relative "file:..." would be a URI.
    datastore = SQLiteDatastore(db_name=os.path.abspath(path), lock_timeout=timeout)
    recorder = SQLiteLedgerRecorder(datastore)
    if create:
        recorder.create_table()
    with datastore.transaction(commit=False) as c:
        c.execute(FIRST_ROW)
        row = c.fetchone()
    if row is not None and earlier_format(row[0], row[1]):
        recorder.close()
        raise StoreError(OLD_FORMAT)
    # Not among the tables create_table makes: a store made before it needs it filled from its log.
    recorder.ensure_names()
    return recorder


SQLiteReportingView.reader_class = SQLiteLedgerRecorder
