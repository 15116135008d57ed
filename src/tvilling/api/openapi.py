"""What the OpenAPI document says about errors and bodies, in one place, so that it stays true.

Every error the API answers is an RFC 9457 problem document (``application/problem+json``, see
:mod:`tvilling.api.errors`); ``problems(400, 404)`` declares those statuses with that schema for a
route or a router. Request parameters FastAPI cannot read are 400 problems too (not FastAPI's
default 422 ``HTTPValidationError``, which this API never sends). ``json_body`` declares the JSON
body a route reads itself (with :func:`tvilling.api.body.read_json`), so that clients and the
property-based API fuzz (``tests/api/test_api_fuzz.py``) know its shape.
"""

from __future__ import annotations

import json
from typing import Any

PROBLEM = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

#: The problem document every error answer holds; the error's own fields (``field``, ``rule``,
#: ``twin``...) come beside these.
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "An RFC 9457 problem document; the error's own fields (field, rule, twin...) come beside these",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "urn:tvilling:error:<kind>, or about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer", "description": "the HTTP status code"},
        "detail": {"type": "string", "description": "what is wrong, for a person"},
        "field": {"type": "string", "description": "the parameter or body field at fault"},
        "rule": {"type": "string", "description": "the rule that was broken"},
    },
    "additionalProperties": True,
}

_WHY = {
    400: "Malformed request: a parameter, header or the body cannot be read (not JSON, wrong type, bad syntax)",
    404: "Not found: the addressed resource does not exist",
    409: "Conflict with the current state (exists already, in use, a move the state does not allow)",
    412: "Precondition failed: the If-Match revision is stale (or If-None-Match: * and it exists)",
    413: "Too large: the body, a list or a range exceeds a bound",
    422: "Validation failed: readable, but breaks a rule of the model or of the platform",
    503: "Unavailable: the service this needs is not configured or not running",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for FastAPI: each status as a problem document."""
    return {s: {"description": _WHY[s], "content": {PROBLEM: {"schema": PROBLEM_REF}}} for s in statuses}


def json_body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra=`` for a route that reads its JSON body itself."""
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}


IF_MATCH: dict[str, Any] = {
    "name": "If-Match", "in": "header", "required": False,
    "description": 'the revision the change expects, as the ETag this server returned ("7", W/"7"); 412 if stale',
    "schema": {"type": "string"},
}

def finish(doc: dict[str, Any]) -> dict[str, Any]:
    """The generated document, completed: the Problem schema, no unused FastAPI validation schemas."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for op in _operations(doc):
        default = op.get("responses", {}).get("422", {}).get("content", {}).get("application/json", {})
        if default.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
            # FastAPI's own 422: this API answers unreadable parameters with a 400 problem instead
            del op["responses"]["422"]
            op["responses"].setdefault("400", problems(400)[400])
    text = json.dumps(doc["paths"])
    for name in ("HTTPValidationError", "ValidationError"):
        if f'"#/components/schemas/{name}"' not in text:
            schemas.pop(name, None)
    return doc


def _operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    methods = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
    return [op for item in doc.get("paths", {}).values() for m, op in item.items() if m in methods]
