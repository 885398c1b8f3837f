"""The store port: how facts are appended and read, independent of the database.

Facts are stored with the ``eventsourcing`` library's application recorders
(one table, ``stored_events``): each fact is a stream of its own whose
``originator_id`` is the fact's idempotency key itself (text), at version 1, so
the recorder's primary key makes a second copy impossible. The recorder's
notification id is the fact's global ``position``. Beside it, ``ledger_chain``
holds a hash chain (one row per position) written in the same transaction.

Backends (``ledger.sqlite``, ``ledger.postgres``) provide a ``WriteSession``
under an exclusive write lock; everything else lives here, once.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from itertools import islice
from typing import Final, NamedTuple, Protocol

import msgspec
from eventsourcing.persistence import StoredEvent

from ledger.errors import BadInput
from ledger.events import (
    ContractAmended,
    ContractRegistered,
    CreditClaimFiled,
    ExclusionDeclared,
    ExclusionRevoked,
    Fact,
    ForceMajeureDeclared,
    IncidentOpened,
    IncidentResolved,
    MaintenanceAnnounced,
    MaintenanceCancelled,
    MaintenanceCompleted,
    Recorded,
    canonical,
    derive_id_from,
    encode_state_raw,
)

GENESIS: Final = "0" * 64
BATCH: Final = 2000


class Head(NamedTuple):
    """The last recorded position, its chain hash and its recorded_at."""

    position: int
    hash: str
    recorded_at: datetime | None


class ChainRow(NamedTuple):
    position: int
    hash: str
    recorded_at: datetime


class AppendResult(msgspec.Struct, frozen=True):
    """What an append or import did."""

    appended: int
    skipped: int
    first_position: int | None
    last_position: int | None


class WriteSession(Protocol):
    """One write transaction holding the store's exclusive append lock."""

    def head(self) -> Head: ...

    def existing(self, originator_ids: Sequence[str]) -> set[str]:
        """Which of these originator ids (fact ids) are recorded already."""
        ...

    def insert(self, events: Sequence[StoredEvent]) -> list[int]:
        """Insert events whose ``originator_id`` is the fact id; return their positions."""
        ...

    def insert_chain(self, rows: Sequence[ChainRow]) -> None: ...

    def insert_index(self, rows: Sequence[tuple[str, int]]) -> None: ...


class LedgerRecorder(ABC):
    """What the ledger needs from a backend beyond the eventsourcing recorder API."""

    @abstractmethod
    def write_session(self) -> AbstractContextManager[WriteSession]:
        """Open a transaction with the exclusive append lock; commit on success."""

    @abstractmethod
    def read_records(self, start: int = 1, stop: int | None = None) -> Iterator[Recorded]:
        """Recorded facts from position ``start`` to ``stop`` inclusive, in order."""

    @abstractmethod
    def read_chain(self, start: int = 1) -> Iterator[ChainRow]:
        """Chain rows from ``start``, in position order."""

    @abstractmethod
    def read_raw(self, start: int = 1) -> Iterator[tuple[int, str, str, bytes]]:
        """Raw rows (position, originator_id, topic, state) in position order, for verification."""

    @abstractmethod
    def read_keyed(self, keys: Sequence[str], upto: int) -> Iterator[Recorded]:
        """Facts indexed under any of ``keys`` (see ``index_key``) up to ``upto``, in position order."""

    @abstractmethod
    def read_key_prefix(self, prefix: str, upto: int) -> Iterator[Recorded]:
        """Facts whose index key starts with ``prefix``, up to ``upto``, in position order."""

    @abstractmethod
    def position_of(self, id_: str) -> int | None:
        """The position of the fact recorded with idempotency key ``id_``, if any."""

    @abstractmethod
    def read_index(self) -> Iterator[tuple[str, int]]:
        """Every (key, position) row of the key index, in key order."""

    @abstractmethod
    def last_position(self) -> int:
        """The highest recorded position (0 for an empty ledger)."""

    @abstractmethod
    def position_at(self, instant: datetime) -> int:
        """The highest position recorded at or before ``instant`` (0 if none)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


def index_key(fact: Fact) -> str:
    """The one key a fact is found by: its service, or the id it refers to, or its contract.

    A contract-month reads its service's facts, then the corrections that refer
    to their ids, then its claims and versions: never the rest of the ledger.
    """
    match fact:
        case ContractRegistered() | ContractAmended():
            return "k:" + fact.policy.contract.id
        case IncidentResolved():
            return "i:" + fact.incident
        case MaintenanceCancelled() | MaintenanceCompleted():
            return "m:" + fact.maintenance
        case ExclusionRevoked():
            return "x:" + fact.ref
        case CreditClaimFiled():
            return "c:" + fact.contract
        case _:
            return "s:" + fact.service


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
    return _link(prev, position, msgspec.json.encode(recorded_at), id_, canonical(fact))


def _link(prev: str, position: int, recorded_at_json: bytes, id_: str, canon: bytes) -> str:
    return hashlib.sha256(
        b"%s\n%d\n%s\n%s\n%s" % (prev.encode(), position, recorded_at_json, msgspec.json.encode(id_), canon)
    ).hexdigest()


def _batches(items: Iterable[tuple[int, Fact]], size: int) -> Iterator[list[tuple[int, Fact]]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def append_stream(
    recorder: LedgerRecorder,
    items: Iterable[tuple[int, Fact]],
    clock: Callable[[], datetime],
    *,
    batch_size: int = BATCH,
    label: str = "line",
    progress: Callable[[int], None] | None = None,
) -> AppendResult:
    """Append facts all-or-nothing, in order, skipping ids already recorded.

    ``items`` pairs each fact with its line number (used in error messages) and
    may be a lazy stream: facts are written in batches inside one transaction,
    so memory stays bounded whatever the input's size. Any error rolls the
    whole stream back.
    """
    appended = skipped = 0
    first: int | None = None
    last: int | None = None
    with recorder.write_session() as session:
        head = session.head()
        prev_hash, last_at = head.hash, head.recorded_at
        now = clock()
        at_json: bytes | None = None
        for batch in _batches(items, batch_size):
            seen: dict[str, None] = {}
            fresh: list[tuple[int, Fact, str, bytes]] = []
            for lineno, fact in batch:
                canon = canonical(fact)  # once: for the derived id, the stored state and the chain
                id_ = fact.id if fact.id is not None else derive_id_from(canon)
                if id_ in seen:
                    skipped += 1
                    continue
                seen[id_] = None
                fresh.append((lineno, fact, id_, canon))
            already = session.existing(list(seen))
            stored: list[StoredEvent] = []
            kept: list[tuple[datetime, bytes, str, Fact, bytes]] = []
            for lineno, fact, id_, canon in fresh:
                if id_ in already:
                    skipped += 1
                    continue
                at = fact.recorded_at
                if at is None:
                    at = now if last_at is None or now >= last_at else last_at
                elif last_at is not None and at < last_at:
                    raise BadInput(
                        f"{label} {lineno}: field `recorded_at`: {at.isoformat()} is earlier than "
                        f"{last_at.isoformat()}, which the store already holds"
                    )
                if at is not last_at or at_json is None:
                    at_json = msgspec.json.encode(at)  # one import shares one instant: encode it once
                last_at = at
                stored.append(
                    StoredEvent(
                        originator_id=id_,
                        originator_version=1,
                        topic=type(fact).__struct_config__.tag,  # type: ignore[arg-type]
                        state=encode_state_raw(id_, at, canon),
                    )
                )
                kept.append((at, at_json, id_, fact, canon))
            if progress is not None:
                progress(len(batch))
            if not stored:
                continue
            new_positions = session.insert(stored)
            rows = []
            keys = []
            for pos, (at, at_json, id_, fact, canon) in zip(new_positions, kept, strict=True):
                prev_hash = _link(prev_hash, pos, at_json, id_, canon)
                rows.append(ChainRow(pos, prev_hash, at))
                keys.append((index_key(fact), pos))
            session.insert_chain(rows)
            session.insert_index(keys)
            appended += len(stored)
            if first is None:
                first = new_positions[0]
            last = new_positions[-1]
    return AppendResult(appended, skipped, first, last)
