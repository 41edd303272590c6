"""ICE restart over a live session: a client whose path died restarts ICE, media resumes.

Real ICE, DTLS and SRTP over loopback: the SFU's `LocalMedia` and synthetic
clients (tests/synthetic_peer.py, the SFU's own transport in the controlling
role).  A "network change" closes the client's sockets (nothing it sent
arrives any more, the SFU's consent checks go unanswered) and the restart
gathers a new socket, so the client comes back from a new address.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiortc import sdp as aiortc_sdp

from sfu.local import LocalMedia
from tests.sfu_live import Pump, eventually, join, received, running_media
from tests.synthetic_peer import SyntheticPeer

MODES = {"single-port": {}, "socket-per-transport": {"rtc_ports": (42000, 42999)}}
# Consent checks every 0.3 s: two misses (the warning) take about 0.6 s, not 10 s.
CONSENT = {"consent_interval_s": 0.3}


def ufrags(media: LocalMedia) -> set[str]:
    return {u for mux in media.muxes for u in mux.by_ufrag}


def answer_ufrag(answer: str) -> str:
    return next(line for line in answer.splitlines() if line.startswith("a=ice-ufrag:"))[12:]


@pytest.mark.parametrize("mode", MODES)
async def test_a_publisher_whose_path_died_restarts_ice_and_keeps_everything(mode: str) -> None:
    settings: dict[str, Any] = {**MODES[mode], **CONSENT}
    async with running_media(**settings) as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        bob = await join(media, "bob", SyntheticPeer(audio_slots=1, video_slots=1))
        pump = Pump(alice).start()
        try:
            await eventually(lambda: received(bob) > 50, 10, "bob gets alice's media")
            sfu_alice = media.participants["alice"]
            transport, producers = sfu_alice.transport, dict(sfu_alice.producers)
            slots = events.slots["bob"]
            history = len(events.slot_history)
            old_ufrag = transport.local("active").ice_ufrag if transport else ""

            alice.cut_path()
            await eventually(lambda: "alice" in events.restarts_needed, 5, "ice_restart_needed")
            before, asked = received(bob), pump.keyframe_requests
            answer = await media.offer("alice", await alice.restart_offer())
            started = time.monotonic()
            await alice.restarted(answer)
            # a key frame is asked for over the new path, so subscribers' pictures come back
            await eventually(lambda: pump.keyframe_requests > asked, 2, "a PLI after the restart")
            await eventually(lambda: received(bob) > before + 50, 5, "media after the restart")
            recovery = time.monotonic() - started

            assert recovery < 2.0, f"media resumed {recovery:.2f} s after the restart answer"
            assert sfu_alice.transport is transport, "the same transport: DTLS and SRTP kept"
            assert sfu_alice.producers == producers
            assert answer_ufrag(answer) != old_ufrag
            assert events.closed == [], "no media_closed: nobody noticed beyond the gap"
            assert events.slots["bob"] == slots
            assert all(pid != "bob" for pid, _ in events.slot_history[history:])
            assert media.stats()["ice_restarts"] == 1
            if mode == "single-port":
                assert ufrags(media) == {
                    answer_ufrag(answer),
                    media.participants["bob"].transport.local("active").ice_ufrag,  # type: ignore[union-attr]
                }, "the old ufrag is gone from the shared socket"
        finally:
            await pump.stop()


async def test_a_subscriber_that_restarts_gets_its_slots_without_renegotiating() -> None:
    async with running_media(**CONSENT) as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        bob = await join(media, "bob", SyntheticPeer(audio_slots=1, video_slots=1))
        pump = Pump(alice).start()
        try:
            await eventually(lambda: received(bob) > 50, 10, "bob gets alice's media")
            ssrcs = bob.slot_ssrcs()
            bob.cut_path()
            await eventually(lambda: "bob" in events.restarts_needed, 5, "ice_restart_needed")
            answer = await media.offer("bob", await bob.restart_offer())
            before = received(bob)
            await bob.restarted(answer)
            await eventually(lambda: received(bob) > before + 50, 5, "media after the restart")
            bob.answer = aiortc_sdp.SessionDescription.parse(answer)
            assert bob.slot_ssrcs() == ssrcs, "the same slots, the same SSRCs"
            assert events.closed == []
        finally:
            await pump.stop()


async def test_a_restart_whose_checks_never_succeed_leaves_the_old_path_working() -> None:
    async with running_media() as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        bob = await join(media, "bob", SyntheticPeer(audio_slots=1, video_slots=1))
        pump = Pump(alice).start()
        try:
            await eventually(lambda: received(bob) > 50, 10, "bob gets alice's media")
            offer = await alice.restart_offer()
            await media.offer("alice", offer)  # the client never applies the answer
            transport = media.participants["alice"].transport
            assert transport is not None and transport.restarting
            before = received(bob)
            await eventually(lambda: received(bob) > before + 50, 5, "the old path still carries")
            assert events.closed == []
        finally:
            await pump.stop()


async def test_a_client_that_never_restarts_loses_its_transport_when_consent_expires() -> None:
    async with running_media(**CONSENT) as (media, events):
        alice = await join(media, "alice", SyntheticPeer(audio=True, video=True))
        pump = Pump(alice).start()
        try:
            await eventually(lambda: media.stats()["rtp_in"] > 20, 10, "alice's media")
            alice.cut_path()
            await eventually(lambda: "alice" in events.restarts_needed, 5, "ice_restart_needed")
            warned = time.monotonic()
            # 6 intervals (1.8 s here, 30 s by default) after the last answered check
            await eventually(lambda: ("alice", "transport_failed") in events.closed, 10, "expiry")
            assert time.monotonic() - warned > 0.5, "not expired at the first warning"
            assert events.restarts_needed == ["alice"], "one warning per outage"
            assert "alice" in media.participants, "still admitted: it may offer again"
        finally:
            await pump.stop()
