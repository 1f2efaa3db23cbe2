"""Per-family token buckets, timed by the kernel's own event timestamps (no clock calls).

The pipeline asks only about events that matched no detection and no rule, and never about
process lifecycle events, so a flood can hide nothing that would have raised an alert.
"""

from __future__ import annotations


class TokenBucket:
    """`rate` events per second on average, bursts of up to `burst`."""

    __slots__ = ("rate", "burst", "tokens", "last_ns")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last_ns: int | None = None

    def allow(self, now_ns: int) -> bool:
        if self.last_ns is not None and now_ns > self.last_ns:
            self.tokens = min(self.burst, self.tokens + (now_ns - self.last_ns) * self.rate / 1e9)
        if self.last_ns is None or now_ns > self.last_ns:
            self.last_ns = now_ns
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class RateLimiter:
    """One bucket per event family; `rate` 0 means no limit."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, family: str, now_ns: int) -> bool:
        if not self.rate:
            return True
        b = self._buckets.get(family)
        if b is None:
            b = self._buckets[family] = TokenBucket(self.rate, self.rate)
        return b.allow(now_ns)
