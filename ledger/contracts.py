"""Contract versions from the ledger's facts: which policy is in force for a month."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from ledger.errors import NotFound
from ledger.events import ContractAmended, ContractRegistered, Recorded
from ledger.policy import PolicyFile


class ContractVersion(msgspec.Struct, frozen=True):
    """One recorded version of a contract's policy."""

    contract: str
    version: int
    effective_from: str | None  # None: version 1, in force from the beginning
    position: int
    recorded_at: datetime
    policy: PolicyFile


def contract_versions(records: Iterable[Recorded]) -> dict[str, list[ContractVersion]]:
    """Every contract's versions, numbered 1, 2, ... in the order they were recorded."""
    out: dict[str, list[ContractVersion]] = {}
    for rec in sorted(
        (r for r in records if isinstance(r.fact, ContractRegistered | ContractAmended)),
        key=lambda r: r.position,
    ):
        add_version(out, rec)
    return out


def add_version(versions: dict[str, list[ContractVersion]], rec: Recorded) -> ContractVersion | None:
    """Append ``rec``'s version to ``versions`` (recorded after every one there); the new version, if any.

    What ``contract_versions`` does one fact at a time: a follower keeps its versions
    this way instead of re-deriving every contract's on each contract fact.
    """
    fact = rec.fact
    if not isinstance(fact, ContractRegistered | ContractAmended):
        return None
    cid = fact.policy.contract.id
    known = versions.get(cid)
    if isinstance(fact, ContractRegistered) and known:
        return None  # a second registration of a known id is refused on append; ignore if imported
    if isinstance(fact, ContractAmended) and not known:
        return None  # an amendment with nothing to amend is refused on append
    version = ContractVersion(
        contract=cid,
        version=len(known or ()) + 1,
        effective_from=fact.policy.contract.effective_from if known else None,
        position=rec.position,
        recorded_at=rec.recorded_at,
        policy=fact.policy,
    )
    versions.setdefault(cid, []).append(version)
    return version


def in_force(versions: list[ContractVersion], month: str) -> ContractVersion:
    """The version that governs ``month``: the latest recorded one effective at or before it.

    Version 1 has no start; an amendment applies from its ``effective_from``
    month on, and of two amendments for the same month the later one wins.
    """
    chosen = versions[0]
    for v in versions[1:]:
        assert v.effective_from is not None
        if v.effective_from <= month:
            chosen = v
    return chosen


def find(versions: dict[str, list[ContractVersion]], contract: str) -> list[ContractVersion]:
    """The versions of ``contract``, or NotFound."""
    try:
        return versions[contract]
    except KeyError:
        raise NotFound(f"contract `{contract}` is not registered") from None
