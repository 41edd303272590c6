"""Offers of new transports wait here for a slot of `JoinPace` (sfu.policy.joinpace).

The thin shell of the pacing rule: `acquire` waits (in arrival order) until
the rule admits the join, or until it is withdrawn (`release` of a queued
join: the participant left) or `within` seconds passed; `release` frees a
slot when the transport connected, failed or closed; a timer frees the slots
held for `hold_s`.  Everything runs on the event loop, nothing is polled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable

from sfu.policy.joinpace import JoinPace, JoinState


class JoinGate:
    """Waiting offers and the timer of a `JoinPace` (see module doc)."""

    def __init__(self, pace: JoinPace, clock: Callable[[], float] = time.monotonic) -> None:
        self.pace = pace
        self._clock = clock
        self._waiters: dict[Hashable, asyncio.Future[bool]] = {}
        self._timer: asyncio.TimerHandle | None = None

    async def acquire(self, key: Hashable, within: float) -> bool:
        """Wait for `key`'s slot: True once it holds one, False if withdrawn.

        Raises TimeoutError after `within` s in the queue (it leaves the queue).
        """
        if self.pace.request(key, self._clock()) == JoinState.CONNECTING:
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

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
