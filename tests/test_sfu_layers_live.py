"""The layer allocator on a live SFU's clock: real VP8 simulcast in, subscribers' budgets and tiles
decide their layers, publishers are told which layers to send, subscribers their downlink."""

from __future__ import annotations

import time

import pytest

from sfu.policy.bitrate import RembTable
from tests.sfu_live import RecordingEvents, eventually, join, running_media, send_remb
from tests.simulcast_live import SIZES, Received, SimulcastPump, encode_layers
from tests.synthetic_peer import SyntheticPeer

pytestmark = pytest.mark.slow

AMPLE: RembTable = ((None, 3_000_000),)  # the room table: 3 Mbit/s per slot


def told(events: RecordingEvents, pid: str, mid: str) -> list[list[str]]:
    return [active for who, m, active in events.layers if (who, m) == (pid, mid)]


async def test_a_low_remb_gets_the_lowest_layer_and_a_big_tile_with_budget_the_top_one() -> None:
    async with running_media(remb_table=AMPLE) as (media, events):
        alice = await join(media, "alice", SyntheticPeer(video=True, simulcast=("q", "h", "f")))
        bob = await join(media, "bob", SyntheticPeer(video_slots=1, decrypt_every=1))
        carol = await join(media, "carol", SyntheticPeer(video_slots=1, decrypt_every=1))
        pump = SimulcastPump(alice, encode_layers()).start()
        try:
            track = media.participants["alice"].producers["0"]
            await eventually(lambda: all(p.frame_size for p in track.layers), what="layers")
            send_remb(bob, 160_000)  # room for q (about 126 kbit/s), not for h (188)
            await media.video_sizes("bob", {"0": [1280, 768]})  # a big tile nonetheless
            await media.video_sizes("carol", {"0": [1280, 768]})
            slots = {pid: media.participants[pid].consumers["0"] for pid in ("bob", "carol")}
            await eventually(
                lambda: (slots["bob"].layers_now[0], slots["carol"].layers_now[0]) == (0, 2),
                timeout=10,
                what="bob on q, carol on f",
            )
            await eventually(lambda: ("bob", 160) in events.downlinks, what="bob's downlink")
            # Bob's tile wants f: that is what its Prober is asked to find room for.
            f_bps = track.layers[2].bitrate_bps(time.monotonic())
            assert media.participants["bob"].desired_bps >= 0.7 * f_bps > 200_000
            assert media.participants["bob"].remb_estimate == 160_000
            ssrcs = {"bob": bob.slot_ssrcs()["0"], "carol": carol.slot_ssrcs()["0"]}

            def frames(pid: str, peer: SyntheticPeer, layer: str) -> int:
                return Received(peer, ssrcs[pid], pump).layers()[-15:].count(layer)

            await eventually(lambda: frames("bob", bob, "q") == 15, what="q frames at bob")
            await eventually(lambda: frames("carol", carol, "f") == 15, what="f at carol")
            # Bob's budget holds: it stays on q (no upgrade attempt past its budget).
            assert slots["bob"].layers_now[0] == 0
        finally:
            await pump.stop()
        # What bob got decodes, at q's size since it was switched.
        sizes = Received(bob, ssrcs["bob"], pump).decoded_sizes()
        assert sizes and sizes[-15:] == [SIZES["q"]] * 15


async def test_nobody_needing_the_top_layer_turns_it_off_at_the_publisher_and_back_on() -> None:
    async with running_media(remb_table=AMPLE) as (media, events):
        alice = await join(media, "alice", SyntheticPeer(video=True, simulcast=("q", "h", "f")))
        bob = await join(media, "bob", SyntheticPeer(video_slots=1, decrypt_every=1))
        pump = SimulcastPump(alice, encode_layers()).start()
        try:
            track = media.participants["alice"].producers["0"]
            await eventually(lambda: all(p.frame_size for p in track.layers), what="layers")
            consumer = media.participants["bob"].consumers["0"]
            await eventually(lambda: consumer.layers_now[0] == 2, what="bob on f")
            assert told(events, "alice", "0") == []  # a new track: all layers, as sent
            # Bob's tile shrinks to q's size: after the 5 s hold only q is needed.
            await media.video_sizes("bob", {"0": list(SIZES["q"])})
            await eventually(
                lambda: told(events, "alice", "0")[-1:] == [["q"]], timeout=10, what="only q"
            )
            pump.paused = {"h", "f"}  # the publisher obeys (the SDK sets encodings' active)
            await eventually(lambda: not track.layers[2].active(time.monotonic()), what="f paused")
            # A big tile again: f is asked for, comes back, and bob switches to it.
            await media.video_sizes("bob", {"0": [1280, 768]})
            await eventually(
                lambda: told(events, "alice", "0")[-1:] == [["q", "h", "f"]],
                timeout=5,
                what="f asked for again",
            )
            pump.paused = set()
            await eventually(lambda: consumer.layers_now[0] == 2, timeout=8, what="bob on f")
            ssrc = bob.slot_ssrcs()["0"]
            await eventually(
                lambda: Received(bob, ssrc, pump).layers()[-10:] == ["f"] * 10,
                what="f frames at bob",
            )
        finally:
            await pump.stop()
