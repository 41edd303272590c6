"""The SFU's fast dead-path detection (sfu.transport.pathwatch) against false alarms:
a publisher that stops sending on a live path (camera and microphone off) is checked
and answers, so it is never told to restart ICE; once it sends again and its path
dies, the warning comes within about a second. Real ICE, DTLS and SRTP over loopback
with a synthetic client (tests/synthetic_peer.py)."""

from __future__ import annotations

import asyncio
import time

from tests.sfu_live import Pump, eventually, join, received, running_media
from tests.synthetic_peer import SyntheticPeer


async def test_a_publisher_that_goes_quiet_is_checked_not_restarted() -> None:
    async with running_media() as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        bob = await join(media, "bob", SyntheticPeer(audio_slots=1, video_slots=1))
        pump = Pump(alice).start()
        try:
            await eventually(lambda: received(bob) > 50, 10, "bob gets alice's media")
            await asyncio.sleep(1.0)  # a packet rate to judge silence by
        finally:
            await pump.stop()
        await asyncio.sleep(3.0)  # quiet on a live path: checks at 0.3, 0.9, 2.1 s
        assert events.restarts_needed == []
        assert media.stats()["consent_warnings"] == 0

        pump = Pump(alice).start()
        try:
            before = received(bob)
            await eventually(lambda: received(bob) > before + 50, 10, "media again")
            await asyncio.sleep(1.0)
            alice.cut_path()
            cut = time.monotonic()
            await eventually(lambda: "alice" in events.restarts_needed, 5, "a restart asked")
            noticed = time.monotonic() - cut
        finally:
            await pump.stop()
        assert noticed < 1.2, f"a dead path noticed after {noticed:.2f} s"
