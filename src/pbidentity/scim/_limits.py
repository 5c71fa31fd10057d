"""Per-tenant rate limiting: a token bucket per tenant, in this process.

Okta and Entra ID both honour ``429 Too Many Requests`` with an integer
``Retry-After`` (Okta pauses and retries after that many seconds, doubling up
to ten times). A bucket holds ``burst`` requests and refills at ``rate`` per
second; a request that finds it empty is refused with the number of whole
seconds after which one request fits again. Each app instance keeps its own
buckets, so with N instances behind a load balancer a tenant gets up to N
times the rate: set it per instance.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import attrs

__all__ = ["RateLimit", "RateLimiter"]


@attrs.frozen
class RateLimit:
    """``rate`` requests per second per tenant, with bursts of up to ``burst``."""

    rate: float = attrs.field(validator=attrs.validators.gt(0))
    burst: float | None = None

    @property
    def capacity(self) -> float:
        """The bucket size: ``burst``, else one second's worth (at least one request)."""
        return self.burst if self.burst is not None else max(1.0, self.rate)


class RateLimiter:
    """Token buckets keyed by tenant id; thread-safe."""

    def __init__(self, limit: RateLimit, *, now: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._now = now
        self._lock = threading.Lock()
        # tenant id -> (tokens left, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, tenant_id: str) -> int:
        """Take one request from the tenant's bucket: 0 if allowed, else seconds to wait."""
        capacity, rate = self.limit.capacity, self.limit.rate
        with self._lock:
            now = self._now()
            tokens, then = self._buckets.get(tenant_id, (capacity, now))
            tokens = min(capacity, tokens + (now - then) * rate)
            if tokens >= 1.0:
                self._buckets[tenant_id] = (tokens - 1.0, now)
                return 0
            self._buckets[tenant_id] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / rate))
