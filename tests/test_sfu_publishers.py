"""Who publishes live media: the `publishers` of each `slots` message.

A track that sends no media for `LIVE_S` (a camera turned off: its sender has
no track) stops counting; padding-only probes do not keep it alive. The SFU
tells every member of the group on change, by itself and across workers, and a
camera that is off gives its slot to one that is on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from sfu.packet.rtp import build_rtp, parse_rtp
from sfu.routing.group import LIVE_S, Group
from sfu.routing.producer import Producer
from tests.pool_live import Reoffering, running_pool
from tests.sfu_fakes import opus, producer, vp8
from tests.sfu_live import Pump, eventually, join, running_media
from tests.synthetic_peer import SyntheticPeer


@dataclass
class Remote:
    """A publisher as the group sees it (here: one of another worker)."""

    id: str
    producers: dict[str, Producer] = field(default_factory=dict)


def feed(p: Producer, packet: bytes, now: float) -> None:
    assert p.on_rtp(packet, parse_rtp(packet), now)


def test_only_tracks_that_sent_media_lately_count_and_padding_does_not() -> None:
    camera, mic = producer("video", ssrc=5000), producer("audio", ssrc=6000)
    alice = Remote("alice", {"v": camera, "a": mic})
    bob = Remote("bob", {"a": producer("audio", ssrc=7000, owner="bob")})
    carol = Remote("carol", {"v": producer("video", ssrc=8000, owner="carol")})
    group = Group("r", "main")
    group.add_remote(alice)
    group.add_remote(bob)
    group.add_remote(carol)
    start = max(p.last_media for m in (alice, bob, carol) for p in m.producers.values())
    feed(camera, vp8(1, 0), start)
    feed(mic, opus(1, 0), start)
    # A new track counts at once (its first packets are on their way).
    assert group.publishing(start) == {
        "alice": ["audio", "camera"],
        "bob": ["audio"],
        "carol": ["camera"],
    }
    assert group.orders(start)[0] == ["alice", "carol"]
    assert group.changed_orders(start)
    assert not group.changed_orders(start + 0.1), "nothing changed, nothing to tell"

    later = start + LIVE_S + 0.5
    feed(mic, opus(2, 960), later)
    feed(carol.producers["v"], vp8(1, 0, ssrc=8000), later)
    probe = build_rtp(payload_type=96, sequence=2, timestamp=0, ssrc=5000, padding=200)
    feed(camera, probe, later)  # the camera is off: only bandwidth probes
    assert group.publishing(later) == {"alice": ["audio"], "carol": ["camera"]}
    assert group.orders(later)[0] == ["carol", "alice"], "a camera that is off goes last"
    assert group.changed_orders(later), "a camera turned off is a change to tell"

    feed(camera, vp8(3, 3000), later + 0.1)  # back on
    assert group.publishing(later + 0.1) == {"alice": ["audio", "camera"], "carol": ["camera"]}
    assert group.changed_orders(later + 0.1)


@pytest.mark.slow
async def test_every_subscriber_is_told_when_a_publisher_stops_its_camera() -> None:
    async with running_media() as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        await join(media, "bob", SyntheticPeer(audio_slots=1, video_slots=1))
        carol = await join(media, "carol", SyntheticPeer(audio=True, video_slots=1))
        pumps = [Pump(alice).start(), Pump(carol, level=None).start()]  # alice speaks
        try:
            both = {"alice": ["audio", "camera"], "carol": ["audio"]}
            await eventually(lambda: events.publishers.get("bob") == both, what="bob is told")
            await eventually(lambda: events.publishers.get("carol") == both, what="carol is told")
            sent = len(events.slot_history)
            pumps[0].video = False  # alice turns her camera off
            camera_off = {"alice": ["audio"], "carol": ["audio"]}
            await eventually(
                lambda: events.publishers["bob"] == camera_off, LIVE_S + 5, "camera off for bob"
            )
            await eventually(lambda: events.publishers["carol"] == camera_off, 2, "and carol")
            # Once per subscriber for the change, not per packet or per tick.
            assert len(events.slot_history) - sent == 3  # bob, carol and alice herself
            pumps[0].video = True
            await eventually(lambda: events.publishers["bob"] == both, 5, "camera back on")
        finally:
            for pump in pumps:
                await pump.stop()


@pytest.mark.slow
async def test_a_publisher_on_another_worker_is_seen_to_stop_its_camera() -> None:
    async with running_pool(max_participants=2) as (pool, events):
        publisher = Reoffering(pool, events, "pub", audio=True, video=True)
        clients = [
            Reoffering(pool, events, pid, audio_slots=1, video_slots=1) for pid in ("near", "far")
        ]
        try:
            await publisher.join()
            for client in clients:
                await client.join()
            assert {p: s.worker for p, s in pool.seats.items()} == {"pub": 0, "near": 0, "far": 1}
            pump = Pump(publisher.peer).start()
            live = {"pub": ["audio", "camera"]}
            await eventually(lambda: events.publishers.get("far") == live, 10, "far sees pub")
            await eventually(lambda: events.publishers.get("near") == live, 5, "near sees pub")
            pump.video = False
            off = {"pub": ["audio"]}
            await eventually(lambda: events.publishers["far"] == off, LIVE_S + 8, "far: off")
            await eventually(lambda: events.publishers["near"] == off, 5, "near: off")
            await pump.stop()
        finally:
            for client in [publisher, *clients]:
                await client.close()
