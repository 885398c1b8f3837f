"""The store port: how facts are appended and read, independent of the database.

Facts are stored with the ``eventsourcing`` library's application recorders
(one table, ``stored_events``): each fact is a stream of its own whose
``originator_id`` is the fact's idempotency key itself (text), at version 1, so
the recorder's primary key makes a second copy impossible. The recorder's
notification id is the fact's global ``position``. Each stored state carries
its link of a hash chain over the whole log (``chain_hash``); ``ledger_index``
(key, position), written in the same transaction, lets a contract-month read
only its own facts, and ``ledger_names`` (name, scope, position) holds the first
use of each incident, window and exclusion name (``ledger.consistency``).

Backends (``ledger.sqlite``, ``ledger.postgres``) provide a ``WriteSession``
under an exclusive write lock; everything else lives here, once.
"""

from __future__ import annotations

import contextlib
import hashlib
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Final, NamedTuple, Protocol, TypeVar, cast, get_args, runtime_checkable

import msgspec

from ledger.consistency import NO_CHANGE, NOTHING, Holdings, Item, Lookup, Pending
from ledger.errors import BadInput, StoreError
from ledger.events import (
    CONTRACT_TYPES,
    ContractAmended,
    ContractRegistered,
    CreditClaimFiled,
    ExclusionDeclared,
    ExclusionRevoked,
    Fact,
    ForceMajeureDeclared,
    HolidaysPinned,
    IncidentOpened,
    IncidentResolved,
    MaintenanceAnnounced,
    MaintenanceCancelled,
    MaintenanceCompleted,
    Recorded,
    SupportTimeLogged,
    TicketClassified,
    TicketOpened,
    TicketResolved,
    TicketResponded,
    TicketSeverityChanged,
    canonical,
    decode_state,
    decode_stored,
    state_bytes,
)

GENESIS: Final = "0" * 64
T = TypeVar("T")
BATCH: Final = 2000


class Head(NamedTuple):
    """The last recorded position, its chain hash and its recorded_at."""

    position: int
    hash: str
    recorded_at: datetime | None


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

    def pack(self, events: Sequence[tuple[str, int, str, bytes]], keys: Sequence[tuple[str, int]],
             start: int) -> Packed:
        """(originator_id = fact id, version 1, topic, state) rows for ``start``, ``start + 1``...

        and their (key, position) index rows, in the form ``insert`` takes. Called on the
        appending thread, so that the writer thread only sends.
        """
        ...

    def insert(self, packed: Packed, names: Sequence[tuple[str, str, int]] = ()) -> None:
        """Insert packed rows and the names they give first (name, scope, position).

        Raise StoreError if the rows did not land where packed. The states' links hash their positions.
        """
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


@dataclass(frozen=True, slots=True)
class Packed:
    """A batch of rows in the form its backend inserts them (binary COPY data on PostgreSQL)."""

    events: object
    index: object
    start: int
    count: int

    def check(self, end: int) -> None:
        """Raise StoreError unless the log now ends where these rows were packed to end."""
        if end != self.start + self.count - 1:
            raise StoreError(
                f"positions {self.start}..{end} for {self.count} events: the log is not append-only"
            )


class IdConflict(StoreError):
    """Rows written as if none of their ids were recorded met one that is: nothing was kept."""


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

    # ``module:function`` with the signature of ``WriteSession.pack`` that needs no session
    # and no backend import (``ledger.packing``), so that an import's child process can link
    # and pack the rows (see append_packed); None for a backend that packs only as it writes.
    packer: str | None = None

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
    def close(self) -> None:
        """Release connections."""


def index_key(fact: Fact) -> str:
    """The one key a fact is found by: its service, or the id it refers to, or its contract.

    A contract-month reads its service's facts, then the corrections that refer
    to their ids, then its claims and versions: never the rest of the ledger.
    """
    return KEY_OF[type(fact)](fact)


def _contract_key(fact: ContractRegistered | ContractAmended) -> str:
    return "k:" + fact.policy.contract.id


def _field_key(prefix: str, field: str) -> Callable[[Any], str]:
    get = attrgetter(field)
    return lambda fact: prefix + get(fact)


# A table by exact type, not a match statement or isinstance chain: it runs once per imported line.
_KEY_FIELD: Final[dict[type, tuple[str, str]]] = {
    IncidentResolved: ("i:", "incident"),
    MaintenanceCancelled: ("m:", "maintenance"),
    MaintenanceCompleted: ("m:", "maintenance"),
    ExclusionRevoked: ("x:", "ref"),
    CreditClaimFiled: ("c:", "contract"),
    # Support (section 6.1): a contract's tickets under "o:", the facts that refer to a
    # ticket under "t:" (a contract-month reads its tickets, then what refers to them), pins
    # by country. Engagements and recoveries name a service: "s:", as its other facts.
    TicketOpened: ("o:", "contract"),
    TicketSeverityChanged: ("t:", "ticket"),
    TicketResponded: ("t:", "ticket"),
    TicketClassified: ("t:", "ticket"),
    TicketResolved: ("t:", "ticket"),
    SupportTimeLogged: ("t:", "ticket"),
    HolidaysPinned: ("h:", "country"),
}
KEY_OF: Final[dict[type, Callable[[Any], str]]] = {
    cls: _contract_key if cls in CONTRACT_TYPES
    else _field_key(*_KEY_FIELD.get(cls, ("s:", "service")))
    for cls in get_args(Fact)
}


def reference_key(fact: Fact) -> str | None:
    """The index key of the corrections that may refer to this fact's id."""
    match fact:
        case IncidentOpened():
            return "i:" + fact.incident
        case MaintenanceAnnounced():
            return "m:" + fact.maintenance
        case ForceMajeureDeclared():
            return "x:" + fact.declaration
        case ExclusionDeclared():
            return "x:" + fact.exclusion
        case TicketOpened():
            return "t:" + fact.ticket
        case _:
            return None


OLD_FORMAT: Final = (
    "this store was written by an earlier ledger format (uuid5 stream ids); the ledger now uses "
    "fact ids as stream ids: export it with the earlier version's `ledger events` and import "
    "that into a new store"
)


def prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def chain_hash(prev: str, position: int, recorded_at: datetime, id_: str, fact: Fact) -> str:
    """Hash linking one fact to the one before it (content, position, recorded_at, previous hash)."""
    json = msgspec.json.encode
    return link_bytes(prev.encode(), position, json(recorded_at), json(id_), canonical(fact)).decode()


def link_bytes(prev: bytes, position: int, recorded_at_json: bytes, id_json: bytes, canon: bytes) -> bytes:
    """``chain_hash`` from JSON pieces already at hand, as ASCII hex bytes."""
    data = b"%s\n%d\n%s\n%s\n%s" % (prev, position, recorded_at_json, id_json, canon)
    return hashlib.sha256(data).hexdigest().encode()


# A fact ready to append, from ``ledger.ingest``: (line number, id, id as JSON, type tag,
# index key, canonical JSON, its own recorded_at as JSON or None, the name it gives or the
# contract it versions as ``ledger.consistency.Claim``, or None).
Prepared = tuple[int, str, bytes, str, str, bytes, bytes | None, tuple[str, str] | None]
_decode_instant: Final = msgspec.json.Decoder(datetime).decode


class _Tally:
    """What an append did so far."""

    def __init__(self) -> None:
        self.appended = self.skipped = 0
        self.first: int | None = None
        self.last: int | None = None
        self.conflicts: list[Conflict] = []

    def add(self, start: int, count: int, skipped: int, conflicts: Sequence[Conflict]) -> None:
        self.skipped += skipped
        self.conflicts.extend(conflicts)
        if count:
            if self.first is None:
                self.first = start
            self.appended += count
            self.last = start + count - 1

    def result(self) -> AppendResult:
        return AppendResult(self.appended, self.skipped, self.first, self.last, self.conflicts)


def append_prepared(
    recorder: LedgerRecorder,
    batches: Iterable[Sequence[Prepared]],
    clock: Callable[[], datetime],
    *,
    label: str = "line",
    progress: Callable[[int], None] | None = None,
) -> AppendResult:
    """Append prepared facts all-or-nothing, in order, skipping ids already recorded.

    ``batches`` may be a lazy stream (see ``ledger.ingest``): each batch is
    written as it comes, inside one transaction, so memory stays bounded
    whatever the input's size. Any error rolls the whole stream back.
    ``progress`` gets the number of facts of each batch. A fact whose id is
    recorded (or given earlier) with other content is not appended: it is a
    conflict of the result. Names and contract versions are checked against
    the store and the batches before (``ledger.consistency``).

    On a server store the statements run in order on one writer thread: while a
    batch's duplicate check (after the previous batch's insert) runs there, this
    thread links the batch as if none of its ids were recorded, the usual case,
    and links it again only if some were. On SQLite (an ``OptimisticSession``) a
    batch is inserted as if none of its ids were recorded, under a savepoint, and
    checked, relinked and inserted again only if the insert met a recorded id.
    """
    tally = _Tally()
    with recorder.write_session() as session, _Writer(threaded=session.overlaps) as writer:
        chain = _start_chain(session, clock, label)
        held = Holdings(label)
        optimistic = session if isinstance(session, OptimisticSession) else None
        for batch in batches:
            guess = sort_rows(batch, NONE_RECORDED, chain.position)  # as if none of its ids were recorded
            wanted = held.wanted(guess.items)
            asking = bool(wanted[0] or wanted[1])
            done: tuple[Sorted, _Linked, Pending] | None = None
            maybe: _Linked | None = None
            if optimistic is not None:
                looked = optimistic.lookup(wanted) if asking else NOTHING
                done = _insert_new(optimistic, chain, held, guess, looked)
                recorded = optimistic.recorded(guess.ids) if done is None else {}
            else:  # check first: link while the check runs
                found = writer.submit(session.recorded, guess.ids)
                asked = writer.submit(session.lookup, wanted) if asking else None
                if not found.done():
                    with contextlib.suppress(BadInput):  # perhaps about a recorded line: see below
                        maybe = chain.link(guess.fresh)
                recorded = writer.result(found)
                looked = NOTHING if asked is None else writer.result(asked)
            if done is None:  # checked first, or an id was recorded, or a line refused: exactly
                rows = sort_rows(batch, recorded, chain.position) if recorded else guess
                pending = held.check(rows.items, looked)
                linked = chain.link(rows.fresh) if recorded or maybe is None else maybe
                if linked.events:
                    writer.submit(session.insert, session.pack(linked.events, linked.keys, chain.position),
                                  pending.rows())
                done = rows, linked, pending
            rows, linked, pending = done
            held.commit(pending)
            if progress is not None:
                progress(len(batch))
            tally.add(chain.position, len(linked.events), rows.skipped, rows.conflicts)
            chain.advance(linked)
        writer.finish()
    return tally.result()


IN_FLIGHT: Final = 1  # packed batches sent to the writer thread and not yet written


class PackedBatch(NamedTuple):
    """A batch linked and packed in another process, with what the writer must still check."""

    packed: Packed
    skipped: int  # repeats of an earlier row of the batch, same content
    conflicts: list[Conflict]  # repeats with other content
    items: list[Item]  # the facts that give a name or version a contract


def append_packed(
    recorder: LedgerRecorder,
    packed_batches: Callable[[ChainStart], Generator[PackedBatch, None, None]],
    clock: Callable[[], datetime],
) -> AppendResult:
    """Append batches linked and packed elsewhere (``recorder.packer`` in another process).

    ``packed_batches`` is called, under the write lock, with where the chain stands,
    and yields each batch with what it dropped as repeats within the batch and the
    facts whose names and contract versions the store must confirm. They are linked
    as if none of their ids were recorded: a row whose id is (a re-import, a repeat
    across batches), a line the linking process refused, or a name or version that
    contradicts the ledger (each may concern such a row) raises ``IdConflict`` with
    nothing kept, and the caller appends the input again through ``append_prepared``,
    which checks exactly. No batch is inserted before its names and versions are checked.
    """
    tally = _Tally()
    with recorder.write_session() as session, _Writer(threaded=session.overlaps) as writer:
        chain = _start_chain(session, clock, "line")
        held = Holdings()
        position = chain.position
        written: deque[Future[None]] = deque()
        # Closed on the way out, so that a failed append stops the packing process at once.
        with contextlib.closing(packed_batches(chain.start())) as stream:
            for packed, skipped, conflicts, items in stream:
                if packed.start != position:
                    raise StoreError(f"import: a batch packed at {packed.start}, expected at {position}")
                pending = NO_CHANGE
                if items:
                    wanted = held.wanted(items)
                    looked = NOTHING
                    if wanted[0] or wanted[1]:
                        # On a server, beside the insert in flight rather than after it.
                        beside = recorder.committed(wanted) if session.overlaps else None
                        if beside is not None:
                            looked = beside
                        else:  # after the batches in flight, which are then written (errors raised)
                            looked = writer.result(writer.submit(session.lookup, wanted))
                            written.clear()
                    try:
                        pending = held.check(items, looked)
                    except BadInput as exc:  # perhaps about a recorded line: the checking pass decides
                        raise IdConflict(str(exc)) from None
                if packed.count:
                    written.append(writer.submit(session.insert, packed, pending.rows()))
                while len(written) > IN_FLIGHT:  # bounded memory: wait for the oldest batch
                    writer.result(written.popleft())
                held.commit(pending)
                tally.add(position, packed.count, skipped, conflicts)
                position += packed.count
            writer.finish()
    return tally.result()


def _start_chain(session: WriteSession, clock: Callable[[], datetime], label: str) -> Chain:
    head = session.head()
    now = clock()
    # Facts without their own recorded_at get the import's instant, never below the store's.
    at = head.recorded_at
    default_at = now if at is None or now >= at else at
    # Positions are known before the insert (the lock is held), so each state can carry
    # its chain link: the link hashes the position. Each insert checks where it landed.
    return Chain(session.next_position(), head.hash.encode(), at, default_at,
                  msgspec.json.encode(default_at), label)


class Sorted(NamedTuple):
    """A batch's rows to append, and what the rest of it was."""

    fresh: list[Prepared]
    skipped: int  # repeats with the same content as the recorded (or earlier) fact
    conflicts: list[Conflict]  # repeats with other content
    items: list[Item]  # the fresh facts that give a name or version a contract, with their positions
    ids: list[str]  # every id of the batch, once


def sort_rows(batch: Sequence[Prepared], recorded: Mapping[str, tuple[int, bytes]], start: int) -> Sorted:
    """Sort ``batch`` into rows to append from position ``start``, repeats and conflicts.

    An id in ``recorded`` (position, stored state) or given earlier in the batch is
    appended once: a later line with the same canonical content is a repeat, one
    with other content a conflict naming the position the id has.
    """
    fresh: list[Prepared] = []
    items: list[Item] = []
    conflicts: list[Conflict] = []
    skipped = 0
    firsts: dict[str, int] = {}
    for row in batch:
        id_ = row[1]
        if recorded and id_ in recorded:
            firsts.setdefault(id_, -1)
            position, state = recorded[id_]
            if same_content(state, row[2], row[5]):
                skipped += 1
            else:
                conflicts.append(Conflict(row[0], id_, position))
            continue
        index = firsts.setdefault(id_, len(fresh))
        if index < len(fresh):
            if fresh[index][5] == row[5]:
                skipped += 1
            else:
                conflicts.append(Conflict(row[0], id_, start + index))
            continue
        fresh.append(row)
        claim = row[7]
        if claim is not None:
            name = claim[0]
            items.append((row[0], start + index, name, claim[1], row[5] if name[:2] == "k:" else None))
    return Sorted(fresh, skipped, conflicts, items, list(firsts))


# The tail of a stored state after its content: ``,"<64 hex digits of the link>"]``.
_TAIL: Final = 68


def same_content(state: bytes, id_json: bytes, canon: bytes) -> bool:
    """Whether a stored state holds the fact whose canonical content is ``canon``."""
    # The state is [id, recorded_at, content, link] as ``state_bytes`` writes it: cut the
    # content out rather than decode it (a re-import compares every line).
    start = len(id_json) + 2
    if state[start : start + 1] == b'"':
        end = state.find(b'"', start + 1)
        if end > 0 and state[end + 2 : len(state) - _TAIL] == canon:
            return True
    try:  # laid out otherwise (or other content): decide on the decoded fact
        return canonical(decode_stored(0, bytes(state))[0].fact) == canon
    except (msgspec.MsgspecError, ValueError):
        return False


class ChainStart(NamedTuple):
    """Where a chain stands, in a form another process can be given (instants as JSON)."""

    position: int
    prev: str
    last_at: str | None
    default_at: str


def packing_chain(start: ChainStart, label: str = "line") -> Chain:
    """The chain ``start`` describes, for a process linking rows as if none were recorded."""
    last_at = None if start.last_at is None else _decode_instant(start.last_at.encode())
    default_json = start.default_at.encode()
    return Chain(start.position, start.prev.encode(), last_at, _decode_instant(default_json),
                  default_json, label)


NONE_RECORDED: Final[Mapping[str, tuple[int, bytes]]] = MappingProxyType({})


def _insert_new(session: OptimisticSession, chain: Chain, held: Holdings, guess: Sorted,
                looked: Lookup) -> tuple[Sorted, _Linked, Pending] | None:
    """Check, link and insert a batch as if none of its ids were recorded; None (nothing kept) if one was."""
    try:
        pending = held.check(guess.items, looked)
        linked = chain.link(guess.fresh)
    except BadInput:
        return None  # perhaps about a line recorded already, which the check will drop
    if linked.events and not session.insert_new(session.pack(linked.events, linked.keys, chain.position),
                                                pending.rows()):
        return None
    return guess, linked, pending


class _Linked(NamedTuple):
    """A batch's rows and index rows, and where the chain stands after them."""

    events: list[tuple[str, int, str, bytes]]
    keys: list[tuple[str, int]]
    prev: bytes
    last_at: datetime | None


@dataclass
class Chain:
    """Where an append stands: the next position, the last link and the last recorded_at."""

    position: int
    prev: bytes
    last_at: datetime | None
    default_at: datetime
    default_json: bytes
    label: str

    def link(self, fresh: Sequence[Prepared]) -> _Linked:
        """Rows for the facts of ``fresh``, from where the chain stands."""
        pos, prev, last_at = self.position, self.prev, self.last_at
        default_at, default_json = self.default_at, self.default_json
        events: list[tuple[str, int, str, bytes]] = []
        keys: list[tuple[str, int]] = []
        for lineno, id_, id_json, topic, key, canon, own_at, _ in fresh:
            if own_at is None:
                if last_at is None or last_at <= default_at:
                    at_json, last_at = default_json, default_at
                else:  # an earlier line of this import carried a later recorded_at
                    at_json = msgspec.json.encode(last_at)
            else:
                at, at_json = _decode_instant(own_at), own_at
                if last_at is not None and at < last_at:
                    raise BadInput(
                        f"{self._at(lineno)}field `recorded_at`: {at.isoformat()} is earlier than "
                        f"{last_at.isoformat()}, which the store already holds"
                    )
                if at > default_at:
                    # One line dated in the future would hold every later fact's recorded_at there.
                    raise BadInput(
                        f"{self._at(lineno)}field `recorded_at`: {at.isoformat()} is later than this "
                        f"import's own instant, {default_at.isoformat()}"
                    )
                last_at = at
            prev = link_bytes(prev, pos, at_json, id_json, canon)
            events.append((id_, 1, topic, state_bytes(id_json, at_json, canon, prev)))
            keys.append((key, pos))
            pos += 1
        return _Linked(events, keys, prev, last_at)

    def _at(self, line: int) -> str:
        return f"{self.label} {line}: " if self.label else ""

    def start(self) -> ChainStart:
        """Where this chain stands, for ``packing_chain`` in another process."""
        last_at = None if self.last_at is None else msgspec.json.encode(self.last_at).decode()
        return ChainStart(self.position, self.prev.decode(), last_at, self.default_json.decode())

    def advance(self, linked: _Linked) -> None:
        """Move past a batch that was sent to the store."""
        self.position += len(linked.events)
        self.prev = linked.prev
        self.last_at = linked.last_at


class _Writer:
    """One thread that runs a write session's statements in the order they are submitted.

    A result is taken only after every statement submitted before it has
    succeeded, so the first error is the one reported (not "transaction
    aborted" from a later statement). On an error, statements not yet started
    are cancelled and the running one finishes before the session rolls back.
    With ``threaded`` off, each statement runs at once on the caller's thread.
    """

    def __init__(self, *, threaded: bool = True) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ledger-writer") if threaded else None
        self._queue: deque[Future[Any]] = deque()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        if self._pool is not None:
            future = self._pool.submit(fn, *args)
        else:  # an error is raised here and now
            future = Future()
            future.set_result(fn(*args))
        self._queue.append(future)
        return future

    def result(self, future: Future[T]) -> T:
        while self._queue:
            head = self._queue.popleft()
            value = head.result()
            if head is future:
                return cast(T, value)
        raise ValueError("not a statement of this writer")

    def finish(self) -> None:
        """Wait for every statement; raise the first error."""
        while self._queue:
            self._queue.popleft().result()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
