"""transport-cc with a real Chromium on both sides of the SFU.

The publisher: the SFU sends it transport-cc feedback, so Chromium's own
send-side estimate (getStats `availableOutgoingBitrate`) exists and grows
past its start value.  The subscriber: every packet the SFU sends it carries
the transport's own sequence number, and its feedback comes back as
`PacketResult`s about what the SFU really sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sfu.local import LocalMedia
from sfu.packet.twcc import TWCC_URI
from sfu.transport.sendhistory import Columns
from tests.sfu_live import eventually
from tests.test_sfu_browser import PAGE, alice_and_bob, serving

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OUTGOING = """async () => {
  const stats = await window.pc.getStats();
  let best = 0;
  stats.forEach((r) => {
    if (r.type === "candidate-pair" && r.nominated && r.availableOutgoingBitrate)
      best = Math.max(best, r.availableOutgoingBitrate);
  });
  return best;
}"""
# libwebrtc's default start bitrate for the send-side estimate.
CHROMIUM_START_BPS = 300_000


# A REMB cap far above anything a loopback call reaches: the estimate is Chromium's own.
HIGH_REMB = ((None, 50_000_000),)
MAX_OWN_BPS = 10_000_000


@pytest.fixture
async def site() -> AsyncIterator[tuple[str, LocalMedia]]:
    async with serving(PAGE) as served:
        yield served


@pytest.fixture
async def high_remb_site() -> AsyncIterator[tuple[str, LocalMedia]]:
    async with serving(PAGE, remb_table=HIGH_REMB) as served:
        yield served


async def test_chromium_publisher_estimates_its_uplink_from_our_feedback(
    high_remb_site: tuple[str, LocalMedia], tmp_path: Path
) -> None:
    url, media = high_remb_site
    async with alice_and_bob(url, tmp_path) as (publisher, _viewer):
        alice = media.participants["alice"]
        assert alice.twcc_id and alice.ext_ids[TWCC_URI] == alice.twcc_id
        await eventually(
            lambda: alice.counters.twcc_feedback_out >= 10, timeout=15, what="feedback sent"
        )
        seen: list[float] = []

        async def grown() -> bool:
            seen.append(await publisher.evaluate(OUTGOING))
            return seen[-1] > 1.5 * CHROMIUM_START_BPS

        for _ in range(100):
            if await grown():
                break
            await publisher.wait_for_timeout(200)
        # Above the start value, and Chromium's own: the REMB alone would
        # put it at the cap (and without feedback it decays from there).
        assert seen[-1] > 1.5 * CHROMIUM_START_BPS and max(seen) < MAX_OWN_BPS, seen
        stats = media.stats()
        assert stats["bad_rtcp"] == 0 and stats["errors"] == 0


async def test_chromium_subscriber_feedback_becomes_packet_results(
    site: tuple[str, LocalMedia], tmp_path: Path
) -> None:
    url, media = site
    async with alice_and_bob(url, tmp_path) as (_publisher, _viewer):
        bob = media.participants["bob"]
        batches: list[Columns] = []

        def collected() -> bool:
            columns = bob.feedback_columns
            if columns is not None and (not batches or columns is not batches[-1]):
                batches.append(columns)
            return len(batches) >= 10

        await eventually(collected, timeout=20, what="ten feedbacks from the subscriber")
        transport = bob.transport
        assert transport is not None and transport.twcc_id
        results = [r for batch in batches for r in batch.results()]
        sequences = [r.sequence for r in results]
        assert all(0 <= s < transport.history.next for s in sequences)
        received = [r for r in results if r.arrival is not None]
        assert len(received) >= 0.95 * len(results), "loopback loses (almost) nothing"
        assert all(r.size > 0 for r in results)
        # Arrival deltas follow the send deltas on loopback (within 100 ms).
        ordered = sorted(received, key=lambda r: r.sequence)
        first = ordered[0]
        for r in ordered[1:]:
            assert r.arrival is not None and first.arrival is not None
            skew = (r.arrival - first.arrival) - (r.send_time - first.send_time)
            assert abs(skew) < 0.1, (r, first)
        assert bob.counters.twcc_feedback_in >= 10 and transport.history.unknown == 0
        # ... and they feed the subscriber's bandwidth estimator.
        assert bob.estimator is not None and bob.estimator.acked_bps is not None
        assert bob.estimator.acked_bps > 100_000, bob.estimator.acked_bps

        # The allocation wants more than the estimate: the SFU probes with
        # padding on the RTX stream, and Chromium reports those packets too.
        # (Set at every check: the layer clock rewrites desired_bps from the
        # tiles' demand every 0.5 s, and a demand under the estimate cancels
        # planned probes.)
        estimator = bob.estimator
        probes: list[Any] = []

        def probed() -> bool:
            bob.desired_bps = 3 * estimator.estimate_bps
            probes.extend(r for r in bob.packet_results if r.probe >= 0)
            return any(r.arrival is not None for r in probes)

        await eventually(probed, timeout=10, what="a probe cluster reported by Chromium")
        assert transport.counters.padding_out > 0
        assert media.stats()["errors"] == 0
