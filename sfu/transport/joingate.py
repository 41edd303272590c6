"""Offers of new transports wait here for a slot of `JoinPace` (sfu.policy.joinpace).

The thin shell of the pacing rule: `acquire` waits (in arrival order) until
the rule admits the join, or until it is withdrawn (`release` of a queued
join: the participant left) or `within` seconds passed; `release` frees a
slot when the transport connected, failed or closed; a timer frees the slots
held for `hold_s`.  While joins are in progress a tick every `TICK_S` tells
the rule whether this process is behind: `behind()` (the owner's media
sockets hold datagrams unread for a while) or the tick itself came late
(the event loop is busy).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable

from sfu.policy.joinpace import TICK_S, JoinPace, JoinState

# A tick this late means the event loop is behind (as a media socket unread this long):
# one whole read budget of the shared socket (udpmux.READ_BUDGET_S), not a time slice
# another process took.
LATE_S = 0.05


class JoinGate:
    """Waiting offers and the timer of a `JoinPace` (see module doc)."""

    def __init__(
        self,
        pace: JoinPace,
        behind: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pace = pace
        self._behind = behind
        self._clock = clock
        self._waiters: dict[Hashable, asyncio.Future[bool]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._tick_due = 0.0

    async def acquire(self, key: Hashable, within: float) -> bool:
        """Wait for `key`'s slot: True once it holds one, False if withdrawn.

        Raises TimeoutError after `within` s in the queue (it leaves the queue).
        Without pacing (`limit` 0) every join goes at once and nothing is kept.
        """
        if self.pace.limit == 0:
            return True
        state = self.pace.request(key, self._clock())
        self._start_ticks()
        if state == JoinState.CONNECTING:
            self._arm()
            return True
        future = self._waiters.get(key)
        if future is None:
            future = self._waiters[key] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(within):
                return await future
        except BaseException:
            self.release(key)  # out of the queue, or the slot it was just given
            raise

    def release(self, key: Hashable) -> None:
        """`key` connected, failed or closed (its slot is free), or left the queue."""
        waiter = self._waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(False)
        self._wake(self.pace.release(key, self._clock()))

    def close(self) -> None:
        """Withdraw every waiting join and stop the timer."""
        for key in list(self._waiters):
            self.release(key)
        for timer in (self._timer, self._ticker):
            if timer is not None:
                timer.cancel()
        self._timer = self._ticker = None

    def _start_ticks(self) -> None:
        if self._ticker is None and self.pace.active and self.pace.limit:
            self._tick_due = self._clock() + TICK_S
            self._ticker = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def _tick(self) -> None:
        self._ticker = None
        now = self._clock()
        late = now - self._tick_due > LATE_S
        self._wake(self.pace.adjust(late or self._behind(), now))
        self._start_ticks()

    def _wake(self, admitted: list[Hashable]) -> None:
        while admitted:
            key = admitted.pop(0)
            waiter = self._waiters.pop(key, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(True)
            else:  # nobody waits for it any more: the slot goes on
                admitted += self.pace.release(key, self._clock())
        self._arm()

    def _arm(self) -> None:
        """Run `expire` when the oldest slot has been held `hold_s`."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self.pace.next_expiry()
        if due is not None:
            delay = max(0.0, due - self._clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        self._timer = None
        self._wake(self.pace.expire(self._clock()))
