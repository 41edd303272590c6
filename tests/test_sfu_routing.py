"""Routing through a live SFU with synthetic peers: switches, pins, RTCP paths, moves."""

from __future__ import annotations

import asyncio
import time

import pytest

from sfu.packet.rtcp import (
    Nack,
    Remb,
    SenderReport,
    build_nack,
    build_pli,
    build_remb,
    parse_rtcp,
    time_from_ntp,
)
from sfu.packet.rtp import parse_rtp
from sfu.packet.rtx import parse_rtx
from tests.sfu_live import Pump, eventually, join, running_media
from tests.synthetic_peer import SyntheticPeer

pytestmark = pytest.mark.slow


def rtp_from(peer: SyntheticPeer, ssrc: int) -> list[bytes]:
    return [p for p in peer.sink.rtp if int.from_bytes(p[8:12], "big") == ssrc]


def vp8_of(packet: bytes) -> bytes:
    rtp = parse_rtp(packet)
    return packet[rtp.payload_offset : rtp.payload_offset + rtp.payload_length]


def frame_start(packet: bytes) -> bool:
    return bool(vp8_of(packet)[0] & 0x10)  # the descriptor's S bit


def keyframe_start(packet: bytes) -> bool:
    return vp8_of(packet)[4] & 0x01 == 0  # the VP8 header's P bit (after a 4-byte descriptor)


async def test_the_video_slot_follows_the_dominant_speaker_without_gaps() -> None:
    async with running_media() as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        carol = await join(media, "carol", SyntheticPeer(audio=True, video=True))
        bob = await join(media, "bob", SyntheticPeer(audio_slots=1, video_slots=1, decrypt_every=1))
        pumps = [Pump(alice, level=10).start(), Pump(carol, level=110).start()]
        try:
            await eventually(lambda: ("r", "main", "alice") in events.speakers, what="alice")
            await eventually(lambda: events.who("bob", "video") == ["alice"], what="bob sees alice")
            pumps[0].level, pumps[1].level = 127, 10
            await eventually(
                lambda: ("r", "main", "carol") in events.speakers, timeout=8, what="carol"
            )
            await eventually(lambda: events.who("bob", "video") == ["carol"], what="bob sees carol")
            ssrc = bob.slot_ssrcs()["1"]
            carol_payloads = pumps[1].payloads
            await eventually(
                lambda: any(
                    p[parse_rtp(p).payload_offset :] in carol_payloads for p in rtp_from(bob, ssrc)
                ),
                what="carol's packets in bob's video slot",
            )
            stream = bob.transport.streams[ssrc]
            assert stream.lost == 0  # one sequence space across the switch
        finally:
            for pump in pumps:
                await pump.stop()


async def test_a_pinned_participant_stays_in_view() -> None:
    async with running_media() as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        carol = await join(media, "carol", SyntheticPeer(audio=True, video=True))
        await join(media, "bob", SyntheticPeer(video_slots=1))
        pumps = [Pump(alice, level=10).start(), Pump(carol, level=120).start()]
        try:
            await media.pin("bob", "carol")
            assert events.who("bob", "video") == ["carol"]
            await eventually(lambda: ("r", "main", "alice") in events.speakers, what="alice")
            assert events.who("bob", "video") == ["carol"]
            await media.pin("bob", None)
            await eventually(lambda: events.who("bob", "video") == ["alice"], what="unpinned")
        finally:
            for pump in pumps:
                await pump.stop()


async def test_key_frame_requests_from_many_subscribers_are_coalesced() -> None:
    async with running_media(keyframe_min_interval_s=0.5) as (media, _):
        alice = await join(media, "alice", SyntheticPeer(video=True))
        pump = Pump(alice).start()
        subs = [await join(media, f"s{n}", SyntheticPeer(video_slots=1)) for n in range(3)]
        try:
            await eventually(lambda: all(s.transport.streams for s in subs), what="video at subs")
            await asyncio.sleep(0.6)  # past the coalescing window of the joins' requests
            before, start = pump.keyframe_requests, time.monotonic()
            while time.monotonic() - start < 1.2:
                for sub in subs:
                    sub.transport.send_rtcp(build_pli(1, sub.slot_ssrcs()["0"]))
                await asyncio.sleep(0.1)  # pacing the PLI storm, not waiting for a result
            await asyncio.sleep(0.1)
            got = pump.keyframe_requests - before
            assert 2 <= got <= 3  # 36 PLIs over 1.2 s -> one per 0.5 s
        finally:
            await pump.stop()


async def test_a_subscriber_nack_is_answered_with_rtx() -> None:
    async with running_media() as (media, _):
        alice = await join(media, "alice", SyntheticPeer(video=True))
        bob = await join(media, "bob", SyntheticPeer(video_slots=1, decrypt_every=1))
        pump = Pump(alice).start()
        try:
            ssrc = bob.slot_ssrcs()["0"]
            await eventually(lambda: len(rtp_from(bob, ssrc)) >= 6, what="video at bob")
            wanted = parse_rtp(rtp_from(bob, ssrc)[3])
            original = rtp_from(bob, ssrc)[3]
            bob.transport.send_rtcp(build_nack(1, ssrc, [wanted.sequence]))
            assert bob.answer is not None
            rtx_ssrc = next(s.ssrc for m in bob.answer.media for s in m.ssrc if s.ssrc != ssrc)

            def answered() -> bool:
                for packet in rtp_from(bob, rtx_ssrc):
                    header = parse_rtp(packet)
                    osn, unwrapped = parse_rtx(packet, header, ssrc=ssrc, payload_type=96)
                    if osn == wanted.sequence:
                        return unwrapped[12:] == original[12:]
                return False

            await eventually(answered, what="the RTX answer")
            assert media.stats()["retransmitted"] >= 1
        finally:
            await pump.stop()


async def test_a_nack_for_more_than_the_link_has_room_for_gets_a_key_frame_not_resends() -> None:
    # bob's REMB says 100 kbit/s: 30 lost packets (~10 kB) would take the resend budget
    # (0.3 x it) far over the second after which a key frame repairs sooner.
    async with running_media() as (media, _):
        alice = await join(media, "alice", SyntheticPeer(video=True))
        bob = await join(media, "bob", SyntheticPeer(video_slots=1, decrypt_every=1))
        pump = Pump(alice).start()
        try:
            ssrc = bob.slot_ssrcs()["0"]
            # 90 packets a second: the slot's first key frame is over 2 s old (before that a
            # loss is most likely of that key frame, which is resent instead).
            await eventually(
                lambda: len(rtp_from(bob, ssrc)) >= 220, timeout=8, what="2.4 s of video at bob"
            )
            bob.transport.send_rtcp(build_remb(bob.rtcp_ssrc, 100_000, [ssrc]))
            await eventually(
                lambda: media.participants["bob"].remb_estimate == 100_000, what="the REMB"
            )
            before, seen = pump.keyframe_requests, len(rtp_from(bob, ssrc))
            lost = [parse_rtp(p).sequence for p in rtp_from(bob, ssrc)[-30:]]
            bob.transport.send_rtcp(build_nack(1, ssrc, lost))
            await eventually(lambda: pump.keyframe_requests > before, what="a key frame request")
            await eventually(
                lambda: any(keyframe_start(p) for p in rtp_from(bob, ssrc)[seen:]),
                what="the key frame at bob",
            )
            assert bob.answer is not None
            rtx_ssrc = next(s.ssrc for m in bob.answer.media for s in m.ssrc if s.ssrc != ssrc)
            assert rtp_from(bob, rtx_ssrc) == []
            assert media.stats()["retransmitted"] == 0
        finally:
            await pump.stop()


async def test_loss_on_the_way_in_is_nacked_to_the_publisher() -> None:
    async with running_media() as (media, _):
        alice = await join(media, "alice", SyntheticPeer(video=True))
        await join(media, "bob", SyntheticPeer(video_slots=1))
        pump = Pump(alice, video=False).start()
        try:
            pump.send_frame(1, keyframe=True)
            alice.seq["video"] = (alice.seq["video"] + 2) & 0xFFFF  # two packets never sent
            pump.send_frame(2, keyframe=False)
            await eventually(lambda: pump.nacks, what="a NACK from the SFU")
            assert len(pump.nacks[0]) == 2
            assert any(isinstance(i, Nack) for i in pump.rtcp)
            assert media.stats()["nacks_sent"] >= 1
        finally:
            await pump.stop()


async def test_sender_reports_map_the_publishers_clock_to_each_consumer() -> None:
    async with running_media() as (media, _):
        alice = await join(media, "alice", SyntheticPeer(audio=True))
        bob = await join(media, "bob", SyntheticPeer(audio_slots=1, decrypt_every=1))
        pump = Pump(alice, video=False).start()  # sends SRs like a browser
        try:
            ssrc = bob.slot_ssrcs()["0"]

            def srs() -> list[SenderReport]:
                items = [i for p in bob.sink.rtcp for i in parse_rtcp(p)]
                return [i for i in items if isinstance(i, SenderReport) and i.ssrc == ssrc]

            await eventually(srs, timeout=5, what="an SR for bob's slot")
            sr = srs()[-1]
            forwarded = rtp_from(bob, ssrc)[-1]
            h = parse_rtp(forwarded)
            offset = h.timestamp - pump.audio_timestamps[forwarded[h.payload_offset :]]
            # what alice's clock said at the SR's NTP time, from alice's own SRs
            at = time_from_ntp(sr.ntp)
            wall, _, alice_ts = max(s for s in pump.srs_sent if s[0] <= at)
            expected = alice_ts + int((at - wall) * 48000) + offset
            assert abs(((sr.rtp_timestamp - expected + 2**31) % 2**32) - 2**31) < 960 * 3
            assert abs(at - time.time()) < 2  # alice's NTP clock, carried over
        finally:
            await pump.stop()


async def test_publishers_get_a_remb_cap_for_the_room_size() -> None:
    async with running_media() as (media, _):
        alice = await join(media, "alice", SyntheticPeer(video=True))
        await join(media, "bob", SyntheticPeer(video_slots=1))
        pump = Pump(alice).start()
        try:
            await eventually(
                lambda: any(isinstance(i, Remb) for i in pump.rtcp), timeout=5, what="a REMB"
            )
            remb = next(i for i in pump.rtcp if isinstance(i, Remb))
            assert remb.bitrate == 1_500_000 and remb.ssrcs == (alice.video_ssrc,)
        finally:
            await pump.stop()


async def test_move_changes_whom_you_receive_without_renegotiation() -> None:
    async with running_media() as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        carol = await join(media, "carol", SyntheticPeer(audio=True, video=True), group="b1")
        bob = await join(media, "bob", SyntheticPeer(audio_slots=1, video_slots=1, decrypt_every=1))
        pumps = [Pump(alice).start(), Pump(carol).start()]
        try:
            await eventually(lambda: events.who("bob") == ["alice", "alice"], what="main room")
            ssrcs = bob.slot_ssrcs()
            await media.move("bob", "b1")
            assert events.who("bob") == ["carol", "carol"]
            assert events.who("alice") == [] or set(events.who("alice")) == {None}
            await eventually(
                lambda: any(p in pumps[1].payloads for p in _payloads(bob)), what="carol's media"
            )
            assert bob.slot_ssrcs() == ssrcs  # same slots, same SSRCs: no new offer
        finally:
            for pump in pumps:
                await pump.stop()


def _payloads(peer: SyntheticPeer) -> list[bytes]:
    return [p[parse_rtp(p).payload_offset :] for p in peer.sink.rtp]


async def test_renegotiating_a_screen_share_keeps_existing_slots() -> None:
    async with running_media() as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        bob = await join(media, "bob", SyntheticPeer(audio_slots=1, video_slots=2))
        await eventually(lambda: events.who("bob") == ["alice", "alice", None], what="slots")
        first_answer_ssrcs = bob.slot_ssrcs()
        offer = await bob.offer()  # the same m-lines again, as a re-offer
        answer = await media.offer("bob", offer)
        assert f"a=ssrc:{first_answer_ssrcs['1']} " in answer
        # alice adds a second video (her screen) with a new offer
        alice.mids.append(("2", "video", "sendonly"))
        second = await alice.offer()
        second = second.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 2")
        await media.offer("alice", second)
        await eventually(
            lambda: events.who("bob") == ["alice", "alice", "alice"], what="screen in a slot"
        )
        assert bob.slot_ssrcs() == first_answer_ssrcs


async def test_a_thumbnail_gets_only_key_frames_about_once_a_second() -> None:
    async with running_media(stage_video_slots=1, thumbnail_refresh_s=0.5) as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        carol = await join(media, "carol", SyntheticPeer(audio=True, video=True))
        bob = await join(media, "bob", SyntheticPeer(video_slots=2, decrypt_every=1))
        pumps = [Pump(alice, level=10).start(), Pump(carol, level=127).start()]
        try:
            await eventually(lambda: ("r", "main", "alice") in events.speakers, what="alice")
            await eventually(lambda: set(events.who("bob")) == {"alice", "carol"}, what="both")
            slots = bob.slot_ssrcs()
            thumb_ssrc = next(
                slots[s["mid"]] for s in events.slots["bob"] if s["participant_id"] == "carol"
            )
            stage_ssrc = next(
                slots[s["mid"]] for s in events.slots["bob"] if s["participant_id"] == "alice"
            )
            before = pumps[1].keyframe_requests

            def frames(ssrc: int) -> set[int]:
                return {parse_rtp(p).timestamp for p in rtp_from(bob, ssrc)}

            await eventually(
                lambda: pumps[1].keyframe_requests - before >= 3 and len(frames(thumb_ssrc)) >= 3,
                15,
                what="carol asked for thumbnail refreshes, and three reach bob",
            )
            thumbnail = rtp_from(bob, thumb_ssrc)
            thumb_frames, stage_frames = frames(thumb_ssrc), frames(stage_ssrc)
            assert all(keyframe_start(p) for p in thumbnail if frame_start(p)), "key frames only"
            stage = rtp_from(bob, stage_ssrc)
            assert not all(keyframe_start(p) for p in stage if frame_start(p)), "the stage: all"
            whole = 3 * len(thumb_frames)
            assert whole - 2 <= len(thumbnail) <= whole, "whole frames (the last may be arriving)"
            # Counted over the same span, so no clock: 30 fps against a refresh or two a second.
            assert len(stage_frames) >= 5 * len(thumb_frames), "the speaker is at full rate"
            assert bob.transport.streams[thumb_ssrc].lost == 0
        finally:
            for pump in pumps:
                await pump.stop()
