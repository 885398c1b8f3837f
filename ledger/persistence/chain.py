"""The hash chain: each state's link hashes its position, recorded_at, id, content and the link before.

Kept apart from the append algorithms so that an import's child process can link rows
(``packing_chain``) and ``ledger.verify`` can recompute links without either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, NamedTuple

import msgspec

from ledger.errors import BadInput
from ledger.events import Fact, canonical
from ledger.persistence.merkle_store import leaf_hashes
from ledger.persistence.rows import Prepared

GENESIS: Final = "0" * 64


def chain_hash(prev: str, position: int, recorded_at: datetime, id_: str, fact: Fact) -> str:
    """Hash linking one fact to the one before it (content, position, recorded_at, previous hash)."""
    json = msgspec.json.encode
    return link_bytes(prev.encode(), position, json(recorded_at), json(id_), canonical(fact)).decode()


def link_bytes(prev: bytes, position: int, recorded_at_json: bytes, id_json: bytes, canon: bytes) -> bytes:
    """``chain_hash`` from JSON pieces at hand, as ASCII hex bytes (``Chain.link`` spells it out)."""
    data = b"%s\n%d\n%s\n%s\n%s" % (prev, position, recorded_at_json, id_json, canon)
    return hashlib.sha256(data).hexdigest().encode()


_decode_instant: Final = msgspec.json.Decoder(datetime).decode


class ChainStart(NamedTuple):
    """Where a chain stands, in a form another process can be given (instants as JSON)."""

    position: int
    prev: str
    last_at: str | None
    default_at: str
    # The tree covers the log: the packing process hashes the leaves (the writer holds the
    # Merkle tree's right edge and folds them); off: it does not hash them.
    hashing: bool = False


def packing_chain(start: ChainStart, label: str = "line") -> Chain:
    """The chain ``start`` describes, for a process linking rows as if none were recorded."""
    last_at = None if start.last_at is None else _decode_instant(start.last_at.encode())
    default_json = start.default_at.encode()
    return Chain(start.position, start.prev.encode(), last_at, _decode_instant(default_json),
                  default_json, label)



class Linked(NamedTuple):
    """A batch's rows, index rows and Merkle leaf hashes, and where the chain stands after them."""

    events: list[tuple[str, int, str, bytes]]
    keys: list[tuple[str, int]]
    prev: bytes
    last_at: datetime | None
    leaves: list[bytes]  # a row's 32 bytes each (``merkle_store.leaf_hashes``); none without a tree


@dataclass
class Chain:
    """Where an append stands: the next position, the last link and the last recorded_at."""

    position: int
    prev: bytes
    last_at: datetime | None
    default_at: datetime
    default_json: bytes
    label: str
    hashing: bool = True  # the leaves are hashed (off: a packing process for a store without the tree)

    def link(self, fresh: Sequence[Prepared]) -> Linked:
        """Rows for the facts of ``fresh``, from where the chain stands."""
        pos, prev, last_at = self.position, self.prev, self.last_at
        default_at, default_json = self.default_at, self.default_json
        events: list[tuple[str, int, str, bytes]] = []
        keys: list[tuple[str, int]] = []
        ats: list[bytes] = []
        # ``link_bytes`` and ``state_bytes`` written out here, their bytes joined rather than
        # formatted: this loop runs once per imported fact (Python calls cost more than the work).
        sha256, join, nl = hashlib.sha256, b"".join, b"\n"
        add_event, add_key, add_at = events.append, keys.append, ats.append
        # Rows without their own recorded_at take the import's, until an earlier row's later one.
        settled = last_at is None or last_at <= default_at
        for lineno, id_, id_json, topic, key, canon, own_at, _ in fresh:
            if own_at is None:
                if settled:
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
                settled = at <= default_at
            prev = sha256(nl.join((prev, b"%d" % pos, at_json, id_json, canon))).hexdigest().encode()
            add_event((id_, 1, topic, join((b"[", id_json, b",", at_json, b",", canon, b',"', prev, b'"]'))))
            if type(key) is str:
                add_key((key, pos))
            else:  # a support fact's keys (``keys.KEY_OF``)
                keys.extend((k, pos) for k in key)
            add_at(at_json)
            pos += 1
        # The leaves here, where each row's pieces are at hand (an import's child process).
        leaves = leaf_hashes(fresh, ats, self.position) if self.hashing else []
        return Linked(events, keys, prev, last_at, leaves)

    def _at(self, line: int) -> str:
        return f"{self.label} {line}: " if self.label else ""

    def start(self) -> ChainStart:
        """Where this chain stands, for ``packing_chain`` in another process."""
        last_at = None if self.last_at is None else msgspec.json.encode(self.last_at).decode()
        return ChainStart(self.position, self.prev.decode(), last_at, self.default_json.decode())

    def advance(self, linked: Linked) -> None:
        """Move past a batch that was sent to the store."""
        self.position += len(linked.events)
        self.prev = linked.prev
        self.last_at = linked.last_at


