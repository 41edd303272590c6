"""Rate limits: a sliding window per key and a token bucket (message floods)."""

from __future__ import annotations

import collections
from collections.abc import Hashable

from common.clock import Clock


class WindowLimiter:
    """At most `count` events per `seconds` for each key; count 0 disables it."""

    def __init__(self, count: int, seconds: float, clock: Clock, max_keys: int = 100_000) -> None:
        self._count = count
        self._seconds = seconds
        self._clock = clock
        self._max_keys = max_keys
        self._hits: dict[Hashable, collections.deque[float]] = {}

    def allow(self, key: Hashable) -> bool:
        if self._count <= 0:
            return True
        now = self._clock()
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self._max_keys:
                self.prune()
            hits = self._hits[key] = collections.deque()
        while hits and now - hits[0] >= self._seconds:
            hits.popleft()
        if len(hits) >= self._count:
            return False
        hits.append(now)
        return True

    def prune(self) -> None:
        now = self._clock()
        stale = [k for k, h in self._hits.items() if not h or now - h[-1] >= self._seconds]
        for key in stale:
            del self._hits[key]


class TokenBucket:
    """`rate` tokens per second up to `burst`; `take()` is False when empty."""

    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
