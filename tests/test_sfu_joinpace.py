"""The pacing rule of joins (sfu.policy.joinpace), its shell (sfu.transport.joingate),
LocalMedia's offers waiting for their turn, and the setting."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.config import ConfigError
from sfu.control import MediaError
from sfu.policy.joinpace import FLOOR, SHRINK_EVERY_S, START, STARVING_S, JoinPace, JoinState
from sfu.settings import MediaSettings, SettingsError
from sfu.transport.joingate import JoinGate
from signalling.config import from_env
from signalling.media import media_settings
from tests.sfu_live import eventually, running_media, tracked
from tests.synthetic_peer import SyntheticPeer


def test_joins_go_at_once_until_the_limit_then_wait_in_arrival_order() -> None:
    pace = JoinPace(2, hold_s=10)
    states = [pace.request(key, 0.0) for key in "abcd"]
    assert states == [JoinState.CONNECTING] * 2 + [JoinState.QUEUED] * 2
    assert (pace.connecting, pace.waiting) == (2, 2)
    assert [pace.position(k) for k in "abcde"] == [0, 0, 1, 2, 0]
    assert pace.release("b", 1.0) == ["c"]
    assert pace.release("a", 3.0) == ["d"]
    assert pace.stats.admitted == 4
    assert pace.stats.queued == 2
    assert pace.stats.wait_s == pytest.approx(4.0)
    assert pace.stats.wait_max_s == pytest.approx(3.0)


def test_a_new_join_never_overtakes_a_queued_one() -> None:
    pace = JoinPace(1, hold_s=10)
    pace.request("a", 0.0)
    pace.request("b", 0.0)
    # A slot frees and, in the same instant, another join arrives: b goes first.
    assert pace.release("a", 1.0) == ["b"]
    assert pace.request("c", 1.0) == JoinState.QUEUED


def test_asking_twice_keeps_the_state_and_the_place() -> None:
    pace = JoinPace(1, hold_s=10)
    pace.request("a", 0.0)
    pace.request("b", 0.0)
    assert pace.request("a", 1.0) == JoinState.CONNECTING
    assert pace.request("b", 1.0) == JoinState.QUEUED
    assert (pace.connecting, pace.waiting) == (1, 1)


def test_a_join_that_leaves_the_queue_frees_its_place_and_is_counted() -> None:
    pace = JoinPace(1, hold_s=10)
    for key in "abc":
        pace.request(key, 0.0)
    assert pace.release("b", 1.0) == []
    assert pace.stats.abandoned == 1
    assert pace.release("a", 2.0) == ["c"]
    assert pace.release("unknown", 3.0) == []
    assert pace.stats.abandoned == 1


def test_a_slot_held_too_long_is_freed_for_the_next_join() -> None:
    pace = JoinPace(1, hold_s=5)
    pace.request("stuck", 0.0)
    pace.request("next", 1.0)
    assert pace.next_expiry() == 5.0
    assert pace.expire(4.9) == []
    assert pace.expire(5.0) == ["next"]
    assert pace.stats.expired == 1
    assert pace.state("stuck") is None
    assert pace.next_expiry() == 10.0
    # Its transport connecting later frees nothing more.
    assert pace.release("stuck", 6.0) == []
    assert pace.connecting == 1


def test_limit_zero_means_no_pacing() -> None:
    pace = JoinPace(0, hold_s=5)
    assert all(pace.request(k, 0.0) == JoinState.CONNECTING for k in range(100))
    assert pace.waiting == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        JoinPace(-1, hold_s=5)
    with pytest.raises(ValueError, match="hold_s"):
        JoinPace(1, hold_s=0)


@given(
    limit=st.integers(min_value=1, max_value=6),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["request", "release", "expire", "behind", "fine"]),
            st.integers(0, 7),
        ),
        max_size=80,
    ),
)
def test_never_more_than_the_window_and_the_queue_is_served_in_arrival_order(
    limit: int, steps: list[tuple[str, int]]
) -> None:
    pace = JoinPace(limit, hold_s=3)
    queue: list[Hashable] = []  # a model of the queue: keys in the order they asked
    for now, (action, key) in enumerate(steps):
        admitted: list[Hashable] = []
        if action == "request":
            if pace.state(key) is None and pace.request(key, now) == JoinState.QUEUED:
                queue.append(key)
        elif action == "release":
            if key in queue:
                queue.remove(key)
            admitted = pace.release(key, now)
        elif action == "expire":
            admitted = pace.expire(now)
        else:
            admitted = pace.adjust(action == "behind", now)
        assert admitted == queue[: len(admitted)], "served in arrival order"
        del queue[: len(admitted)]
        assert pace.waiting == len(queue)
        assert FLOOR_OF(pace) <= pace.window <= limit
        assert pace.connecting <= limit
        assert pace.waiting == 0 or pace.connecting >= pace.window


def FLOOR_OF(pace: JoinPace) -> int:
    return min(FLOOR, pace.limit)


async def test_offers_wait_at_the_gate_until_a_slot_frees() -> None:
    gate = JoinGate(JoinPace(1, hold_s=30))
    assert await gate.acquire("a", within=1)
    waiting = asyncio.ensure_future(gate.acquire("b", within=5))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    gate.release("a")
    assert await asyncio.wait_for(waiting, 1) is True
    gate.close()


async def test_a_withdrawn_join_hears_false_and_one_that_waited_too_long_leaves() -> None:
    gate = JoinGate(JoinPace(1, hold_s=30))
    await gate.acquire("a", within=1)
    withdrawn = asyncio.ensure_future(gate.acquire("b", within=5))
    await asyncio.sleep(0.01)
    gate.release("b")
    assert await asyncio.wait_for(withdrawn, 1) is False
    with pytest.raises(TimeoutError):
        await gate.acquire("c", within=0.05)
    assert gate.pace.waiting == 0
    gate.close()


async def test_the_timer_frees_a_slot_held_too_long() -> None:
    gate = JoinGate(JoinPace(1, hold_s=0.1))
    await gate.acquire("stuck", within=1)
    assert await asyncio.wait_for(gate.acquire("next", within=5), 2) is True
    assert gate.pace.stats.expired == 1
    gate.close()


async def test_a_cancelled_wait_gives_its_slot_on() -> None:
    gate = JoinGate(JoinPace(1, hold_s=30))
    await gate.acquire("a", within=1)
    cancelled = asyncio.ensure_future(gate.acquire("b", within=5))
    after = asyncio.ensure_future(gate.acquire("c", within=5))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    await asyncio.sleep(0.01)
    gate.release("a")
    assert await asyncio.wait_for(after, 1) is True
    assert gate.pace.state("b") is None
    gate.close()


# LocalMedia: offers of new transports wait for their turn (real sockets, no peer connects)


async def test_a_second_offer_waits_for_the_first_transport_and_leaving_the_queue_refuses_it() -> (
    None
):
    async with running_media(max_connecting=1, connect_timeout_s=5) as (media, _events):
        for pid in ("first", "second", "third"):
            await media.open("r", "main", pid)
        await media.offer("first", await tracked(SyntheticPeer(audio=True)).offer())
        second = asyncio.ensure_future(
            media.offer("second", await tracked(SyntheticPeer(audio=True)).offer())
        )
        third = asyncio.ensure_future(
            media.offer("third", await tracked(SyntheticPeer(audio=True)).offer())
        )
        await eventually(lambda: media.stats()["joins_queued"] == 2, what="two queued")
        assert not second.done()
        await media.close("second")  # leaves the queue: its offer is refused
        with pytest.raises(MediaError) as refused:
            await second
        assert refused.value.code == "not_admitted"
        await media.close("first")  # its slot goes to the next in the queue
        assert "a=ice-ufrag" in await asyncio.wait_for(third, 5)
        stats = media.stats()
        assert (stats["joins_connecting"], stats["joins_queued"]) == (1, 0)
        assert (stats["joins_admitted"], stats["joins_waited"], stats["joins_abandoned"]) == (
            2,
            1,
            1,
        )
        assert media.participants["third"].transport is not None


async def test_an_offer_queued_too_long_is_refused_as_busy() -> None:
    async with running_media(max_connecting=1, join_queue_s=0.3) as (media, _events):
        assert await media.joins.acquire("a join in progress", within=1)
        await media.open("r", "main", "late")
        with pytest.raises(MediaError) as refused:
            await media.offer("late", await tracked(SyntheticPeer(audio=True)).offer())
        assert refused.value.code == "unavailable"
        assert "busy" in refused.value.message
        assert media.participants["late"].transport is None
        assert (media.stats()["joins_queued"], media.stats()["joins_abandoned"]) == (0, 1)


def test_the_limit_comes_from_the_environment_and_reaches_the_media_settings() -> None:
    base = {"VISITROOM_API_KEY": "k", "VISITROOM_API_SECRET": "z" * 40}
    assert media_settings(from_env(base)).max_connecting == 0, "off unless asked for"
    config = from_env({**base, "VISITROOM_MEDIA_MAX_CONNECTING": "64"})
    assert media_settings(config).max_connecting == 64
    for bad in ("-1", "x"):
        with pytest.raises(ConfigError):
            from_env({**base, "VISITROOM_MEDIA_MAX_CONNECTING": bad})
    with pytest.raises(SettingsError):
        MediaSettings(connecting_hold_s=0)


# The adaptive window


def test_the_window_starts_small_and_halves_while_the_process_is_behind() -> None:
    assert JoinPace(64, hold_s=10).window == START
    pace = JoinPace(64, hold_s=10, start=8, floor=2)
    for key in range(10):
        pace.request(key, 0.0)
    assert pace.connecting == 8
    assert pace.adjust(behind=True, now=0.1) == []
    assert pace.window == 4
    pace.adjust(behind=True, now=0.2)  # at most one halving per SHRINK_EVERY_S
    assert pace.window == 4
    pace.adjust(behind=True, now=0.1 + SHRINK_EVERY_S)
    pace.adjust(behind=True, now=0.1 + 3 * SHRINK_EVERY_S)
    assert (pace.window, pace.stats.shrunk) == (2, 2)
    # The joins in progress go on; the next ones wait until fewer than 2 connect.
    for key in range(6):
        assert pace.release(key, 2.0) == []
    assert pace.release(6, 2.0) == [8]


def test_the_window_grows_by_one_a_tick_only_once_a_join_finished() -> None:
    pace = JoinPace(6, hold_s=10, start=4, floor=2)
    for key in range(20):
        pace.request(key, 0.0)
    assert pace.adjust(behind=False, now=0.1) == []  # nothing finished yet: no evidence
    assert pace.window == 4
    assert pace.release(0, 0.15) == [4]
    assert pace.adjust(behind=False, now=0.2) == [5]
    assert (pace.window, pace.connecting) == (5, 5)
    pace.release(1, 0.25)
    pace.adjust(behind=False, now=0.3)
    pace.release(2, 0.35)
    pace.adjust(behind=False, now=0.4)
    assert pace.window == 6, "never past the limit"


def test_the_window_does_not_grow_without_joins_waiting() -> None:
    pace = JoinPace(64, hold_s=10)
    pace.request("a", 0.0)
    pace.release("a", 0.1)
    pace.adjust(behind=False, now=0.2)
    assert pace.window == START
    assert not pace.active


def test_a_limit_below_the_start_caps_the_window_and_the_floor() -> None:
    pace = JoinPace(1, hold_s=10)
    assert (pace.window, pace.floor) == (1, 1)
    assert JoinPace(0, hold_s=10).adjust(behind=True, now=0.0) == []


async def test_the_gate_halves_the_window_when_its_owner_is_behind() -> None:
    behind = True
    gate = JoinGate(JoinPace(64, hold_s=30), lambda: behind)
    joins = [asyncio.ensure_future(gate.acquire(key, within=5)) for key in range(START + 2)]
    await asyncio.sleep(0)
    await eventually(lambda: gate.pace.window == FLOOR, timeout=2, what="the window shrunk")
    behind = False
    for key in range(3):
        gate.release(key)
    await eventually(lambda: gate.pace.window > FLOOR, timeout=2, what="the window grew")
    gate.close()
    assert all(isinstance(j, bool) for j in await asyncio.gather(*joins))


def test_a_join_waiting_too_long_grows_the_window_even_while_the_process_is_behind() -> None:
    pace = JoinPace(64, hold_s=100, start=4, floor=2)
    for key in range(40):
        pace.request(key, 0.0)
    pace.adjust(behind=True, now=0.1)
    assert pace.window == 2
    assert pace.adjust(behind=True, now=STARVING_S - 0.1) == []
    assert pace.adjust(behind=True, now=STARVING_S) == []  # 4 still connecting
    assert pace.adjust(behind=True, now=STARVING_S + 0.1) == []
    assert pace.adjust(behind=True, now=STARVING_S + 0.2) == [4]
    assert (pace.window, pace.connecting, pace.stats.starving) == (5, 5, 3)


async def test_without_pacing_the_gate_lets_every_join_go_and_keeps_nothing() -> None:
    async with running_media() as (media, _events):  # the default: off
        await media.open("r", "main", "p")
        await media.offer("p", await tracked(SyntheticPeer(audio=True)).offer())
        stats = media.stats()
        assert media.joins.pace.limit == 0
        assert stats["joins_admitted"] == stats["joins_connecting"] == 0
