"""The store port: what the ledger needs from a backend, as types and abstract classes.

Size: about 400 lines because the port is one contract (recorder, write session, snapshot,
tree, reporting view); each backend implements all of it.

Facts are stored with the ``eventsourcing`` library's application recorders
(one table, ``stored_events``): each fact is a stream of its own whose
``originator_id`` is the fact's idempotency key itself (text), at version 1, so
the recorder's primary key makes a second copy impossible. The recorder's
notification id is the fact's global ``position``. Each stored state carries
its link of a hash chain over the whole log (``ledger.persistence.chain``);
``ledger_index`` (key, position), written in the same transaction, lets a
contract-month read only its own facts (``ledger.persistence.keys``), and
``ledger_names`` (name, scope, position) holds the first use of each incident,
window and exclusion name (``ledger.persistence.consistency``). The reporting view's tables
live in the same database (``ReportingView``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Final, Protocol, runtime_checkable

import msgspec

from ledger.errors import StoreError
from ledger.events import Recorded, decode_state

if TYPE_CHECKING:
    from eventsourcing.persistence import Tracking

    from ledger.persistence.consistency import Lookup  # a type only: reads need none of its rules
    from ledger.persistence.rows import Head, ViewRows  # types here; a read makes none

PAGE: Final = 5000  # rows per read of a page, and notifications per batch of the reporting view
BATCH: Final = 2000  # facts per append batch


class Conflict(msgspec.Struct, frozen=True):
    """A line whose id is recorded (or given earlier in the same append) with other content."""

    line: int
    id: str
    position: int  # where the id is recorded


class AppendResult(msgspec.Struct, frozen=True):
    """What an append or import did: ``skipped`` counts repeats of recorded facts, not conflicts."""

    appended: int
    skipped: int
    first_position: int | None
    last_position: int | None
    conflicts: list[Conflict] = []


class WriteSession(Protocol):
    """One write transaction holding the store's exclusive append lock."""

    # Whether inserts are worth running on a thread of their own: they are when a server
    # does the work while Python waits, not when they hold the interpreter lock row by row.
    overlaps: bool

    def head(self) -> Head:
        """The last recorded position, its link and recorded_at, as this transaction sees them."""
        ...

    def next_position(self) -> int:
        """The position the next inserted row will get (nobody else can take it under the lock)."""
        ...

    def recorded(self, originator_ids: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        """The position and stored state of each of these originator ids (fact ids) recorded already."""
        ...

    def lookup(self, wanted: tuple[Sequence[str], Sequence[str]]) -> Lookup:
        """What the store holds about these names (first uses) and contract ids (versions)."""
        ...

    def insert(self, packed: Packed, names: Sequence[tuple[str, str, int]] = ()) -> None:
        """Insert packed rows, the names they give first (name, scope, position) and their tree nodes.

        Raise StoreError if the rows did not land where packed. The states' links hash their positions.
        The Merkle nodes the rows complete (``merkle_store.append_leaves``) go in the same transaction.
        """
        ...

    def tree(self) -> Tree:
        """The Merkle tree's rows as this transaction sees them."""
        ...

    def states(self, start: int, stop: int) -> list[tuple[int, bytes]]:
        """(position, stored state) from ``start`` to ``stop`` inclusive, as this transaction sees them."""
        ...


# Types only (issue 17: a Protocol class costs every command's start-up); nothing checks them at run time.
if TYPE_CHECKING:

    class Tree(Protocol):
        """The log's Merkle tree rows (``ledger_merkle``: level, idx, hash) as one transaction sees them."""

        def covered(self) -> int | None:
            """The leaves its stored nodes cover (a multiple of 64), None if the store has no tree table."""
            ...

        def lower(self) -> int | None:
            """The leaves the earlier layout's level-0 rows cover (a store made by it), None if none."""
            ...

        def states(self, start: int, stop: int) -> list[tuple[int, bytes]]:
            """(position, stored state) of the log from ``start`` to ``stop`` inclusive (one range read)."""
            ...

        def stray(self) -> tuple[int, int] | None:
            """(level, idx) of a stored node of 64 leaves or more that the log does not complete, if any."""
            ...

        def read(self, keys: Sequence[tuple[int, int]]) -> Mapping[tuple[int, int], bytes]:
            """The hashes of the nodes at ``keys`` that are stored (one query)."""
            ...

        def write(self, rows: Sequence[tuple[int, int, bytes]]) -> None:
            """Insert (level, idx, hash) rows."""
            ...


@runtime_checkable
class OptimisticSession(WriteSession, Protocol):
    """A session for which inserting first and checking only on a conflict is the cheaper way.

    SQLite: a savepoint costs nothing, and a batch's duplicate check (an index probe per
    id, about a tenth of an import's time) is then only run when a recorded id turns up.
    PostgreSQL keeps the check: it runs on the server while this thread links the batch,
    and a savepoint per batch would be a subtransaction each.
    """

    def insert_new(self, packed: Packed, names: Sequence[tuple[str, str, int]] = ()) -> bool:
        """``insert``, unless one of the rows' ids is recorded already: then write nothing, return False."""
        ...


class Packed(msgspec.Struct, frozen=True):
    """A batch of rows in the form its backend inserts them (binary COPY data on PostgreSQL)."""

    events: object
    index: object
    start: int
    count: int
    # The rows' Merkle leaf hashes, 32 bytes each (``merkle_store.leaf_hashes``, at link), or
    # the tree's nodes they complete, folded before the insert (an import's writer:
    # ``merkle_store.Folder``); ``merkle_store.append_leaves`` writes them.
    leaves: bytes | list[tuple[int, int, bytes]] = b""

    def check(self, end: int) -> None:
        """Raise StoreError unless the log now ends where these rows were packed to end."""
        if end != self.start + self.count - 1:
            raise StoreError(
                f"positions {self.start}..{end} for {self.count} events: the log is not append-only"
            )


class IdConflict(StoreError):
    """Rows written as if none of their ids were recorded met one that is: nothing was kept."""


if TYPE_CHECKING:

    class Snapshot(Protocol):
        """The store's tables as of one instant, every row as stored: nothing decoded, converted or left out.

        What ``ledger.verify`` checks, so values come as the database holds them (in SQLite
        any column may hold any type once someone edits the file) and rows in an order
        that needs no trust in them: NULL positions first, where a database can hold one.
        """

        def events(self) -> Iterator[tuple[object, object, object, object]]:
            """Every row of the log, (position, originator_id, topic, state), by position."""
            ...

        def index(self) -> Iterator[tuple[object, object]]:
            """Every row of the key index, (position, key), by position and then key."""
            ...

        def names(self) -> Iterator[tuple[object, object, object]]:
            """Every row of the names table, (name, scope, position), in no particular order."""
            ...


class LedgerRecorder(ABC):
    """What the ledger needs from a backend beyond the eventsourcing recorder API."""

    # How this backend packs linked rows for its insert (``ledger.persistence.packing``): named,
    # so that an import's child process can be told and link and pack the rows too (see
    # ``append_packed``).
    packing: ClassVar[str]  # a key of ``ledger.persistence.packing.PACKERS``

    @property
    def packer(self) -> str:
        """The name of this backend's packer (``packing``), as an import's child process is told it."""
        return self.packing
    # What its reads raise when the store fails (not a fact): the projection lets these through.
    store_errors: ClassVar[tuple[type[BaseException], ...]] = (StoreError,)
    # Whether a follower is notified of new facts (``follower``) instead of polling.
    subscribes: ClassVar[bool] = False
    # What a lost connection raises: a follower reconnects on these (none: nothing to lose).
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    @abstractmethod
    def write_session(self) -> AbstractContextManager[WriteSession]:
        """Open a transaction with the exclusive append lock; commit on success."""

    @abstractmethod
    def read_records(self, start: int = 1, stop: int | None = None) -> Iterator[Recorded]:
        """Recorded facts from position ``start`` to ``stop`` inclusive, in order."""

    @abstractmethod
    def read_raw(self, start: int = 1) -> Iterator[tuple[int, str, str, bytes]]:
        """Raw rows (position, originator_id, topic, state) in position order, from ``start``."""

    @abstractmethod
    def snapshot(self) -> AbstractContextManager[Snapshot]:
        """A read-only view of the whole store as of one instant, for ``ledger.verify``."""

    @abstractmethod
    def read_keyed_states(self, keys: Sequence[str], upto: int) -> Iterator[tuple[int, bytes]]:
        """(position, stored state) of the facts indexed under any of ``keys`` up to ``upto``, in order."""

    def read_keyed(self, keys: Sequence[str], upto: int) -> Iterator[Recorded]:
        """Facts indexed under any of ``keys`` (see ``index_key``) up to ``upto``, in position order."""
        for position, state in self.read_keyed_states(keys, upto):
            yield decode_state(position, state)

    @abstractmethod
    def read_position_states(self, positions: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        """(position, stored state) at ``positions`` (ascending), in position order."""

    def read_positions(self, positions: Sequence[int]) -> Iterator[Recorded]:
        """The facts at ``positions`` (ascending, as given), in position order."""
        for position, state in self.read_position_states(positions):
            yield decode_state(position, state)

    @abstractmethod
    def read_key_prefix(self, prefix: str, upto: int) -> Iterator[Recorded]:
        """Facts whose index key starts with ``prefix``, up to ``upto``, in position order."""

    def read_names(self, names: Sequence[str]) -> dict[str, tuple[str, int]] | None:
        """Each of ``names``' scope and first position in ``ledger_names`` (None: this store cannot say).

        The reporting view's follower finds a correction's service (or a ticket's contract)
        here without holding an index of every id.
        """
        return None

    def read_key_prefixes(self, prefixes: Sequence[str], upto: int) -> Iterator[Recorded]:
        """Facts whose index key starts with any of ``prefixes`` up to ``upto``, in position order.

        A backend may answer in one statement (the follower loads many contracts' tickets at once).
        """
        rows: dict[int, Recorded] = {}
        for prefix in prefixes:
            rows.update((r.position, r) for r in self.read_key_prefix(prefix, upto))
        for position in sorted(rows):
            yield rows[position]

    @abstractmethod
    def read_key_range_states(self, lo: str, hi: str, upto: int) -> Iterator[tuple[int, bytes]]:
        """(position, stored state) of the facts under a key in [``lo``, ``hi``) up to ``upto``, each once."""

    @abstractmethod
    def edge_key(self, lo: str, hi: str, upto: int, *, last: bool = False) -> str | None:
        """The first (``last``: the last) key in [``lo``, ``hi``) with a row up to ``upto``, in byte order."""

    def edge_keys(self, ranges: Sequence[tuple[str, str]], upto: int, *,
                  last: bool = False) -> list[str | None]:
        """``edge_key`` of each range, in order; a backend may answer in one statement (the follower
        finds every probe's days around its window for many services at once)."""
        return [self.edge_key(lo, hi, upto, last=last) for lo, hi in ranges]

    def first_keys_by_name(self, prefixes: Sequence[str], upto: int, tail: int) -> list[list[str]]:
        """Under each prefix, whose keys are ``<prefix><name>@<tail characters>``, the first key of each
        name, in key order (a service's probes with their first days: ``keys.probe_key``).

        A backend may answer in one statement; here, a round of ``edge_keys`` per name.
        """
        out: list[list[str]] = [[] for _ in prefixes]
        pending = [(i, p, p) for i, p in enumerate(prefixes)]  # (which, prefix, where the next name starts)
        while pending:
            edges = self.edge_keys([(lo, p[:-1] + chr(ord(p[-1]) + 1)) for _, p, lo in pending], upto)
            later = []
            for (i, p, _), key in zip(pending, edges, strict=True):
                if key is not None:
                    out[i].append(key)
                    later.append((i, p, key[: -tail - 1] + "A"))  # past "<name>@": "@" + 1 is "A"
            pending = later
        return out

    def read_key_ranges_states(self, ranges: Sequence[tuple[str, str]],
                               upto: int) -> Iterator[tuple[int, bytes]]:
        """(position, stored state) of the facts under a key in any of ``ranges`` up to ``upto``, each once,
        in position order; a backend may answer in one statement."""
        rows: dict[int, bytes] = {}
        for lo, hi in ranges:
            rows.update(self.read_key_range_states(lo, hi, upto))
        for position in sorted(rows):
            yield position, rows[position]

    def read_key_parts_states(self, parts: Sequence[tuple[Sequence[str], Sequence[tuple[str, str]]]],
                              upto: int) -> list[tuple[int, int, bytes]]:
        """(part, position, stored state) of the facts each part names up to ``upto``, by part (its index
        in ``parts``), then position. A part is keys and key ranges ``[lo, hi)``: with ranges, each of
        its facts comes once (as ``keys.read_service_states`` gives them); with keys alone, as
        ``read_keyed_states`` gives them. A backend may read every part in one statement (a rebuild's
        group on PostgreSQL: two statements instead of four or more); here, a read per keys and range.
        """
        out: list[tuple[int, int, bytes]] = []
        for part, (keys, ranges) in enumerate(parts):
            if not ranges:
                if keys:
                    out.extend((part, p, state) for p, state in self.read_keyed_states(keys, upto))
                continue
            rows = dict(self.read_keyed_states(keys, upto)) if keys else {}
            for lo, hi in ranges:
                rows.update(self.read_key_range_states(lo, hi, upto))
            out.extend((part, position, rows[position]) for position in sorted(rows))
        return out

    @abstractmethod
    def unclosed_openings(self, prefix: str, since: str, until: str, upto: int) -> list[int]:
        """Positions of the incident openings under ``prefix`` (``keys.openings_prefix``) at ``since`` or
        later, or whose incident has no resolution key (``keys.resolved_key``) after them and before
        ``until`` (instants as keys spell them): every incident that may be open at ``until``."""

    @abstractmethod
    def first_filed(self, key: str, topics: Sequence[str], upto: int) -> tuple[int, bytes] | None:
        """(position, stored state) of the first fact of one of ``topics`` under ``key`` up to ``upto``."""

    @abstractmethod
    def filed_under(self, key: str, position: int) -> bool:
        """Whether the fact at ``position`` has a key index row under ``key``."""

    @abstractmethod
    def position_of(self, id_: str) -> int | None:
        """The position of the fact recorded with idempotency key ``id_``, if any."""

    @abstractmethod
    def last_position(self) -> int:
        """The highest recorded position (0 for an empty ledger)."""

    def position_at(self, instant: datetime) -> int:
        """The highest position recorded at or before ``instant`` (0 if none).

        ``recorded_at`` never decreases with position, so bisection finds it.
        """
        lo, hi = 0, self.last_position()
        while lo < hi:
            mid = (lo + hi + 1) // 2
            rec = next(self.read_records(mid, mid), None)
            if rec is not None and rec.recorded_at <= instant:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def committed(self, wanted: tuple[Sequence[str], Sequence[str]]) -> Lookup | None:
        """``WriteSession.lookup`` read beside an open write session (None: only through the session).

        What it reads is only ever written under the append lock, which that session
        holds: committed state is then the session's own, but for what the session
        wrote itself, which an append keeps in ``Holdings``.
        """
        return None

    @abstractmethod
    def merkle_tree(self) -> AbstractContextManager[Tree]:
        """The log's Merkle tree (``merkle_store``) as one read transaction sees it."""

    @abstractmethod
    def merkle_sizes(self) -> tuple[int | None, int]:
        """The leaves the tree's nodes cover (``Tree.covered``) and the log's size, read as of one instant."""

    @abstractmethod
    def create_merkle(self) -> None:
        """Create the tree's table and its append-only triggers if missing (a store made before it)."""

    @abstractmethod
    def open_view(self) -> ReportingView:
        """The reporting view in the same database (its tables created if needed and allowed)."""

    @abstractmethod
    def existing_view(self) -> tuple[ReportingView, set[str]] | None:
        """The view and which of its tables exist, if its tracking table was ever made (creates nothing)."""

    def serve_rebuild(self) -> None:
        """From now on this process's sessions serve a rebuild's worker alone (its reads and its
        fills of the view): a backend may tune them for it; by default nothing changes."""
        return None

    def reachable(self, url: str) -> None:
        """Raise one of ``connection_errors`` at once if the store at ``url`` cannot be reached now."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


# (events, index rows, start) -> the rows in the form a backend inserts them.
# (rows, index rows, start, the rows' Merkle leaf hashes) -> what the backend inserts
Packer = Callable[[Sequence[tuple[str, int, str, bytes]], Sequence[tuple[str, int]], int,
                   bytes | list[tuple[int, int, bytes]]], Packed]


# --- the reporting view -----------------------------------------------------------

APP_NAME: Final = "ledger"  # the tracked application: positions are the ledger's notification ids
PROJECTION: Final = "reporting"
TABLES: Final = ("report_monthly_availability", "report_downtime_intervals", "report_credit_entitlements")
TRACKING_TABLE: Final = f"{PROJECTION}_tracking"  # PostgreSQL (SQLite: the library's `tracking`)
FAILED_TABLE: Final = "report_failed_months"  # contract-months the fold could not evaluate
# Section 6: a contract-month's tickets and targets (``ledger support``), kept by the same projection.
SUPPORT_TABLES: Final = ("report_support_tickets", "report_support_targets")
# Every table of rows, in ``ViewRows`` order.
ROW_TABLES: Final = (*TABLES, FAILED_TABLE, *SUPPORT_TABLES)
Pair = tuple[str, str]  # (contract, month)


class ProjectionError(StoreError):
    """The view cannot follow the ledger (e.g. its tracking was removed by hand)."""


class Filling:
    """``ReportingView.replacing``'s writer where other processes may write too (``ReportingView.fill``).

    ``write(rows)`` writes in this process; ``target`` names the tables it fills, for ``fill``.
    """

    def __init__(self, write: Callable[[ViewRows], None], target: str) -> None:
        self.write = write
        self.target = target

    def __call__(self, rows: ViewRows) -> None:
        self.write(rows)


def refuse_backwards(current: int | None, tracking: Tracking | None) -> None:
    """Tracking never moves back: a view older than its position would be taken for current."""
    new = tracking.notification_id if tracking is not None else 0
    if (current or 0) > new:
        raise ProjectionError(
            f"the reporting view is at position {current}: refusing to move it back to {new}"
        )


class ReportingView(ABC):
    """What the tracked projection needs from a tracking recorder holding the report tables."""

    # Decimals, instants and booleans as text and integers (SQLite), or as themselves.
    text: ClassVar[bool]
    # Whether one transaction open for a whole rebuild would hold appends out (SQLite's single
    # write lock): the rebuild then spools its rows and writes them in one short transaction.
    holds_appends: ClassVar[bool]

    @abstractmethod
    def max_tracking_id(self, application_name: str) -> int | None:
        """The tracked position (None: never written)."""

    def notifications(self) -> AbstractContextManager[Callable[[float], bool]] | None:
        """Listen for appends: the block gets ``wait(seconds)``, True when one came. None: poll instead."""
        return None

    @abstractmethod
    def fence(self) -> AbstractContextManager[None]:
        """Held by a rebuild from before it reads the head until its view is written.

        ``replace`` takes the same fence, shared, for each of its transactions: no
        follower writes while a rebuild runs, and afterwards tracking (which only moves
        forward) refuses the follower's positions the rebuild already covers.
        """

    @abstractmethod
    def replace(self, pairs: Iterable[Pair], rows: ViewRows, tracking: Tracking) -> None:
        """In one transaction, in the fence: move tracking forward, replace the rows and failures of pairs.

        ``rows``: the projection's reports and failed months, already in this view's column types.
        """

    @abstractmethod
    def replacing(self, tracking: Tracking | None) -> AbstractContextManager[Callable[[ViewRows], None]]:
        """One transaction: empty the view and its tracking, let the block write, then set ``tracking``."""

    def fill(self, target: str, rows: ViewRows) -> None:
        """Write ``rows`` into the tables a rebuild's ``replacing`` is filling, from any process.

        ``target``: the ``Filling.target`` of that writer (a view whose ``replacing`` yields a plain
        callable is filled by that writer alone, and this is never called). Its own short transaction.
        """
        raise NotImplementedError(f"{type(self).__name__} is filled by its rebuild's writer alone")

    def reset(self, chunks: Iterable[ViewRows], tracking: Tracking | None) -> None:
        """In one transaction: empty the view, write ``chunks``, set tracking to ``tracking`` (never back)."""
        with self.replacing(tracking) as write:
            for rows in chunks:
                write(rows)

    @abstractmethod
    def wall_to_wall(self, pairs: Collection[Pair]) -> set[Pair]:
        """Of ``pairs``, those whose downtime is the whole month, and the failed ones (as whole).

        Looked up by key: the cost is that of the pairs asked about, not of the view.
        """

    @abstractmethod
    def failures(self, limit: int) -> tuple[int, list[tuple[str, str, int, str]]]:
        """How many contract-months failed, and the first ``limit`` of them by contract and month."""

    @abstractmethod
    def ledger_recorder(self) -> LedgerRecorder:
        """A reader of the ledger in the same database."""

