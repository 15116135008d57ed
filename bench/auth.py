"""Authorisation benchmark: what authentication and policy checks add to a request, and stream filtering.

    python bench/auth.py
    python bench/auth.py --requests 3000 --subscribers 1000 --events 500

Prints one JSON line. **Requests**: ``GET /api/twins/{id}`` called in process over ASGI (httpx's
``ASGITransport``, so the network does not dominate), ``--requests`` times per setup after a warm-up:
auth off; auth required with an API token; the same with policies (a subgraph grant and a path revoke
that removes a property from the answer). p50/p99 per request, and the p50 each adds to auth off.
**Fan-out**: ``--subscribers`` callers (four kinds of policies: none, a subgraph grant, a path revoke,
a twin revoke) each screen ``--events`` twin events as the streams do for every event they send
(:func:`tvilling.security.enforce.screener`'s work: the caller's current view, then the item as it may
see it); figures are events delivered per second and the cost per subscriber and event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402

from tvilling.api.app import create_app  # noqa: E402
from tvilling.backend.policies import MemoryPolicies  # noqa: E402
from tvilling.config import Settings  # noqa: E402
from tvilling.core.principal import Principal  # noqa: E402
from tvilling.models.builtin import builtin_dir  # noqa: E402
from tvilling.security.authn import Caller  # noqa: E402
from tvilling.security.enforce import PolicyGuard  # noqa: E402
from tvilling.security.policies import Policy  # noqa: E402
from tvilling.security.tokens import issue  # noqa: E402

LINE, MACHINE, BEARING = ("dtmi:tvilling:example:ProductionLine;1", "dtmi:tvilling:example:Machine;1",
                          "dtmi:tvilling:example:Bearing;1")
POLICIES = [
    {"id": "line-1", "subjects": ["token:bench"], "entries": [
        {"effect": "grant", "actions": ["read"], "resources": ["subgraph:line-1"]}]},
    {"id": "no-temperature", "subjects": ["role:viewer"], "entries": [
        {"effect": "revoke", "actions": ["read"], "resources": ["twin:*"], "paths": ["reported.temperature"]}]},
]


def _quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1e3, 4),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3, 4)}


async def _requests(auth: str, policies: bool, n: int) -> dict[str, float]:
    app = create_app(Settings(store="memory", auth=auth))
    platform = app.state.platform
    _, admin = issue(platform.backend.tokens, "admin", "admin", by="bench", now=datetime.now(UTC))
    _, viewer = issue(platform.backend.tokens, "bench", "viewer", by="bench", now=datetime.now(UTC))
    docs = [json.loads(p.read_text()) for p in sorted(builtin_dir("plant").glob("*.json"))]
    platform.models.add(docs)
    for line in ("line-1", "line-2"):
        platform.twins.put(line, {"model": LINE}, actor="bench")
        platform.twins.put(f"{line}-m01", {"model": MACHINE}, actor="bench")
        platform.twins.put(f"{line}-m01-b1", {"model": BEARING, "reported": {"temperature": 70.0, "vibration": 0.4}},
                           actor="bench")
        platform.twins.set_relationship(line, "m", {"name": "hasMachine", "target": f"{line}-m01"}, actor="bench")
        platform.twins.set_relationship(f"{line}-m01", "b", {"name": "hasBearing", "target": f"{line}-m01-b1"},
                                        actor="bench")
    if policies:
        for doc in POLICIES:
            platform.backend.policies.put(Policy.from_json(doc))
    headers = {"Authorization": f"Bearer {viewer}"} if auth == "required" else {}
    del admin
    samples: list[float] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        for i in range(n + 200):
            t0 = time.perf_counter()
            r = await client.get("/api/twins/line-1-m01-b1", headers=headers)
            elapsed = time.perf_counter() - t0
            if r.status_code != 200:
                raise SystemExit(f"unexpected {r.status_code}: {r.text}")
            if policies and "temperature" in r.json()["reported"]:
                raise SystemExit("the path revoke was not applied")
            if i >= 200:
                samples.append(elapsed)
    platform.close()
    return _quantiles(samples)


def _fanout(subscribers: int, events: int) -> dict[str, float]:
    store = MemoryPolicies()
    for doc in (*POLICIES, {"id": "hide", "subjects": ["token:hide-*"], "entries": [
            {"effect": "revoke", "actions": ["read"], "resources": ["twin:line-2-*"]}]}):
        store.put(Policy.from_json(doc))
    graph = {"line-1": ["line-1-m01"], "line-1-m01": ["line-1-m01-b1"], "line-2": ["line-2-m01"],
             "line-2-m01": ["line-2-m01-b1"]}
    guard = PolicyGuard(lambda: store, children=lambda t: graph.get(t, []))
    kinds = ("free", "bench", "hide", "plain")  # no policy, subgraph grant, twin revoke, path revoke (viewer)
    callers = []
    for i in range(subscribers):
        kind = kinds[i % 4]
        name = "bench" if kind == "bench" else f"{kind}-{i}"
        role = "operator" if kind == "free" else "viewer"
        callers.append(Caller(Principal(id=f"token:{name}", kind="service", roles=(role,), authenticated=True)))
    items: list[dict[str, Any]] = []
    for i in range(events):
        twin = ("line-1-m01-b1", "line-2-m01-b1", "line-1-m01", "line-2-m01")[i % 4]
        items.append({"kind": "event", "type": "TwinPatched", "twin": twin, "model": BEARING, "revision": i,
                      "payload": {"reported": {"temperature": 70.0 + i, "vibration": 0.4},
                                  "metadata": {"reported": {"temperature": {"time": "t"}}}}})
    delivered = 0
    t0 = time.perf_counter()
    for item in items:
        for caller in callers:  # as each subscriber's stream does when it sends the event
            if guard.view(caller).item(item) is not None:
                delivered += 1
    elapsed = time.perf_counter() - t0
    checks = subscribers * events
    return {"subscribers": subscribers, "events": events, "delivered": delivered,
            "delivered_per_s": round(delivered / elapsed), "checks_per_s": round(checks / elapsed),
            "us_per_subscriber_event": round(elapsed / checks * 1e6, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    off = asyncio.run(_requests("off", False, args.requests))
    token = asyncio.run(_requests("required", False, args.requests))
    policies = asyncio.run(_requests("required", True, args.requests))
    out = {
        "bench": "auth", "requests": args.requests, "auth_off": off, "token": token, "token_policies": policies,
        "added_p50_ms": {"token": round(token["p50_ms"] - off["p50_ms"], 4),
                         "token_policies": round(policies["p50_ms"] - off["p50_ms"], 4),
                         "policies_over_token": round(policies["p50_ms"] - token["p50_ms"], 4)},
        "fanout": _fanout(args.subscribers, args.events),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
