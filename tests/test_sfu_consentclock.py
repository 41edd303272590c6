"""The one timer that polls every transport's consent loop (sfu.transport.consentclock):
a real event loop, no sockets."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.transport.consentclock import (
    GRID_INTERVALS,
    SLOW_ROUNDS,
    ConsentClock,
    check_time,
    clock_for,
)

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
    assert slow.calls in (2, 3)  # at the slow boundaries of loop time those rounds crossed
    due = Counting(at=1)
    await asyncio.wait_for(clock.wait(due, slow=True), 5)  # answered within ten rounds
    assert clock.polls <= SLOW_ROUNDS * 3
    waiting.cancel()


async def test_a_slow_wait_with_a_deadline_resolves_at_it_not_at_the_next_slow_round() -> None:
    loop = asyncio.get_running_loop()
    clock = ConsentClock(loop, PERIOD)
    slow = Counting()
    start = loop.time()
    deadline = start + 2.5 * PERIOD
    await asyncio.wait_for(clock.wait(slow, slow=True, deadline=deadline), 5)
    # At the first round at or after the deadline, and with no fast wait no round
    # ran before it (but one slow round, if a slow boundary fell in between).
    assert deadline <= loop.time() < deadline + PERIOD + 0.05
    assert clock.polls <= 1 + slow.calls and slow.calls <= 1
    assert len(clock) == 0


async def test_a_deadline_does_not_outlive_its_wait() -> None:
    loop = asyncio.get_running_loop()
    clock = ConsentClock(loop, PERIOD)
    cancelled = clock.wait(Counting(), slow=True, deadline=loop.time() + PERIOD)
    cancelled.cancel()
    start = loop.time()
    answered = clock.wait(Counting(at=1), slow=True, deadline=loop.time() + 60)
    await asyncio.wait_for(answered, 5)  # its test said yes at the next slow round
    assert loop.time() - start <= SLOW_ROUNDS * PERIOD + 0.05
    assert clock.polls <= 2  # that round, and the cancelled deadline's at most
    assert len(clock) == 0 and not clock.running


async def test_with_only_slow_waits_the_clock_runs_at_the_slow_rounds_only() -> None:
    # Quiet transports (no fast wait): one round per slow period, not ten.
    loop = asyncio.get_running_loop()
    clock = ConsentClock(loop, PERIOD)
    quiet = [Counting() for _ in range(5)]
    waits = [clock.wait(q, slow=True) for q in quiet]
    await asyncio.sleep(3 * SLOW_ROUNDS * PERIOD)
    assert 2 <= clock.polls <= 4
    assert all(q.calls == clock.polls for q in quiet)
    for w in waits:
        w.cancel()


async def test_rounds_fall_on_the_periods_grid_of_loop_time() -> None:
    # A clock started between two grid points still polls at them (give or take the
    # loop's latency): its rounds coincide with other work on the same grid instead
    # of waking the loop at times of their own.
    loop = asyncio.get_running_loop()
    period = 0.05
    seen: list[float] = []

    def note(now: float) -> bool:
        seen.append(now)
        return len(seen) >= 5

    await asyncio.sleep(period - loop.time() % period + 0.6 * period)
    clock = ConsentClock(loop, period)
    await asyncio.wait_for(clock.wait(note), 5)
    phases = [(t % period) / period for t in seen]
    assert all(p < 0.4 for p in phases), phases


@given(
    now=st.floats(0, 1e6),
    interval=st.sampled_from([0.3, 0.5, 5.0, 17.0]),
    u=st.floats(0, 1, exclude_max=True),
)
def test_a_check_time_is_0_8_to_1_2_intervals_away_on_the_grid(
    now: float, interval: float, u: float
) -> None:
    at = check_time(now, interval, u)
    assert now + 0.8 * interval - 1e-9 <= at <= now + 1.2 * interval + 1e-9
    steps = at / (GRID_INTERVALS * interval)
    assert abs(steps - round(steps)) < 1e-6


def test_checks_that_fall_due_near_each_other_share_a_grid_point_and_still_vary() -> None:
    # Fifty transports whose last checks were spread over one second: their next
    # ones fall on the two or three grid points of the window (1 s apart at 5 s),
    # not at fifty different times, and each transport's pick stays random.
    times = {check_time(100 + n / 50, 5.0, (n * 0.37) % 1) for n in range(50)}
    assert times <= {104.0, 105.0, 106.0, 107.0} and len(times) >= 2
    assert {check_time(100.5, 5.0, u / 10) for u in range(10)} == {105.0, 106.0}
