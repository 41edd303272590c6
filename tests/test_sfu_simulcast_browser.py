"""A real Chromium publishes simulcast (q/h/f) through the SFU; another Chromium switches layers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sfu.local import LocalMedia
from sfu.routing.producer import Producer
from tests.sfu_live import eventually
from tests.test_sfu_browser import alice_and_bob, serving

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# What the reference client does (docs/protocol.md): three encodings, lowest first.
PAGE = """<!doctype html><html><body><video id="v" autoplay muted playsinline></video>
<script>
window.state = {answered: false, error: null};
async function join(pid, publish) {
  try {
    const pc = new RTCPeerConnection({iceServers: []});
    window.pc = pc;
    pc.ontrack = (e) => {
      const video = document.getElementById("v");
      if (e.track.kind === "video") video.srcObject = new MediaStream([e.track]);
    };
    if (publish) {
      const stream = await navigator.mediaDevices.getUserMedia(
        {video: {width: 1280, height: 720, frameRate: 30}});
      pc.addTransceiver(stream.getVideoTracks()[0], {direction: "sendonly", sendEncodings: [
        {rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150000, scalabilityMode: "L1T3"},
        {rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500000, scalabilityMode: "L1T3"},
        {rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1500000, scalabilityMode: "L1T3"},
      ]});
    } else {
      pc.addTransceiver("video", {direction: "recvonly"});
    }
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((ok) => {
      if (pc.iceGatheringState === "complete") return ok();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && ok();
      setTimeout(ok, 3000);
    });
    const reply = await fetch("/offer/" + pid, {method: "POST", body: pc.localDescription.sdp});
    if (!reply.ok) throw new Error(await reply.text());
    await pc.setRemoteDescription({type: "answer", sdp: await reply.text()});
    window.state.answered = true;
  } catch (e) { window.state.error = String(e); }
}
async function encoded(rid) {
  const stats = await window.pc.getStats();
  let frames = 0;
  stats.forEach((r) => {
    if (r.type === "outbound-rtp" && r.rid === rid) frames = r.framesEncoded || 0;
  });
  return frames;
}
async function inbound() {
  const stats = await window.pc.getStats();
  let out = {frames: 0, width: 0};
  stats.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") {
      out = {frames: r.framesDecoded || 0, width: r.frameWidth || 0};
    }
  });
  return out;
}
</script></body></html>"""


@pytest.fixture
async def site() -> AsyncIterator[tuple[str, LocalMedia]]:
    async with serving(PAGE) as served:
        yield served


async def alices_three_layers(media: LocalMedia) -> Producer:
    """Alice's video track once a key frame of each of its three layers has come."""
    producers = media.participants["alice"].producers
    track = producers[next(iter(producers))]
    await eventually(
        lambda: all(layer.frame_size for layer in track.layers),
        timeout=30,
        what="key frames of the three layers",
    )
    return track


async def test_chromium_sends_three_layers_and_a_viewer_switches_between_them(
    site: tuple[str, LocalMedia], tmp_path: Path
) -> None:
    url, media = site
    async with alice_and_bob(url, tmp_path) as (publisher, viewer):
        track = await alices_three_layers(media)
        assert [layer.rid for layer in track.layers] == ["q", "h", "f"]
        assert [layer.frame_size for layer in track.layers] == [
            (320, 180),
            (640, 360),
            (1280, 720),
        ]

        async def width() -> int:
            return int((await viewer.evaluate("inbound()"))["width"])

        # The layer allocator follows the viewer's tile (`video_sizes`) ...
        bob = media.participants["bob"]
        mid, consumer = next(iter(bob.consumers.items()))
        for size in ((320, 180), (640, 360), (320, 180)):
            await media.video_sizes("bob", {mid: list(size)})
            for _ in range(200):
                if await width() == size[0]:
                    break
                await viewer.wait_for_timeout(100)
            estimate = bob.estimator.estimate_bps if bob.estimator else None
            assert await width() == size[0], (size, consumer.layers_now, estimate)

        async def frames() -> tuple[int, int]:
            """(decoded by the viewer, encoded by the publisher on q) so far."""
            decoded = (await viewer.evaluate("inbound()"))["frames"]
            return int(decoded), int(await publisher.evaluate("encoded('q')"))

        async def decoded_of_encoded() -> tuple[int, int]:
            """Frames decoded and frames of q encoded over 2 s.

            Compared with what the publisher encoded, not with a fixed
            rate: on a loaded machine Chromium's fake camera and its three
            encoders fall to 10 fps and below, with stalls of 300 ms (the
            remaining failures once the freeze after a switch was fixed:
            19 frames decoded of 24 encoded, i.e. 9 fps), and the frames
            encoded last in the window are decoded after it.
            """
            before = await frames()
            await viewer.wait_for_timeout(2000)
            after = await frames()
            return after[0] - before[0], after[1] - before[1]

        full = await decoded_of_encoded()
        assert track.layers[0].meter.top == 2  # L1T3: TIDs 0-2
        # ... and its bandwidth: capped (as a REMB would) below q's lowest temporal
        # layer, its only slot keeps that layer: a quarter of the frames.
        bob.set_max_bps(30_000)
        await eventually(lambda: consumer.layers_now == (0, 0), timeout=10, what="TID 0")
        await viewer.wait_for_timeout(500)
        thinned = await decoded_of_encoded()
        bob.set_max_bps(10_000_000)  # the cap lifted: the estimate grows back (probes)
        await eventually(
            lambda: consumer.layers_now[1] >= 1, timeout=30, what="more temporal layers"
        )
        await viewer.wait_for_timeout(1000)
        restored = await decoded_of_encoded()
        # Chromium decodes (nearly) every frame after the switches, then the thinned
        # stream (picture ids without gaps), and comes back up (TID 0-1 at least: the
        # estimate regrows from 30 kbit/s, which is slow).
        assert full[1] >= 6 and thinned[1] >= 6 and restored[1] >= 6, (full, thinned, restored)
        assert full[0] >= 0.5 * full[1], (full, thinned, restored)
        assert 1 < thinned[0] < thinned[1] / 2, (full, thinned, restored)
        assert restored[0] > 1.5 * thinned[0], (full, thinned, restored, consumer.layers_now)
        stats = media.stats()
        assert stats["errors"] == 0 and stats["bad_rtp"] == 0


async def test_chromium_answers_a_key_frame_request_with_a_key_frame_of_that_layer_only(
    site: tuple[str, LocalMedia], tmp_path: Path
) -> None:
    """The SFU's answer asks for per-layer key frames (`x-google-per-layer-pli=1`): a PLI
    on the lowest layer brings a key frame there, and none on the two others (without
    it Chromium re-keys every layer, and its top layer then skips frames: issue 13)."""
    url, media = site
    async with alice_and_bob(url, tmp_path) as _:
        track = await alices_three_layers(media)
        q = track.layers[0]
        assert q.per_layer_pli
        # The viewer's slot shows nothing, so only this test asks for key frames.
        await media.video_sizes("bob", {next(iter(media.participants["bob"].consumers)): [0, 0]})
        counts = [layer.keyframes for layer in track.layers]
        asked = [layer.keyframe_requests for layer in track.layers]
        for _ in range(60):  # until no layer got a key frame for 1.5 s (the joins' are done)
            await asyncio.sleep(1.5)
            now = [layer.keyframes for layer in track.layers]
            if now == counts:
                break
            counts = now
            asked = [layer.keyframe_requests for layer in track.layers]
        assert q.request_keyframe(time.monotonic())
        await eventually(lambda: q.keyframes > counts[0], timeout=10, what="q's key frame")
        # An answer on every layer comes from one input frame: within the next packets.
        marks = [layer.stats.max_seq for layer in track.layers]
        await eventually(
            lambda: all(
                layer.stats.max_seq - mark >= 40
                for layer, mark in zip(track.layers[1:], marks[1:], strict=True)
            ),
            timeout=15,
            what="40 more packets of h and f",
        )
        added = [layer.keyframes - n for layer, n in zip(track.layers, counts, strict=True)]
        requests = [
            layer.keyframe_requests - n for layer, n in zip(track.layers, asked, strict=True)
        ]
        assert added[1:] == [0, 0], (added, requests, counts)
        assert q.keyframes_per_layer  # no layer's key frame looked like an answer to another's
