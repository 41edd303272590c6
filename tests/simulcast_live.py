"""A simulcast publisher for live SFU tests: real VP8 at three sizes, sent as Chromium does.

`encode_layers` encodes a short moving picture at each layer's size with
aiortc's VP8 encoder (libvpx): a key frame, then delta frames.  The
`SimulcastPump` plays every layer in a loop at 30 fps over a `SyntheticPeer`
made with `simulcast=(...)`: each layer has its own SSRC, sequence numbers,
RTP timestamp base, picture ids, TL0PICIDX and KEYIDX (as independent
encoders have), sends sender reports on one NTP clock, and restarts its
loop at the key frame when the SFU asks that layer's SSRC for one (PLI/FIR),
so every layer is decodable from any of its key frames.

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
from dataclasses import dataclass, field

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
_CACHE: dict[tuple[str, ...], Encoded] = {}


def encode_layers(rids: tuple[str, ...] = ("q", "h", "f")) -> Encoded:
    """FRAMES frames per layer (the first a key frame), packetized by aiortc."""
    if rids in _CACHE:
        return _CACHE[rids]
    out: Encoded = {}
    for rid in rids:
        width, height = SIZES[rid]
        encoder = Vp8Encoder()
        encoder.target_bitrate = width * height * 3
        frames = []
        for n in range(FRAMES):
            frame = VideoFrame.from_ndarray(_picture(width, height, n), format="rgb24")
            frame.pts = n * 3000
            frame.time_base = fractions.Fraction(1, 90000)
            payloads, _ = encoder.encode(frame, force_keyframe=n == 0)
            packets = []
            for payload in payloads:
                descriptor, data = VpxPayloadDescriptor.parse(payload)
                start = bool(descriptor.partition_start) and descriptor.partition_id == 0
                packets.append((start, data))
            frames.append(packets)
        out[rid] = frames
    _CACHE[rids] = out
    return out


def _picture(width: int, height: int, n: int) -> np.ndarray:
    x = np.arange(width, dtype=np.uint16)[None, :]
    y = np.arange(height, dtype=np.uint16)[:, None]
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = ((x + 4 * n) % 256).astype(np.uint8)
    image[..., 1] = ((y + 2 * n) % 256).astype(np.uint8)
    image[..., 2] = (((x + y) // 2 + 8 * n) % 256).astype(np.uint8)
    return image


def descriptor(start: bool, picture_id: int, tl0: int, tid: int, keyidx: int) -> bytes:
    return bytes(
        [
            0x90 if start else 0x80,
            0xF0,
            0x80 | (picture_id >> 8) & 0x7F,
            picture_id & 0xFF,
            tl0 & 0xFF,
            (tid << 6) | (keyidx & 0x1F),
        ]
    )


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

    def __init__(self, peer: SyntheticPeer, encoded: Encoded) -> None:
        assert peer.simulcast
        self.peer = peer
        self.encoded = encoded
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

    def send_frame(self, state: LayerState, frame_number: int) -> None:
        packets = self.encoded[state.rid][state.index]
        keyframe = state.index == 0
        if keyframe:
            state.keyidx += 1
            state.keyframes += 1
        state.tl0 += 1  # every frame is a TL0 frame (one temporal layer)
        state.picture_id = (state.picture_id + 1) & 0x7FFF
        timestamp = state.ts_base + frame_number * 3000
        for i, (start, data) in enumerate(packets):
            payload = descriptor(start, state.picture_id, state.tl0, 0, state.keyidx) + data
            packet = self.peer.layer_rtp(
                state.rid, payload, timestamp=timestamp, marker=i == len(packets) - 1
            )
            sent = self.sent[state.rid]
            sent[int.from_bytes(packet[2:4], "big")] = packet
            if len(sent) > 512:
                del sent[next(iter(sent))]
            if self.lose[state.rid] > 0 and not keyframe:
                self.lose[state.rid] -= 1  # lost on the way: only a NACK brings it
                continue
            self.peer.send(packet)
        state.index = (state.index + 1) % FRAMES


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
