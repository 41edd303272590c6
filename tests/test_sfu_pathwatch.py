"""When the SFU checks a silent client's path at once (sfu.transport.pathwatch), and
the staggered consent check (sfu.transport.ice.first_answer): pure logic, no sockets."""

from __future__ import annotations

import asyncio
import itertools
import random

from sfu.transport.ice import first_answer
from sfu.transport.pathwatch import MAX_QUIET_BACKOFF_S, MIN_TIMEOUT_S, POLL_S, PathWatch


def feed(
    watch: PathWatch, start: float, seconds: float, pps: float, seen: int
) -> tuple[float, int]:
    """Poll every POLL_S for `seconds` while the client sends `pps` packets/s."""
    now = start
    for _ in range(round(seconds / POLL_S)):
        now += POLL_S
        seen += round(pps * POLL_S)
        assert not watch.poll(now, seen), "a sending client is never silent"
    return now, seen


def silence_until_check(watch: PathWatch, now: float, seen: int) -> float:
    """Seconds of silence until the watch calls for a check."""
    start = now
    while not watch.poll(now, seen):
        now += POLL_S
        assert now - start < 10
    return now - start


def test_a_client_that_sent_media_is_checked_after_a_third_of_a_second_of_silence() -> None:
    watch = PathWatch(0.0)
    now, seen = feed(watch, 0.0, 3.0, 80, 0)  # audio and video
    assert 0.25 <= silence_until_check(watch, now, seen) <= 0.45


def polls(watch: PathWatch, arrivals: list[float], until: float) -> list[float]:
    """Poll every POLL_S up to `until` with a packet at each of `arrivals`: when a check was due."""
    due, seen, now, pending = [], 0, 0.0, sorted(arrivals)
    while now < until:
        now = round(now + POLL_S, 6)
        while pending and pending[0] <= now:
            pending.pop(0)
            seen += 1
        if watch.poll(now, seen):
            due.append(now)
    return due


def rtcp_reports(seconds: float) -> list[float]:
    """Receiver reports about once a second (0.5-1.5 s apart, as RFC 3550 spreads them)."""
    rng, at, out = random.Random(7), 0.0, []
    while at < seconds:
        at += rng.uniform(0.5, 1.5)
        out.append(at)
    return out


def test_the_rate_of_a_client_is_measured_over_its_gaps_not_over_one_poll() -> None:
    watch = PathWatch(0.0)
    polls(watch, [float(t) for t in range(1, 11)], 10.05)  # one packet a second
    assert 0.8 <= watch.rate <= 1.25, watch.rate


def test_a_client_that_sends_only_rtcp_is_not_checked_for_its_gaps() -> None:
    watch = PathWatch(0.0)
    assert polls(watch, rtcp_reports(60.0), 60.0) == []
    assert not watch.watched()


def test_a_receiver_that_sends_nothing_is_not_checked_for_its_silence() -> None:
    watch = PathWatch(0.0)
    assert polls(watch, [], 30.0) == []  # only the RFC 7675 checks (ice.py) are left


def test_a_receiver_that_sends_transport_cc_feedback_is_watched() -> None:
    watch = PathWatch(0.0)
    now, seen = feed(watch, 0.0, 3.0, 20, 0)  # feedback every 50 ms
    assert watch.watched()
    assert 0.45 <= silence_until_check(watch, now, seen) <= 0.6


def test_a_quiet_client_that_answers_is_checked_less_and_less_often() -> None:
    watch = PathWatch(0.0)
    now, seen = feed(watch, 0.0, 2.0, 80, 0)
    gaps = []
    for _ in range(6):  # camera and microphone off: nothing comes, every check answered
        gap = silence_until_check(watch, now, seen)
        now += gap
        watch.answered(now, 0.01)
        gaps.append(gap)
    assert gaps[0] < 0.5
    assert all(b >= a for a, b in itertools.pairwise(gaps)), gaps
    assert gaps[-1] >= MAX_QUIET_BACKOFF_S - POLL_S
    now, seen = feed(watch, now, 1.0, 80, seen)  # sending again: fast detection again
    assert silence_until_check(watch, now, seen) <= 0.45


def test_an_answer_while_the_client_sends_changes_nothing_but_the_round_trip() -> None:
    watch = PathWatch(0.0)
    now, seen = feed(watch, 0.0, 2.0, 80, 0)
    watch.answered(now, 0.2)
    assert watch.timeout() == 0.8
    assert silence_until_check(watch, now, seen) <= 0.45


def test_the_timeout_is_a_few_round_trips_within_bounds() -> None:
    watch = PathWatch(0.0)
    assert watch.timeout() == MIN_TIMEOUT_S  # no round trip known yet
    watch.answered(0.0, 0.001)
    assert watch.timeout() == MIN_TIMEOUT_S
    for _ in range(20):
        watch.answered(0.0, 2.0)
    assert watch.timeout() == 1.0


async def test_a_lost_first_check_is_covered_by_the_second() -> None:
    sent: list[float] = []
    loop = asyncio.get_running_loop()

    async def check() -> bool:
        sent.append(loop.time())
        if len(sent) == 1:
            await asyncio.sleep(10)  # lost: never answered
        await asyncio.sleep(0.01)
        return True

    rtt = await first_answer(check, 0.2)
    assert rtt is not None and rtt < 0.1
    assert len(sent) == 2 and 0.09 <= sent[1] - sent[0] <= 0.15


async def test_a_dead_path_is_reported_after_the_timeout() -> None:
    calls = 0

    async def check() -> bool:
        nonlocal calls
        calls += 1
        await asyncio.sleep(10)
        return True

    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await first_answer(check, 0.2) is None
    assert 0.19 <= loop.time() - started < 0.3
    assert calls == 2


async def test_a_refused_check_is_no_answer() -> None:
    async def check() -> bool:
        return False

    assert await first_answer(check, 0.1) is None
