"""``ledger serve``'s checkpoint and proofs (INTERFACE.md section 7 over HTTP), when the build has them.

Each endpoint answers what the command prints: ``GET /v1/checkpoint[?size=N]`` as
``ledger checkpoint [--size N]``, ``GET /v1/proofs/inclusion?position=P[&size=N]`` as
``ledger proof inclusion``, ``GET /v1/proofs/consistency?from=M&to=N`` as ``ledger proof
consistency``, through ``ledger.checkpoint``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from cli.server_params import whole_number
from ledger import checkpoint as proofs
from ledger.application import Ledger
from ledger.errors import BadInput

Query = Mapping[str, str]
Endpoint = Callable[[Ledger, Query], dict[str, Any]]


def _params(query: Query, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, int | None]:
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise BadInput(f"unknown query parameter `{unknown[0]}` (expected {' or '.join(allowed)})")
    for name in required:
        if name not in query:
            raise BadInput(f"query parameter `{name}`: missing")
    return {name: whole_number(name, query.get(name)) for name in allowed}


def checkpoint(ledger: Ledger, query: Query) -> dict[str, Any]:
    """``ledger checkpoint [--size N]`` (unsigned: the server holds no key)."""
    size = _params(query, ("size",))["size"]
    body: dict[str, Any] = proofs.make(ledger.recorder, size)
    return body


def inclusion(ledger: Ledger, query: Query) -> dict[str, Any]:
    """``ledger proof inclusion --position P [--size N]``."""
    p = _params(query, ("position", "size"), ("position",))
    position = p["position"]
    assert position is not None, "required"
    body: dict[str, Any] = proofs.inclusion(ledger.recorder, position, p["size"])
    return body


def consistency(ledger: Ledger, query: Query) -> dict[str, Any]:
    """``ledger proof consistency --from M --to N``."""
    p = _params(query, ("from", "to"), ("from", "to"))
    old, new = p["from"], p["to"]
    assert old is not None, "required"
    assert new is not None, "required"
    body: dict[str, Any] = proofs.consistency(ledger.recorder, old, new)
    return body


ENDPOINTS: Final[dict[str, Endpoint]] = {
    "/v1/checkpoint": checkpoint, "/v1/proofs/inclusion": inclusion, "/v1/proofs/consistency": consistency,
}
