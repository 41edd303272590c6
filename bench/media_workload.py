"""Pre-encoded media for the media benchmarks, and publishers that play it.

The payloads are real: VP8 from libvpx (aiortc's encoder, noise-heavy frames
so the target bitrate is reached) and Opus from libopus, encoded once at
start-up.  Playing them back costs only an RTP header, an SRTP protect and a
sendto per packet, so a generator core can drive thousands of packets per
second, and a decoding server (aiortc MediaRelay) receives a stream it can
actually decode.  A PLI or FIR restarts the video at its key frame.
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
from tests.synthetic_peer import SyntheticPeer  # noqa: E402

FPS = 30
AUDIO_PTIME = 0.02


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
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0 : height * 3 // 2, 0:width]
    smooth = 128 + 60 * np.sin(x / 23.0) * np.cos(y / 17.0)
    frames = []
    for n in range(int(seconds * FPS)):
        noise = rng.integers(-grain, grain + 1, smooth.shape)
        plane = np.clip(np.roll(smooth, n * 5, axis=1) + noise, 0, 255).astype(np.uint8)
        frame = VideoFrame.from_ndarray(plane, format="yuv420p")
        frame.pts = n * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ = encoder.encode(frame, force_keyframe=n == 0)
        frames.append(payloads)
    return EncodedMedia(video=frames, audio=_opus_packets(), video_kbps=kbps)


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

    def __init__(self, peer: SyntheticPeer, media: EncodedMedia, index: int) -> None:
        self.peer = peer
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


async def play(publishers: list[Publisher], stop: asyncio.Event, rotate_s: float = 3.0) -> None:
    """Play every publisher until `stop`, staggered; the loud speaker rotates.

    A publisher plays only the kinds its peer sends (an audio-only peer no video).
    """
    tasks = []
    for n, publisher in enumerate(publishers):
        offset = n / (FPS * max(1, len(publishers)))
        if publisher.peer.video_ssrc is not None:
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
