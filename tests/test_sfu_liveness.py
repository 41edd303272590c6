"""Worker liveness: a stalled signalling loop must not kill healthy workers (issue 12).

The pure `Silence` rules first, then real worker processes under a pool whose
event loop the test blocks for longer than the heartbeat timeout."""

from __future__ import annotations

import signal
import time

import pytest

from sfu.control import WORKER_LOST
from sfu.workers.liveness import Silence
from tests.pool_live import handle, running_pool
from tests.sfu_live import eventually

BEAT, TIMEOUT = 0.5, 2.0


def test_a_silent_worker_on_an_on_time_judge_is_lost_after_the_timeout() -> None:
    silence = Silence(BEAT, TIMEOUT, now=0.0)
    verdicts = [silence.beat(0.5 * n) for n in range(1, 6)]
    assert verdicts == [False, False, False, False, True]  # 2.5 s > 2.0 s


def test_an_answer_resets_the_silence() -> None:
    silence = Silence(BEAT, TIMEOUT, now=0.0)
    for n in range(1, 4):
        assert not silence.beat(0.5 * n)
    silence.heard(1.6)
    assert not silence.beat(2.0) and silence.silent_s == pytest.approx(0.4)


def test_a_stall_of_the_judge_counts_as_one_late_beat_only() -> None:
    silence = Silence(BEAT, TIMEOUT, now=0.0)
    assert not silence.beat(0.5)
    assert not silence.beat(30.5)  # the judge's loop was blocked for 30 s
    assert silence.silent_s == pytest.approx(0.5 + 0.75)
    assert silence.judge_late_s == pytest.approx(30.0 - 0.75)
    assert silence.last_late_s == pytest.approx(30.0 - 0.75)


def test_a_worker_silent_after_a_stall_is_still_lost() -> None:
    silence = Silence(BEAT, TIMEOUT, now=0.0)
    assert not silence.beat(10.0)  # stall: 0.75 s counted
    verdicts = [silence.beat(10.0 + 0.5 * n) for n in range(1, 4)]
    assert verdicts == [False, False, True]  # 0.75 + 1.5 > 2.0


def test_a_timeout_shorter_than_a_late_beat_is_refused() -> None:
    with pytest.raises(ValueError, match="must exceed"):
        Silence(1.0, 1.5, now=0.0)


@pytest.mark.slow
async def test_a_blocked_pool_loop_does_not_lose_healthy_workers() -> None:
    async with running_pool(max_participants=2) as (pool, events):
        await pool.open("r", "main", "p")
        before = [handle(pool, i).pid for i in (0, 1)]
        time.sleep(TIMEOUT + 1.5)  # the signalling loop stalls (a flood of connections)
        # The first beat after the stall is where a late judge would declare them lost.
        await eventually(
            lambda: all(handle(pool, i).silence.judge_late_s > TIMEOUT for i in (0, 1)),
            3,
            "both workers judged after the stall",
        )
        assert [handle(pool, i).pid for i in (0, 1)] == before
        assert all(handle(pool, i).ready for i in (0, 1))
        assert ("p", WORKER_LOST) not in events.closed
        assert pool.stats()["workers_lost"] == 0


@pytest.mark.slow
async def test_a_worker_stopped_during_a_stall_is_still_lost_after_it() -> None:
    async with running_pool(max_participants=2) as (pool, events):
        await pool.open("r", "main", "p")
        assert pool.seats["p"].worker == 0
        handle(pool, 0).signal(signal.SIGSTOP)
        time.sleep(TIMEOUT + 1.5)
        resumed = time.monotonic()
        await eventually(lambda: ("p", WORKER_LOST) in events.closed, 6, "the stop noticed")
        assert time.monotonic() - resumed < TIMEOUT + 1.5  # ~1.5 s expected
        assert handle(pool, 1).ready and pool.seats["p"].worker == 1
