"""Tamper evidence: re-walk the hash chain and the key index, and name the first position that does not hold.

Everything is read from one snapshot of the store (``LedgerRecorder.snapshot``), so
appends committed while the check runs are simply not part of it. The event log is
read in position order; each row's state carries its link of the chain, recomputed
here from the previous link and the row's own position, recorded_at, id and content.
The key index, read in position order too, must hold a row for each of the event's keys
(``keys.index_keys``: its service or reference, and for a support or service fact the
keys that carry time) and no other. Every problem is reported at the lowest position
where the store stops holding together, and ``position`` in the result is the last one
that still holds, so an operator knows what can be trusted. Any value of the wrong type or shape
in any column is tampering, reported like the rest: the ledger writes none.

What this proves, and what it cannot: the chain shows that the log is the one its
links describe, but someone who can write the tables can rewrite the links after an
edit, or cut the tail, and the result holds together again. A head hash published
earlier (``expect``) catches both for everything up to where it was published.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Final, cast

import msgspec

from ledger.errors import BadInput
from ledger.events import StoredState, SupportTimeLogged
from ledger.persistence.chain import GENESIS, chain_hash
from ledger.persistence.consistency import name_claim, ticket_owner
from ledger.persistence.keys import INCIDENT, LEGACY_TICKETS, SERVICE, TICKET, index_keys, legacy_keys
from ledger.persistence.port import LedgerRecorder

_HEAD: Final = re.compile(r"(?:sha256:)?([0-9a-f]{64})", re.IGNORECASE)


class _StrictState(StoredState, frozen=True, array_like=True, forbid_unknown_fields=True):
    """A stored state as the ledger writes it: readers ignore elements after the link, verify does not."""


_STATE: Final = msgspec.json.Decoder(_StrictState)


class VerifyResult(msgspec.Struct, frozen=True):
    """``ok`` with the head hash, or the first problem found."""

    ok: bool
    position: int  # the last good position
    head: str  # chain hash at that position
    problem: str | None = None
    expected_at: int | None = None  # where the expected head was met on the chain


def parse_head(value: str) -> str:
    """A published head hash (``sha256:`` and 64 hex digits, the prefix optional), as lower-case hex."""
    match = _HEAD.fullmatch(value)
    if match is None:
        raise BadInput(f"--expect {value!r}: expected a head hash, sha256: and 64 hex digits")
    digest = match.group(1).lower()
    if digest == GENESIS:
        # What an empty ledger "has": every chain starts from it, so it proves nothing.
        raise BadInput(f"--expect {value!r}: the all-zero hash is where every chain starts, not a head")
    return digest


def _shown(value: object) -> str:
    """A stored value as a message names it: a position as a number, anything else recognisably."""
    if value is None:
        return "NULL"
    return str(value) if type(value) is int else repr(value)


_KINDS: Final[dict[type, str]] = {
    type(None): "NULL", str: "text", int: "an integer", float: "a real number", bytes: "a blob"
}


def _kind(value: object) -> str:
    return _KINDS.get(type(value), type(value).__name__)


class _Index:
    """The key index in position order, met row by row as the events are walked.

    After the event at position p is matched, the next row is above p (or not a
    position at all): so a row below the event being walked names no event.
    """

    def __init__(self, rows: Iterator[tuple[object, object]]) -> None:
        self.rows = rows
        self.head = next(rows, None)
        self.legacy: dict[str, int] = {}  # kind of legacy key set met ("o:", "t:", "s:") -> first position
        # The first support fact, and the first service fact, filed under this version's keys:
        # the two were introduced by different versions, so each has its own.
        self.filed_now: dict[str, int] = {}

    def stray(self, below: int | None) -> str | None:
        """The problem with the next row, if it is not an event's at ``below`` or later (None: any row is)."""
        if self.head is None:
            return None
        at, key = self.head
        if type(at) is not int:
            return f"position {_shown(at)}: key index row {_shown(key)} altered (its position is {_kind(at)})"
        if below is not None and at >= below:
            return None
        return f"position {at}: key index row {_shown(key)} names no event"

    def match(self, position: int, keys: tuple[str, ...],
              legacy: tuple[str, ...] | None = None) -> str | None:
        """The problem with the event at ``position`` filed under ``keys`` (sorted), if any; rows taken.

        ``legacy``: the keys a store written before month-bounded reads gave the fact,
        accepted instead until the first fact of its group (support, service) filed this
        version's way (``self.legacy`` notes the first position of each kind).
        """
        if self.head is None or self.head[0] != position:
            return f"position {position}: the event has no key index row"
        if len(keys) == 1 and legacy is None:  # one key, one row
            if self.head[1] != keys[0]:
                return (f"position {position}: key index row altered "
                        f"(filed under {_shown(self.head[1])}, the event's key is {keys[0]!r})")
            self.head = next(self.rows, None)
            if self.head is not None and self.head[0] == position:
                return f"position {position}: a second key index row {_shown(self.head[1])} for the event"
            return None
        found: list[object] = []
        while self.head is not None and self.head[0] == position:
            found.append(self.head[1])
            self.head = next(self.rows, None)
        got = tuple(found)
        group = "service" if legacy is not None and legacy[0][:2] in (SERVICE, INCIDENT) else "support"
        if got == keys:
            if legacy is not None:
                self.filed_now.setdefault(group, position)
            return None
        if legacy is not None and got == legacy:
            if (now := self.filed_now.get(group)) is not None:  # this version never files the earlier way
                return (f"position {position}: key index row missing (filed the earlier way, after the "
                        f"{group} fact at position {now} filed under this version's keys)")
            self.legacy.setdefault(legacy[0][:2], position)
            return None
        shown = keys[0] if len(keys) == 1 else keys
        stray = [k for k in got if k not in keys]
        if stray and len(got) > len(keys):
            return f"position {position}: a second key index row {_shown(stray[0])} for the event"
        if stray:
            return (f"position {position}: key index row altered "
                    f"(filed under {_shown(stray[0])}, the event's key is {shown!r})")
        missing = [k for k in keys if k not in got]
        return f"position {position}: key index row {missing[0]!r} missing (the event's keys are {shown!r})"


def _index_problem(problem: str) -> str:
    return (f"{problem}: the key index does not match the events, "
            "so reports read through it could miss or invent facts")


_COLUMNS: Final = (("originator_id", str), ("topic", str), ("state", bytes))


def verify(recorder: LedgerRecorder, expect: str | None = None) -> VerifyResult:
    """Recompute every link of the chain and every key index row from the stored events, and compare.

    ``expect`` is a head hash published earlier (``sha256:`` prefix optional):
    the recomputed chain must pass through it, whatever was appended since. A
    malformed one is ``BadInput``.
    """
    want = parse_head(expect) if expect is not None else None
    with recorder.snapshot() as snap:
        names: dict[str, tuple[str, int]] = {}
        result = _walk(snap.events(), _Index(snap.index()), want, names)
        if result.ok and (problem := _names_problem(snap.names(), names)):
            return VerifyResult(False, result.position, result.head, problem, result.expected_at)
        return result


def _names_problem(rows: Iterator[tuple[object, object, object]],
                   expected: dict[str, tuple[str, int]]) -> str | None:
    """The first difference between the names table and each name's first use in the log, if any.

    The table is what refuses a second use of an incident, window or exclusion id for
    another service: a removed or altered row would let a later fact name two things.
    """
    held: dict[object, tuple[object, object]] = {}
    for name, scope, position in rows:
        if name in held:
            return f"position {_shown(position)}: names table row {_shown(name)} held twice"
        held[name] = (scope, position)
    for name, (scope, position) in sorted(expected.items(), key=lambda kv: kv[1][1]):
        row = held.pop(name, None)
        if row is None:
            return (f"position {position}: the names table lost {name!r} (first used there), "
                    "so a later fact could reuse it for something else")
        if row != (scope, position):
            return f"position {position}: the names table row of {name!r} altered ({_shown(row)})"
    for name, (_, position) in held.items():
        return f"position {_shown(position)}: names table row {_shown(name)} inserted (it names no fact)"
    return None


def _walk(events: Iterator[tuple[object, object, object, object]], index: _Index,
          want: str | None, names: dict[str, tuple[str, int]]) -> VerifyResult:
    """Walk the log once, checking chain and index; ``names`` gets each name's first use."""
    found_at: int | None = None
    prev, expected = GENESIS, 1
    last_at: datetime | None = None

    def bad(problem: str) -> VerifyResult:
        return VerifyResult(False, expected - 1, prev, problem, found_at)

    for pos, oid, topic, state in events:
        if pos is None:
            # Only PostgreSQL can hold one (once its NOT NULL is dropped); such rows come first.
            return bad(f"position NULL: event inserted without a position (id {_shown(oid)})")
        if type(pos) is not int:  # PostgreSQL, its column's type changed
            return bad(f"position {_shown(pos)}: position altered (it is {_kind(pos)})")
        if problem := index.stray(min(pos, expected)):
            return bad(_index_problem(problem))
        if pos < expected:
            # Below a position already verified: a row slipped in with a made-up number, or
            # at 0 or below: invisible to every reader, yet its id would make the ledger
            # skip a later fact with that id.
            return bad(f"position {pos}: event inserted (out of sequence)")
        if pos > expected:
            return bad(f"position {expected}: event removed (the log jumps from {expected - 1} to {pos})")
        for (column, kind), value in zip(_COLUMNS, (oid, topic, state), strict=True):
            if type(value) is not kind:
                return bad(f"position {pos}: stored content altered ({column} is {_kind(value)}, "
                           f"not {_KINDS[kind]})")
        try:
            rec = _STATE.decode(cast(bytes, state))  # its type checked just above
        except (msgspec.MsgspecError, ValueError, TypeError, RecursionError):
            return bad(f"position {pos}: stored content altered (no longer a valid event)")
        fact = rec.fact
        if rec.id != oid or topic != type(fact).__struct_config__.tag:
            return bad(f"position {pos}: stored content altered or moved (id or type does not match its row)")
        if rec.recorded_at.tzinfo is None:
            return bad(f"position {pos}: stored content altered (recorded_at has no offset)")
        if fact.id is not None or fact.position is not None or fact.recorded_at is not None:
            # The link hashes the fact without them, and the ledger stores it without them.
            return bad(f"position {pos}: stored content altered (envelope fields inside the fact)")
        if last_at is not None and rec.recorded_at < last_at:
            return bad(f"position {pos}: recorded_at altered or out of order")
        digest = chain_hash(prev, pos, rec.recorded_at, rec.id, fact)
        if digest != rec.link:
            return bad(f"position {pos}: content, order or chain altered (hash does not match)")
        owner = None
        if type(fact) is SupportTimeLogged and (held := names.get(TICKET + fact.ticket)) is not None:
            owner = ticket_owner(held[0])  # the log's key names its ticket's contract, if opened before
        keys = index_keys(fact, owner)
        if problem := index.match(pos, tuple(sorted(keys)) if len(keys) > 1 else keys, legacy_keys(fact)):
            return bad(_index_problem(problem))
        if (claim := name_claim(fact)) is not None:
            names.setdefault(claim[0], (claim[1], pos))
        prev, expected, last_at = digest, expected + 1, rec.recorded_at
        if digest == want:
            found_at = pos
    if problem := index.stray(None):
        return bad(_index_problem(problem))
    if TICKET in index.legacy and LEGACY_TICKETS not in index.legacy:
        # A log filed under its ticket alone is read only by a contract whose openings are
        # under the earlier key (``ledger.support_read``): without any, it would be missed.
        at = index.legacy[TICKET]
        return VerifyResult(False, at - 1, prev, _index_problem(
            f"position {at}: key index row of a time log missing (filed under its ticket only, "
            "in a ledger holding no ticket filed the earlier way)"), found_at)
    if want is not None and found_at is None:
        # Each link hashes its own position, so the published hash can only be met at
        # the position it was published for; never meeting it means history was rewritten.
        return bad(
            f"published head sha256:{want} is not on the chain: the chain was recomputed or cut "
            f"(or the head is not from this ledger); current head sha256:{prev} at position {expected - 1}"
        )
    return VerifyResult(True, expected - 1, prev, expected_at=found_at)
