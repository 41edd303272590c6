"""Rate limits: a sliding window per key (knocks) and a token bucket (message floods)."""

from __future__ import annotations

import collections
from collections.abc import Hashable
from typing import TYPE_CHECKING

from common.clock import Clock

if TYPE_CHECKING:
    from common.config import RateLimit

CEILING_FACTOR = 10  # the default per-address ceiling: this many times the anonymous limit


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


class KnockLimits:
    """Knocks per room: anonymous ones per address; token holders per identity, so a
    flood from behind a shared address (a clinic's NAT) never locks out a patient
    with a token; and a per-address ceiling over both, much larger than either."""

    def __init__(
        self,
        anonymous: RateLimit,
        identity: RateLimit,
        ceiling: RateLimit | None,
        clock: Clock,
    ) -> None:
        ceiling_count = anonymous.count * CEILING_FACTOR if ceiling is None else ceiling.count
        ceiling_s = anonymous.seconds if ceiling is None else ceiling.seconds
        self._anonymous = WindowLimiter(anonymous.count, anonymous.seconds, clock)
        self._identity = WindowLimiter(identity.count, identity.seconds, clock)
        self._ceiling = WindowLimiter(ceiling_count, ceiling_s, clock)

    def allow(self, address: str, identity: str | None, room_id: str) -> bool:
        """The narrower limit first, so knocks it refuses never use up the shared ceiling."""
        if identity is None:
            narrow = self._anonymous.allow((address, room_id))
        else:
            narrow = self._identity.allow((identity, room_id))
        return narrow and self._ceiling.allow((address, room_id))


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
