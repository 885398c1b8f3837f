"""The report digest: a hash over the policy version and the content of the facts behind the figures."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

import msgspec

from ledger.events import Fact, canonical
from ledger.policy import PolicyFile

_encoder: Final = msgspec.json.Encoder(order="sorted")


def digest(contract: str, month: str, policy_version: int, policy: PolicyFile, facts: Iterable[Fact]) -> str:
    """ "sha256:<hex>" over contract, month, version, policy content and the sorted, de-duplicated facts."""
    # canonical() drops id, position and recorded_at, so neither the store nor import order shows.
    contents = sorted({canonical(f) for f in facts})
    payload = {
        "contract": contract,
        "month": month,
        "policy_version": policy_version,
        "policy": msgspec.Raw(_encoder.encode(policy)),
        "facts": [msgspec.Raw(c) for c in contents],
    }
    return "sha256:" + hashlib.sha256(_encoder.encode(payload)).hexdigest()
