"""When each subscriber's layers are allocated again on the SFU clock.

An allocation costs about 100 us per subscriber, so it does not run on
every tick for everybody: each subscriber is due every `period_s` (0.5 s),
its turns spread by +-`spread` so subscribers who joined together do not
all fall on the same tick, and at once when

- it is `mark`ed: its slots, their sources, stage/thumbnail or its
  reported tile sizes changed (the caller knows when), or
- its estimate moved by `big_change` (20 %) or more since its last turn.

Pure: the caller passes the clock; the randomness is a seeded `Random`.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Cadence"]

K = TypeVar("K", bound=Hashable)


class Cadence(Generic[K]):
    """Which subscribers are due (see module doc)."""

    def __init__(
        self,
        period_s: float = 0.5,
        *,
        big_change: float = 0.2,
        spread: float = 0.2,
        seed: int | None = None,
    ) -> None:
        self.period_s = period_s
        self.big_change = big_change
        self.spread = spread
        self._random = random.Random(seed)
        self._next: dict[K, float] = {}  # key -> when due; absent: due at once
        self._estimate: dict[K, int] = {}  # key -> the estimate of its last turn

    def mark(self, key: K) -> None:
        """Something it depends on changed: due at the next check."""
        self._next.pop(key, None)

    def due(self, key: K, estimate_bps: int, now: float) -> bool:
        """Whether `key` is due now; if so its next turn is planned (call `due` once per tick)."""
        at = self._next.get(key)
        last = self._estimate.get(key)
        moved = last is not None and abs(estimate_bps - last) >= self.big_change * max(last, 1)
        if at is not None and now < at and not moved:
            return False
        jitter = 1.0 + self.spread * (2.0 * self._random.random() - 1.0)
        self._next[key] = now + self.period_s * jitter
        self._estimate[key] = estimate_bps
        return True

    def forget(self, key: K) -> None:
        self._next.pop(key, None)
        self._estimate.pop(key, None)

    def __len__(self) -> int:
        return len(self._next)
