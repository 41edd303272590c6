"""A real Chromium publishes Opus in RED: Chromium receives RED, an aiortc peer plain Opus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import aioice.ice
import numpy as np
import pytest
from aiortc.rtp import RtpPacket

from sfu.local import LocalMedia
from sfu.packet.rtp import RtpHeader
from sfu.routing.producer import Producer
from sfu.transport import webrtc
from tests.sfu_live import TrackReader, aiortc_peer, eventually, negotiate_aiortc
from tests.test_sfu_browser import PAGE, alice_and_bob, serving

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Every audio RTP stream of the page's connection, with its codec.
AUDIO_STATS = """async () => {
  const stats = await window.pc.getStats();
  const out = [];
  stats.forEach((r) => {
    if ((r.type === "outbound-rtp" || r.type === "inbound-rtp") && r.kind === "audio") {
      const codec = r.codecId ? stats.get(r.codecId) : null;
      out.push({type: r.type, mime: codec ? codec.mimeType : null,
                packets: r.packetsSent ?? r.packetsReceived ?? 0,
                samples: r.totalSamplesReceived ?? 0});
    }
  });
  return out;
}"""


@pytest.fixture
async def site(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, LocalMedia]]:
    # The aiortc peer gathers on the machine's addresses; keep it on 127.0.0.1.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    async with serving(PAGE) as served:
        yield served


async def audio_packets(page: Page, kind: str) -> int:
    """Packets of the page's audio streams of `kind` ("outbound-rtp" or "inbound-rtp")."""
    return sum(s["packets"] for s in await page.evaluate(AUDIO_STATS) if s["type"] == kind)


def opus_pt(answer: str) -> int:
    line = next(x for x in answer.splitlines() if "opus/48000" in x)
    return int(line.split(":", 1)[1].split(" ", 1)[0])


async def test_chromium_red_reaches_chromium_as_red_and_aiortc_as_decodable_opus(
    site: tuple[str, LocalMedia], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, media = site
    published: list[int] = []  # the payload types of the audio the SFU receives
    on_rtp = Producer.on_rtp

    def tap(self: Producer, data: bytes, h: RtpHeader, now: float) -> bool:
        if self.kind == "audio":
            published.append(h.payload_type)
        return on_rtp(self, data, h, now)

    monkeypatch.setattr(Producer, "on_rtp", tap)
    # The compiled inlet (sfu.native._ingress) goes straight to the producer's compiled
    # `receive`, past `on_rtp`: the tap needs the Python inlet (tests/test_native_ingress.py
    # shows the two do the same).  The compiled `receive` still handles every packet.
    monkeypatch.setattr(webrtc, "compiled_inlet", lambda: None)
    carol = aiortc_peer()  # offers Opus without RED
    reader = TrackReader(carol)
    received: list[bytes] = []  # what reaches carol, after SRTP
    try:
        carol.addTransceiver("audio", "recvonly")
        async with alice_and_bob(url, tmp_path) as (_publisher, viewer):
            await media.open("visit", "main", "carol")
            pt = opus_pt(await negotiate_aiortc(media, "carol", carol))
            dtls = carol.getTransceivers()[0].receiver.transport
            handle = dtls._handle_rtp_data

            async def tap_receive(data: bytes, arrival_time_ms: int) -> None:
                received.append(data)
                await handle(data, arrival_time_ms)

            dtls._handle_rtp_data = tap_receive  # type: ignore[method-assign]
            await eventually(
                lambda: len(reader.frames["audio"]) >= 150, timeout=30, what="carol's audio"
            )
            assert await audio_packets(viewer, "inbound-rtp") > 100
        assert published.count(63) > 0.95 * len(published)  # Chromium sends RED when answered so
        assert received and {RtpPacket.parse(d).payload_type for d in received} == {pt}
        peak = max(int(np.abs(f.to_ndarray()).max()) for f in reader.frames["audio"])
        assert peak > 1000  # the fake microphone's beeps, decoded from the primary blocks
        stats = media.stats()
        assert stats["bad_red"] == 0 and stats["errors"] == 0 and stats["bad_rtp"] == 0
    finally:
        await reader.close()
        await carol.close()
