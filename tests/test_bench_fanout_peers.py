"""The fan-out benchmark's clients through a live SFU: simulcast with L1T3 and transport-cc.

bench/media_fanout.py measures the SFU's cost with these peers, so they must
do what browsers do: the publisher's layers carry Chromium's temporal layer
numbering, and a peer that negotiated transport-cc numbers what it sends and
sends feedback the SFU reads into its estimator.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.sfu_live import eventually, join, running_media
from tests.simulcast_live import Received, SimulcastPump, encode_layers
from tests.synthetic_peer import TWCC_ID, SyntheticPeer, _find_extension

pytestmark = pytest.mark.slow


async def test_transport_cc_peers_feed_the_estimators_and_l1t3_reaches_the_subscriber() -> None:
    encoded = encode_layers()
    async with running_media() as (media, _):
        alice = await join(
            media,
            "alice",
            SyntheticPeer(video=True, simulcast=("q", "h", "f"), transport_cc=True),
        )
        bob = await join(
            media, "bob", SyntheticPeer(video_slots=1, decrypt_every=1, transport_cc=True)
        )
        pump = SimulcastPump(alice, encoded, temporal_layers=3).start()
        subscriber = media.participants["bob"]
        publisher = media.participants["alice"]
        try:
            await eventually(
                lambda: subscriber.counters.twcc_feedback_in >= 5,
                what="bob's transport-cc feedback read by the SFU",
            )
            await eventually(
                lambda: publisher.counters.twcc_feedback_out >= 5,
                what="transport-cc feedback to alice",
            )
            await eventually(lambda: len(bob.sink.rtp) > 100, what="100 packets at bob")
            # TIDs 1 and 2 are upgrades: they wait for a measured estimate (the first
            # probe's answer, sfu.policy.allocation), so bob gets TID 0 first.
            await eventually(
                lambda: _tids(bob, pump) == {0, 1, 2}, timeout=10.0, what="all three TIDs at bob"
            )
        finally:
            await pump.stop()
        assert subscriber.estimator is not None and subscriber.estimator.estimate_bps > 0
        assert bob.feedback_sent >= 5
        # Every packet bob got carries the SFU's transport-wide number, consecutive per packet.
        numbers = [
            (p[at] << 8) | p[at + 1]
            for p in bob.sink.rtp
            if (at := _find_extension(p, TWCC_ID, 2)) >= 0
        ]
        assert len(numbers) == len(bob.sink.rtp) > 100
        assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(numbers))
        # The top layer's L1T3 numbering arrives: TIDs 0, 2, 1, 2; TL0PICIDX counts TID 0 frames.
        frames = _frames(bob, pump)
        assert {d.tid for d in frames} == {0, 1, 2}
        for a, b in itertools.pairwise(frames):
            assert (b.tl0picidx - a.tl0picidx) & 0xFF == (1 if b.tid == 0 else 0)


def _frames(bob: SyntheticPeer, pump: SimulcastPump) -> list[Any]:
    """The VP8 descriptors of the frames' first packets bob got in his slot."""
    starts = [p.desc for p in Received(bob, bob.slot_ssrcs()["0"], pump).packets]
    return [d for d in starts if d.frame_start]


def _tids(bob: SyntheticPeer, pump: SimulcastPump) -> set[int]:
    return {d.tid for d in _frames(bob, pump)}
