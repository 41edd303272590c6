"""The saturation search of bench/compare_janus.py --saturation (pure, no I/O).

A load is (publishers, subscribers): every subscriber receives the audio
and the video of every active publisher.  The ladder raises subscribers
first (one publisher), then publishers (at the most subscribers).  The
search walks up the ladder until a point fails (loss above 1% or added p99
above 50 ms), then bisects the subscriber count at the failing point's
publisher count, between the load that last passed and the failing one,
`refine` times.  The result is the highest forwarded packets/s measured at
a passing point, and whether the server was saturated at all (a point
failed) or the ladder ran out first.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Load:
    publishers: int
    subscribers: int

    @property
    def streams(self) -> int:
        return self.publishers * self.subscribers


@dataclass(frozen=True)
class Limits:
    loss_pct: float = 1.0
    p99_ms: float = 50.0

    def passes(self, loss_pct: float, p99_ms: float) -> bool:
        """Loss and p99 within the limits (NaN, i.e. not measured, fails)."""
        if math.isnan(loss_pct) or math.isnan(p99_ms):
            return False
        return loss_pct <= self.loss_pct and p99_ms <= self.p99_ms


@dataclass(frozen=True)
class Point:
    load: Load
    forwarded_pps: float
    passed: bool


def ladder(subscriber_steps: Sequence[int], max_publishers: int) -> list[Load]:
    """Subscribers up at one publisher, then publishers up at the most subscribers."""
    steps = sorted(set(subscriber_steps))
    if not steps or steps[0] < 1 or max_publishers < 1:
        raise ValueError("at least one subscriber step >= 1 and one publisher, please")
    loads = [Load(1, s) for s in steps]
    return loads + [Load(p, steps[-1]) for p in range(2, max_publishers + 1)]


def next_load(
    history: Sequence[Point], steps: Sequence[Load], refine: int, granularity: int = 5
) -> Load | None:
    """The next load to measure, or None when the search is over."""
    if not history:
        return steps[0] if steps else None
    failed = [p for p in history if not p.passed]
    if not failed:
        done = {p.load for p in history}
        remaining = [s for s in steps if s not in done and s > history[-1].load]
        return remaining[0] if remaining else None
    first_fail = failed[0].load
    refinements = len(history) - 1 - history.index(failed[0])
    if refinements >= refine:
        return None
    low, high = bracket(history, first_fail.publishers)
    middle = (low + high) // 2
    middle -= middle % granularity if middle > granularity else 0
    if middle <= low or middle >= high:
        return None
    return Load(first_fail.publishers, middle)


def bracket(history: Sequence[Point], publishers: int) -> tuple[int, int]:
    """Subscriber counts at `publishers` known to pass (low) and to fail (high).

    A pass at fewer publishers carries over at the same number of streams.
    """
    passing = [p.load.streams for p in history if p.passed and p.load.publishers <= publishers]
    low = max(passing, default=0) // publishers
    low = max([low] + [p.load.subscribers for p in history
                       if p.passed and p.load.publishers == publishers])  # fmt: skip
    failing = [p.load.subscribers for p in history
               if not p.passed and p.load.publishers == publishers]  # fmt: skip
    return low, min(failing)


def sustained(history: Sequence[Point]) -> Point | None:
    """The passing point with the highest forwarded packets/s."""
    passing = [p for p in history if p.passed]
    return max(passing, key=lambda p: p.forwarded_pps) if passing else None


def saturated(history: Sequence[Point]) -> bool:
    return any(not p.passed for p in history)


def median_or_nan(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
