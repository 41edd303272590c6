"""LocalMedia end to end with real aiortc peers over loopback."""

from __future__ import annotations

import hashlib

import aioice.ice
import pytest
from aiortc.rtp import RtpPacket

from tests.sfu_live import (
    Pattern,
    Tone,
    TrackReader,
    aiortc_peer,
    eventually,
    negotiate_aiortc,
    running_media,
)

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def aiortc_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # aiortc clients gather on the machine's addresses; keep them on 127.0.0.1.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


def video_payload_hashes(packets: list[bytes]) -> set[str]:
    hashes = set()
    for data in packets:
        packet = RtpPacket.parse(data)
        if packet.payload_type == 97 and packet.payload:  # aiortc's VP8
            hashes.add(hashlib.sha256(packet.payload).hexdigest())
    return hashes


async def test_an_aiortc_publisher_is_decoded_by_an_aiortc_subscriber() -> None:
    async with running_media() as (media, events):
        alice, bob = aiortc_peer(), aiortc_peer()
        reader = TrackReader(bob)
        try:
            alice.addTrack(Tone())
            alice.addTrack(Pattern())
            bob.addTransceiver("audio", "recvonly")
            bob.addTransceiver("video", "recvonly")
            await media.open("visit", "main", "alice")
            await media.open("visit", "main", "bob")
            await negotiate_aiortc(media, "alice", alice)
            await negotiate_aiortc(media, "bob", bob)
            await eventually(lambda: events.who("bob") == ["alice", "alice"], what="bob's slots")
            await eventually(
                lambda: len(reader.frames["video"]) >= 15 and len(reader.frames["audio"]) >= 25,
                timeout=10,
                what="decoded frames at bob",
            )
            frame = reader.frames["video"][-1]
            assert (frame.width, frame.height) == (320, 240)
            assert media.stats()["errors"] == 0
        finally:
            await reader.close()
            await alice.close()
            await bob.close()


async def test_payloads_arrive_byte_identical() -> None:
    async with running_media() as (media, _):
        alice, bob = aiortc_peer(), aiortc_peer()
        reader = TrackReader(bob)
        sent: list[bytes] = []
        received: list[bytes] = []
        try:
            alice.addTrack(Pattern())
            bob.addTransceiver("video", "recvonly")
            await media.open("visit", "main", "alice")
            await media.open("visit", "main", "bob")
            await negotiate_aiortc(media, "alice", alice)
            await negotiate_aiortc(media, "bob", bob)
            # Tap the plain RTP on both sides, before SRTP and after it.
            alice_dtls = alice.getTransceivers()[0].sender.transport
            bob_dtls = bob.getTransceivers()[0].receiver.transport
            send, handle = alice_dtls._send_rtp, bob_dtls._handle_rtp_data

            async def tap_send(data: bytes) -> None:
                sent.append(data)
                await send(data)

            async def tap_receive(data: bytes, arrival_time_ms: int) -> None:
                received.append(data)
                await handle(data, arrival_time_ms)

            # Taps on aiortc's own send and receive paths, to compare both ends.
            alice_dtls._send_rtp = tap_send  # type: ignore[method-assign]
            bob_dtls._handle_rtp_data = tap_receive  # type: ignore[method-assign]
            await eventually(lambda: len(reader.frames["video"]) >= 20, timeout=10, what="frames")
            at_alice, at_bob = video_payload_hashes(sent), video_payload_hashes(received)
            assert len(at_bob) >= 20
            assert at_bob <= at_alice  # nothing re-encoded, nothing altered
        finally:
            await reader.close()
            await alice.close()
            await bob.close()


async def test_aiortc_sends_the_audio_level_extension_that_drives_the_speaker() -> None:
    async with running_media() as (media, events):
        loud, quiet, viewer = aiortc_peer(), aiortc_peer(), aiortc_peer()
        try:
            loud.addTrack(Tone(amplitude=12000))
            quiet.addTrack(Tone(amplitude=20))
            viewer.addTransceiver("audio", "recvonly")
            for pid, pc in (("loud", loud), ("quiet", quiet), ("viewer", viewer)):
                await media.open("visit", "main", pid)
                await negotiate_aiortc(media, pid, pc)
            await eventually(
                lambda: ("visit", "main", "loud") in events.speakers,
                timeout=10,
                what="loud to become the dominant speaker",
            )
            await eventually(lambda: events.who("viewer") == ["loud"], what="viewer hears loud")
        finally:
            for pc in (loud, quiet, viewer):
                await pc.close()
