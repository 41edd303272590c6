"""A departed participant leaves nothing behind on the media plane.

Real LocalMedia, real synthetic peers (ICE + DTLS-SRTP over loopback), media
flowing from a publisher to a subscriber; then both leave.  Once the closed
transports have wound down and a full collection has run, neither their
participants nor their transports may still be alive: a server that runs
visits all day must not keep the last visit's publisher (its transport,
SRTP sessions, send history and retransmission cache).  The compiled
dispatch's memo of routes (sfu.native._ingress.Routes) kept the handler of
the last address it routed, so the last publisher, until the next SRTP
datagram came (docs/benchmarks.md, "What a departed participant left
behind").
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

from tests.sfu_live import Pump, eventually, join, received, running_media
from tests.synthetic_peer import SyntheticPeer

pytestmark = pytest.mark.slow


async def test_nothing_of_a_departed_publisher_or_subscriber_survives_a_collection() -> None:
    # The GC freezer off: frozen objects are not collected, which is its point.
    async with running_media(gc_freeze=False) as (media, _):
        publisher = await join(media, "pub", SyntheticPeer(audio=True, video=True))
        subscriber = await join(media, "sub", SyntheticPeer(audio_slots=1, video_slots=1))
        pump = Pump(publisher).start()
        await eventually(lambda: received(subscriber) > 100, timeout=10, what="media at sub")
        await pump.stop()
        left: list[weakref.ref[Any]] = []
        for pid in ("pub", "sub"):
            participant = media.participants[pid]
            assert participant.transport is not None
            left += [weakref.ref(participant), weakref.ref(participant.transport)]
        del participant
        for pid in ("pub", "sub"):
            await media.close(pid)
        await media.drain()
        gc.collect()
        alive = [type(ref()).__name__ for ref in left if ref() is not None]
        assert alive == [], f"still alive after leaving: {alive}"
        assert media.participants == {} and media.groups == {} and not media.tasks
        assert all(not mux.by_addr and not mux.by_ufrag for mux in media.muxes)


async def test_with_the_gc_freezer_the_departed_are_collected_at_the_next_tick() -> None:
    """The production default: no collection of the test's own, and none of CPython's
    (disabled here, as it is in effect on a server whose old generation is frozen)."""
    gc.disable()
    try:
        async with running_media() as (media, _):
            publisher = await join(media, "pub", SyntheticPeer(audio=True, video=True))
            subscriber = await join(media, "sub", SyntheticPeer(audio_slots=1, video_slots=1))
            pump = Pump(publisher).start()
            await eventually(lambda: received(subscriber) > 100, timeout=10, what="media")
            await pump.stop()
            transports = [
                weakref.ref(p.transport) for p in media.participants.values() if p.transport
            ]
            assert len(transports) == 2
            for pid in ("pub", "sub"):
                await media.close(pid)
            await media.drain()
            await eventually(
                lambda: all(ref() is None for ref in transports),
                timeout=5,
                what="the departed transports collected",
            )
    finally:
        gc.enable()
