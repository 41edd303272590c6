"""Admission in the media plane: no transport without open, close wins and cuts fast."""

from __future__ import annotations

import asyncio

import pytest

from sfu.control import MediaError
from tests.servers import free_port
from tests.sfu_live import Pump, eventually, join, running_media
from tests.synthetic_peer import SyntheticPeer

pytestmark = pytest.mark.slow


async def refused(call: object) -> str:
    with pytest.raises(MediaError) as info:
        await call  # type: ignore[misc]
    return info.value.code


async def test_an_unopened_participant_gets_no_transport_by_any_call() -> None:
    async with running_media() as (media, _):
        peer = SyntheticPeer(audio=True, video=True)
        offer = await peer.offer()
        try:
            assert await refused(media.offer("mallory", offer)) == "not_admitted"
            candidate = "candidate:1 1 udp 2113937151 127.0.0.1 5000 typ host"
            assert await refused(media.candidate("mallory", candidate, "0", 0)) == "not_admitted"
            assert await refused(media.pin("mallory", "alice")) == "not_admitted"
            assert await refused(media.move("mallory", "b1")) == "not_admitted"
            stats = media.stats()
            assert stats["participants"] == 0 and stats["transports"] == 0
        finally:
            peer.close()
            await peer.transport.wait_closed()


async def test_a_closed_participant_cannot_offer_again() -> None:
    async with running_media() as (media, _):
        await media.open("r", "main", "alice")
        await media.close("alice")
        await media.close("alice")  # idempotent
        peer = SyntheticPeer(audio=True)
        try:
            assert await refused(media.offer("alice", await peer.offer())) == "not_admitted"
            assert media.stats()["transports"] == 0
        finally:
            peer.close()
            await peer.transport.wait_closed()


async def test_close_right_after_open_wins_even_before_the_open_ran() -> None:
    async with running_media() as (media, _):
        opening = asyncio.ensure_future(media.open("r", "main", "alice"))
        closing = asyncio.ensure_future(media.close("alice"))
        await asyncio.gather(opening, closing)
        assert "alice" not in media.participants


async def test_nothing_of_an_offer_survives_a_close_while_it_is_in_flight() -> None:
    # Own sockets per transport: the offer suspends while it binds them.
    port = free_port()
    async with running_media(rtc_ports=(port, port + 20)) as (media, _):
        await media.open("r", "main", "alice")
        peer = SyntheticPeer(audio=True, video=True)
        try:
            offer = media.offer("alice", await peer.offer())
            task = asyncio.ensure_future(offer)
            await asyncio.sleep(0)  # the offer is now binding its sockets
            await media.close("alice")
            with pytest.raises(MediaError) as info:
                await task
            assert info.value.code == "not_admitted"
            await media.drain()
            stats = media.stats()
            assert stats["transports"] == 0 and stats["producers"] == 0
        finally:
            peer.close()
            await peer.transport.wait_closed()


async def test_a_bad_offer_changes_nothing() -> None:
    async with running_media() as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True))
        bob = await join(media, "bob", SyntheticPeer(audio_slots=1))
        pump = Pump(alice, video=False).start()
        try:
            transport = media.participants["bob"].transport
            bad = "v=0\r\nm=audio 1 RTP/AVP 0\r\n"
            assert await refused(media.offer("bob", bad)) == "bad_request"
            assert media.participants["bob"].transport is transport
            count = bob.transport.received
            await eventually(lambda: bob.transport.received > count + 10, what="media goes on")
            assert events.who("bob") == ["alice"]
        finally:
            await pump.stop()


async def test_close_cuts_media_at_once() -> None:
    async with running_media() as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        bob = await join(media, "bob", SyntheticPeer(audio_slots=1, video_slots=1))
        carol = await join(media, "carol", SyntheticPeer(audio_slots=1, video_slots=1))
        pump = Pump(alice).start()
        try:
            await eventually(lambda: bob.transport.received > 20 and carol.transport.received > 20)
            await media.close("bob")
            count, carol_count = bob.transport.received, carol.transport.received
            # The cut is measured in packets, not seconds: carol keeps getting alice's.
            await eventually(lambda: carol.transport.received >= carol_count + 20, what="carol")
            assert bob.transport.received <= count + 2  # at most what was already in flight
            await media.close("alice")
            count, sent = carol.transport.received, len(pump.sent)
            await eventually(lambda: len(pump.sent) >= sent + 30, what="alice keeps sending")
            assert carol.transport.received <= count + 2
            await eventually(lambda: events.who("carol") == [None, None], what="carol's slots")
            assert media.participants.keys() == {"carol"}
        finally:
            await pump.stop()


async def test_close_room_cuts_everyone_in_it_and_no_one_else() -> None:
    async with running_media() as (media, _):
        await join(media, "alice", SyntheticPeer(audio=True), room="r1")
        await join(media, "bob", SyntheticPeer(audio_slots=1), room="r1")
        await join(media, "carol", SyntheticPeer(audio=True), room="r2")
        await media.close_room("r1")
        await media.close_room("r1")
        assert set(media.participants) == {"carol"}
        assert media.stats()["transports"] == 1


async def test_participants_of_other_rooms_are_never_forwarded() -> None:
    async with running_media() as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True), room="r1")
        bob = await join(media, "bob", SyntheticPeer(audio_slots=1, video_slots=1), room="r2")
        pump = Pump(alice).start()
        try:
            await eventually(lambda: pump.peer.transport.counters.rtp_out > 60, what="alice sends")
            assert bob.transport.received == 0
            assert set(events.who("bob")) <= {None}
        finally:
            await pump.stop()


async def test_a_failing_event_listener_does_not_break_the_media_plane() -> None:
    async with running_media() as (media, events):

        def broken(participant_id: str, slots: object, publishers: object) -> None:
            raise RuntimeError("listener bug")

        events.slots_changed = broken  # type: ignore[method-assign]
        alice = await join(media, "alice", SyntheticPeer(audio=True))
        bob = await join(media, "bob", SyntheticPeer(audio_slots=1))
        pump = Pump(alice, video=False).start()
        try:
            await eventually(lambda: bob.transport.received > 10, what="media despite the bug")
            await media.close("alice")
            assert "alice" not in media.participants
        finally:
            await pump.stop()


async def test_on_a_shared_socket_an_offer_binds_nothing_and_a_close_after_it_leaves_nothing() -> (
    None
):
    async with running_media() as (media, _):
        await media.open("r", "main", "alice")
        peer = SyntheticPeer(audio=True, video=True)
        try:
            task = asyncio.ensure_future(media.offer("alice", await peer.offer()))
            await asyncio.sleep(0)  # no socket to bind: the offer has completed
            await media.close("alice")
            assert task.done() and "a=candidate" in task.result()
            await media.drain()
            stats = media.stats()
            assert stats["transports"] == 0 and stats["producers"] == 0
            assert all(not mux.by_ufrag and not mux.by_addr for mux in media.muxes)
        finally:
            peer.close()
            await peer.transport.wait_closed()
