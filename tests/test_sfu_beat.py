"""The SFU clock's beats wake on a grid of loop time, once per beat (issue 16).

The fast beat's deadline was in `time.monotonic()` while uvloop's timers (the
server's loop) count whole milliseconds of its own clock: they fired up to
~1 ms early, and the beat made up the difference with sleeps too short for
uvloop, spinning through turns of the loop (~12 wake-ups per beat in the
server at a fan-out of 50).  The live test runs a real uvloop loop kept busy
by a callback, as packets keep the server's loop busy.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import uvloop
from hypothesis import given
from hypothesis import strategies as st

from sfu.routing import feedback
from sfu.routing.beat import EPSILON, grid_after
from sfu.routing.ticker import Ticker
from tests.sfu_live import running_media

T = TypeVar("T")
PARKED = 3600.0  # the media plane's own clock never ticks during a test


def on_uvloop(scenario: Callable[[], Awaitable[T]]) -> T:
    async def busy_meanwhile() -> T:
        loop = asyncio.get_running_loop()
        busy = Busy(loop)
        try:
            return await scenario()
        finally:
            busy.stop()

    return uvloop.run(busy_meanwhile())


class Busy:
    """Keeps `loop` busy 1-2.5 ms at a time, 0.5-3 ms apart (a stand-in for packets'
    receive callbacks; the varying phase reaches whatever offset the loop's millisecond
    clock has against `time.monotonic`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._random = random.Random(16)
        self._handle = loop.call_soon(self._run)

    def _run(self) -> None:
        until = time.monotonic() + self._random.uniform(0.001, 0.0025)
        while time.monotonic() < until:
            pass
        self._handle = self._loop.call_later(self._random.uniform(0.0005, 0.003), self._run)

    def stop(self) -> None:
        self._handle.cancel()


@given(st.floats(0, 1e6), st.sampled_from([0.005, 0.1, 0.2, 1.0]))
def test_the_next_grid_point_is_a_multiple_of_the_step_within_one_step(
    now: float, step: float
) -> None:
    at = grid_after(now, step)
    assert now - EPSILON < at <= now + step + EPSILON
    assert abs(at / step - round(at / step)) < 1e-6


def test_a_point_just_reached_counts_as_reached() -> None:
    assert grid_after(0.3 - 1e-12, 0.1) > 0.35  # 0.3 itself (by a rounding error) is past


def test_the_fast_beat_wakes_once_per_feedback_interval_on_a_busy_uvloop() -> None:
    """Before: up to ~30 wake-ups per beat here (120/s for 10 beats/s in the server), how
    many depending on the phase of the loop's millisecond clock against `time.monotonic`:
    eight clocks started an eighth of a millisecond apart meet the bad phases."""

    async def scenario() -> list[tuple[int, int]]:
        async with running_media(selection_interval_s=PARKED) as (media, _):
            tickers = []
            for _ in range(8):
                tickers.append(Ticker(media, PARKED))
                tickers[-1].start()
                await asyncio.sleep(0)  # its first beat is planned now
                until = time.monotonic() + 0.000125
                while time.monotonic() < until:
                    pass
            try:
                await asyncio.sleep(0.05)
                before = [(t.beats, t.fast_ticks) for t in tickers]
                await asyncio.sleep(1.0)
                return [
                    (t.beats - b, t.fast_ticks - f)
                    for t, (b, f) in zip(tickers, before, strict=True)
                ]
            finally:
                for ticker in tickers:
                    await ticker.stop()

    counts = on_uvloop(scenario)
    expected = 1.0 / feedback.TWCC_FEEDBACK_INTERVAL
    for beats, fast in counts:
        assert expected - 2 <= fast <= expected + 1, counts
        assert beats <= fast + 1, counts  # no prober is busy: no step between beats
