"""Media through the real signalling server: offers over the WebSocket, admission in the
media plane, removal cutting media, breakout moves switching it, the pre-call test."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import aioice
import pytest
from aiortc import RTCSessionDescription

from signalling.keys import SERVICE
from tests.conftest import Connect, Peer, join_host, knock_guest, token
from tests.sfu_live import Pattern, Pump, Tone, aiortc_peer, close_peers, tracked
from tests.synthetic_peer import SyntheticPeer
from tests.waiting import eventually

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def aiortc_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture(autouse=True)
async def synthetic_peers_closed() -> Any:
    yield
    await close_peers()


async def offer_over_ws(ws: Peer, peer: SyntheticPeer) -> None:
    answer = await ws.request_answer({"type": "offer", "sdp": await peer.offer()})
    await peer.connect(answer["sdp"])


def media_stats(client: Any) -> dict[str, int]:
    media = client.app[SERVICE].media
    stats: dict[str, int] = media.stats()
    return stats


async def admitted_guest(connect: Connect, host: Peer, name: str) -> tuple[Peer, str]:
    guest, gid = await knock_guest(connect, name)
    await host.request({"type": "admit", "participant_ids": [gid]})
    await guest.next("roster")
    return guest, gid


def slots_name(ws: Peer, other: str) -> bool:
    return any(other in [s["participant_id"] for s in m["slots"]] for m in ws.of_type("slots"))


async def test_host_and_guest_decode_each_others_video_through_the_server(
    connect: Connect,
) -> None:
    host = await join_host(connect)
    guest, gid = await admitted_guest(connect, host, "Pat")
    hid = host.of_type("welcome")[0]["participant_id"]
    received: dict[str, asyncio.Future[Any]] = {}
    peers = []
    for name, ws in (("host", host), ("guest", guest)):
        pc = aiortc_peer()
        peers.append(pc)
        pc.addTransceiver(Pattern(), direction="sendrecv")
        pc.addTransceiver(Tone(), direction="sendrecv")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        received[name] = future

        @pc.on("track")
        def on_track(track: Any, future: asyncio.Future[Any] = future) -> None:
            if track.kind == "video" and not future.done():
                future.set_result(track)

        await pc.setLocalDescription(await pc.createOffer())
        answer = await ws.request_answer({"type": "offer", "sdp": pc.localDescription.sdp})
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    try:
        for name in ("host", "guest"):
            track = await asyncio.wait_for(received[name], 15)
            frame = await asyncio.wait_for(track.recv(), 15)
            assert frame.width == 320 and frame.height == 240
        for ws, other in ((host, gid), (guest, hid)):
            await eventually(partial(slots_name, ws, other), 10, "each side's slots name the other")
    finally:
        for pc in peers:
            await pc.close()


async def test_a_waiting_guest_gets_no_media_by_any_message(connect: Connect, client: Any) -> None:
    await join_host(connect)
    guest, _ = await knock_guest(connect, "Pat")
    peer = tracked(SyntheticPeer(audio=True, video=True, video_slots=2))
    sdp = await peer.offer()
    for message in (
        {"type": "offer", "sdp": sdp},
        {"type": "candidate", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"},
        {"type": "pin", "participant_id": None},
    ):
        assert (await guest.request(message))["code"] == "not_admitted"
    assert media_stats(client)["transports"] == 0
    assert not guest.of_type("answer") and not guest.of_type("slots")


async def test_removal_cuts_the_guests_media(connect: Connect, client: Any) -> None:
    host = await join_host(connect)
    guest, gid = await admitted_guest(connect, host, "Pat")
    viewer = tracked(SyntheticPeer(audio_slots=1, video_slots=1, decrypt_every=1))
    await offer_over_ws(host, viewer)
    sender = tracked(SyntheticPeer(audio=True, video=True))
    await offer_over_ws(guest, sender)
    pump = Pump(sender).start()
    try:
        await eventually(lambda: len(viewer.sink.rtp) > 50, 10, "the host receives the guest")
        assert (await host.request({"type": "remove", "participant_id": gid}))["type"] == "ack"
        await eventually(lambda: media_stats(client)["transports"] == 1, 5.0, "transport closed")
        count, sent = len(viewer.sink.rtp), len(pump.sent)
        # The pump keeps sending (counted in packets, not seconds): nothing of it may arrive.
        await eventually(lambda: len(pump.sent) >= sent + 30, 5.0, "the guest's pump sends on")
        assert len(viewer.sink.rtp) - count <= 2  # at most what was already in flight
    finally:
        await pump.stop()


async def test_a_breakout_move_switches_media_without_renegotiation(connect: Connect) -> None:
    host = await join_host(connect)
    guests = [await admitted_guest(connect, host, name) for name in ("Ann", "Ben")]
    (ann, a), (ben, b) = guests
    viewer = tracked(SyntheticPeer(audio_slots=1, video_slots=2, decrypt_every=1))
    await offer_over_ws(host, viewer)
    pumps = []
    for ws in (ann, ben):
        sender = tracked(SyntheticPeer(audio=True, video=True))
        await offer_over_ws(ws, sender)
        pumps.append(Pump(sender).start())
    try:

        def shown() -> set[str]:
            last = host.of_type("slots")[-1]["slots"] if host.of_type("slots") else []
            return {s["participant_id"] for s in last if s["kind"] == "video"} - {None}

        await eventually(lambda: shown() == {a, b}, 10, "both guests in the host's slots")
        await host.request(
            {"type": "breakout_open", "rooms": [{"name": "A", "participant_ids": [a]}]}
        )
        await eventually(lambda: shown() == {b}, 5, "Ann's media left the main room")
        me = host.of_type("welcome")[0]["participant_id"]
        await host.request({"type": "breakout_move", "participant_id": me, "to": "b1"})
        await eventually(lambda: shown() == {a}, 5, "the host now sees only Ann")
        assert len(host.of_type("answer")) == 1, "no renegotiation"
    finally:
        for pump in pumps:
            await pump.stop()


async def test_the_precall_socket_echoes_media_and_reports_stats(client: Any) -> None:
    ws = await client.ws_connect("/v1/precall/ws")
    peer_ws = Peer(ws)
    await peer_ws.send({"type": "hello"})
    assert (await peer_ws.next("welcome"))["status"] == "precall"
    peer = tracked(
        SyntheticPeer(audio=True, video=True, audio_slots=1, video_slots=1, decrypt_every=1)
    )
    await offer_over_ws(peer_ws, peer)
    pump = Pump(peer).start()
    try:
        stats = await peer_ws.next("precall_stats", timeout=10)
        assert set(stats) >= {"rtt_ms", "loss", "jitter_ms", "bitrate_kbps"}
        await eventually(lambda: len(peer.sink.rtp) > 20, 10, "own media echoed back")
    finally:
        await pump.stop()
        await peer_ws.close()


async def test_a_resumed_participant_keeps_its_media_session(connect: Connect) -> None:
    host = await join_host(connect)
    viewer = tracked(SyntheticPeer(audio_slots=1, video_slots=1, decrypt_every=1))
    await offer_over_ws(host, viewer)
    resume = host.of_type("welcome")[0]["resume_token"]
    await host.close()
    again = await connect("visit-1", {"resume": resume})
    await again.next("welcome")
    await again.next("roster")
    assert not again.of_type("media_closed"), "same node: the transport lives on"
    assert token()


async def test_slots_say_who_publishes_a_live_camera_and_when_one_is_turned_off(
    connect: Connect,
) -> None:
    host = await join_host(connect)
    (ann, a), (ben, b) = [await admitted_guest(connect, host, name) for name in ("Ann", "Ben")]
    viewer = tracked(SyntheticPeer(audio_slots=1, video_slots=1))
    await offer_over_ws(host, viewer)
    pumps = []
    for ws, video in ((ann, True), (ben, False)):  # Ben joined without a camera
        sender = tracked(SyntheticPeer(audio=True, video=video))
        await offer_over_ws(ws, sender)
        pumps.append(Pump(sender).start())

    def publishers() -> dict[str, list[str]] | None:
        last = host.of_type("slots")[-1:] or [{}]
        found: dict[str, list[str]] | None = last[0].get("publishers")
        return found

    try:
        both = {a: ["audio", "camera"], b: ["audio"]}
        await eventually(lambda: publishers() == both, 10, "Ann's camera, Ben's microphone")
        pumps[0].video = False  # Ann turns her camera off: her sender sends nothing
        await eventually(lambda: publishers() == {a: ["audio"], b: ["audio"]}, 10, "camera off")
        assert all(isinstance(m.get("publishers"), dict) for m in host.of_type("slots"))
    finally:
        for pump in pumps:
            await pump.stop()
