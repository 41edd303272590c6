"""The saturation search of bench/compare_janus.py --saturation (pure, no I/O).

A load is (publishers, subscribers): every subscriber receives the audio
and the video of every active publisher.  The ladder raises subscribers
first (one publisher), then publishers (at the most subscribers).  The
search walks up the subscriber steps until a point fails (loss above 1% or
added p99 above 50 ms), then bisects the subscriber count between the load
that last passed and the failing one, `refine` times.  Then it raises the
publishers at the most subscribers that passed, and a failure there is
bisected the same way (`next_load`).  The result is the highest forwarded
packets/s measured at a passing point, and whether the server was
saturated at all (a point failed) or the ladder ran out first.

Why the publishers after a failure too: a server that cannot take one
publisher's key-frame bursts to 400 subscribers within the p99 limit may
still forward two publishers to 300 (twice the packets, the bursts of the
two interleaved); stopping at the first phase reported it at half what it
sustains, and which of the two a search found depended on whether one
point at the ladder's top passed.
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
    """The next load to measure, or None when the search is over.

    Phase p (publishers): at one publisher, walk up the ladder's subscriber
    steps; at a failure, bisect the subscribers `refine` times.  Then the
    next phase starts at p + 1 publishers with the most subscribers that
    passed at p (the ladder's top when none failed), and a failure there is
    bisected the same way, the pass of the phase before carried over at the
    same number of streams.  The search ends after the ladder's most
    publishers, or when a phase has no passing point.
    """
    if not steps:
        return None
    if not history:
        return steps[0]
    phase = history[-1].load.publishers
    at_phase = [h for h in history if h.load.publishers == phase]
    failed = [h for h in at_phase if not h.passed]
    if not failed:
        # Subscribers climb the ladder in the first phase only; later phases
        # start at the most subscribers that passed and add publishers.
        done = {h.load for h in history}
        first = steps[0].publishers
        above = [s for s in steps if s.publishers == phase == first and s not in done]
        above = [s for s in above if s > history[-1].load]
        return above[0] if above else _next_phase(history, steps, phase)
    if len(at_phase) - 1 - at_phase.index(failed[0]) < refine:
        low, high = bracket(history, phase)
        middle = (low + high) // 2
        middle -= middle % granularity if middle > granularity else 0
        if low < middle < high:
            return Load(phase, middle)
    return _next_phase(history, steps, phase)


def _next_phase(history: Sequence[Point], steps: Sequence[Load], phase: int) -> Load | None:
    """One more publisher, at the most subscribers that passed with `phase` publishers."""
    if phase >= max(s.publishers for s in steps):
        return None
    best = max(
        (h.load.subscribers for h in history if h.passed and h.load.publishers == phase),
        default=0,
    )
    return Load(phase + 1, best) if best else None


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
