"""Rate limits with auth required: a burst of writes per identity, then 429 with Retry-After; other identities
and reads unaffected; refused credentials from one address slowed to 30 a minute. Auth off: no limits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from tvilling.api.app import create_app
from tvilling.config import Settings
from tvilling.security.ratelimit import Buckets, RateLimited, RateLimits
from tvilling.security.tokens import issue

Served = tuple[TestClient, str, str]


@pytest.fixture
def served() -> Iterator[Served]:
    """Auth required (default limits), two admin identities, and a clock that stands still."""
    app = create_app(Settings(store="memory", auth="required"))
    tokens = app.state.platform.backend.tokens
    _, first = issue(tokens, "first", "admin", by="test", now=datetime.now(UTC))
    _, second = issue(tokens, "second", "admin", by="test", now=datetime.now(UTC))
    app.state.rate_limits.set_clock(lambda: 1000.0)  # the whole test happens in one instant: no refill
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, first, second


def _as(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_the_201st_write_in_a_burst_is_429_and_nobody_else_is_slowed(served: Served) -> None:
    client, first, second = served
    for i in range(200):
        r = client.post("/api/alarms/no-such-alarm/ack", headers=_as(first))
        assert r.status_code == 404, (i, r.text)  # allowed through, to the route
    r = client.post("/api/alarms/no-such-alarm/ack", headers=_as(first))
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["retry-after"]) >= 1 and r.json()["rule"] == "writes" and r.json()["status"] == 429
    assert client.post("/api/alarms/no-such-alarm/ack", headers=_as(second)).status_code == 404  # another identity
    assert client.get("/api/alarms", headers=_as(first)).status_code == 200  # reads are not limited


def test_refused_credentials_from_one_address_are_slowed(served: Served) -> None:
    client, _, _ = served
    for _ in range(40):  # sending no credential is not a guess: never counted
        assert client.get("/api/alarms").status_code == 401
    for i in range(30):
        r = client.get("/api/alarms", headers=_as(f"tvl_guess{i}"))
        assert r.status_code == 401, (i, r.text)
    r = client.get("/api/alarms", headers=_as("tvl_guess30"))
    assert r.status_code == 429 and r.json()["rule"] == "auth_failures"
    assert int(r.headers["retry-after"]) >= 1
    assert "tvl_guess30" not in r.text


def test_the_failure_budget_refills_with_time() -> None:
    now = [0.0]
    limits = RateLimits(writes_per_s=50, writes_burst=200, auth_failures_per_min=30, clock=lambda: now[0])
    for _ in range(30):
        limits.check_address("10.0.0.9")
        limits.failed("10.0.0.9")
    with pytest.raises(RateLimited, match="too many failed sign-ins") as refused:
        limits.check_address("10.0.0.9")
    assert refused.value.retry_after == 2  # one failure back every 2 s
    limits.check_address("10.0.0.10")  # another address
    now[0] = 2.0
    limits.check_address("10.0.0.9")


def test_buckets_refill_at_their_rate_up_to_the_burst() -> None:
    now = [0.0]
    buckets = Buckets(rate_per_s=50, burst=200, clock=lambda: now[0])
    assert all(buckets.take("a") == 0.0 for _ in range(200))
    assert buckets.take("a") == pytest.approx(0.02)
    now[0] = 0.1  # five writes' worth
    assert [buckets.take("a") == 0.0 for _ in range(6)] == [True] * 5 + [False]
    now[0] = 1000.0
    assert sum(buckets.take("a") == 0.0 for _ in range(300)) == 200  # never more than the burst


def test_with_auth_off_nothing_is_limited() -> None:
    app = create_app(Settings(store="memory", rate_limit_writes_per_s=0.001, rate_limit_writes_burst=1,
                              rate_limit_auth_failures_per_min=1))
    with TestClient(app, raise_server_exceptions=False) as client:
        statuses = {client.post("/api/alarms/no-such-alarm/ack").status_code for _ in range(5)}
        statuses |= {client.get("/api/alarms", headers=_as("tvl_guess")).status_code for _ in range(3)}
    assert 429 not in statuses and 404 in statuses
