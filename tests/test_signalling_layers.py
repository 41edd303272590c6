"""The layer allocation through the real server: a simulcast publisher and a subscriber over
WebSockets; the subscriber's REMB comes back to it as `downlink`, its tile size decides which
layers the publisher is told to send (`publish_layers`)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.conftest import Connect, join_host
from tests.sfu_live import send_remb, tracked
from tests.simulcast_live import SIZES, SimulcastPump, encode_layers
from tests.synthetic_peer import SyntheticPeer
from tests.test_media_signalling import (  # noqa: F401  (autouse fixtures)
    admitted_guest,
    aiortc_on_loopback,
    offer_over_ws,
    synthetic_peers_closed,
)

pytestmark = pytest.mark.slow


async def test_a_subscriber_hears_its_downlink_and_its_small_tile_turns_off_the_top_layers(
    connect: Connect,
) -> None:
    host = await join_host(connect)
    guest, _ = await admitted_guest(connect, host, "Pat")
    camera = tracked(SyntheticPeer(video=True, simulcast=("q", "h", "f")))
    await offer_over_ws(host, camera)
    viewer = tracked(SyntheticPeer(video_slots=1, decrypt_every=1))
    await offer_over_ws(guest, viewer)
    pump = SimulcastPump(camera, encode_layers()).start()
    try:
        # A receiver repeats its REMB (browsers about once a second): one sent while the
        # SFU is still finishing the handshake would be dropped.
        async with asyncio.timeout(15):
            while not guest.of_type("downlink"):
                send_remb(viewer, 200_000)
                with contextlib.suppress(TimeoutError):
                    await guest.next("downlink", timeout=0.5, estimate_kbps=200)
        # one report: nothing before (nothing was measured), and what the REMB said
        assert [m["estimate_kbps"] for m in guest.of_type("downlink")] == [200]
        # 200 kbit/s fits the middle layer (about 184 kbit/s): the bandwidth alone never
        # turns it off, so the lowest layer alone can only come from the small tile.
        said = [m["active"] for m in host.of_type("publish_layers")]
        assert ["q"] not in said, said
        sizes = {"0": {"width": SIZES["q"][0], "height": SIZES["q"][1]}}
        assert (await guest.request({"type": "video_sizes", "slots": sizes}))["type"] == "ack"
        # After the 5 s hold, only the lowest layer is needed.  Before it, the track's own
        # 5 s hold may already have turned the top one off (`active` q and h), depending on
        # how long the downlink report took: that step is not what this test is about.
        later = await host.next("publish_layers", timeout=20, active=["q"])
        assert later == {"type": "publish_layers", "mid": "0", "active": ["q"]}
    finally:
        await pump.stop()
