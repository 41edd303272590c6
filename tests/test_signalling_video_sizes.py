"""`video_sizes` through the real server (validation, ack, storage in the SFU), and the SFU's
`publish_layers` / `downlink` events reaching the right client as JSON."""

from __future__ import annotations

from typing import Any

import pytest

from sfu.control import Downlink, PublishLayers
from sfu.local import LocalMedia
from signalling.keys import SERVICE
from tests.conftest import Connect, Peer, join_host, knock_guest
from tests.sfu_live import tracked
from tests.synthetic_peer import SyntheticPeer

# The same loopback ICE and peer clean-up as the other media-through-signalling tests.
from tests.test_media_signalling import aiortc_on_loopback, synthetic_peers_closed  # noqa: F401

pytestmark = pytest.mark.slow


def sfu(client: Any) -> LocalMedia:
    media = client.app[SERVICE].media
    assert isinstance(media, LocalMedia)
    return media


def size(width: int, height: int) -> dict[str, int]:
    return {"width": width, "height": height}


async def joined_host(connect: Connect) -> tuple[Peer, str]:
    host = await join_host(connect)
    return host, str(host.of_type("welcome")[0]["participant_id"])


async def test_video_sizes_are_acked_and_stored_per_participant(
    connect: Connect, client: Any
) -> None:
    host, hid = await joined_host(connect)
    reply = await host.request(
        {"type": "video_sizes", "slots": {"1": size(640, 360), "2": size(0, 0)}}
    )
    assert reply["type"] == "ack"
    assert sfu(client).participants[hid].video_sizes == {"1": (640, 360), "2": (0, 0)}
    reply = await host.request({"type": "video_sizes", "slots": {"1": size(320, 180)}})
    assert reply["type"] == "ack"
    assert sfu(client).participants[hid].video_sizes == {"1": (320, 180)}


BAD_SLOTS: list[Any] = [
    None,
    [],
    "1",
    {"1": [640, 360]},
    {"1": {"width": 640}},
    {"1": {"width": -1, "height": 10}},
    {"1": {"width": 8193, "height": 10}},
    {"1": {"width": 640.5, "height": 360}},
    {"1": {"width": True, "height": 360}},
    {"1": {"width": "640", "height": 360}},
    {"": size(1, 1)},
    {"m" * 33: size(1, 1)},
    {str(n): size(1, 1) for n in range(33)},
]


@pytest.mark.parametrize("slots", BAD_SLOTS)
async def test_malformed_video_sizes_get_bad_request_and_change_nothing(
    connect: Connect, client: Any, slots: Any
) -> None:
    host, hid = await joined_host(connect)
    assert (await host.request({"type": "video_sizes", "slots": {"1": size(64, 36)}}))[
        "type"
    ] == "ack"
    reply = await host.request({"type": "video_sizes", "slots": slots})
    assert (reply["type"], reply["code"]) == ("error", "bad_request")
    assert sfu(client).participants[hid].video_sizes == {"1": (64, 36)}


async def test_more_sizes_than_the_participants_video_slots_are_refused(
    connect: Connect, client: Any
) -> None:
    host, hid = await joined_host(connect)
    peer = tracked(SyntheticPeer(audio=True, video=True, video_slots=2))
    answer = await host.request_answer({"type": "offer", "sdp": await peer.offer()})
    await peer.connect(answer["sdp"])
    three = {"1": size(1, 1), "2": size(1, 1), "3": size(1, 1)}
    reply = await host.request({"type": "video_sizes", "slots": three})
    assert (reply["type"], reply["code"]) == ("error", "bad_request")
    assert sfu(client).participants[hid].video_sizes == {}
    two = {"1": size(1280, 720), "2": size(320, 180)}
    assert (await host.request({"type": "video_sizes", "slots": two}))["type"] == "ack"
    assert sfu(client).participants[hid].video_sizes == {"1": (1280, 720), "2": (320, 180)}


async def test_a_guest_in_the_lobby_may_not_send_video_sizes(connect: Connect) -> None:
    await join_host(connect)
    guest, _ = await knock_guest(connect, "Pat")
    reply = await guest.request({"type": "video_sizes", "slots": {}})
    assert (reply["type"], reply["code"]) == ("error", "not_admitted")


async def test_a_flood_of_video_sizes_is_rate_limited_like_other_messages(connect: Connect) -> None:
    host, _ = await joined_host(connect)
    for n in range(80):
        await host.send({"type": "video_sizes", "slots": {"1": size(n, n)}})
    await host.next("error", code="rate_limited")


async def test_publish_layers_and_downlink_reach_only_their_participant_as_json(
    connect: Connect, client: Any
) -> None:
    host, hid = await joined_host(connect)
    guest, gid = await knock_guest(connect, "Pat")
    await host.request({"type": "admit", "participant_ids": [gid]})
    await guest.next("roster")
    sfu(client).notify(PublishLayers(hid, "1", ["q", "h"]))
    sfu(client).notify(Downlink(gid, 420))
    assert await host.next("publish_layers") == {
        "type": "publish_layers",
        "mid": "1",
        "active": ["q", "h"],
    }
    assert await guest.next("downlink") == {"type": "downlink", "estimate_kbps": 420}
    await host.request({"type": "lobby"})  # a round trip: anything else would have arrived
    await guest.request({"type": "video_sizes", "slots": {}})
    assert not guest.of_type("publish_layers") and not host.of_type("downlink")
