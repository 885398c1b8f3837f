"""Tamper evidence: re-walk the hash chain and name the first position that does not hold."""

from __future__ import annotations

from itertools import zip_longest

import msgspec

from ledger.events import decode_state
from ledger.store import GENESIS, LedgerRecorder, chain_hash, originator_id


class VerifyResult(msgspec.Struct, frozen=True):
    """``ok`` with the head hash, or the first problem found."""

    ok: bool
    position: int  # the last good position
    head: str  # chain hash at that position
    problem: str | None = None


def verify(recorder: LedgerRecorder) -> VerifyResult:
    """Recompute every link of the chain from the stored events and compare."""
    prev, expected, last_at = GENESIS, 1, None

    def bad(problem: str) -> VerifyResult:
        return VerifyResult(False, expected - 1, prev, problem)

    for raw, link in zip_longest(recorder.read_raw(), recorder.read_chain()):
        if raw is None:
            return bad(f"position {link.position}: event removed (the chain records it, the log does not)")
        pos, oid, topic, state = raw
        if pos != expected:
            return bad(f"position {expected}: event removed (the log jumps from {expected - 1} to {pos})")
        if link is None:
            return bad(f"position {pos}: event inserted (not in the chain)")
        if link.position != pos:
            first = min(pos, link.position)
            return bad(f"position {first}: the chain and the log disagree (removed or inserted)")
        try:
            rec = decode_state(pos, state)
        except (msgspec.MsgspecError, ValueError, TypeError):
            return bad(f"position {pos}: stored content altered (no longer a valid event)")
        if originator_id(rec.id) != oid or topic != type(rec.fact).__struct_config__.tag:
            return bad(f"position {pos}: stored content altered (id or type does not match its row)")
        if rec.recorded_at != link.recorded_at or (last_at is not None and rec.recorded_at < last_at):
            return bad(f"position {pos}: recorded_at altered or out of order")
        digest = chain_hash(prev, pos, rec.recorded_at, rec.id, rec.fact)
        if digest != link.hash:
            return bad(f"position {pos}: content, order or chain altered (hash does not match)")
        prev, expected, last_at = digest, expected + 1, rec.recorded_at
    return VerifyResult(True, expected - 1, prev)
