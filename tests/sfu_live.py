"""Live SFU tests: a LocalMedia on 127.0.0.1, recorded events, media pumps, aiortc peers."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame, VideoFrame

from sfu.control import PrecallStats, Publishers, Slot
from sfu.local import LocalMedia
from sfu.packet.rtcp import (
    Fir,
    Nack,
    Pli,
    RtcpError,
    build_remb,
    build_sr,
    ntp_from_time,
    parse_rtcp,
)
from sfu.settings import MediaSettings
from tests.synthetic_peer import SyntheticPeer, vp8_payload


class RecordingEvents:
    """A MediaEvents that keeps everything and lets tests wait for it."""

    def __init__(self) -> None:
        self.slots: dict[str, list[Slot]] = {}
        self.slot_history: list[tuple[str, list[Slot]]] = []
        self.publishers: dict[str, Publishers] = {}
        self.speakers: list[tuple[str, str, str]] = []
        self.closed: list[tuple[str, str]] = []
        self.precall: list[tuple[str, PrecallStats]] = []
        self.restarts_needed: list[str] = []
        self.layers: list[tuple[str, str, list[str]]] = []
        self.downlinks: list[tuple[str, int]] = []

    def slots_changed(self, participant_id: str, slots: list[Slot], publishers: Publishers) -> None:
        self.slots[participant_id] = slots
        self.publishers[participant_id] = publishers
        self.slot_history.append((participant_id, slots))

    def active_speaker(self, room_id: str, group: str, participant_id: str) -> None:
        self.speakers.append((room_id, group, participant_id))

    def media_closed(self, participant_id: str, reason: str) -> None:
        self.closed.append((participant_id, reason))

    def precall_stats(self, participant_id: str, stats: PrecallStats) -> None:
        self.precall.append((participant_id, stats))

    def ice_restart_needed(self, participant_id: str) -> None:
        self.restarts_needed.append(participant_id)

    def publish_layers(self, participant_id: str, mid: str, active: list[str]) -> None:
        self.layers.append((participant_id, mid, active))

    def downlink(self, participant_id: str, estimate_kbps: int) -> None:
        self.downlinks.append((participant_id, estimate_kbps))

    def who(self, participant_id: str, kind: str | None = None) -> list[str | None]:
        return [
            s["participant_id"]
            for s in self.slots.get(participant_id, [])
            if kind is None or s["kind"] == kind
        ]


def received(peer: SyntheticPeer) -> int:
    """RTP packets `peer` has received on all its streams."""
    return sum(stream.packets for stream in peer.transport.streams.values())


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> None:
    """Wait until `predicate()` is true, checking every 10 ms, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_media(**overrides: Any) -> AsyncIterator[tuple[LocalMedia, RecordingEvents]]:
    values: dict[str, Any] = {"ice_hosts": ("127.0.0.1",), "selection_interval_s": 0.05}
    values.update(overrides)
    events = RecordingEvents()
    media = LocalMedia(MediaSettings(**values), events)
    await media.start()
    try:
        yield media, events
    finally:
        await close_peers()
        await media.stop()


_PEERS: list[SyntheticPeer] = []


def tracked(peer: SyntheticPeer) -> SyntheticPeer:
    """Close `peer` at the end of the running_media block."""
    _PEERS.append(peer)
    return peer


async def close_peers() -> None:
    while _PEERS:
        peer = _PEERS.pop()
        peer.close()
        await peer.transport.wait_closed()


def send_remb(peer: SyntheticPeer, bps: int) -> None:
    """`peer` as a receiver says what its own estimator makes of its downlink (goog-remb)."""
    peer.transport.send_rtcp(build_remb(1, bps, list(peer.slot_ssrcs().values())))


async def join(
    media: LocalMedia, pid: str, peer: SyntheticPeer, room: str = "r", group: str = "main"
) -> SyntheticPeer:
    """Open `pid`, negotiate `peer` and wait until it is connected (closed after the test)."""
    tracked(peer)
    await media.open(room, group, pid)
    await peer.connect(await media.offer(pid, await peer.offer()))
    return peer


class Pump:
    """Sends fake VP8 (3 packets per frame, 30 fps) and Opus with a level, in real time.

    A key frame goes out first, every second and after each PLI/FIR; every
    sent payload is remembered so that receivers can be checked against it.
    """

    def __init__(self, peer: SyntheticPeer, level: int | None = 30, video: bool = True) -> None:
        self.peer = peer
        self.level = level
        self.video = video and peer.video_ssrc is not None
        self.audio = peer.audio_ssrc is not None
        self.keyframe_requests = 0
        self.nacks: list[tuple[int, ...]] = []
        self.sent: dict[int, bytes] = {}  # video sequence -> packet
        self.payloads: set[bytes] = set()
        self._want_keyframe = True
        self._audio_count = 0
        self.audio_timestamps: dict[bytes, int] = {}  # payload -> RTP timestamp sent
        self.srs_sent: list[tuple[float, str, int]] = []  # (wall clock, kind, RTP time)
        self._task: asyncio.Task[None] | None = None
        peer.sink.on_rtcp = self._on_rtcp  # type: ignore[method-assign]
        self.rtcp: list[object] = []

    def _on_rtcp(self, packet: bytes) -> None:
        try:
            items = parse_rtcp(packet)
        except RtcpError:
            return
        self.rtcp += items
        for item in items:
            if isinstance(item, (Pli, Fir)):
                self.keyframe_requests += 1
                self._want_keyframe = True
            elif isinstance(item, Nack):
                self.nacks.append(item.lost)

    def start(self) -> Pump:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        start = time.monotonic()
        frames = audio = 0
        last_key = last_sr = 0.0
        while True:
            now = time.monotonic()
            if now - last_sr > 0.5:
                last_sr = now
                self.send_sender_reports()
            while self.video and frames <= (now - start) * 30:
                key = self._want_keyframe or now - last_key > 1.0
                if key:
                    self._want_keyframe, last_key = False, now
                self.send_frame(frames, key)
                frames += 1
            while self.audio and audio <= (now - start) * 50:
                self.send_audio()
                audio += 1
            await asyncio.sleep(0.01)

    def send_sender_reports(self) -> None:
        """SRs like a browser's: now in NTP, and the RTP time of now."""
        wall = time.time()
        for kind, ssrc in (("audio", self.peer.audio_ssrc), ("video", self.peer.video_ssrc)):
            if ssrc is not None:
                report = build_sr(ssrc, ntp_from_time(wall), self.peer.ts[kind], 1, 1)
                self.peer.transport.send_rtcp(report)
                self.srs_sent.append((wall, kind, self.peer.ts[kind]))

    def send_frame(self, picture_id: int, keyframe: bool) -> None:
        for part in range(3):
            payload = vp8_payload(picture_id & 0x7FFF, keyframe, size=300, start=part == 0)
            packet = self.peer.rtp("video", payload, marker=part == 2)
            self.sent[int.from_bytes(packet[2:4], "big")] = packet
            self.payloads.add(payload)
            self.peer.send(packet)

    def send_audio(self) -> None:
        self._audio_count += 1
        payload = b"\xfc" + self._audio_count.to_bytes(4, "big") + bytes(36)
        self.payloads.add(payload)
        packet = self.peer.rtp("audio", payload, level=self.level)
        self.audio_timestamps[payload] = int.from_bytes(packet[4:8], "big")
        self.peer.send(packet)


# aiortc peers


class Tone(MediaStreamTrack):
    """A sine tone in 20 ms frames at 48 kHz, paced in real time."""

    kind = "audio"

    def __init__(self, amplitude: int = 8000, frequency: float = 440.0) -> None:
        super().__init__()
        self.amplitude = amplitude
        self.frequency = frequency
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._n * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(960) + self._n * 960) / 48000
        samples = (self.amplitude * np.sin(2 * np.pi * self.frequency * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self._n * 960
        frame.time_base = fractions.Fraction(1, 48000)
        self._n += 1
        return frame


class Pattern(MediaStreamTrack):
    """320x240 frames at 30 fps whose brightness changes with the frame number."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._n / 30 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        image = np.full((240, 320, 3), (self._n * 8) % 256, dtype=np.uint8)
        image[::16, :, 1] = 255
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self._n * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        self._n += 1
        return frame


def aiortc_peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def negotiate_aiortc(media: LocalMedia, pid: str, pc: RTCPeerConnection) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    answer = await media.offer(pid, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return answer


class TrackReader:
    """Reads decoded frames from every remote track of a peer connection."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.frames: dict[str, list[Any]] = {"audio": [], "video": []}
        self._tasks: list[asyncio.Task[None]] = []
        pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(Exception):
            while True:
                frame = await track.recv()
                self.frames[track.kind].append(frame)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
