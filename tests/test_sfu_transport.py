"""Transports: where they listen, what they announce, DTLS failures, ICE restarts."""

from __future__ import annotations

import contextlib
import socket

import pytest

from sfu.control import MediaError
from sfu.sdp.offer import parse_offer
from tests.sfu_live import Pump, eventually, join, running_media, tracked
from tests.synthetic_peer import SyntheticPeer

pytestmark = pytest.mark.slow


def candidates(answer: str) -> list[tuple[str, int]]:
    found = []
    for line in answer.split("\r\n"):
        if line.startswith("a=candidate:"):
            bits = line.split()
            found.append((bits[4], int(bits[5])))
    return found


def free_range(size: int) -> tuple[int, int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        low = probe.getsockname()[1]
    return (max(1024, min(low, 65535 - size)), max(1024, min(low, 65535 - size)) + size - 1)


async def test_candidates_are_gathered_only_on_the_configured_addresses() -> None:
    async with running_media() as (media, _):
        peer = tracked(SyntheticPeer(audio=True))
        await media.open("r", "main", "alice")
        answer = await media.offer("alice", await peer.offer())
        assert {host for host, _ in candidates(answer)} == {"127.0.0.1"}
        assert "c=IN IP4 127.0.0.1" in answer


async def test_ports_come_from_the_configured_range_until_it_is_used_up() -> None:
    low, high = free_range(3)
    async with running_media(rtc_ports=(low, high)) as (media, _):
        ports = []
        for n in range(3):
            peer = tracked(SyntheticPeer(audio=True))
            await media.open("r", "main", f"p{n}")
            answer = await media.offer(f"p{n}", await peer.offer())
            ports += [port for _, port in candidates(answer)]
        assert sorted(ports) == list(range(low, high + 1))
        await media.open("r", "main", "late")
        with pytest.raises(MediaError) as info:
            await media.offer("late", await tracked(SyntheticPeer(audio=True)).offer())
        assert info.value.code == "unavailable"
        assert media.stats()["transports"] == 3


async def test_the_announced_address_replaces_ours_in_the_answer() -> None:
    async with running_media(announced_ip="203.0.113.7") as (media, _):
        await media.open("r", "main", "alice")
        answer = await media.offer("alice", await tracked(SyntheticPeer(audio=True)).offer())
        assert {host for host, _ in candidates(answer)} == {"203.0.113.7"}
        assert "c=IN IP4 203.0.113.7" in answer and "127.0.0.1" not in answer


async def test_a_fingerprint_mismatch_fails_without_srtp_keys() -> None:
    async with running_media() as (media, events):
        peer = tracked(SyntheticPeer(audio=True))
        await media.open("r", "main", "alice")
        offer = await peer.offer()
        good = parse_offer(offer).fingerprints[0][1]
        forged = offer.replace(good, ":".join(["00"] * 32))
        with contextlib.suppress(ConnectionError, TimeoutError):
            # The client's own check passes (our fingerprint is right), so it may key.
            await peer.connect(await media.offer("alice", forged))
        await eventually(lambda: ("alice", "connect_failed") in events.closed, what="failure")
        assert media.participants["alice"].transport is None  # still admitted, no keys
        assert media.stats()["rtp_in"] == 0


async def test_dtls_from_an_address_ice_did_not_validate_is_ignored() -> None:
    async with running_media() as (media, _):
        peer = tracked(SyntheticPeer(audio=True))
        await media.open("r", "main", "alice")
        answer = await media.offer("alice", await peer.offer())
        port = candidates(answer)[0][1]
        hello = bytes.fromhex("16feff0000000000000000002e010000220000000000000022fefd") + bytes(32)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as intruder:
            for _ in range(5):
                intruder.sendto(hello, ("127.0.0.1", port))
        await peer.connect(answer)  # the real handshake still succeeds
        # Counted by alice's transport (its own socket) or by the shared socket.
        assert media.stats()["foreign_source"] >= 5


async def test_an_ice_restart_keeps_the_slots_and_media_flowing() -> None:
    async with running_media() as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        bob = await join(media, "bob", SyntheticPeer(audio_slots=1, video_slots=1))
        pump = Pump(alice).start()
        try:
            await eventually(lambda: bob.transport.received > 20, what="media at bob")
            ssrcs = bob.slot_ssrcs()
            bob.close()
            again = tracked(SyntheticPeer(audio_slots=1, video_slots=1))
            await again.connect(await media.offer("bob", await again.offer()))
            assert again.slot_ssrcs() == ssrcs
            await eventually(lambda: again.transport.received > 20, what="media after restart")
            assert events.who("bob") == ["alice", "alice"]
        finally:
            await pump.stop()


async def test_a_peer_that_hangs_up_loses_its_transport_but_not_its_admission() -> None:
    async with running_media() as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True))
        await alice.hang_up()
        await eventually(lambda: ("alice", "transport_failed") in events.closed, what="loss")
        assert "alice" in media.participants
        again = tracked(SyntheticPeer(audio=True))
        await again.connect(await media.offer("alice", await again.offer()))
        assert media.participants["alice"].transport is not None


async def test_a_transport_that_never_connects_is_closed_after_the_timeout() -> None:
    async with running_media(connect_timeout_s=0.5) as (media, events):
        await media.open("r", "main", "alice")
        await media.offer("alice", await tracked(SyntheticPeer(audio=True)).offer())
        await eventually(lambda: ("alice", "connect_failed") in events.closed, what="timeout")
        assert media.participants["alice"].transport is None
        assert media.stats()["transports"] == 0


async def test_trickled_candidates_are_used_and_bad_ones_refused() -> None:
    async with running_media() as (media, _):
        peer = tracked(SyntheticPeer(audio=True))
        await media.open("r", "main", "alice")
        offer = await peer.offer()
        ours = [line for line in offer.split("\r\n") if line.startswith("a=candidate:")]
        without = "\r\n".join(line for line in offer.split("\r\n") if line not in ours)
        answer = await media.offer("alice", without)
        for line in ours:
            await media.candidate("alice", line[2:], "0", 0)
        await media.candidate("alice", "", None, None)  # end of candidates
        with pytest.raises(MediaError) as info:
            await media.candidate("alice", "candidate:nonsense", "0", 0)
        assert info.value.code == "bad_request"
        await peer.connect(answer)
        remote = media.participants["alice"].transport._ice.remote_candidates  # type: ignore[union-attr]
        assert any(c.type == "host" and c.host == "127.0.0.1" for c in remote)
