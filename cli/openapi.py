"""The OpenAPI 3.1 document of ``ledger serve`` (served at /openapi.json, checked against responses by tests).

Written by hand for the paths; the report's schema is generated from its msgspec type,
so the two cannot drift apart.
"""

from __future__ import annotations

import functools
from typing import Any, Final

import msgspec

REF: Final = "#/components/schemas/{name}"
_ERROR: Final = {"$ref": "#/components/schemas/Error"}


def _decimal_as_number(node: Any) -> Any:
    """Seconds are Decimals encoded as JSON numbers (``projections.model.to_json``)."""
    if isinstance(node, dict):
        if node.get("format") == "decimal":
            return {"type": "number"}
        return {k: _decimal_as_number(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_decimal_as_number(v) for v in node]
    return node


def _errors(*codes: int) -> dict[str, Any]:
    why = {400: "bad input: nothing kept", 401: "missing or wrong bearer token",
           404: "no such contract or month", 408: "body not received within --request-timeout: nothing kept",
           413: "body larger than --max-body",
           503: "the store's append lock could not be had in time"}
    error = {"application/json": {"schema": _ERROR}}
    return {str(c): {"description": why[c], "content": error} for c in codes}


def _json(ref: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _write(summary: str, body_type: str, body_schema: dict[str, Any], extra: list[Any] | None = None
           ) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "security": [{"write": []}],
        "parameters": extra or [],
        "requestBody": {"required": True, "content": {body_type: {"schema": body_schema}}},
        "responses": {"200": _json("Summary", "what was recorded"), **_errors(400, 401, 408, 413, 503)},
    }}


def _support_twin() -> type:
    """``SupportReport``, ``targets`` untyped: msgspec makes no schema of an untagged union of structs."""
    from projections.support_model import SupportReport

    fields = [(f.name, Any if f.name == "targets" else f.type) for f in msgspec.structs.fields(SupportReport)]
    return msgspec.defstruct("SupportReport", fields)


def _number(name: str, required: bool, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}


def _proof_paths(read: list[dict[str, list[str]]]) -> dict[str, Any]:
    """Section 7's reads (``cli.server_proofs``): what `ledger checkpoint` and `ledger proof` print."""
    size = _number("size", False, "the first N facts (default: the whole log)")

    def get(summary: str, ref: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
        return {"get": {"summary": summary, "security": read, "parameters": parameters,
                        "responses": {"200": _json(ref, summary), **_errors(400, 401)}}}

    return {
        "/v1/checkpoint": get("The log's checkpoint, as `ledger checkpoint`", "Checkpoint", [size]),
        "/v1/proofs/inclusion": get("An RFC 9162 inclusion proof, as `ledger proof inclusion`", "Inclusion",
                                    [_number("position", True, "the fact's position"), size]),
        "/v1/proofs/consistency": get("An RFC 9162 consistency proof, as `ledger proof consistency`",
                                      "Consistency", [_number("from", True, "the older size"),
                                                      _number("to", True, "the newer size")]),
    }


def _objects(**fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": sorted(fields), "properties": fields}


HASH: Final[dict[str, Any]] = {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}
SIZE: Final[dict[str, Any]] = {"type": "integer", "minimum": 1}


@functools.cache
def document() -> dict[str, Any]:
    """The document, built once."""
    from projections.model import Report
    from projections.support_model import MeanTarget, PerTicketTarget

    _, reports = msgspec.json.schema_components([Report, _support_twin(), PerTicketTarget, MeanTarget],
                                                ref_template=REF)
    reports["SupportReport"]["properties"]["targets"] = {"type": "array", "items": {"anyOf": [
        {"$ref": REF.format(name="PerTicketTarget")}, {"$ref": REF.format(name="MeanTarget")}]}}
    read: list[dict[str, list[str]]] = [{"read": []}, {"write": []}]
    service = {"name": "service", "in": "query", "required": False, "schema": {"type": "string"},
               "description": "the service of every entry (default: each affected component)"}
    position = {"type": "integer", "minimum": 0}
    month_parameters = [
        {"name": "contract", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "month", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}},
        {"name": "as_of", "in": "query", "required": False,
         "schema": {"type": "string", "format": "date-time"},
         "description": "replay what was recorded up to this instant (as `audit --as-of`)"},
        {"name": "position", "in": "query", "required": False,
         "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
         "description": "replay what was recorded up to this position (as `audit --position`)"},
    ]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Availability ledger", "version": "1",
                 "description": "INTERFACE.md section 9: the ledger's store over HTTP."},
        "paths": {
            "/v1/events": {
                **_write("Append NDJSON events, all or nothing, as `ledger import -`", "application/x-ndjson",
                         {"type": "string"}),
                "get": {
                    "summary": "The events after a position, as `ledger events` prints them",
                    "security": read,
                    "parameters": [{"name": "after", "in": "query", "required": False,
                                    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}],
                    "responses": {"200": {"description": "one event per line", "content": {
                                              "application/x-ndjson": {"schema": {"type": "string"}}}},
                                  **_errors(400, 401)},
                },
            },
            "/v1/hooks/alertmanager": _write("An Alertmanager webhook (version 4)", "application/json",
                                             {"$ref": "#/components/schemas/AlertmanagerWebhook"}),
            "/v1/hooks/uptime-kuma": _write("An Uptime Kuma webhook notification", "application/json",
                                            {"type": "object"}),
            "/v1/imports/statuspage": _write("A Statuspage export (incidents, scheduled maintenances)",
                                             "application/json", {"type": "object"}, [service]),
            "/v1/contracts": {"get": {
                "summary": "The contracts, as `ledger contract list --format json`",
                "security": read,
                "responses": {"200": {"description": "each contract's latest version, by id", "content": {
                    "application/json": {"schema": {"type": "array",
                                                    "items": {"$ref": "#/components/schemas/Contract"}}}}},
                    **_errors(401)},
            }},
            "/v1/contracts/{contract}/months/{month}": {"get": {
                "summary": "The month's report: the bytes of `ledger report --format json` (or `html`)",
                "description": "With `Accept: text/html` (named, and preferred to JSON): the page of "
                               "`ledger report --format html`, or of `ledger audit --format html` at "
                               "`as_of`/`position`.",
                "security": read,
                "parameters": month_parameters,
                "responses": {
                    "200": {"description": "INTERFACE.md section 5 (section 8 as HTML)", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Report"}},
                        "text/html": {"schema": {"type": "string"}}}},
                    **_errors(400, 401, 404)},
            }},
            "/v1/contracts/{contract}/months/{month}/support": {"get": {
                "summary": "The month's support figures: `ledger support --format json`'s bytes (or `html`)",
                "description": "With `Accept: text/html` (named, and preferred to JSON): the page of "
                               "`ledger support --format html`, at `as_of`/`position` if given.",
                "security": read,
                "parameters": month_parameters,
                "responses": {
                    "200": {"description": "INTERFACE.md section 6.3 (section 8 as HTML)", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/SupportReport"}},
                        "text/html": {"schema": {"type": "string"}}}},
                    **_errors(400, 401, 404)},
            }},
            **_proof_paths(read),
            "/openapi.json": {"get": {"summary": "This document", "security": [],
                                      "responses": {"200": {"description": "OpenAPI 3.1",
                                                            "content": {"application/json": {}}}}}},
        },
        "components": {
            "securitySchemes": {"read": {"type": "http", "scheme": "bearer"},
                                "write": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                **_decimal_as_number(reports),
                "Checkpoint": _objects(size=SIZE, root=HASH,
                                       recorded_at={"type": "string", "format": "date-time"}),
                "Inclusion": _objects(position=SIZE, size=SIZE, leaf_hash=HASH, root=HASH,
                                      path={"type": "array", "items": HASH}),
                "Consistency": _objects(**{"from": SIZE, "to": SIZE, "from_root": HASH, "to_root": HASH,
                                           "path": {"type": "array", "items": HASH}}),
                "Error": {"type": "object", "required": ["error"], "additionalProperties": False,
                          "properties": {"error": {"type": "string"}}},
                "Summary": {
                    "type": "object", "additionalProperties": False,
                    "required": ["imported", "already_recorded", "first_position", "last_position",
                                 "conflicts"],
                    "properties": {
                        "imported": {"type": "integer", "minimum": 0},
                        "already_recorded": {"type": "integer", "minimum": 0},
                        "first_position": {"oneOf": [position, {"type": "null"}]},
                        "last_position": {"oneOf": [position, {"type": "null"}]},
                        "conflicts": {"type": "array", "items": {
                            "type": "object", "required": ["line", "id", "position"],
                            "properties": {"line": {"type": "integer"}, "id": {"type": "string"},
                                           "position": {"type": "integer"}}}},
                    },
                },
                "Contract": {
                    "description": "a contract's latest version (`ledger contract list --format json`)",
                    "type": "object", "additionalProperties": False,
                    "required": ["contract", "customer", "service", "versions", "timezone", "effective_from",
                                 "position"],
                    "properties": {
                        "contract": {"type": "string"}, "customer": {"type": "string"},
                        "service": {"type": "string"},
                        "versions": {"type": "integer", "minimum": 1, "description": "the latest version"},
                        "timezone": {"type": "string"},
                        "effective_from": {"oneOf": [{"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"},
                                                     {"type": "null"}],
                                           "description": "the latest version's first month"},
                        "position": {"type": "integer", "minimum": 1,
                                     "description": "where the latest version was recorded"},
                    },
                },
                "AlertmanagerWebhook": {
                    "type": "object", "required": ["alerts"],
                    "properties": {
                        "version": {"type": "string"},
                        "alerts": {"type": "array", "items": {
                            "type": "object", "required": ["status", "labels", "startsAt", "fingerprint"],
                            "properties": {
                                "status": {"enum": ["firing", "resolved"]},
                                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                "startsAt": {"type": "string", "format": "date-time"},
                                "endsAt": {"type": "string", "format": "date-time"},
                                "fingerprint": {"type": "string"}}}},
                    },
                },
            },
        },
    }
