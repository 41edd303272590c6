"""The relay between workers on real loopback sockets: packets, sender reports, feedback to
the origin, and hostile datagrams."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest

from sfu.packet.counters import Counters
from sfu.packet.rtcp import Nack, Pli, build_nack, build_pli, parse_rtcp
from sfu.packet.rtp import parse_rtp
from sfu.relay.crypto import SecurePair, sender_of
from sfu.relay.endpoint import (
    FEEDBACK,
    MAGIC,
    RTP,
    SR,
    RelayEndpoint,
    RelayTap,
    header,
    parse_header,
)
from sfu.relay.remote import DescriptionError, RemoteStream, describe
from sfu.settings import MediaSettings
from sfu.workers.rpcauth import HelloChecker, answer, answer_ok, hello
from tests.sfu_fakes import Capture, producer, vp8
from tests.sfu_live import eventually


def test_headers_round_trip_and_anything_else_is_not_a_relay_datagram() -> None:
    assert parse_header(header(RTP, 7, 42) + b"x") == parse_header(header(RTP, 7, 42))
    parsed = parse_header(header(FEEDBACK, 7, 42))
    assert parsed is not None and (parsed.kind, parsed.sender, parsed.stream) == (FEEDBACK, 7, 42)
    for bad in (b"", bytes(11), b"\x00" + header(RTP, 1, 1)[1:], bytes([MAGIC, 9]) + bytes(10)):
        assert parse_header(bad) is None
    assert parse_header(header(RTP, 1, 1) + bytes(1600)) is None, "larger than any MTU"


def test_a_description_rebuilds_the_same_codecs_and_bad_ones_are_refused() -> None:
    local = producer("video", ssrc=77)
    desc = describe(local)
    remote = RemoteStream(
        RelayEndpoint(1), 2, 5, "alice", desc, MediaSettings(), Counters()
    ).producer
    assert (remote.kind, remote.source, remote.ssrc) == ("video", "camera", 77)
    assert remote.codecs == local.codecs and remote.ext_ids == local.ext_ids
    for broken in ({"kind": "smell"}, {"codecs": [["vp8", 300, 90000, None, "", [], None]]}):
        with pytest.raises(DescriptionError):
            RemoteStream(
                RelayEndpoint(1), 2, 5, "a", {**desc, **broken}, MediaSettings(), Counters()
            )


@pytest.fixture
async def endpoints() -> AsyncIterator[tuple[RelayEndpoint, RelayEndpoint]]:
    origin, receiver = RelayEndpoint(1), RelayEndpoint(2)
    peers = {1: await origin.bind("127.0.0.1"), 2: await receiver.bind("127.0.0.1")}
    origin.set_peers(peers)
    receiver.set_peers(peers)
    yield origin, receiver
    origin.close()
    receiver.close()


async def test_relayed_packets_feed_a_remote_producer_and_feedback_reaches_the_origin(
    endpoints: tuple[RelayEndpoint, RelayEndpoint],
) -> None:
    origin, receiver = endpoints
    publisher_side = Capture()
    local = producer("video", ssrc=5000, output=publisher_side)
    origin.streams[9] = local
    tap = RelayTap(origin, 9)
    tap.targets = [(origin.peers[2], None)]
    local.relay = tap
    remote = RemoteStream(receiver, 1, 9, "alice", describe(local), MediaSettings(), Counters())
    receiver.sources[(1, 9)] = remote
    for seq in range(10):
        packet = vp8(seq, seq * 3000, keyframe=seq == 0)
        local.on_rtp(packet, parse_rtp(packet), time.monotonic())
    local.on_sender_report(123 << 32, 4567, time.monotonic())
    await eventually(lambda: remote.producer.stats.received == 10, 2, "ten packets relayed")
    await eventually(lambda: remote.producer.last_sr is not None, 2, "the SR mapping relayed")
    assert remote.producer.last_sr is not None and remote.producer.last_sr[:2] == (123 << 32, 4567)
    now = time.monotonic()
    assert remote.producer.cached(3, now) == local.cached(3, now), "byte-identical copies"

    remote.producer.request_keyframe(time.monotonic())  # a subscriber's slot switched to it
    await eventually(lambda: publisher_side.rtcp, 2, "the PLI reached the publisher")
    assert isinstance(parse_rtcp(publisher_side.rtcp[0])[0], Pli)

    receiver.sources.pop((1, 9))  # see what the origin resends, raw
    received: asyncio.Queue[bytes] = asyncio.Queue()
    probe = RemoteStream(receiver, 1, 9, "alice", describe(local), MediaSettings(), Counters())

    def capture(data: bytes, now: float) -> bool:
        received.put_nowait(data)
        return True

    probe.on_relay_rtp = capture  # type: ignore[method-assign]  # a probe that records
    receiver.sources[(1, 9)] = probe
    receiver.send_feedback(1, 9, build_nack(1, 5000, [4, 5]))
    resent = [await asyncio.wait_for(received.get(), 2) for _ in range(2)]
    now = time.monotonic()
    assert resent == [local.cached(4, now), local.cached(5, now)] and None not in resent
    assert origin.counters.values["relay_retransmitted"] == 2
    assert isinstance(parse_rtcp(build_nack(1, 5000, [4]))[0], Nack)


async def test_hostile_datagrams_are_counted_and_dropped(
    endpoints: tuple[RelayEndpoint, RelayEndpoint],
) -> None:
    _, receiver = endpoints
    target = ("127.0.0.1", _port_of(receiver))
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        stranger.sendto(header(RTP, 1, 9) + vp8(1, 1), target)  # claims to be worker 1
        stranger.sendto(b"\x80" * 40, target)  # not a relay datagram
        await eventually(
            lambda: (
                receiver.counters.values["relay_foreign"] == 1
                and receiver.counters.values["relay_bad"] == 1
            ),
            2,
            "both counted",
        )
    finally:
        stranger.close()
    receiver.datagram_received(header(SR, 1, 99) + bytes(12), receiver.peers[1])
    receiver.datagram_received(header(FEEDBACK, 1, 99) + build_pli(1, 2), receiver.peers[1])
    assert receiver.counters.values["relay_unknown_stream"] == 2
    receiver.datagram_received(header(RTP, 1, 1), ("127.0.0.1", 1))
    assert receiver.counters.values["relay_foreign"] == 2


def _port_of(endpoint: RelayEndpoint) -> int:
    assert endpoint._transport is not None
    return int(endpoint._transport.get_extra_info("sockname")[1])


def test_a_sealed_datagram_hides_its_payload_and_opens_only_with_the_pairs_keys() -> None:
    secret = "k" * 40
    a_to_b, b_from_a = SecurePair(secret, 11, 22), SecurePair(secret, 22, 11)
    packet = vp8(1, 3000, keyframe=True)
    sealed = a_to_b.seal(RTP, 7, packet)
    assert sender_of(sealed) == 11 and packet[12:] not in sealed, "encrypted"
    assert b_from_a.open(sealed) == (RTP, 7, packet)
    assert b_from_a.open(sealed) is None, "a replay is refused"
    tampered = bytearray(a_to_b.seal(RTP, 7, packet))
    tampered[-15] ^= 1
    assert b_from_a.open(bytes(tampered)) is None
    assert SecurePair("x" * 40, 22, 11).open(a_to_b.seal(RTP, 7, packet)) is None, "wrong secret"
    assert SecurePair(secret, 22, 33).open(a_to_b.seal(RTP, 7, packet)) is None, "wrong pair"


async def test_a_secure_peer_is_only_heard_through_srtp() -> None:
    secret = "k" * 40
    origin, receiver = RelayEndpoint(1, secret=secret), RelayEndpoint(2, secret=secret)
    try:
        peers = {1: await origin.bind("127.0.0.1"), 2: await receiver.bind("127.0.0.1")}
        origin.set_peers(peers, secure={2})
        receiver.set_peers(peers, secure={1})
        local = producer("video", ssrc=5000)
        remote = RemoteStream(receiver, 1, 9, "alice", describe(local), MediaSettings(), Counters())
        receiver.sources[(1, 9)] = remote
        origin.send(2, RTP, 9, vp8(1, 3000, keyframe=True), "relay_rtp_out")
        await eventually(lambda: remote.producer.stats.received == 1, 2, "the sealed packet")
        receiver.datagram_received(header(RTP, 1, 9) + vp8(2, 6000), peers[1])
        assert receiver.counters.values["relay_foreign"] == 1, "plain text from a secure peer"
        receiver.datagram_received(b"\x57" + bytes(40), peers[1])
        assert receiver.counters.values["relay_foreign"] == 2, "sealed by an unknown sender"
        with pytest.raises(ValueError, match="secret"):
            RelayEndpoint(3).set_peers(peers, secure={1})
    finally:
        origin.close()
        receiver.close()


def test_a_hello_proves_the_secret_once_within_the_allowed_skew() -> None:
    checker = HelloChecker("s" * 40)
    params = hello("s" * 40, "node-a", now=1000)
    assert checker.check(params, now=1010) == "node-a"
    assert checker.check(params, now=1010) is None, "a replayed hello"
    assert checker.check(hello("s" * 40, "node-a", now=1000), now=1100) is None, "too old"
    assert checker.check(hello("t" * 40, "node-a", now=1000), now=1000) is None, "other secret"
    assert checker.check(["node-a", True, "n", "m"], now=1000) is None
    assert answer_ok("s" * 40, 5, "n", answer("s" * 40, 5, "n"))
    assert not answer_ok("s" * 40, 6, "n", answer("s" * 40, 5, "n"))
