"""Pre-encoded media for the media benchmarks, and publishers that play it.

The payloads are real: VP8 from libvpx (aiortc's encoder, noise-heavy frames
so the target bitrate is reached) and Opus from libopus, encoded once at
start-up.  Playing them back costs only an RTP header, an SRTP protect and a
sendto per packet, so a generator core can drive thousands of packets per
second, and a decoding server (aiortc MediaRelay) receives a stream it can
actually decode.  A PLI or FIR restarts the video at its key frame.

`encode_simulcast` encodes three layers as Chromium sends a 720p camera with
simulcast (320x180, 640x360, 1280x720 at ~150k/500k/1.5M bits/s, rids q, h,
f); a `SimulcastPublisher` plays them with tests/simulcast_live.py's
`SimulcastPump` (per-layer SSRC, RID extension, L1T3 temporal layer ids,
key frame on a layer's PLI, NACK answered with RTX), paced like the single
stream.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from av import AudioFrame, VideoFrame

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiortc.codecs.opus import OpusEncoder  # noqa: E402
from aiortc.codecs.vpx import Vp8Encoder  # noqa: E402

from sfu.packet.rtcp import Fir, Pli, RtcpError, parse_rtcp  # noqa: E402
from tests.simulcast_live import (  # noqa: E402
    Encoded,
    LayerPayload,
    LayerState,
    SimulcastPump,
    encode_layers,
)
from tests.synthetic_peer import SyntheticPeer  # noqa: E402

FPS = 30
AUDIO_PTIME = 0.02
# Chromium's layers for a 1280x720 camera: rid -> (width, height, bits/s)
SIMULCAST_LAYERS = {
    "q": (320, 180, 150_000),
    "h": (640, 360, 500_000),
    "f": (1280, 720, 1_500_000),
}
SIMULCAST_RIDS = tuple(SIMULCAST_LAYERS)


@dataclass(frozen=True)
class EncodedMedia:
    video: list[list[bytes]]  # frames (first one a key frame) -> RTP payloads
    audio: list[bytes]  # 20 ms Opus packets
    video_kbps: int

    @property
    def video_pps(self) -> float:
        return FPS * sum(len(f) for f in self.video) / len(self.video)


def encode_media(
    kbps: int, seconds: float = 2.0, width: int = 640, height: int = 360, grain: int = 6
) -> EncodedMedia:
    """Encode `seconds` of moving noise as VP8 at `kbps` and 1 s of a tone as Opus."""
    encoder = Vp8Encoder()
    encoder.target_bitrate = kbps * 1000
    picture = NoisyPicture(grain)
    frames = []
    for n in range(int(seconds * FPS)):
        frame = picture(width, height, n)
        frame.pts = n * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ = encoder.encode(frame, force_keyframe=n == 0)
        frames.append(payloads)
    return EncodedMedia(video=frames, audio=_opus_packets(), video_kbps=kbps)


class NoisyPicture:
    """A moving pattern with noise (so libvpx reaches the target bitrate), as YUV420P."""

    def __init__(self, grain: int = 6) -> None:
        self.grain = grain
        self.rng = np.random.default_rng(1)

    def __call__(self, width: int, height: int, n: int) -> VideoFrame:
        y, x = np.mgrid[0 : height * 3 // 2, 0:width]
        smooth = 128 + 60 * np.sin(x / 23.0) * np.cos(y / 17.0)
        noise = self.rng.integers(-self.grain, self.grain + 1, smooth.shape)
        plane = np.clip(np.roll(smooth, n * 5, axis=1) + noise, 0, 255).astype(np.uint8)
        return VideoFrame.from_ndarray(plane, format="yuv420p")


_NOISY = NoisyPicture()


def encode_simulcast(seconds: float = 2.0) -> Encoded:
    """The three layers of SIMULCAST_LAYERS, `seconds` each (a key frame first)."""
    return encode_layers(
        SIMULCAST_RIDS,
        sizes={rid: (w, h) for rid, (w, h, _) in SIMULCAST_LAYERS.items()},
        bitrates={rid: bps for rid, (_, _, bps) in SIMULCAST_LAYERS.items()},
        frames=int(seconds * FPS),
        picture=_NOISY,
    )


def _opus_packets() -> list[bytes]:
    encoder = OpusEncoder()
    packets: list[bytes] = []
    for n in range(50):
        t = (np.arange(960) + n * 960) / 48000
        tone = (8000 * np.sin(2 * math.pi * 440 * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = n * 960
        frame.time_base = fractions.Fraction(1, 48000)
        payloads, _ = encoder.encode(frame)
        packets += payloads
    return packets


class Publisher:
    """Plays `media` through one synthetic peer at real time."""

    def __init__(
        self, peer: SyntheticPeer, media: EncodedMedia, index: int, restarts: bool = True
    ) -> None:
        self.peer = peer
        self.restarts = restarts  # a PLI/FIR restarts the video at its key frame
        self.media = media
        self.index = index
        self.frame = 0
        self.audio = 0
        self.sent = 0
        self.keyframes_requested = 0
        self.speaking = False
        peer.sink.keep = False
        peer.sink.on_rtcp = self._on_rtcp  # type: ignore[method-assign]

    def _on_rtcp(self, packet: bytes) -> None:
        try:
            items = parse_rtcp(packet)
        except RtcpError:
            return
        if any(isinstance(item, (Pli, Fir)) for item in items):
            self.keyframes_requested += 1
            if self.restarts:
                self.frame = 0

    def next_frame(self) -> list[bytes]:
        payloads = self.media.video[self.frame % len(self.media.video)]
        self.frame = (self.frame + 1) % len(self.media.video)
        return payloads

    def send_video(self, payload: bytes, marker: bool) -> None:
        self.peer.send(self.peer.rtp("video", payload, marker=marker))
        self.sent += 1

    def send_audio_packet(self) -> None:
        payload = self.media.audio[self.audio % len(self.media.audio)]
        self.audio += 1
        level = 20 if self.speaking else 90
        self.peer.send(self.peer.rtp("audio", payload, level=level))
        self.sent += 1


class SimulcastPublisher(Publisher):
    """Plays simulcast `layers` (and `media`'s audio) through a peer made with
    `simulcast=SIMULCAST_RIDS`; the pump answers PLI/FIR per layer and NACKs."""

    def __init__(
        self, peer: SyntheticPeer, media: EncodedMedia, index: int, layers: Encoded
    ) -> None:
        super().__init__(peer, media, index)
        self.pump = SimulcastPump(peer, layers, temporal_layers=3)
        frames = len(next(iter(layers.values())))
        total = sum(len(data) + 40 for f in layers.values() for frame in f for _, data in frame)
        self.bitrate_bps = 8 * total * FPS // max(1, frames)

    @property
    def layer_states(self) -> list[LayerState]:
        return list(self.pump.layers.values())

    def frame_payloads(self, state: LayerState, frame_number: int) -> list[LayerPayload]:
        return self.pump.frame_payloads(state, frame_number)


async def play(publishers: list[Publisher], stop: asyncio.Event, rotate_s: float = 3.0) -> None:
    """Play every publisher until `stop`, staggered; the loud speaker rotates.

    A publisher plays only the kinds its peer sends (an audio-only peer no video).
    """
    tasks = []
    for n, publisher in enumerate(publishers):
        offset = n / (FPS * max(1, len(publishers)))
        if isinstance(publisher, SimulcastPublisher):
            tasks.append(asyncio.create_task(_simulcast_video(publisher, stop, offset)))
        elif publisher.peer.video_ssrc is not None:
            tasks.append(asyncio.create_task(_video(publisher, stop, offset)))
        if publisher.peer.audio_ssrc is not None:
            tasks.append(asyncio.create_task(_audio(publisher, publishers, stop, offset, rotate_s)))
    await asyncio.gather(*tasks)


async def _video(publisher: Publisher, stop: asyncio.Event, offset: float) -> None:
    """Frames at 30 fps, each paced like Chrome's pacer (2.5 x the bitrate)."""
    pacing_bps = 2.5 * publisher.media.video_kbps * 1000
    start = time.monotonic() + offset
    n = 0
    while not stop.is_set():
        await _sleep_until(start + n / FPS)
        n += 1
        payloads = publisher.next_frame()
        last = len(payloads) - 1
        sent_at = time.monotonic()
        for i, payload in enumerate(payloads):
            publisher.send_video(payload, i == last)
            sent_at += (len(payload) + 40) * 8 / pacing_bps
            if i < last:
                await _sleep_until(sent_at)


async def _simulcast_video(
    publisher: SimulcastPublisher, stop: asyncio.Event, offset: float
) -> None:
    """Every layer's frame at 30 fps, the layers' packets interleaved and paced
    at 2.5 x the sum of their bitrates (one pacer per connection, as Chrome's);
    sender reports every 0.5 s."""
    pacing_bps = 2.5 * publisher.bitrate_bps
    start = time.monotonic() + offset
    n = 0
    last_sr = 0.0
    while not stop.is_set():
        await _sleep_until(start + n / FPS)
        now = time.monotonic()
        if now - last_sr >= 0.5:
            last_sr = now
            publisher.pump.send_sender_reports(now)
        layers = [publisher.frame_payloads(s, n) for s in publisher.layer_states]
        n += 1
        items = [p for group in _interleave(layers) for p in group]
        sent_at = time.monotonic()
        for i, item in enumerate(items):
            publisher.sent += publisher.pump.send_payload(item)
            sent_at += (len(item.payload) + 60) * 8 / pacing_bps
            if i < len(items) - 1:
                await _sleep_until(sent_at)


def _interleave(layers: list[list[LayerPayload]]) -> list[list[LayerPayload]]:
    """Round robin over the layers' packets (a pacer sends them mixed)."""
    longest = max((len(x) for x in layers), default=0)
    return [[x[i] for x in layers if i < len(x)] for i in range(longest)]


async def _audio(
    publisher: Publisher,
    everyone: list[Publisher],
    stop: asyncio.Event,
    offset: float,
    rotate_s: float,
) -> None:
    start = time.monotonic() + offset
    n = 0
    while not stop.is_set():
        await _sleep_until(start + n * AUDIO_PTIME)
        n += 1
        speaker = int((time.monotonic() - start) / rotate_s) % max(1, len(everyone))
        publisher.speaking = publisher.index == speaker
        publisher.send_audio_packet()


async def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
