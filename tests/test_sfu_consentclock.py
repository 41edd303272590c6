"""The one timer that polls every transport's consent loop (sfu.transport.consentclock):
a real event loop, no sockets."""

from __future__ import annotations

import asyncio

import pytest

from sfu.transport.consentclock import SLOW_ROUNDS, ConsentClock, clock_for

PERIOD = 0.02


class Counting:
    """A `due` test that says yes at its `at`-th call (never with 0)."""

    def __init__(self, at: int = 0) -> None:
        self.at = at
        self.calls = 0

    def __call__(self, now: float) -> bool:
        self.calls += 1
        return self.at > 0 and self.calls >= self.at


async def test_one_timer_polls_every_waiting_loop_and_wakes_only_the_due_ones() -> None:
    clock = ConsentClock(asyncio.get_running_loop(), PERIOD)
    quiet = [Counting() for _ in range(50)]
    waits = [clock.wait(q) for q in quiet]
    third = Counting(at=3)
    await asyncio.wait_for(clock.wait(third), 5)
    assert clock.polls == 3  # one round of the timer polls everybody
    assert all(q.calls == 3 for q in quiet)
    assert not any(w.done() for w in waits)
    assert len(clock) == 50 and clock.running
    for w in waits:
        w.cancel()


async def test_the_clock_stops_when_nobody_waits_and_drops_cancelled_waits() -> None:
    loop = asyncio.get_running_loop()
    clock = clock_for(loop, PERIOD)
    assert clock_for(loop, PERIOD) is clock  # one per event loop
    gone = clock.wait(Counting())
    gone.cancel()
    due = Counting(at=2)
    await asyncio.wait_for(clock.wait(due), 5)
    assert len(clock) == 0 and not clock.running
    assert clock_for(loop, PERIOD) is not clock  # forgotten once idle: a new one


async def test_a_failing_test_fails_its_own_wait_only() -> None:
    clock = ConsentClock(asyncio.get_running_loop(), PERIOD)

    def broken(now: float) -> bool:
        raise RuntimeError("bug")

    failing = clock.wait(broken)
    fine = Counting(at=2)
    await asyncio.wait_for(clock.wait(fine), 5)
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(failing, 1)


async def test_a_slow_wait_is_polled_every_tenth_round() -> None:
    clock = ConsentClock(asyncio.get_running_loop(), PERIOD)
    slow = Counting()
    waiting = clock.wait(slow, slow=True)
    fast = Counting(at=SLOW_ROUNDS * 2 + 1)
    await asyncio.wait_for(clock.wait(fast), 5)
    assert clock.polls == SLOW_ROUNDS * 2 + 1
    assert slow.calls == 2
    due = Counting(at=1)
    await asyncio.wait_for(clock.wait(due, slow=True), 5)  # answered within ten rounds
    assert clock.polls <= SLOW_ROUNDS * 3
    waiting.cancel()


async def test_a_slow_wait_with_a_deadline_resolves_at_it_not_at_the_next_slow_round() -> None:
    loop = asyncio.get_running_loop()
    clock = ConsentClock(loop, PERIOD)
    slow = Counting()
    start = loop.time()
    await asyncio.wait_for(clock.wait(slow, slow=True, deadline=start + 2.5 * PERIOD), 5)
    assert clock.polls == 3  # the first round at or after the deadline
    assert slow.calls == 0  # its test was not run ten times a second meanwhile
    assert len(clock) == 0


async def test_a_deadline_does_not_outlive_its_wait() -> None:
    loop = asyncio.get_running_loop()
    clock = ConsentClock(loop, PERIOD)
    cancelled = clock.wait(Counting(), slow=True, deadline=loop.time() + PERIOD)
    cancelled.cancel()
    answered = clock.wait(Counting(at=1), slow=True, deadline=loop.time() + 60)
    await asyncio.wait_for(answered, 5)  # its test said yes at the tenth round
    assert clock.polls == SLOW_ROUNDS
    assert len(clock) == 0 and not clock.running
