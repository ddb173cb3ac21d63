"""A token bucket per API key, in this process's memory."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBuckets:
    """`rate_per_s` tokens a second per key, up to `burst` saved; one token per request.

    State is per process: with N API processes a key may make N times the rate in all
    (docs/security.md says why that is the trade made). Keys are the configured ones, so the
    table cannot grow with client input.
    """

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, as of)

    def take(self, key: str) -> float:
        """Take a token for `key`: 0.0 if there was one, else the seconds until there is."""
        now = self._clock()
        tokens, since = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - since) * self._rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self._rate


def retry_after_header(wait_s: float) -> str:
    """Whole seconds, rounded up, at least 1 (`Retry-After` has no fractions)."""
    return str(max(1, math.ceil(wait_s)))
