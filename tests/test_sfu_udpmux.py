"""Single-port mode (sfu.transport.udpmux): real peers on one UDP port, hostile datagrams."""

from __future__ import annotations

import itertools
import re
import socket
from collections.abc import Iterator

import aioice.ice
import pytest
from aioice import stun

from sfu.local import LocalMedia
from sfu.packet.rtp import build_rtp
from sfu.transport import mmsg
from sfu.transport.udpmux import READ_BATCH, SharedEndpoint, UdpMux
from tests.servers import free_port
from tests.sfu_live import (
    Pattern,
    Pump,
    Tone,
    TrackReader,
    aiortc_peer,
    eventually,
    join,
    negotiate_aiortc,
    running_media,
)
from tests.synthetic_peer import SyntheticPeer

pytestmark = pytest.mark.slow


@pytest.fixture
def aiortc_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # aiortc clients gather on the machine's addresses; keep them on 127.0.0.1.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


def ports_of(answer: str) -> set[int]:
    return {int(m) for m in re.findall(r"a=candidate:\S+ 1 udp \d+ \S+ (\d+) typ host", answer)}


def mux_of(media: LocalMedia) -> UdpMux:
    assert len(media.muxes) == 1
    return media.muxes[0]


def local_address(peer: SyntheticPeer) -> tuple[str, int]:
    """The address a synthetic peer sends its media from."""
    selected = peer.transport._ice.selected
    assert selected is not None
    host, port = selected[0].transport.get_extra_info("sockname")[:2]
    return host, port


@pytest.fixture
def intruder() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


@pytest.mark.usefixtures("aiortc_on_loopback")
async def test_aiortc_peers_share_the_configured_port_and_each_gets_its_media() -> None:
    port = free_port()
    async with running_media(rtc_udp_port=port) as (media, _):
        alice, bob, carol = aiortc_peer(), aiortc_peer(), aiortc_peer()
        readers = [TrackReader(bob), TrackReader(carol)]
        try:
            alice.addTrack(Tone())
            alice.addTrack(Pattern())
            for viewer in (bob, carol):
                viewer.addTransceiver("audio", "recvonly")
                viewer.addTransceiver("video", "recvonly")
            answers = []
            for pid, pc in (("alice", alice), ("bob", bob), ("carol", carol)):
                await media.open("visit", "main", pid)
                answers.append(await negotiate_aiortc(media, pid, pc))
            assert all(ports_of(answer) == {port} for answer in answers)
            mux = mux_of(media)
            assert mux.port == port and len(mux.by_ufrag) == 3
            for reader in readers:
                await eventually(
                    lambda r=reader: len(r.frames["video"]) >= 10 and len(r.frames["audio"]) >= 20,  # type: ignore[misc]
                    timeout=15,
                    what="decoded frames at each viewer",
                )
            # Each transport owns the address it selected, and only that one.
            owners = {endpoint.ice.local_username for endpoint in mux.by_addr.values()}
            assert owners == set(mux.by_ufrag)
            stats = media.stats()
            assert stats["errors"] == stats["foreign_source"] == stats["unknown_ufrag"] == 0
            assert stats["udp_send_calls"] < stats["rtp_out"], "copies went out in batches"
        finally:
            for reader in readers:
                await reader.close()
            for pc in (alice, bob, carol):
                await pc.close()
        assert media.stats()["transports"] == 0


async def test_hostile_datagrams_on_the_shared_port_are_dropped_counted_and_harm_nobody(
    intruder: socket.socket,
) -> None:
    async with running_media() as (media, _):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        bob = await join(media, "bob", SyntheticPeer(audio_slots=1, video_slots=1))
        pump = Pump(alice).start()
        try:
            await eventually(lambda: bob.transport.received > 30, what="media at bob")
            mux = mux_of(media)
            target = (mux.host, mux.port)
            wrong = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
            wrong.attributes["USERNAME"] = "nobody:x"
            anonymous = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
            stray = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE)
            alice_ssrc = alice.audio_ssrc or 0
            srtp_like = build_rtp(payload_type=111, sequence=1, timestamp=1, ssrc=alice_ssrc)
            garbage = [
                (b"\xff" * 40, "unknown_packets"),
                (b"", "errors"),
                (srtp_like + bytes(20), "foreign_source"),  # alice's SSRC, not alice's address
                (b"\x16\xfe\xfd" + bytes(8) + b"\x00\x02" + bytes(2), "foreign_source"),  # DTLS
                (bytes(wrong), "unknown_ufrag"),
                (bytes(anonymous), "unknown_ufrag"),
                (bytes(stray), "bad_stun"),  # a response to nothing we asked
                (b"\x00\x01\x00\x40\x21\x12\xa4\x42" + bytes(12), "bad_stun"),  # truncated
            ]
            expected: dict[str, int] = {}
            for data, reason in garbage * 20:
                intruder.sendto(data, target)
                expected[reason] = expected.get(reason, 0) + 1
            await eventually(
                lambda: all(getattr(mux.counters, k) >= n for k, n in expected.items()),
                what="every hostile datagram counted by the shared socket",
            )
            assert {k: getattr(mux.counters, k) for k in expected} == expected
            for pid in ("alice", "bob"):
                counters = media.participants[pid].counters
                assert counters.foreign_source == counters.bad_stun == counters.srtp_errors == 0
            before = bob.transport.received
            await eventually(lambda: bob.transport.received > before + 30, what="media goes on")
            assert len(mux.by_addr) == 2 and len(mux.by_ufrag) == 2, "nothing claimed by them"
        finally:
            await pump.stop()


async def test_a_check_from_a_spoofed_address_cannot_take_it_from_its_transport() -> None:
    async with running_media() as (media, _):
        alice = await join(media, "alice", SyntheticPeer(audio=True))
        bob = await join(media, "bob", SyntheticPeer(audio_slots=1))
        mallory = await join(media, "mallory", SyntheticPeer(audio=True))
        pump = Pump(alice).start()
        try:
            await eventually(lambda: bob.transport.received > 20, what="media at bob")
            mux = mux_of(media)
            victim = local_address(bob)
            assert mux.by_addr[victim].ice.local_username in _ufrags_of(media, "bob")
            # Mallory knows her own credentials and signs a valid check with
            # them, sent as if from bob's address.
            answer = mallory.answer
            assert answer is not None
            ice = answer.media[0].ice
            assert ice is not None and ice.password is not None
            check = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
            check.attributes["USERNAME"] = f"{ice.usernameFragment}:{_peer_ufrag(mallory)}"
            check.attributes["PRIORITY"] = 1
            check.attributes["ICE-CONTROLLING"] = 1
            check.attributes["USE-CANDIDATE"] = None
            check.add_message_integrity(ice.password.encode())
            check.add_fingerprint()
            mux.datagram(bytes(check), victim)
            assert mux.counters.address_conflicts == 1
            owner = mux.by_addr[victim]
            assert isinstance(owner, SharedEndpoint)
            assert owner.ice.local_username in _ufrags_of(media, "bob"), "still bob's"
            before = bob.transport.received
            await eventually(lambda: bob.transport.received > before + 20, what="bob unharmed")
        finally:
            await pump.stop()


def _ufrags_of(media: LocalMedia, pid: str) -> set[str]:
    transport = media.participants[pid].transport
    assert transport is not None
    return {transport.local("active").ice_ufrag}


def _peer_ufrag(peer: SyntheticPeer) -> str:
    return str(peer.transport._ice.local_username)


async def test_without_sendmmsg_the_shared_socket_still_carries_every_packet_in_order() -> None:
    async with running_media(batched_io=False) as (media, _):
        await _fan_out_keeps_order(media, batched=False)


async def test_batched_sends_keep_each_consumers_packets_in_order(native_path: str) -> None:
    async with running_media() as (media, _):
        await _fan_out_keeps_order(media, batched=True)
        transport = media.participants["v0"].transport
        assert transport is not None and transport._direct is not None, "protected in the batch"
        # the compiled route (sfu.native._fanout.Direct) exactly when compiled
        assert (transport.fast is not None) == (native_path == "compiled")


async def test_batched_sends_with_pylibsrtp_protecting_keep_the_order_too() -> None:
    async with running_media(direct_srtp=False) as (media, _):
        await _fan_out_keeps_order(media, batched=True)
        transport = media.participants["v0"].transport
        assert transport is not None and transport._direct is None


async def _fan_out_keeps_order(media: LocalMedia, *, batched: bool) -> None:
    alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
    # Every 3rd packet decrypted at each viewer: it checks the SRTP of the path in use.
    viewers = [
        await join(media, f"v{i}", SyntheticPeer(audio_slots=1, video_slots=1, decrypt_every=3))
        for i in range(4)
    ]
    seen: list[dict[int, list[int]]] = []
    for viewer in viewers:
        record: dict[int, list[int]] = {}
        seen.append(record)

        def on_packet(data: bytes, record: dict[int, list[int]] = record) -> None:
            ssrc = int.from_bytes(data[8:12], "big")
            record.setdefault(ssrc, []).append(int.from_bytes(data[2:4], "big"))

        viewer.transport.on_packet = on_packet
    pump = Pump(alice).start()
    try:
        for viewer in viewers:
            await eventually(lambda v=viewer: v.transport.received > 150, timeout=10, what="media")  # type: ignore[misc]
    finally:
        await pump.stop()
    for viewer in viewers:
        assert viewer.transport.counters.srtp_errors == 0
        assert viewer.transport.counters.rtp_in > 40, "decrypted samples"
    for record in seen:
        assert len(record) == 2, "audio and video"
        for sequences in record.values():
            steps = [(b - a) & 0xFFFF for a, b in itertools.pairwise(sequences)]
            assert all(step == 1 for step in steps), "no reordering, no loss on loopback"
    mux = mux_of(media)
    assert (mux.egress is not None and mux.egress.batch is not None) == batched
    stats = media.stats()
    if batched:
        assert stats["udp_send_calls"] < stats["rtp_out"] / 2
    else:
        assert stats["udp_send_calls"] >= stats["rtp_out"]


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "recvfrom"])
async def test_one_wake_up_reads_a_backlog_of_many_batches_not_just_one(batched: bool) -> None:
    # A join storm kept the event loop busy; read one batch per wake-up, the
    # shared socket's queue grew to seconds (consent answers, media) while
    # the loop itself was never late.
    mux = UdpMux("127.0.0.1", 0, buffer_bytes=1 << 20, binding=mmsg.load() if batched else None)
    mux.open()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for n in range(5 * READ_BATCH + 7):
                sender.sendto(b"\xff garbage %d" % n, ("127.0.0.1", mux.port))
            mux._readable()
        assert mux.counters.unknown_packets == 5 * READ_BATCH + 7, "all of it in one wake-up"
        assert mux.counters.read_backlog == 0
    finally:
        mux.close()
