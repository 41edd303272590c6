"""Waking on a grid of the event loop's own clock.

The SFU clock's two beats (`sfu.routing.ticker`) wake at multiples of their
period in loop time, as the consent clock's rounds do
(`sfu.transport.consentclock`: multiples of 0.1 s): timers due at the same
moment fire in the same turn of the loop, so the fast beat, the 200 ms tick
and the consent round share one wake-up (and the warm-up of a core that was
idle, the larger part of such a small callback's cost in the server) instead
of each taking its own.

The deadlines are in loop time, not `time.monotonic()`: uvloop's clock (the
server's loop) is `time.monotonic()` cut to whole milliseconds and its timers
round to the millisecond, so a timer set for a `time.monotonic()` deadline
may fire up to ~1 ms before it; the fast beat then slept again for less than
a millisecond, which uvloop rounds to nothing, and spun through turns of the
loop until the deadline: 120 wake-ups/s for 10 beats/s in the server at a
fan-out of 50 (docs/benchmarks.md, "The fixed cost left for quiet
subscribers").  A timer set on the loop's own clock fires when that clock
says so.
"""

from __future__ import annotations

import asyncio
import math

__all__ = ["EPSILON", "grid_after", "sleep_until"]

# A grid point computed from a multiple of the step may miss it by a rounding error.
EPSILON = 1e-6


def grid_after(now: float, step: float) -> float:
    """The first multiple of `step` after `now` (one within `EPSILON` of `now` counts as
    reached, so a timer that fired on its point does not wait for it again)."""
    return (math.floor((now + EPSILON) / step) + 1) * step


async def sleep_until(loop: asyncio.AbstractEventLoop, at: float) -> None:
    """Return at loop time `at`."""
    await asyncio.sleep(max(0.0, at - loop.time()))
