"""Simulcast through a live SFU: a publisher sends three real VP8 layers, a subscriber switches."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from tests.pool_live import Reoffering, running_pool
from tests.sfu_live import eventually, join, running_media
from tests.simulcast_live import SIZES, Received, SimulcastPump, encode_layers
from tests.synthetic_peer import SyntheticPeer

pytestmark = pytest.mark.slow


def continuous(values: list[int], modulo: int) -> bool:
    return all((b - a) % modulo == 1 for a, b in itertools.pairwise(values))


async def test_a_subscriber_switches_layers_at_key_frames_and_keeps_decoding() -> None:
    encoded = encode_layers()
    async with running_media() as (media, _):
        alice = await join(media, "alice", SyntheticPeer(video=True, simulcast=("q", "h", "f")))
        bob = await join(media, "bob", SyntheticPeer(video_slots=1, decrypt_every=1))
        pump = SimulcastPump(alice, encoded).start()
        try:
            track = media.participants["alice"].producers["0"]
            await eventually(
                lambda: all(layer.frame_size for layer in track.layers), what="three layers"
            )
            assert [layer.rid for layer in track.layers] == ["q", "h", "f"]
            assert [layer.frame_size for layer in track.layers] == list(SIZES.values())
            assert len({layer.ssrc for layer in track.layers}) == 3  # learned from the RID
            ssrc = bob.slot_ssrcs()["0"]

            def got(layer: str, frames: int) -> bool:  # the last `frames` frames are `layer`
                last = Received(bob, ssrc, pump).layers()[-frames:]
                return len(last) == frames and all(x == layer for x in last)

            # No tile size reported, the room table's budget: the top layer.
            await eventually(lambda: got("f", 20), what="the highest layer at bob")

            # The allocator follows the tile: a quarter-size tile gets q, a half-size one h.
            consumer = media.participants["bob"].consumers["0"]
            await media.video_sizes("bob", {"0": list(SIZES["q"])})
            await eventually(lambda: got("q", 20), what="the lowest layer at bob")
            assert consumer.layers_now[0] == 0

            await media.video_sizes("bob", {"0": list(SIZES["h"])})
            await eventually(lambda: got("h", 20), timeout=8, what="the middle layer at bob")
        finally:
            await pump.stop()
        received = Received(bob, ssrc, pump)
        layers = received.layers()
        # Only the chosen layer's frames, one run per layer, each begun by a key frame.
        runs = [x for i, x in enumerate(layers) if i == 0 or layers[i - 1] != x]
        # The publisher starts with bob: for a moment its first key frames make f's
        # measured rate too big for f thinned by one TID (allocation.THINNED_TIDS),
        # and bob may begin on h; then the three switches of the test.
        assert runs in (["f", "q", "h"], ["h", "f", "q", "h"])
        frames = received.frames()
        starts = [i for i in range(1, len(frames)) if layers[i] != layers[i - 1]]
        assert all(frames[i][0].desc.keyframe for i in [0, *starts])
        # One continuous stream: sequence numbers, picture ids, TL0PICIDX, time.
        assert continuous([p.sequence for p in received.packets], 0x10000)
        assert bob.transport.streams[ssrc].lost == 0
        heads = [f[0] for f in frames]
        assert continuous([p.desc.picture_id for p in heads], 0x8000)
        assert continuous([p.desc.tl0picidx for p in heads], 0x100)
        steps = [(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(heads)]
        assert all(0 < step < 90000 for step in steps)  # forward, never a jump back
        # Every frame decodes, at the size of its layer, across both switches.
        sizes = received.decoded_sizes()
        assert len(sizes) == len(frames)
        assert sizes == [SIZES[layer] for layer in layers if layer is not None]


async def test_a_publisher_without_simulcast_keeps_one_layer() -> None:
    async with running_media() as (media, _):
        await join(media, "alice", SyntheticPeer(video=True))
        track = media.participants["alice"].producers["0"]
        assert track.layers == (track,) and track.rid is None and track.track is track


async def test_loss_on_a_layer_is_nacked_by_its_ssrc_and_repaired_by_its_rtx() -> None:
    async with running_media() as (media, _):
        alice = await join(media, "alice", SyntheticPeer(video=True, simulcast=("q", "h", "f")))
        pump = SimulcastPump(alice, encode_layers()).start()
        try:
            track = media.participants["alice"].producers["0"]
            await eventually(lambda: all(p.frame_size for p in track.layers), what="layers")
            h = next(p for p in track.layers if p.rid == "h")
            pump.lose["h"] = 2
            await eventually(lambda: len(pump.nacked["h"]) >= 2, what="a NACK for h's SSRC")
            assert pump.nacked["q"] == pump.nacked["f"] == []
            await eventually(lambda: h.rtx_ssrc is not None, what="h's RTX SSRC learned")
            assert h.rtx_ssrc == alice.layer_rtx_ssrcs["h"]  # by the repaired RID
            await eventually(lambda: h.stats.lost == 0, what="the loss repaired")
            assert media.participants["alice"].by_rtx_ssrc[alice.layer_rtx_ssrcs["h"]] is h
        finally:
            await pump.stop()


async def test_thumbnails_get_the_lowest_layer_and_the_stage_the_highest() -> None:
    encoded = encode_layers()
    async with running_media(stage_video_slots=1) as (media, events):
        alice = await join(media, "alice", SyntheticPeer(video=True, simulcast=("q", "h", "f")))
        carol = await join(media, "carol", SyntheticPeer(video=True, simulcast=("q", "h", "f")))
        await join(media, "bob", SyntheticPeer(video_slots=2, decrypt_every=1))
        pumps = [SimulcastPump(alice, encoded).start(), SimulcastPump(carol, encoded).start()]
        try:
            await eventually(lambda: None not in events.who("bob", "video"), what="both seen")
            consumers = media.participants["bob"].consumers
            await eventually(
                lambda: sorted(c.layers_now[0] or 0 for c in consumers.values()) == [0, 2],
                timeout=8,
                what="one on stage (f), one thumbnail (q)",
            )
            assert not any(c.thumbnail for c in consumers.values())  # not key frames only
        finally:
            for pump in pumps:
                await pump.stop()


async def test_a_simulcast_publisher_reaches_a_subscriber_on_another_worker() -> None:
    encoded = encode_layers()
    async with running_pool(max_participants=2) as (pool, events):
        publisher = Reoffering(pool, events, "pub", video=True, simulcast=("q", "h", "f"))
        clients = [
            Reoffering(pool, events, pid, video_slots=1, decrypt_every=1) for pid in ("near", "far")
        ]
        pump = None
        try:
            await publisher.join()
            for client in clients:
                await client.join()
            assert {p: s.worker for p, s in pool.seats.items()} == {"pub": 0, "near": 0, "far": 1}
            running = pump = SimulcastPump(publisher.peer, encoded).start()
            near, far = clients[0].peer, clients[1].peer

            def got(peer: SyntheticPeer) -> list[str | None]:
                return Received(peer, peer.slot_ssrcs()["0"], running).layers()

            await eventually(lambda: got(far).count("f") >= 20, 15, "f across the relay")
            await eventually(lambda: got(near).count("f") >= 20, 5, "f on the origin worker")
            received = Received(far, far.slot_ssrcs()["0"], pump)
            # The layers were told apart over there too: the allocator may start on a
            # lower one while the rates are not measured yet, then every frame decodes at
            # the size of its layer.
            layers = received.layers()
            assert layers[-20:] == ["f"] * 20 and None not in layers
            sizes = received.decoded_sizes()
            assert sizes == [SIZES[layer] for layer in layers if layer is not None]
            assert far.transport.streams[far.slot_ssrcs()["0"]].lost == 0
        finally:
            if pump is not None:
                await pump.stop()
            for client in [publisher, *clients]:
                await client.close()


async def test_a_renegotiation_keeps_the_layers_and_their_learned_ssrcs() -> None:
    async with running_media() as (media, _):
        alice = await join(media, "alice", SyntheticPeer(video=True, simulcast=("q", "h", "f")))
        pump = SimulcastPump(alice, encode_layers()).start()
        try:
            track = media.participants["alice"].producers["0"]
            await eventually(lambda: all(p.ssrc for p in track.layers), what="SSRCs learned")
            layers = track.layers
            await media.offer("alice", await alice.offer())  # the same m-lines again
            assert media.participants["alice"].producers["0"] is track
            assert track.layers == layers and all(p.ssrc for p in layers)
        finally:
            await pump.stop()


async def test_the_layer_trace_shows_each_slot_and_layer_of_a_simulcast_track(
    tmp_path: Path,
) -> None:
    encoded = encode_layers()
    async with running_media(layer_trace=str(tmp_path)) as (media, _):
        alice = await join(media, "alice", SyntheticPeer(video=True, simulcast=("q", "h", "f")))
        await join(media, "bob", SyntheticPeer(video_slots=1, decrypt_every=1))
        pump = SimulcastPump(alice, encoded).start()
        try:
            consumer = media.participants["bob"].consumers["0"]
            await eventually(lambda: consumer.layers_now[0] == 2, what="the top layer at bob")
            await eventually(lambda: consumer.packets_sent > 30, what="packets to bob")
            lines_before = len(trace_lines(tmp_path))
            await eventually(
                lambda: len(trace_lines(tmp_path)) > lines_before + 2, what="more ticks"
            )
            top = media.participants["alice"].producers["0"].layers[2]
        finally:
            await pump.stop()
    last = trace_lines(tmp_path)[-1]
    (slot,) = [s for s in last["slots"] if s[0] == "bob"]
    # subscriber, mid, publisher, source, pending, wanted spatial/temporal, cut, mapped
    assert slot[:5] == ["bob", "0", "alice", 2, None]
    assert 30 < slot[10] <= consumer.packets_sent  # packets out (the pump ran a moment more)
    assert slot[11] == consumer.switches >= 1
    assert 0 <= slot[12] <= consumer.unfilled  # NACKed numbers without a copy (so far)
    layers = {row[3]: row for row in last["layers"] if row[0] == "alice"}
    assert sorted(layers) == ["f", "h", "q"]
    assert [layers[rid][2] for rid in ("q", "h", "f")] == [0, 1, 2]
    assert layers["f"][4] >= top.stats.received - 60  # packets in (a tick or two behind)
    assert layers["f"][5] == top.keyframes >= 1  # key frames in
    assert layers["f"][6] == top.keyframe_requests  # key frame requests out
    assert layers["f"][7] == 1  # bob's slot
    # bob's link: estimate, bytes sent, padding bytes, retransmitted, key frame requests in,
    # bursts paced, packets held, longest hold ms (no estimate, no REMB: nothing paced),
    # key frames asked for packets lost for good (none lost on loopback), probe results
    # (none without an estimator)
    (bob,) = [e for e in last["estimates"] if e[0] == "bob"]
    assert len(bob) == 11 and bob[1] is None  # no transport-cc: no estimator
    assert bob[2] >= 30 * 100  # at least the packets above went out
    assert bob[3] >= 0 and bob[4] >= 0 and bob[5] >= 0
    assert bob[6:] == [0, 0, 0, 0, []]


def trace_lines(directory: Path) -> list[dict[str, Any]]:
    (path,) = directory.glob("layer-trace-*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line]
