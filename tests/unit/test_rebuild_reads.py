"""What a rebuild's read loop assumes of the key scheme (issue 17): only openings have a reference key.

``projections.tracked.rebuilding`` asks ``reference_key`` only of the fact types in ``_OPENINGS``
(the rest skip its match statement, once per fact of the log): every other type must have none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from msgspec import inspect as mi

from ledger.events import FACT_TYPES, ContractRegistered, Fact
from ledger.persistence.keys import reference_key
from ledger.policy_check import load_policy
from projections.tracked.rebuilding import _OPENINGS

EXAMPLE = Path(__file__).resolve().parents[2] / "ledger" / "examples" / "sla-a.toml"
# Fields the generic values below cannot give (orders between instants, patterns).
_GIVEN: dict[str, dict[str, Any]] = {
    "maintenance_announced": {"starts_at": "2026-01-02T00:00:00Z", "ends_at": "2026-01-02T01:00:00Z"},
    "force_majeure_declared": {"starts_at": "2026-01-02T00:00:00Z", "ends_at": "2026-01-02T01:00:00Z"},
    "exclusion_declared": {"starts_at": "2026-01-02T00:00:00Z", "ends_at": "2026-01-02T01:00:00Z"},
    "credit_claim_filed": {"month": "2026-01"},
    "recovery_performed": {"restored_to": "2025-12-31T00:00:00Z"},
    "holidays_pinned": {"country": "BE", "year": 2026},
}


def _value(t: Any) -> Any:
    """A valid value of a field type without a pattern (None: none found)."""
    if isinstance(t, mi.StrType):
        return None if t.pattern else "x"
    if isinstance(t, mi.DateTimeType):
        return "2026-01-01T00:00:00Z"
    if isinstance(t, mi.IntType):
        return max(1, t.ge or 1)
    if isinstance(t, mi.LiteralType):
        return t.values[0]
    if isinstance(t, mi.UnionType):
        found = (_value(u) for u in t.types if not isinstance(u, mi.NoneType))
        return next((v for v in found if v is not None), None)
    if isinstance(t, mi.ListType | mi.TupleType | mi.VarTupleType | mi.FrozenSetType | mi.SetType):
        return []
    return None


def _example(tag: str, cls: type) -> Fact:
    if cls is ContractRegistered or tag == "contract_amended":
        policy = load_policy(EXAMPLE.read_bytes(), source=str(EXAMPLE))
        contract = msgspec.structs.replace(policy.contract, effective_from="2026-11")
        return cls(policy=msgspec.structs.replace(policy, contract=contract))  # type: ignore[no-any-return]
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    fields = {f.encode_name: _value(f.type) for f in info.fields if f.required}
    return msgspec.convert({**fields, **_GIVEN.get(tag, {}), "type": tag}, cls)  # type: ignore[no-any-return]


def test_only_openings_have_a_reference_key() -> None:
    examples = {tag: _example(tag, cls) for tag, cls in FACT_TYPES.items()}
    with_key = {type(f) for f in examples.values() if reference_key(f) is not None}
    assert with_key == set(_OPENINGS)
