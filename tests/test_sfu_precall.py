"""The pre-call echo: your own media back, statistics every second, a time limit."""

from __future__ import annotations

import pytest

from sfu.control import MediaError
from sfu.packet.rtcp import ReportBlock, SenderReport, build_rr
from sfu.packet.rtp import parse_rtp
from tests.sfu_live import Pump, eventually, join, running_media, tracked
from tests.synthetic_peer import SyntheticPeer

pytestmark = pytest.mark.slow


async def echo_peer(media, pid: str) -> SyntheticPeer:  # type: ignore[no-untyped-def]
    peer = tracked(
        SyntheticPeer(audio=True, video=True, audio_slots=1, video_slots=1, decrypt_every=1)
    )
    await media.open_precall(pid)
    await peer.connect(await media.offer(pid, await peer.offer()))
    return peer


async def test_a_precall_session_gets_its_own_media_back() -> None:
    async with running_media() as (media, events):
        peer = await echo_peer(media, "p1")
        pump = Pump(peer).start()
        try:
            await eventually(lambda: events.who("p1") == ["p1", "p1"], what="self in both slots")
            sent = pump.payloads
            await eventually(
                lambda: (
                    sum(1 for p in peer.sink.rtp if p[parse_rtp(p).payload_offset :] in sent) > 20
                ),
                what="echoed packets",
            )
        finally:
            await pump.stop()


async def test_precall_stats_arrive_about_once_a_second() -> None:
    async with running_media(precall_stats_interval_s=0.3) as (media, events):
        peer = await echo_peer(media, "p1")
        pump = Pump(peer).start()
        try:
            await eventually(lambda: len(events.precall) >= 3, what="three reports")
            pid, stats = events.precall[-1]
            assert pid == "p1" and stats["bitrate_kbps"] > 10
            assert 0.0 <= stats["loss"] <= 1.0

            # the client's receiver report about an echoed stream gives the round trip
            def srs() -> list[SenderReport]:  # the pump reads the peer's RTCP
                return [i for i in pump.rtcp if isinstance(i, SenderReport)]

            await eventually(srs, what="an SR for an echoed stream")
            sr = srs()[-1]
            block = ReportBlock(sr.ssrc, 0, 0, 1, 48, (sr.ntp >> 16) & 0xFFFFFFFF, 0)
            peer.transport.send_rtcp(build_rr(5, [block]))
            await eventually(lambda: events.precall[-1][1]["rtt_ms"] is not None, what="an RTT")
            rtt_ms = events.precall[-1][1]["rtt_ms"]
            assert rtt_ms is not None and rtt_ms < 5000
        finally:
            await pump.stop()


async def test_a_precall_session_ends_by_itself() -> None:
    async with running_media(precall_max_s=0.5) as (media, events):
        peer = await echo_peer(media, "p1")
        await eventually(lambda: ("p1", "precall_timeout") in events.closed, what="the end")
        assert "p1" not in media.participants
        assert peer
        with pytest.raises(MediaError):
            await media.offer("p1", await tracked(SyntheticPeer(audio=True)).offer())


async def test_a_precall_session_never_sees_a_room() -> None:
    async with running_media() as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        pump = Pump(alice).start()
        peer = await echo_peer(media, "p1")
        try:
            await eventually(lambda: events.who("p1") == ["p1", "p1"], what="the echo")
            await eventually(lambda: pump.peer.transport.counters.rtp_out > 60, what="alice sends")
            assert events.who("p1") == ["p1", "p1"]
            echoed = [p[parse_rtp(p).payload_offset :] for p in peer.sink.rtp]
            assert not set(echoed) & pump.payloads
            with pytest.raises(MediaError):
                await media.move("p1", "main")
        finally:
            await pump.stop()
