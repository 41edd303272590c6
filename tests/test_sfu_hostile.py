"""Hostile inputs replayed inside a live DTLS-SRTP session (notes/hostile-inputs.md).

Every time: the packet is dropped and counted, the sender's transport stays
open, other participants are unaffected and memory stays bounded.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import pylibsrtp
import pytest

from sfu.control import MediaError
from sfu.local import LocalMedia
from sfu.packet.rtp import build_rtp
from sfu.routing.participant import Participant
from sfu.transport.webrtc import MAX_INBOUND_SSRCS, TransportState
from tests.sfu_live import Pump, RecordingEvents, eventually, join, running_media
from tests.sfu_offers import CHROME_OFFER
from tests.synthetic_peer import SyntheticPeer

pytestmark = pytest.mark.slow


class Scene:
    def __init__(self, media: LocalMedia, events: RecordingEvents) -> None:
        self.media, self.events = media, events
        self.alice: SyntheticPeer
        self.bob: SyntheticPeer
        self.mallory: SyntheticPeer

    @property
    def target(self) -> Participant:
        return self.media.participants["mallory"]

    def counter(self, name: str) -> int:
        return int(getattr(self.target.counters, name))

    def rtp(self, plain: bytes) -> None:
        """Encrypt with mallory's session when libsrtp accepts it, else send as is."""
        try:
            self.mallory.transport.send_raw(self.mallory.transport.protect(plain))
        except (pylibsrtp.Error, ValueError):
            self.mallory.send_raw_plain(plain)

    def rtcp(self, plain: bytes) -> None:
        try:
            self.mallory.transport.send_raw(self.mallory.transport.protect_rtcp(plain))
        except (pylibsrtp.Error, ValueError):
            self.mallory.send_raw_plain(plain)

    async def still_fine(self) -> None:
        """Mallory's transport works and alice still reaches bob."""
        count = self.bob.transport.received
        await eventually(lambda: self.bob.transport.received > count + 10, what="alice at bob")
        assert self.target.transport is not None
        assert self.target.transport.state == TransportState.CONNECTED
        before = self.target.counters.rtp_in
        self.mallory.send(self.mallory.rtp("audio", b"\xfc" + bytes(20), level=127))
        await eventually(lambda: self.target.counters.rtp_in > before, what="mallory's packet")
        assert self.media.stats()["errors"] == 0


@pytest.fixture
async def scene() -> AsyncIterator[Scene]:
    async with running_media() as (media, events):
        s = Scene(media, events)
        s.alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        s.bob = await join(media, "bob", SyntheticPeer(audio_slots=2, video_slots=2))
        s.mallory = await join(media, "mallory", SyntheticPeer(audio=True, video=True))
        pump = Pump(s.alice).start()
        try:
            await eventually(lambda: s.bob.transport.received > 10, what="alice at bob")
            yield s
        finally:
            await pump.stop()


def mallory_audio(scene: Scene, *, b0: int = 0x80, body: bytes = b"", seq: int = 1) -> bytes:
    ssrc = scene.mallory.audio_ssrc or 0
    return struct.pack("!BBHII", b0, 111, seq, 960 * seq, ssrc) + body


async def test_malformed_rtp_is_dropped_and_counted(scene: Scene) -> None:
    before = scene.counter("bad_rtp") + scene.counter("srtp_errors")
    hostile = [
        mallory_audio(scene, b0=0x8F),  # CC=15 in a 12-byte packet
        mallory_audio(scene, b0=0x90, body=b"\xbe\xde\x00\x40" + bytes(8)),  # extension too long
        mallory_audio(scene, b0=0xA0, body=b"\xfc\x00\x00\x00"),  # padding count 0
        mallory_audio(scene, b0=0xA0, body=b"\xfc\x00\x00\x50"),  # padding past the payload
    ]
    for packet in hostile:
        scene.rtp(packet)
    await eventually(
        lambda: scene.counter("bad_rtp") + scene.counter("srtp_errors") >= before + len(hostile),
        what="four drops",
    )
    await scene.still_fine()


async def test_odd_but_wellformed_rtp_is_handled_safely(scene: Scene) -> None:
    ssrc = scene.mallory.audio_ssrc or 0
    odd = [
        build_rtp(payload_type=111, sequence=65535, timestamp=1, ssrc=ssrc, payload=b"\xfc"),
        build_rtp(payload_type=111, sequence=0, timestamp=2, ssrc=ssrc, payload=b"\xfc"),  # wrap
        build_rtp(payload_type=111, sequence=1, timestamp=3, ssrc=ssrc, padding=8),  # padding only
        build_rtp(
            payload_type=111,
            sequence=2,
            timestamp=4,
            ssrc=ssrc,
            payload=b"\xfc",
            extensions={15: b"\x01"},  # id 15: "stop parsing here"
        ),
        build_rtp(
            payload_type=111,
            sequence=3,
            timestamp=5,
            ssrc=ssrc,
            payload=b"\xfc",
            extensions={2: b"\x01\x02"},  # a 2-byte abs-send-time
        ),
    ]
    for packet in odd:
        scene.rtp(packet)
    await scene.still_fine()


async def test_short_rtx_and_oversized_packets_are_dropped(scene: Scene) -> None:
    rtx = build_rtx_short(scene)
    bad_before = scene.counter("bad_rtp")
    scene.rtp(rtx)
    await eventually(lambda: scene.counter("bad_rtp") > bad_before, what="short RTX counted")
    oversize_before = scene.counter("oversize")
    scene.mallory.send_raw_plain(mallory_audio(scene, body=bytes(1600)))
    await eventually(lambda: scene.counter("oversize") > oversize_before, what="oversize")
    await scene.still_fine()


def build_rtx_short(scene: Scene) -> bytes:
    return build_rtp(
        payload_type=97, sequence=5, timestamp=5, ssrc=scene.mallory.rtx_ssrc or 0, payload=b"\x01"
    )


async def test_malformed_rtcp_is_dropped_and_counted(scene: Scene) -> None:
    me = scene.mallory.audio_ssrc or 0
    ssrc = struct.pack("!I", me)
    hostile = [
        b"\x80\xc9\x00\x00" + ssrc,  # length 0
        b"\x80\xc9\x00\x14" + ssrc,  # longer than the datagram
        b"\x9f\xc9\x00\x07" + ssrc + bytes(24),  # RC=31 with one block
        b"\x81\xcd\x00\x03" + ssrc + bytes(6),  # NACK FCI of 6 bytes
        b"\x8f\xce\x00\x05" + ssrc + bytes(4) + b"REMB" + b"\xff\x00\x00\x10" + bytes(4),
        b"\x8f\xcd\x00\x05" + ssrc + bytes(4) + b"\x00\x01\xff\xff" + bytes(8),  # tcc count
        b"\x81\xca\x00\x02" + ssrc + b"\x01\xff\x41\x42",  # SDES item past the end
        b"\x9f\xcb\x00\x01" + ssrc,  # BYE with 31 sources and one SSRC
    ]
    before = scene.counter("bad_rtcp") + scene.counter("srtp_errors")
    for packet in hostile:
        scene.rtcp(packet)
    await eventually(
        lambda: scene.counter("bad_rtcp") + scene.counter("srtp_errors") >= before + len(hostile),
        what="every malformed RTCP counted",
    )
    await scene.still_fine()


async def test_xr_and_app_packets_are_ignored(scene: Scene) -> None:
    me = struct.pack("!I", scene.mallory.audio_ssrc or 0)
    rr = b"\x80\xc9\x00\x01" + me
    scene.rtcp(rr + b"\x80\xcf\x00\x02" + me + bytes(4))  # XR
    scene.rtcp(rr + b"\x80\xcc\x00\x02" + me + b"TEST")  # APP
    await scene.still_fine()
    assert scene.counter("bad_rtcp") == 0


async def test_malformed_stun_is_dropped(scene: Scene) -> None:
    before = scene.counter("bad_stun")
    stun = [
        bytes(19),  # shorter than a header
        b"\x00\x01\x00\x05\x21\x12\xa4\x42" + bytes(12) + bytes(5),  # length not a multiple of 4
        b"\x00\x01\x00\x40\x21\x12\xa4\x42" + bytes(12),  # length past the end
        b"\x00\x01\x00\x04\x21\x12\xa4\x42" + bytes(12) + b"\x00\x20\x00\x00",  # empty attribute
        b"\x00\x01\x00\x08\x21\x12\xa4\x42" + bytes(12) + b"\x80\x28\x00\x04" + b"\xde\xad\xbe\xef",
    ]
    for message in stun:
        scene.mallory.send_raw_plain(message)
    await eventually(lambda: scene.counter("bad_stun") >= before + 3, what="bad STUN counted")
    await scene.still_fine()


async def test_a_flood_of_dtls_records_is_capped(scene: Scene) -> None:
    record = b"\x16\xfe\xfd" + bytes(8) + b"\x00\x40" + bytes(64)
    for _ in range(2000):
        scene.mallory.send_raw_plain(record)
    await eventually(lambda: scene.counter("dtls_overflow") >= 1900, what="the flood capped")
    transport = scene.target.transport
    assert transport is not None and transport._ice._queue.qsize() <= 64
    await scene.still_fine()


async def test_malformed_dtls_records_are_dropped(scene: Scene) -> None:
    malformed = [
        b"\x16\xfe\xfd" + bytes(8) + b"\x01\x00" + bytes(10),  # length past the end
        b"\x16\x03\x03" + bytes(8) + b"\x00\x02" + bytes(2),  # a TLS, not DTLS, version
        b"\x1a\xfe\xfd" + bytes(4),  # a truncated header
    ]
    for record in malformed:
        scene.mallory.send_raw_plain(record)
    await eventually(lambda: scene.counter("bad_dtls") >= 3, what="three bad records")
    await scene.still_fine()


async def test_bad_auth_tags_and_replays_are_dropped(scene: Scene) -> None:
    packet = scene.mallory.transport.protect(scene.mallory.rtp("audio", b"\xfc" + bytes(20)))
    tampered = packet[:-1] + bytes([packet[-1] ^ 0xFF])
    before = scene.counter("srtp_errors")
    scene.mallory.transport.send_raw(tampered)
    scene.mallory.transport.send_raw(packet)
    scene.mallory.transport.send_raw(packet)  # replayed
    await eventually(lambda: scene.counter("srtp_errors") >= before + 2, what="two drops")
    await scene.still_fine()


async def test_packets_from_many_ssrcs_keep_memory_bounded(scene: Scene) -> None:
    for n in range(200):
        plain = build_rtp(payload_type=111, sequence=n, timestamp=n, ssrc=0x1000 + n, payload=b"x")
        scene.mallory.transport.send_raw(scene.mallory.transport.protect(plain))
    await eventually(lambda: scene.counter("unknown_ssrc") > 100, what="unknown SSRCs dropped")
    transport = scene.target.transport
    assert transport is not None and len(transport.inbound_ssrcs) <= MAX_INBOUND_SSRCS
    await scene.still_fine()


@pytest.mark.parametrize(
    "offer",
    [
        "v=0\r\n" + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" * 1000,
        CHROME_OFFER + "a=x:" + "y" * 1_000_000 + "\r\n",
        CHROME_OFFER + "a=x:\udcff\r\n",
        CHROME_OFFER.replace("a=extmap:4 urn", "a=extmap:0 urn"),
        CHROME_OFFER.replace("a=extmap:4 urn", "a=extmap:256 urn"),
        CHROME_OFFER.replace("a=fmtp:105 apt=104", "a=fmtp:105 apt=99"),
        "\r\n".join(line for line in CHROME_OFFER.split("\r\n") if "fingerprint" not in line),
    ],
    ids=["1000-m-lines", "1MB-line", "bad-utf8", "extmap-0", "extmap-256", "apt", "fingerprint"],
)
async def test_hostile_offers_are_refused_and_change_nothing(scene: Scene, offer: str) -> None:
    transport = scene.target.transport
    producers = dict(scene.target.producers)
    with pytest.raises(MediaError) as info:
        await scene.media.offer("mallory", offer)
    assert info.value.code == "bad_request"
    assert scene.target.transport is transport and scene.target.producers == producers
    await scene.still_fine()
