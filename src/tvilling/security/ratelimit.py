"""Rate limits per identity: writes per principal, failed sign-ins per client address (token buckets).

With auth required, the middleware of :mod:`tvilling.security.http` asks a :class:`RateLimits`

* before authenticating: has this client address used up its failed sign-ins
  (``rate_limit_auth_failures_per_min``, a minute's worth as the burst)? Then 429, without even
  looking at the credential, so guessing tokens is slowed to that pace;
* after a 401 for a presented credential: count one failure for the address (a request that sends
  no credential at all is not a guess, and is not counted);
* after authenticating, for a write (any method but GET, HEAD and OPTIONS): take one from the
  principal's bucket (``rate_limit_writes_per_s``, burst ``rate_limit_writes_burst``); empty → 429.

Reads are not limited. Over the limit the answer is 429 with ``Retry-After`` (whole seconds until
the bucket holds one again) and a problem body. A limit of 0 turns that limit off.

>>> clock = [0.0]
>>> bucket = Buckets(rate_per_s=1.0, burst=2, clock=lambda: clock[0])
>>> bucket.take("alice"), bucket.take("alice"), bucket.take("alice")
(0.0, 0.0, 1.0)
>>> bucket.take("bob")
0.0
>>> clock[0] = 1.0
>>> bucket.take("alice")
0.0
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tvilling.core.errors import TvillingError

READS = frozenset({"GET", "HEAD", "OPTIONS", "WEBSOCKET"})  # a WebSocket only streams
MAX_KEYS = 100_000  # buckets kept; the least recently used go first (a full bucket is the same as none)


class RateLimited(TvillingError):
    """Too many requests from one identity or address: try again after ``retry_after_s`` seconds."""

    status = 429
    title = "Too many requests"

    @property
    def retry_after(self) -> int:
        """Whole seconds to wait (at least 1), for the ``Retry-After`` header."""
        return max(1, math.ceil(float(self.fields.get("retry_after_s", 1.0))))


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class Buckets:
    """Token buckets by key: ``burst`` tokens at most, refilled at ``rate_per_s``; thread-safe."""

    def __init__(self, rate_per_s: float, burst: float, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_KEYS) -> None:
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def _refilled(self, key: str) -> _Bucket:
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.at) * self.rate_per_s)
            bucket.at = now
        return bucket

    def wait(self, key: str) -> float:
        """Seconds until ``key`` holds a whole token (0: it does now); takes nothing."""
        with self._lock:
            bucket = self._refilled(key)
            return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self.rate_per_s

    def take(self, key: str) -> float:
        """Take one token from ``key``'s bucket: 0 when taken, else the seconds until one is there."""
        with self._lock:
            bucket = self._refilled(key)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate_per_s

    def spend(self, key: str) -> None:
        """Take one token from ``key``'s bucket even when that leaves it below empty (a failure happened)."""
        with self._lock:
            bucket = self._refilled(key)
            bucket.tokens = max(bucket.tokens - 1.0, -self.burst)


class RateLimits:
    """The write and failed-sign-in limits of one app (see the module docs)."""

    def __init__(self, *, writes_per_s: float, writes_burst: int, auth_failures_per_min: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.writes = Buckets(writes_per_s, writes_burst, clock=clock) if writes_per_s > 0 else None
        self.failures = (Buckets(auth_failures_per_min / 60.0, auth_failures_per_min, clock=clock)
                         if auth_failures_per_min > 0 else None)

    @classmethod
    def from_settings(cls, settings: Any) -> RateLimits:
        """The limits the settings name (``rate_limit_*``)."""
        return cls(writes_per_s=settings.rate_limit_writes_per_s, writes_burst=settings.rate_limit_writes_burst,
                   auth_failures_per_min=settings.rate_limit_auth_failures_per_min)

    def set_clock(self, clock: Callable[[], float]) -> None:
        """Use ``clock`` (monotonic seconds) from now on (tests freeze time with it)."""
        for buckets in (self.writes, self.failures):
            if buckets is not None:
                buckets.clock = clock

    def check_address(self, address: str) -> None:
        """``RateLimited`` when ``address`` has used up its failed sign-ins."""
        if self.failures is None:
            return
        wait = self.failures.wait(address)
        if wait > 0:
            raise RateLimited("too many failed sign-ins from this address; wait before trying again",
                              rule="auth_failures", retry_after_s=round(wait, 3))

    def failed(self, address: str) -> None:
        """Count one failed sign-in (a presented credential refused) from ``address``."""
        if self.failures is not None:
            self.failures.spend(address)

    def check_write(self, method: str, principal_id: str) -> None:
        """``RateLimited`` when a write by ``principal_id`` is over its limit (reads always pass)."""
        if self.writes is None or method.upper() in READS:
            return
        wait = self.writes.take(principal_id)
        if wait > 0:
            raise RateLimited("too many writes by this identity; slow down", rule="writes",
                              retry_after_s=round(wait, 3))


__all__ = ["READS", "Buckets", "RateLimited", "RateLimits"]
