"""Tamper evidence: re-walk the hash chain and name the first position that does not hold.

The event log (``stored_events``) is read in position order; each row's state
carries its link of the chain, recomputed here from the previous link and the
row's own position, recorded_at, id and content. Every problem is reported at
the lowest position where the log stops holding together, and ``position`` in
the result is the last one that still holds, so an operator knows what can be
trusted.

The chain alone cannot catch someone who rewrites it consistently after an
edit; a head hash published earlier can (``expect``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

import msgspec

from ledger.events import decode_stored
from ledger.store import GENESIS, LedgerRecorder, chain_hash, index_key

LOWEST: Final = -(2**63)  # the smallest position either database can hold


class VerifyResult(msgspec.Struct, frozen=True):
    """``ok`` with the head hash, or the first problem found."""

    ok: bool
    position: int  # the last good position
    head: str  # chain hash at that position
    problem: str | None = None


_MOD: Final = 2**256


def _row_hash(key: str, position: int) -> int:
    return int.from_bytes(hashlib.sha256(b"%d\x00" % position + key.encode()).digest(), "big")


def _index_sum(rows: Iterable[tuple[str, int]]) -> int:
    """An order-free hash of a set of index rows: the sum of their hashes."""
    total = 0
    for key, position in rows:
        total = (total + _row_hash(key, position)) % _MOD
    return total


def verify(recorder: LedgerRecorder, expect: str | None = None) -> VerifyResult:
    """Recompute every link of the chain from the stored events and compare.

    ``expect`` is a head hash published earlier (``sha256:`` prefix optional):
    the recomputed chain must pass through it, whatever was appended since.
    """
    want = expect.removeprefix("sha256:").lower() if expect is not None else None
    seen_expected = False
    prev, expected, last_at = GENESIS, 1, None
    index_sum = 0

    def bad(problem: str) -> VerifyResult:
        return VerifyResult(False, expected - 1, prev, problem)

    # From the lowest possible position, not 1: a row slipped in at 0 or below would be
    # invisible to every reader, yet its id would make the ledger skip a later fact.
    for pos, oid, topic, state in recorder.read_raw(LOWEST):
        if pos < expected:
            # Below a position already verified: a row slipped in with a made-up number.
            return bad(f"position {pos}: event inserted (out of sequence)")
        if pos > expected:
            return bad(f"position {expected}: event removed (the log jumps from {expected - 1} to {pos})")
        try:
            rec, link = decode_stored(pos, state)
        except (msgspec.MsgspecError, ValueError, TypeError, RecursionError):
            return bad(f"position {pos}: stored content altered (no longer a valid event)")
        if rec.id != oid or topic != type(rec.fact).__struct_config__.tag:
            return bad(f"position {pos}: stored content altered or moved (id or type does not match its row)")
        if last_at is not None and rec.recorded_at < last_at:
            return bad(f"position {pos}: recorded_at altered or out of order")
        digest = chain_hash(prev, pos, rec.recorded_at, rec.id, rec.fact)
        if digest != link:
            return bad(f"position {pos}: content, order or chain altered (hash does not match)")
        prev, expected, last_at = digest, expected + 1, rec.recorded_at
        index_sum = (index_sum + _row_hash(index_key(rec.fact), pos)) % _MOD
        if digest == want:
            seen_expected = True
    if index_sum != _index_sum(recorder.read_index()):
        return VerifyResult(
            False, expected - 1, prev,
            "the key index does not match the events (rows altered, added or removed): "
            "reports read through it could miss or invent facts",
        )
    if want is not None and not seen_expected and want != GENESIS:
        # Each link hashes its own position, so the published hash can only be met at
        # the position it was published for; never meeting it means history was rewritten.
        return VerifyResult(
            False, expected - 1, prev,
            f"published head sha256:{want} is not on the chain: the chain was recomputed "
            f"(or the head is not from this ledger); current head sha256:{prev} at position {expected - 1}",
        )
    return VerifyResult(True, expected - 1, prev)
