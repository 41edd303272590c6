"""One timer for the consent loops of every transport of an event loop.

`IceConnection.query_consent` reads its transport's traffic counters every
`POLL_S` (`sfu.transport.pathwatch`). It used to sleep `POLL_S` in a loop:
ten task wake-ups a second per transport (a future, a timer handle and a
task step each), whether anything was due or not; at a light fan-out of 50
quiet subscribers that was a visible part of the server's fixed cost. Now
a loop waits on one future until its check is due: a single timer per
event loop calls every waiting loop's `due(now)` (a plain call: the
`PathWatch` poll and a comparison) every `POLL_S` and resolves the futures
of those that are due. A loop whose client is not watched for silence
(`PathWatch.watched`: it sends under 5 packets/s, so only the RFC 7675
timer concerns it) waits `slow`: it is polled at the slow rounds only
(every `SLOW_ROUNDS` periods of loop time: 1 s), which is enough to notice
that it started sending (the rate is measured over the time since its
counter last moved) or that its next RFC check is due. Its RFC check
itself is kept on time by a `deadline` (the wait resolves at the first
round at or after it, like a fast wait): the deadlines sit in a heap, so a
round looks at the earliest one only and a quiet client costs one test a
second, not ten in the second before each of its checks. The rounds fall
on a grid of loop time (multiples of `period`, the slow ones of
`SLOW_ROUNDS` periods), and while no loop waits fast (every client quiet:
no media) the timer skips the rounds in between and fires at the next slow
round or the earliest deadline only: one wake-up a second instead of ten.
The timer stops when nobody waits.

`check_time` puts every transport's checks on a common grid of loop time
(a fifth of the interval: 1 s at RFC 7675's 5 s), still at a random time
0.8-1.2 intervals after the last: the checks that fall due on the same
grid point are resolved by the same round and sent in one turn of the
event loop, one after the other, instead of one by one in as many
wake-ups.  Counted in the server (bench/idle_cost.py), the consent path's
cost is mostly that of code run by a core that was idle, once per wake-up
(an aioice parse took ~38 us there against ~4 us in a loop; bench/stun_path.py
shows the same ~5x with a sleep between calls): work that shares a wake-up
shares that warm-up.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from collections.abc import Callable

__all__ = ["ConsentClock", "check_time", "clock_for"]

logger = logging.getLogger(__name__)

Due = Callable[[float], bool]

# A `slow` wait is polled every this many rounds.
SLOW_ROUNDS = 10
# Grid points computed from a multiple of the period may miss it by a rounding error.
EPSILON = 1e-6
# The grid of `check_time`, in intervals: the window 0.8-1.2 intervals holds two points.
GRID_INTERVALS = 0.2


def check_time(now: float, interval: float, u: float) -> float:
    """When the next consent check is due: 0.8-1.2 `interval`s after `now` (RFC 7675
    5.1), on a grid point of loop time (module doc); `u` in [0, 1) picks which."""
    grid = GRID_INTERVALS * interval
    low, high = now + 0.8 * interval, now + 1.2 * interval
    # The window is two grid steps wide: it holds two or three points.
    first, last = math.ceil(low / grid), math.floor(high / grid)
    return min(last, first + int(u * (last - first + 1))) * grid


class ConsentClock:
    """Polls the `due` test of every waiting consent loop every `period` s (module doc)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float) -> None:
        self._loop = loop
        self.period = period
        self._waiting: dict[asyncio.Future[None], Due] = {}
        self._slow: dict[asyncio.Future[None], Due] = {}
        # (deadline, order, future) of slow waits that must resolve on time.
        self._deadlines: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._at = 0.0  # when the timer fires
        self._slow_at = self._boundary(loop.time(), SLOW_ROUNDS * period)
        self.polls = 0  # timer rounds run (for tests)

    def __len__(self) -> int:
        return len(self._waiting) + len(self._slow)

    @property
    def running(self) -> bool:
        return self._timer is not None

    def wait(
        self, due: Due, *, slow: bool = False, deadline: float | None = None
    ) -> asyncio.Future[None]:
        """A future resolved at the first poll where `due(now)` is true (cancel it to stop);
        `slow`: polled every `SLOW_ROUNDS` rounds only, but resolved at the first
        round at or after `deadline` (loop time) if one is given (module doc)."""
        future: asyncio.Future[None] = self._loop.create_future()
        (self._slow if slow else self._waiting)[future] = due
        if slow and deadline is not None:
            heapq.heappush(self._deadlines, (deadline, next(self._order), future))
        self._arm(self._loop.time())
        return future

    def _next_round(self, now: float) -> float:
        """The next round: on the `period` grid of loop time; with no fast wait, the
        next slow round's or the earliest deadline's grid point (module doc)."""
        if self._waiting:
            return self._boundary(now, self.period)
        at = self._slow_at
        if self._deadlines:
            at = min(at, math.ceil(self._deadlines[0][0] / self.period) * self.period)
        return at if at > now else self._boundary(now, self.period)

    @staticmethod
    def _boundary(now: float, step: float) -> float:
        """The first multiple of `step` after `now`."""
        return (math.floor(now / step) + 1) * step

    def _arm(self, now: float) -> None:
        at = self._next_round(now)
        if self._timer is not None:
            if self._at <= at:
                return
            self._timer.cancel()
        self._at = at
        self._timer = self._loop.call_at(at, self._poll)

    def _poll(self) -> None:
        self._timer = None
        self.polls += 1
        # A timer may fire a little before its time (the loop's clock resolution).
        now = max(self._loop.time(), self._at)
        self._round(self._waiting, now)
        if now + EPSILON >= self._slow_at:
            self._slow_at = self._boundary(now, SLOW_ROUNDS * self.period)
            self._round(self._slow, now)
        self._expire(now)
        if self._waiting or self._slow:
            self._arm(now)
        elif _clocks.get(self._loop) is self:
            del _clocks[self._loop]

    def _expire(self, now: float) -> None:
        """Resolve the slow waits whose deadline has come (and drop finished ones)."""
        deadlines = self._deadlines
        while deadlines and (deadlines[0][0] <= now + EPSILON or deadlines[0][2].done()):
            future = heapq.heappop(deadlines)[2]
            if self._slow.pop(future, None) is not None and not future.done():
                future.set_result(None)

    @staticmethod
    def _round(waiting: dict[asyncio.Future[None], Due], now: float) -> None:
        for future, due in list(waiting.items()):
            if future.done():  # cancelled: its loop stopped
                del waiting[future]
                continue
            try:
                ready = due(now)
            except Exception as exc:  # a bug in one loop must not stop the others
                logger.exception("consent poll failed")
                del waiting[future]
                future.set_exception(exc)
                continue
            if ready:
                del waiting[future]
                future.set_result(None)


_clocks: dict[asyncio.AbstractEventLoop, ConsentClock] = {}


def clock_for(loop: asyncio.AbstractEventLoop, period: float) -> ConsentClock:
    """The clock of `loop` (created on first use, dropped once nobody waits)."""
    clock = _clocks.get(loop)
    if clock is None:
        clock = _clocks[loop] = ConsentClock(loop, period)
    return clock
