"""The SFU clock visits a subscriber only when something of it is due (issue 16).

A live media plane with real peers; its own clock is parked (an hour between
ticks) and the test ticks a `Ticker` over it by hand, at the real time, so that
each tick's visits can be counted (`Ticker.visits`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from sfu.local import LocalMedia
from sfu.routing.participant import Participant
from sfu.routing.ticker import Ticker
from tests.sfu_live import Pump, eventually, join, running_media
from tests.simulcast_live import SimulcastPump, encode_layers
from tests.synthetic_peer import SyntheticPeer

PARKED = 3600.0  # the media plane's own clock never ticks during a test


class Hand:
    """Ticks `media` by hand and counts the participants each tick visits."""

    def __init__(self, media: LocalMedia) -> None:
        self.ticker = Ticker(media, PARKED)

    def tick(self, now: float | None = None) -> int:
        before = self.ticker.visits
        self.ticker.tick(time.monotonic() if now is None else now)
        return self.ticker.visits - before


def quiet(participants: list[Participant]) -> bool:
    """No switch pending on any of their slots, every slot filled."""
    return all(
        c.pending is None and c.source is not None
        for p in participants
        for c in p.consumers.values()
    )


async def settled(hand: Hand, subscribers: list[Participant]) -> None:
    """Tick until every subscriber's slots play (their key frames came)."""

    def ticked_quiet() -> bool:
        hand.tick()
        return quiet(subscribers)

    await eventually(ticked_quiet, 10, what="every slot playing")


@contextlib.asynccontextmanager
async def room(viewers: int, **settings: Any) -> AsyncIterator[tuple[LocalMedia, Hand, Pump]]:
    """alice publishes audio and video; `viewers` subscribers watch; all settled."""
    async with running_media(selection_interval_s=PARKED, **settings) as (media, _):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        for i in range(viewers):
            await join(media, f"v{i}", SyntheticPeer(video_slots=1))
        pump = Pump(alice, level=None).start()  # no speaker changes (they refill everybody)
        hand = Hand(media)
        try:
            await settled(hand, [media.participants[f"v{i}"] for i in range(viewers)])
            yield media, hand, pump
        finally:
            await pump.stop()


async def test_quiet_subscribers_are_not_visited_on_every_tick() -> None:
    """Before: every participant five times a second; now the publisher only (its NACKs),
    until a subscriber's report is due (0.5-1.5 s apart)."""
    async with room(viewers=6) as (media, hand, _):
        for viewer in (media.participants[f"v{i}"] for i in range(6)):
            assert viewer.visit_due > time.monotonic() + 0.2  # its next report, not sooner
        visits = [hand.tick() for _ in range(5)]  # within a few ms: no report falls due
        assert visits == [1] * 5, visits


async def test_a_subscriber_is_visited_when_its_rtcp_report_is_due() -> None:
    async with room(viewers=2) as (media, hand, _):
        viewer = media.participants["v0"]
        hand.tick()
        report = viewer.next_report
        assert viewer.visit_due <= report

        def reported() -> bool:
            hand.tick()
            return viewer.next_report > report

        await eventually(reported, 3, what="the next report")
        # On the first tick at or after the report time, not later.
        assert viewer.next_report - report < 1.5 + 0.2


async def test_a_pending_switch_wakes_its_subscriber_for_key_frame_requests_every_tick() -> None:
    async with room(viewers=3) as (media, hand, _):
        viewer = media.participants["v1"]
        consumer = next(c for c in viewer.consumers.values() if c.kind == "video")
        assert hand.tick() == 1
        # What a reconnect or a repair from a key frame does: wait for a key frame again.
        assert consumer.resync()
        assert viewer.visit_due == 0.0
        layer = consumer.pending
        assert layer is not None
        assert hand.tick() == 2  # alice and v1

        def played() -> bool:  # asked again on every tick until the key frame comes
            if consumer.pending is None:
                return True
            now = time.monotonic()
            hand.tick(now)
            assert viewer.visit_due == now  # visited, and due again at the next tick
            return False

        await eventually(played, 5, what="the key frame")
        hand.tick()  # the visit planned by the last one while pending
        assert hand.tick() == 1  # quiet again


async def test_new_slots_and_a_refill_wake_the_subscribers() -> None:
    async with room(viewers=2) as (media, hand, _):
        assert hand.tick() == 1
        await join(media, "carol", SyntheticPeer(audio=True, video=True))
        # carol joined: the group refilled everybody's slots (and carol is new): all visited.
        assert hand.tick() == 4


async def test_a_thumbnail_refresh_is_due_on_time() -> None:
    async with running_media(
        selection_interval_s=PARKED, stage_video_slots=1, thumbnail_refresh_s=0.6
    ) as (media, _):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        carol = await join(media, "carol", SyntheticPeer(audio=True, video=True))
        await join(media, "bob", SyntheticPeer(video_slots=2))
        pumps = [Pump(alice, level=10).start(), Pump(carol, level=127).start()]
        hand = Hand(media)
        bob = media.participants["bob"]
        try:
            await settled(hand, [bob])

            def one_thumbnail() -> bool:
                hand.tick()
                return quiet([bob]) and sum(c.thumbnail for c in bob.consumers.values()) == 1

            await eventually(one_thumbnail, 10, what="carol a thumbnail")
            thumbs = [c for c in bob.consumers.values() if c.thumbnail]
            source = thumbs[0].source
            assert source is not None

            def refreshed() -> bool:  # the first refresh (the join's own request came first)
                hand.tick()
                return source.refresh_due > 0

            await eventually(refreshed, 3, what="a first refresh")
            for _ in range(3):  # each refresh on the first tick at or after it is due
                hand.tick()
                due = source.refresh_due
                assert bob.visit_due <= due
                await eventually(lambda: time.monotonic() >= due, 2)  # noqa: B023
                hand.tick()
                assert source.refresh_due > due
        finally:
            for pump in pumps:
                await pump.stop()


async def test_a_paused_layer_wakes_every_subscriber_on_the_tick_it_stops_being_active() -> None:
    encoded = encode_layers()
    async with running_media(selection_interval_s=PARKED) as (media, _):
        alice = await join(media, "alice", SyntheticPeer(video=True, simulcast=("q", "h", "f")))
        for i in range(3):
            await join(media, f"v{i}", SyntheticPeer(video_slots=1))
        pump = SimulcastPump(alice, encoded).start()
        hand = Hand(media)
        viewers = [media.participants[f"v{i}"] for i in range(3)]
        try:
            track = media.participants["alice"].producers["0"]
            await eventually(
                lambda: all(layer.active(time.monotonic()) for layer in track.layers), 10
            )
            await settled(hand, viewers)
            for viewer in viewers:
                viewer.next_report = viewer.visit_due = time.monotonic() + 100  # far off
            assert hand.tick() == 1
            top = track.layers[2]
            pump.paused.add("f")

            def stopped() -> bool:
                now = time.monotonic()
                visits = hand.tick(now)
                if top.active(now):
                    assert visits == 1
                    return False
                assert visits == 4, visits  # the first tick that sees f paused: everybody
                return True

            await eventually(stopped, 5, what="f paused")
            assert all(
                c.target is not top for v in viewers for c in v.consumers.values()
            )  # each slot left f on that tick
        finally:
            await pump.stop()
