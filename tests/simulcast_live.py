"""A simulcast publisher for live SFU tests: real VP8 at three sizes, sent as Chromium does.

`encode_layers` encodes a short moving picture at each layer's size with
aiortc's VP8 encoder (libvpx): a key frame, then delta frames (sizes,
bitrates, frame count and picture are parameters: bench/media_fanout.py
encodes noisy 320x180/640x360/1280x720 layers at Chromium's bitrates).  The
`SimulcastPump` plays every layer in a loop at 30 fps over a `SyntheticPeer`
made with `simulcast=(...)`: each layer has its own SSRC, sequence numbers,
RTP timestamp base, picture ids, TL0PICIDX and KEYIDX (as independent
encoders have), sends sender reports on one NTP clock, and restarts its
loop at the key frame when the SFU asks that layer's SSRC for one (PLI/FIR),
so every layer is decodable from any of its key frames.  With
`temporal_layers=3` the descriptors number the frames as Chromium's L1T3
does (TID 0, 2, 1, 2, ...; TL0PICIDX counts TID 0 frames; the layer sync
bit on the TID 1 and 2 frames that refer only to the TL0 frame); the
default (1) marks every frame TID 0.  `send_frame` returns the packets it
sent, so a load generator can count them.

`Received` reads what a subscriber got on one slot: which layer each packet
came from (by its VP8 data), the descriptors, and the decoded frame sizes
(aiortc's VP8 decoder).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, VpxPayloadDescriptor
from aiortc.jitterbuffer import JitterFrame
from av import VideoFrame

from sfu.packet.rtcp import Fir, Nack, Pli, RtcpError, build_sr, ntp_from_time, parse_rtcp
from sfu.packet.rtp import parse_rtp
from sfu.packet.vp8 import Vp8Descriptor, parse_vp8
from tests.synthetic_peer import SyntheticPeer

SIZES = {"q": (160, 96), "h": (320, 192), "f": (640, 384)}
FRAMES = 30  # one second per loop
DESCRIPTOR = 6  # X, I+L+T+K, 15-bit picture id, TL0PICIDX, TID/Y/KEYIDX

# (start of partition 0, VP8 data) per packet, per frame, per layer
Encoded = dict[str, list[list[tuple[bool, bytes]]]]
_CACHE: dict[tuple[object, ...], Encoded] = {}
# (width, height, frame number) -> an RGB24 or YUV420P picture
Picture = Callable[[int, int, int], VideoFrame]


def encode_layers(
    rids: tuple[str, ...] = ("q", "h", "f"),
    *,
    sizes: Mapping[str, tuple[int, int]] = SIZES,
    bitrates: Mapping[str, int] | None = None,
    frames: int = FRAMES,
    picture: Picture | None = None,
) -> Encoded:
    """`frames` frames per layer (the first a key frame), packetized by aiortc.

    `bitrates` (bits/s per rid) default to 3 bits per pixel and second;
    `picture` to a moving colour gradient.
    """
    paint = picture or _gradient
    key = (
        rids,
        tuple(sorted(sizes.items())),
        tuple(sorted((bitrates or {}).items())),
        frames,
        paint,
    )
    if key in _CACHE:
        return _CACHE[key]
    out: Encoded = {}
    for rid in rids:
        width, height = sizes[rid]
        encoder = Vp8Encoder()
        encoder.target_bitrate = (bitrates or {}).get(rid, width * height * 3)
        encoded = []
        for n in range(frames):
            frame = paint(width, height, n)
            frame.pts = n * 3000
            frame.time_base = fractions.Fraction(1, 90000)
            payloads, _ = encoder.encode(frame, force_keyframe=n == 0)
            packets = []
            for payload in payloads:
                descriptor, data = VpxPayloadDescriptor.parse(payload)
                start = bool(descriptor.partition_start) and descriptor.partition_id == 0
                packets.append((start, data))
            encoded.append(packets)
        out[rid] = encoded
    _CACHE[key] = out
    return out


def _gradient(width: int, height: int, n: int) -> VideoFrame:
    return VideoFrame.from_ndarray(_picture(width, height, n), format="rgb24")


def _picture(width: int, height: int, n: int) -> np.ndarray:
    x = np.arange(width, dtype=np.uint16)[None, :]
    y = np.arange(height, dtype=np.uint16)[:, None]
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = ((x + 4 * n) % 256).astype(np.uint8)
    image[..., 1] = ((y + 2 * n) % 256).astype(np.uint8)
    image[..., 2] = (((x + y) // 2 + 8 * n) % 256).astype(np.uint8)
    return image


def descriptor(
    start: bool, picture_id: int, tl0: int, tid: int, keyidx: int, sync: bool = False
) -> bytes:
    return bytes(
        [
            0x90 if start else 0x80,
            0xF0,
            0x80 | (picture_id >> 8) & 0x7F,
            picture_id & 0xFF,
            tl0 & 0xFF,
            (tid << 6) | (0x20 if sync else 0) | (keyidx & 0x1F),
        ]
    )


# L1T3 as libvpx/Chromium: (TID, layer sync) of the frames of each 4-frame period.
L1T3 = ((0, False), (2, True), (1, True), (2, False))


class LayerPayload(NamedTuple):
    """One packet of a layer's frame, before it is made into RTP."""

    rid: str
    payload: bytes  # VP8 payload descriptor + data
    timestamp: int
    marker: bool
    keyframe: bool


@dataclass
class LayerState:
    rid: str
    ts_base: int = field(default_factory=lambda: random.getrandbits(31))
    picture_id: int = field(default_factory=lambda: random.getrandbits(15))
    tl0: int = field(default_factory=lambda: random.getrandbits(8))
    keyidx: int = field(default_factory=lambda: random.getrandbits(5))
    index: int = 0  # the next frame of the loop
    keyframes: int = 0  # key frames sent


class SimulcastPump:
    """Plays the encoded layers in real time over a simulcast `SyntheticPeer` (see module doc)."""

    def __init__(self, peer: SyntheticPeer, encoded: Encoded, temporal_layers: int = 1) -> None:
        assert peer.simulcast
        if temporal_layers not in (1, 3):
            raise ValueError("temporal_layers is 1 or 3")
        self.peer = peer
        self.encoded = encoded
        self.temporal_layers = temporal_layers
        self.layers = {rid: LayerState(rid) for rid in peer.simulcast}
        self.data_layer: dict[bytes, str] = {}  # VP8 data of a packet -> its layer
        for rid, frames in encoded.items():
            for packets in frames:
                for _, data in packets:
                    self.data_layer[data] = rid
        self.keyframe_requests: dict[str, int] = dict.fromkeys(peer.simulcast, 0)
        self.paused: set[str] = set()
        self.sent: dict[str, dict[int, bytes]] = {rid: {} for rid in peer.simulcast}
        self.lose: dict[str, int] = dict.fromkeys(peer.simulcast, 0)  # packets to "lose"
        self.nacked: dict[str, list[int]] = {rid: [] for rid in peer.simulcast}
        self._by_ssrc = {ssrc: rid for rid, ssrc in peer.layer_ssrcs.items()}
        self._task: asyncio.Task[None] | None = None
        self._t0 = (time.monotonic(), time.time())
        peer.sink.on_rtcp = self._on_rtcp  # type: ignore[method-assign]

    def _on_rtcp(self, packet: bytes) -> None:
        try:
            items = parse_rtcp(packet)
        except RtcpError:
            return
        for item in items:
            if isinstance(item, Nack):
                self._retransmit(item)
                continue
            ssrcs = [item.media_ssrc] if isinstance(item, Pli) else []
            if isinstance(item, Fir):
                ssrcs = [ssrc for ssrc, _ in item.entries]
            for ssrc in ssrcs:
                rid = self._by_ssrc.get(ssrc)
                if rid is not None:
                    self.keyframe_requests[rid] += 1
                    self.layers[rid].index = 0  # the loop restarts at its key frame

    def _retransmit(self, nack: Nack) -> None:
        """Answer a NACK about a layer with RTX packets carrying the repaired RID."""
        rid = self._by_ssrc.get(nack.media_ssrc)
        if rid is None:
            return
        for seq in nack.lost:
            self.nacked[rid].append(seq)
            original = self.sent[rid].get(seq)
            if original is not None:
                self.peer.send(self.peer.layer_rtx(rid, original))

    def start(self) -> SimulcastPump:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        start = self._t0[0]
        frames = 0
        last_sr = 0.0
        while True:
            now = time.monotonic()
            if now - last_sr > 0.5:
                last_sr = now
                self.send_sender_reports(now)
            while frames <= (now - start) * 30:
                for state in self.layers.values():
                    if state.rid not in self.paused:
                        self.send_frame(state, frames)
                frames += 1
            await asyncio.sleep(0.01)

    def send_sender_reports(self, now: float) -> None:
        mono0, wall0 = self._t0
        for rid, state in self.layers.items():
            rtp = state.ts_base + int((now - mono0) * 90000)
            report = build_sr(
                self.peer.layer_ssrcs[rid], ntp_from_time(wall0 + now - mono0), rtp, 1, 1
            )
            self.peer.transport.send_rtcp(report)

    def send_frame(self, state: LayerState, frame_number: int) -> int:
        """Send the next frame of `state`'s layer; the number of packets sent."""
        return sum(self.send_payload(p) for p in self.frame_payloads(state, frame_number))

    def frame_payloads(self, state: LayerState, frame_number: int) -> list[LayerPayload]:
        """The next frame of `state`'s layer, to give to `send_payload` in order
        (a load generator paces them; the RTP packets are made when sent)."""
        frames = self.encoded[state.rid]
        packets = frames[state.index]
        keyframe = state.index == 0
        if keyframe:
            state.keyidx += 1
            state.keyframes += 1
        # The temporal pattern starts over at every key frame (as an encoder's does).
        tid, sync = L1T3[state.index % 4] if self.temporal_layers == 3 else (0, False)
        if tid == 0:
            state.tl0 += 1
        state.picture_id = (state.picture_id + 1) & 0x7FFF
        timestamp = state.ts_base + frame_number * 3000
        state.index = (state.index + 1) % len(frames)
        last = len(packets) - 1
        return [
            LayerPayload(
                state.rid,
                descriptor(start, state.picture_id, state.tl0, tid, state.keyidx, sync) + data,
                timestamp,
                i == last,
                keyframe,
            )
            for i, (start, data) in enumerate(packets)
        ]

    def send_payload(self, item: LayerPayload) -> bool:
        """Make the RTP packet, keep it for NACKs and send it (False: `lose` dropped it)."""
        rid = item.rid
        packet = self.peer.layer_rtp(
            rid, item.payload, timestamp=item.timestamp, marker=item.marker
        )
        sent = self.sent[rid]
        sent[int.from_bytes(packet[2:4], "big")] = packet
        if len(sent) > 512:
            del sent[next(iter(sent))]
        if self.lose[rid] > 0 and not item.keyframe:
            self.lose[rid] -= 1  # lost on the way: only a NACK brings it
            return False
        self.peer.send(packet)
        return True


@dataclass
class Packet:
    sequence: int
    timestamp: int
    desc: Vp8Descriptor
    data: bytes
    layer: str | None


class Received:
    """What one subscriber slot got (decrypted), in arrival order."""

    def __init__(self, peer: SyntheticPeer, ssrc: int, pump: SimulcastPump) -> None:
        self.packets: list[Packet] = []
        for raw in peer.sink.rtp:
            if len(raw) < 12 or int.from_bytes(raw[8:12], "big") != ssrc:
                continue
            h = parse_rtp(raw)
            end = h.payload_offset + h.payload_length
            desc = parse_vp8(raw[h.payload_offset : end])
            data = bytes(raw[h.payload_offset + DESCRIPTOR : end])
            self.packets.append(
                Packet(h.sequence, h.timestamp, desc, data, pump.data_layer.get(data))
            )

    def layers(self) -> list[str | None]:
        """The layer of each frame, in order."""
        return [p.layer for p in self.packets if p.desc.frame_start]

    def frames(self) -> list[list[Packet]]:
        frames: list[list[Packet]] = []
        for packet in self.packets:
            if packet.desc.frame_start or not frames:
                frames.append([])
            frames[-1].append(packet)
        return frames

    def decoded_sizes(self) -> list[tuple[int, int]]:
        """The size of every decoded frame (aiortc's VP8 decoder, from the first key frame)."""
        decoder = Vp8Decoder()
        sizes = []
        started = False
        for frame in self.frames():
            started = started or frame[0].desc.keyframe
            if not started:
                continue
            data = b"".join(p.data for p in frame)
            for image in decoder.decode(JitterFrame(data=data, timestamp=frame[0].timestamp)):
                assert isinstance(image, VideoFrame)
                sizes.append((image.width, image.height))
        return sizes
