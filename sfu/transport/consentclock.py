"""One timer for the consent loops of every transport of an event loop.

`IceConnection.query_consent` reads its transport's traffic counters every
`POLL_S` (`sfu.transport.pathwatch`).  It used to sleep `POLL_S` in a loop:
ten task wake-ups a second per transport (a future, a timer handle and a
task step each), whether anything was due or not; at a light fan-out of 50
quiet subscribers that was a visible part of the server's fixed cost.  Now
a loop waits on one future until its check is due: a single timer per
event loop calls every waiting loop's `due(now)` (a plain call: the
`PathWatch` poll and a comparison) every `POLL_S` and resolves the futures
of those that are due.  The timer stops when nobody waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

__all__ = ["ConsentClock", "clock_for"]

logger = logging.getLogger(__name__)

Due = Callable[[float], bool]


class ConsentClock:
    """Polls the `due` test of every waiting consent loop every `period` s (module doc)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, period: float) -> None:
        self._loop = loop
        self.period = period
        self._waiting: dict[asyncio.Future[None], Due] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.polls = 0  # timer rounds run (for tests)

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> bool:
        return self._timer is not None

    def wait(self, due: Due) -> asyncio.Future[None]:
        """A future resolved at the first poll where `due(now)` is true (cancel it to stop)."""
        future: asyncio.Future[None] = self._loop.create_future()
        self._waiting[future] = due
        if self._timer is None:
            self._timer = self._loop.call_later(self.period, self._poll)
        return future

    def _poll(self) -> None:
        self._timer = None
        self.polls += 1
        now = self._loop.time()
        for future, due in list(self._waiting.items()):
            if future.done():  # cancelled: its loop stopped
                del self._waiting[future]
                continue
            try:
                ready = due(now)
            except Exception as exc:  # a bug in one loop must not stop the others
                logger.exception("consent poll failed")
                del self._waiting[future]
                future.set_exception(exc)
                continue
            if ready:
                del self._waiting[future]
                future.set_result(None)
        if self._waiting:
            self._timer = self._loop.call_later(self.period, self._poll)
        elif _clocks.get(self._loop) is self:
            del _clocks[self._loop]


_clocks: dict[asyncio.AbstractEventLoop, ConsentClock] = {}


def clock_for(loop: asyncio.AbstractEventLoop, period: float) -> ConsentClock:
    """The clock of `loop` (created on first use, dropped once nobody waits)."""
    clock = _clocks.get(loop)
    if clock is None:
        clock = _clocks[loop] = ConsentClock(loop, period)
    return clock
