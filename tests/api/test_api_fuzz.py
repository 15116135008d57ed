"""A property-based fuzz of the whole HTTP API, generated from its own OpenAPI document (Schemathesis).

Every operation the document lists is called in-process (Schemathesis' ASGI transport, no server)
with inputs generated from its declared parameters, headers and body — valid ones and, on purpose,
invalid ones — against a seeded platform: the example plant's models, a line, a machine, two
bearings and their relationships, history, a promoted analytic version, an alarm and a command.
Path and query parameters are the generated value or a seeded id; bodies are as generated, or with
seeded ids and declared property names, or with seeded ids and one node replaced by an odd value
(``flatmap_body``), so that inputs get past "not found" into the code behind it. Each response must:

* not be a 5xx (``not_a_server_error``): bad input is the client's fault, never a crash;
* have a status code, content type and body the document declares for the operation
  (``status_code_conformance``, ``content_type_conformance``, ``response_schema_conformance``);
* be an ``application/problem+json`` document (``type``, ``title``, ``status``, ``detail``) when it
  is an error (``problem_body`` below).

Each operation gets ``TVILLING_FUZZ_EXAMPLES`` examples (default 25: about 30 s for the whole API on
a 2-core machine; set it to 500 or more for a deeper run). Generation is derandomized, so CI sends the
same inputs on every run; ``TVILLING_FUZZ_RANDOM=1`` draws new ones each run (Hypothesis prints how
to reproduce a failure).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from api_plant import BEARING, LINE, MACHINE, plant_documents
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python import asgi as schemathesis_asgi

from tvilling.api.app import create_app
from tvilling.api.errors import PROBLEM
from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.decisions.alarms.service import AlarmService
from tvilling.decisions.commands import CommandService
from tvilling.ingest import forms
from tvilling.runtime import Runtime

EXAMPLES = int(os.environ.get("TVILLING_FUZZ_EXAMPLES") or 25)
RANDOM = bool(os.environ.get("TVILLING_FUZZ_RANDOM"))
STREAM_READ_S = 0.3

RULES = [{"name": "bearing-hot", "model": BEARING, "property": "temperature", "kind": "threshold",
          "severity": "major", "above": 90, "clear": 85, "message": "{twin}: bearing at {value:.1f} °C"}]
ANALYTICS = [{"name": "bearing-anomaly", "model": "dtmi:tvilling:example:Bearing", "method": "mewma",
              "inputs": ["vibration", "temperature"], "train_rows": 20}]

#: Ids that exist in the seeded platform: path and query parameters are one of these or the generated value.
KNOWN: dict[str, list[Any]] = {
    "twin_id": ["L1", "M1", "B1", "B2"],
    "twin": ["M1", "B1"],
    "rel_id": ["L1-M1", "M1-B1"],
    "dtmi": [LINE, MACHINE, BEARING, "dtmi:tvilling:example:Bearing"],
    "name": ["setSpeed", "stop", "bearing-anomaly"],
    "version": [1],
    "scope": ["B1", "*"],
    "property": ["temperature", "vibration"],
    "model": [BEARING],
}


def _settings() -> Settings:
    return Settings(store="memory", alarm_rules=RULES, analytics=ANALYTICS)


class RecordingTransport:
    """Our command port, answering nothing: commands are stored and stay ``sent``."""

    async def send(self, twin: str, name: str, request_id: str, payload: Any) -> None:
        return None

    async def publish_desired(self, twin: str, desired: dict[str, Any]) -> None:
        return None


def seed(platform: Platform) -> tuple[dict[str, list[Any]], CommandService]:
    """The example plant with history, an alarm and a command; returns the ids it created and the
    command service (for the app's runtime)."""
    platform.models.add(plant_documents())
    platform.twins.put("L1", {"model": LINE})
    platform.twins.put("M1", {"model": MACHINE, "reported": {"state": "running"}})
    for bearing, temp in (("B1", 60.0), ("B2", 70.0)):
        platform.twins.put(bearing, {"model": BEARING, "reported": {"temperature": temp}})
    platform.twins.set_relationship("L1", "L1-M1", {"name": "hasMachine", "target": "M1"})
    for bearing in ("B1", "B2"):
        platform.twins.set_relationship("M1", f"M1-{bearing}", {"name": "hasBearing", "target": bearing})
    start = datetime.now(UTC) - timedelta(minutes=10)
    ts = [int((start + timedelta(seconds=i)).timestamp() * 1000) for i in range(40)]
    parsed = forms.parse_body({"twin": "B1", "ts": ts, "values": {
        "temperature": [60.0 + (i % 5) for i in range(40)], "vibration": [1.0 + 0.01 * (i % 7) for i in range(40)]}})
    for readings, source in parsed.columns:
        platform.pipeline.ingest_readings(readings, source=source, transport="test")
    alarm = AlarmService(platform.alarm_store).trigger(
        twin="B2", model=BEARING, rule="bearing-hot", severity="major", message="B2: hot", prop="temperature",
        value=95.0, now=datetime.now(UTC), parents=[("M1", MACHINE)])
    commands = CommandService(platform.twins, platform.command_store, RecordingTransport(),
                              timeout_s=3600, retries=0)
    record = asyncio.run(commands.invoke("M1", "setSpeed", 900.0))
    return {"alarm_id": [alarm.id], "command_id": [record.id]}, commands


def _document() -> dict[str, Any]:
    platform = build_platform(_settings())
    try:
        return create_app(platform=platform).openapi()
    finally:
        platform.close()


SCHEMA = schemathesis.openapi.from_dict(_document(), config=schemathesis.Config.from_dict({
    "generation": {"mode": "all", "deterministic": True},
}))


@pytest.fixture
def fuzz_app() -> Iterator[Any]:
    """A fresh seeded app per operation (its examples share it); Schemathesis runs its lifespan."""
    platform = build_platform(_settings())
    known, commands = seed(platform)
    KNOWN.update(known)  # this platform's alarm and command ids, for the hooks below
    app = create_app(runtime=Runtime(platform, commands=commands))
    try:
        yield app
    finally:
        schemathesis_asgi.shutdown_lifespans()
        platform.close()


@SCHEMA.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    return _with_known(path_parameters)


@SCHEMA.hook
def flatmap_query(context: Any, query: dict[str, Any] | None) -> Any:
    if context.operation.path == "/api/stream":  # a replay from the start, so that the stream has events
        return _with_known(query, {"after": ["events:0"], "twins": ["B1"], "types": ["event"]})
    return _with_known(query)


@SCHEMA.hook
def flatmap_body(context: Any, body: Any) -> Any:
    """The body as generated; with seeded ids; or with seeded ids and one node replaced by an odd value.

    Schemathesis' own invalid ("negative") bodies break the schema as a whole, so they rarely get past
    the first check of a route; replacing a single node of a valid body reaches the checks deep inside
    (an operator that is a list inside an otherwise valid query, say).
    """
    known = _known_body(body)
    # the nodes there are, and (in an object) the properties the document declares that are not there
    declared = _declared(context.operation.definition.raw)
    nodes = list(_nodes(known)) + [(*path, key) for path in _objects(known)
                                   for key in sorted(declared - set(_at(known, path)))]
    if not nodes:
        return st.sampled_from([known, body])
    odd = st.tuples(_spread(nodes), _spread(ODD)).map(lambda pv: _replace(known, *pv))
    return st.one_of(odd, st.sampled_from([known, body]))  # (Hypothesis favours the first choices)


def _spread(items: list[Any]) -> Any:
    """One of ``items``, each about as likely: Hypothesis draws small integers (and ``sampled_from``'s first
    items) far more often than others, so the integer is scattered by a multiplicative hash first."""
    return st.integers(0, 2**32 - 1).map(lambda i: items[(i * 2654435761) % 2**32 % len(items)])


#: Values of the wrong type or size for almost any field.
ODD: list[Any] = [[], {}, 10**400, ["="], {"": None}, None, True, -1, 2**63, -(10**400), 1e308, 5e-324, 0, "",
                  "\x00", "é" * 5000, [[]], {"a": {"b": [1]}}]


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every node below the root."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield (*path, key)
        yield from _nodes(child, (*path, key))


def _objects(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every object, the root included."""
    if isinstance(value, dict):
        yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from _objects(child, (*path, key))


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def _declared(operation: dict[str, Any]) -> set[str]:
    """Every property name the operation's JSON body schema declares, at any depth."""
    names: set[str] = set()

    def walk(schema: Any) -> None:
        if isinstance(schema, dict):
            names.update(schema.get("properties", {}))
            for value in schema.values():
                walk(value)
        elif isinstance(schema, list):
            for value in schema:
                walk(value)

    walk(operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema"))
    return names


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of ``value`` with ``new`` at ``path`` (set, or added to an object)."""
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(value[path[0]] if path[0] in copy or isinstance(copy, list) else None, path[1:], new)
    return copy


#: Body fields set to seeded ids by ``_known_body``.
BODY_KNOWN: dict[str, Any] = {"twin": "B1", "target": "B1", "model": BEARING, "name": "hasBearing", "twins": ["B1"]}
NOW_MS = int(datetime.now(UTC).timestamp() * 1000)


def _known_body(body: Any) -> Any:
    """The body with seeded ids, and (ingest) current times and the bearings' property names."""
    if isinstance(body, list):
        return [_known_body(item) for item in body]
    if not isinstance(body, dict):
        return body
    out = {k: BODY_KNOWN[k] if k in BODY_KNOWN else _known_body(v) for k, v in body.items()}
    if "ts" not in out or not isinstance(out.get("values"), dict):
        return out
    # ingest: instants the pipeline accepts (epoch ms), the seeded bearings' properties, columns as long as ts
    names = ["temperature", "vibration", "lubricationInterval", *out["values"]]
    values = dict(zip(names, out["values"].values(), strict=False)) or {"temperature": 71.5}
    if isinstance(out["ts"], list):
        n = max(1, len(out["ts"]))
        out["ts"] = [NOW_MS + 1000 * i for i in range(n)]
        values = {k: ((v if isinstance(v, list) and v else [v]) * n)[:n] for k, v in values.items()}
    else:
        out["ts"] = NOW_MS
    out["values"] = values
    return out


def _with_known(values: dict[str, Any] | None, known: dict[str, list[Any]] = KNOWN) -> Any:
    """Each value as generated, or one of the seeded ids for that name."""
    if not values:
        return st.just(values)
    return st.fixed_dictionaries({k: st.sampled_from([*known.get(k, ()), v]) for k, v in values.items()})


@schemathesis.check
def problem_body(ctx: Any, response: Any, case: Any) -> bool | None:
    """An error (4xx, 5xx) is an RFC 9457 problem document: ``type``, ``title``, ``status``, ``detail``."""
    if response.status_code < 400:
        return None
    ctype = response.headers.get("content-type", [""])
    ctype = ctype[0] if isinstance(ctype, list) else ctype
    assert ctype.split(";")[0].strip() == PROBLEM, f"error {response.status_code} is {ctype!r}, not {PROBLEM}"
    body = response.json()
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    missing = {"type", "title", "status", "detail"} - set(body)
    assert not missing, f"problem body lacks {sorted(missing)}: {body!r}"
    assert body["status"] == response.status_code, f"problem status {body['status']} != {response.status_code}"
    return True


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          problem_body]


@pytest.mark.slow
@SCHEMA.parametrize()
@settings(max_examples=EXAMPLES, derandomize=not RANDOM, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_api_fuzz(case: Any, fuzz_app: Any) -> None:
    kwargs: dict[str, Any] = {}
    if case.path == "/api/stream":
        # A Server-Sent Events stream never ends: Schemathesis reads it until this deadline (or until
        # max-stream-events events) and checks what it got. (The WebSocket at /api/ws is not in the
        # OpenAPI document, so it is not fuzzed here; tests/api/test_streams.py covers its refusals.)
        kwargs["timeout"] = STREAM_READ_S
    case.call_and_validate(app=fuzz_app, checks=CHECKS, **kwargs)
