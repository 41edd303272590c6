"""A switch's key frame leaves the live SFU paced to the subscriber's estimate
(sfu.routing.pacedoutput): real VP8 simulcast in over ICE/DTLS-SRTP, a subscriber's
REMB steps it down, and its new layer's key frame reaches it at that rate, whole."""

from __future__ import annotations

import time

import numpy as np
import pytest
from av import VideoFrame

from sfu.policy.bitrate import RembTable
from sfu.policy.pacing import OVERHEAD_BYTES
from sfu.routing.trace import snapshot
from tests.sfu_live import eventually, join, running_media, send_remb
from tests.simulcast_live import Received, SimulcastPump, encode_layers
from tests.synthetic_peer import SyntheticPeer

pytestmark = pytest.mark.slow

AMPLE: RembTable = ((None, 3_000_000),)
REMB_BPS = 800_000  # room for q (about 580 kbit/s of noise), not for h (2.2 Mbit/s)


def noise(width: int, height: int, n: int) -> VideoFrame:
    """Pictures that make key frames of many packets (q's: ~16 kB, 13 packets)."""
    rng = np.random.default_rng(n)
    return VideoFrame.from_ndarray(
        rng.integers(0, 256, (height, width, 3), dtype=np.uint8), format="rgb24"
    )


async def test_a_step_downs_key_frame_reaches_the_subscriber_at_its_estimate_whole() -> None:
    encoded = encode_layers(("q", "h"), picture=noise, bitrates={"q": 300_000, "h": 1_000_000})
    async with running_media(remb_table=AMPLE) as (media, _):
        alice = await join(media, "alice", SyntheticPeer(video=True, simulcast=("q", "h")))
        bob = await join(media, "bob", SyntheticPeer(video_slots=1, decrypt_every=1))
        arrivals: dict[tuple[int, int], float] = {}  # (ssrc, sequence) -> first arrival

        def arrived(data: bytes) -> None:
            key = (int.from_bytes(data[8:12], "big"), int.from_bytes(data[2:4], "big"))
            arrivals.setdefault(key, time.monotonic())

        bob.transport.on_packet = arrived
        pump = SimulcastPump(alice, encoded).start()
        try:
            track = media.participants["alice"].producers["0"]
            await eventually(lambda: all(p.frame_size for p in track.layers), what="layers")
            await media.video_sizes("bob", {"0": [1280, 768]})
            participant = media.participants["bob"]
            consumer = participant.consumers["0"]
            await eventually(lambda: consumer.layers_now[0] == 1, timeout=8, what="bob on h")
            ssrc = bob.slot_ssrcs()["0"]
            send_remb(bob, REMB_BPS)
            await eventually(lambda: consumer.layers_now[0] == 0, timeout=8, what="bob on q")

            def switch_keyframe() -> list[int]:
                frames = Received(bob, ssrc, pump).frames()
                for frame in frames:
                    if frame[0].layer == "q" and frame[0].desc.keyframe:
                        return [p.sequence for p in frame]
                return []

            await eventually(lambda: len(switch_keyframe()) >= 10, what="q's key frame at bob")
            # The burst has left: the slot writes to its transport again.
            await eventually(lambda: consumer.output is participant.transport, what="released")
            # The layer trace says so: a burst paced, its packets held up to ~the rate's time.
            row = next(e for e in snapshot([participant], 0.0)["estimates"] if e[0] == "bob")
            engagements, held, held_ms = row[6:9]
            assert engagements >= 1 and held >= len(switch_keyframe()) - 1 and held_ms >= 100
        finally:
            await pump.stop()
        sequences = switch_keyframe()
        packets = {p.sequence: p for p in Received(bob, ssrc, pump).packets}
        # Whole and in order: consecutive numbers, each arrived once, in sending order.
        assert sequences == [(sequences[0] + i) & 0xFFFF for i in range(len(sequences))]
        times = [arrivals[(ssrc, seq)] for seq in sequences]
        assert times == sorted(times)
        # At the REMB's rate: what followed the first packet took what the rate needs for it
        # (at line rate over loopback the whole frame arrives within a few ms).
        after_first = sum(len(packets[seq].data) + OVERHEAD_BYTES for seq in sequences[1:])
        needs = after_first * 8 / REMB_BPS
        assert needs > 0.12
        assert times[-1] - times[0] >= 0.8 * needs
        assert times[-1] - times[0] <= needs + 0.3
