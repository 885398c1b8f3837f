"""The report digest: a hash over the policy version and the content of the facts behind the figures."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Final

import msgspec

from ledger.events import Fact, canonical
from ledger.hashing import sha256
from ledger.policy import PolicyFile

_encoder: Final = msgspec.json.Encoder(order="sorted")


_POLICIES: dict[int, tuple[PolicyFile, bytes]] = {}  # id -> the policy (kept: ids are not reused) and JSON


def _policy_json(policy: PolicyFile) -> bytes:
    """The policy's sorted JSON, encoded once per policy object: a rebuild digests every month of
    each contract version with one."""
    hit = _POLICIES.get(id(policy))
    if hit is not None and hit[0] is policy:
        return hit[1]
    if len(_POLICIES) >= 4096:
        _POLICIES.clear()
    raw = _encoder.encode(policy)
    _POLICIES[id(policy)] = (policy, raw)
    return raw


def digest(contract: str, month: str, policy_version: int, policy: PolicyFile, facts: Iterable[Fact],
           holidays: Mapping[tuple[str, int], frozenset[date]] | None = None) -> str:
    """ "sha256:<hex>" over contract, month, version, policy content and the sorted, de-duplicated facts.

    ``holidays``: the public holiday dates the figures looked up, by (country, year); covered
    when there are any (not where they came from: the same dates give the same digest). A
    month that looked up none hashes exactly as before holidays were covered.
    """
    # canonical() drops id, position and recorded_at, so neither the store nor import order shows.
    contents = sorted({canonical(f) for f in facts})
    payload = {
        "contract": contract,
        "month": month,
        "policy_version": policy_version,
        "policy": msgspec.Raw(_policy_json(policy)),
        "facts": [msgspec.Raw(c) for c in contents],
    }
    if holidays:
        payload["holidays"] = [[c, y, sorted(d.isoformat() for d in dates)]
                               for (c, y), dates in sorted(holidays.items())]
    return "sha256:" + sha256(_encoder.encode(payload)).hexdigest()
