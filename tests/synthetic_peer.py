"""A synthetic WebRTC client: real ICE + DTLS-SRTP, hand-made RTP, no codecs.

Used by the SFU tests (hostile inputs replayed inside a live SRTP session,
byte-exact checks) and by bench/media_fanout.py (thousands of packets per
second without encoding or decoding anything).  It reuses the SFU's own
`WebRtcTransport` in the controlling ICE role, and writes its offer by hand
so that every SSRC, payload type and extension id is known to the caller.

Received SRTP is not decrypted by default: sequence numbers, SSRCs and
header extensions are in the clear, which is all a load generator needs;
set `decrypt_every` to check a sample (1 = every packet).

Latency is measured on every `latency_every`-th packet of a stream, from
the kernel's receive timestamp back to one of two send stamps: the
abs-send-time header extension (default; an SFU that forwards it untouched)
or `PAYLOAD_STAMP`, the last 12 bytes of the payload written by the sender
(`stamp_payload`; the measured packets are decrypted to read it).  The
payload stamp works through any SFU that relays payloads unchanged, also one
that rewrites or drops header extensions (Janus writes its own abs-send-time).

`transport_cc=True` negotiates transport-wide congestion control as Chromium
does (the sequence extension and `transport-cc` feedback on every m-line):
every packet the peer sends carries its transport-wide sequence number, and
on every packet it receives it reads the SFU's (in the clear: SRTP does not
encrypt headers) and records the arrival; every `feedback_interval` (0.1 s,
as Chromium) it sends the SFU transport-cc feedback about them
(`sfu.packet.twcc.ReceiveLog`), so the SFU runs its estimator as for a
browser.

`answer_offer()` takes an SFU's offer (Janus offers to its subscribers) instead
of making one.

`simulcast=("q", "h", "f")` publishes the video track as Chromium does with
simulcast: `a=rid:<rid> send` lines, `a=simulcast:send q;h;f`, the RID and
repaired-RID header extensions and no a=ssrc lines; every layer has its own
SSRC, sequence numbers and RTX SSRC, and `layer_rtp` writes the sdes:mid and
RID extensions on each packet (the SFU learns the SSRCs from them).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pylibsrtp
from aiortc import sdp as aiortc_sdp
from aiortc.rtcdtlstransport import RTCCertificate

from sfu.packet.rtp import build_rtp, parse_rtp
from sfu.packet.twcc import ReceiveLog
from sfu.transport.ice import PortAllocator
from sfu.transport.webrtc import TransportState, WebRtcTransport

OPUS_PT, VP8_PT, RTX_PT = 111, 96, 97
LEVEL_ID, ABS_ID, MID_ID = 1, 2, 3
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID_ID, RRID_ID, TWCC_ID = 4, 5, 6
TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
RRID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"

SIOCGSTAMP = 0x8906  # the receive time of the last packet read from a socket

# A send-time stamp at the end of a payload: magic + IEEE double (UNIX time).
STAMP_MAGIC = b"\xa5stm"
STAMP = struct.Struct("!4sd")
STAMP_SIZE = STAMP.size


def stamp_payload(payload: bytes, now: float | None = None) -> bytes:
    """`payload` with its last 12 bytes replaced by the send time (same length)."""
    if len(payload) < STAMP_SIZE + 4:
        return payload
    t = time.time() if now is None else now
    return payload[:-STAMP_SIZE] + STAMP.pack(STAMP_MAGIC, t)


def read_stamp(payload: bytes) -> float | None:
    """The send time written by `stamp_payload`, or None."""
    if len(payload) < STAMP_SIZE:
        return None
    magic, sent = STAMP.unpack_from(payload, len(payload) - STAMP_SIZE)
    return float(sent) if magic == STAMP_MAGIC else None


_CERTIFICATE: RTCCertificate | None = None


def certificate() -> RTCCertificate:
    global _CERTIFICATE
    if _CERTIFICATE is None:
        _CERTIFICATE = RTCCertificate.generateCertificate()
    return _CERTIFICATE


def abs_send_time(now: float | None = None) -> int:
    """24-bit 6.18 fixed-point seconds (wraps every 64 s) of `now` (UNIX time)."""
    t = time.time() if now is None else now
    return int(t * (1 << 18)) & 0xFFFFFF


@dataclass
class Stream:
    """What one peer received on one SSRC."""

    packets: int = 0
    octets: int = 0  # SRTP bytes (RTP header + payload + tag)
    lost: int = 0
    last_seq: int | None = None
    first_at: float = field(default_factory=time.monotonic)  # when the first packet came
    latencies: list[float] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)


class Sink:
    """Counts what the transport hands over (decrypted RTP/RTCP)."""

    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.states: list[TransportState] = []
        self.keep = True
        self.consent_lost = 0
        self.paths_restored = 0

    def on_rtp(self, packet: bytes) -> None:
        if self.keep:
            self.rtp.append(packet)

    def on_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)

    def on_transport_state(self, state: TransportState) -> None:
        self.states.append(state)

    def on_consent_lost(self) -> None:
        self.consent_lost += 1

    def on_path_restored(self) -> None:
        self.paths_restored += 1


class PeerTransport(WebRtcTransport):
    """The client side; counts SRTP per SSRC before (optionally) decrypting."""

    def __init__(
        self,
        sink: Sink,
        decrypt_every: int,
        latency_every: int,
        address: str = "127.0.0.1",
        latency_source: str = "abs-send-time",
    ) -> None:
        if latency_source not in ("abs-send-time", "payload"):
            raise ValueError(f"unknown latency source {latency_source!r}")
        super().__init__(
            addresses=[address],
            ports=PortAllocator(None),
            announced_ip=None,
            buffer_bytes=4 * 1024 * 1024,
            certificate=certificate(),
            sink=sink,
            controlling=True,
        )
        self.streams: dict[int, Stream] = {}
        self.decrypt_every = decrypt_every
        self.latency_every = latency_every
        self.latency_source = latency_source
        self.received = 0
        self.on_packet: Callable[[bytes], None] | None = None
        self.twcc_log: ReceiveLog | None = None  # set when transport-cc is negotiated

    def _on_srtp(self, data: bytes) -> None:
        if len(data) >= 12 and not 191 < data[1] < 224:
            if self.on_packet is not None:
                self.on_packet(data)
            log = self.twcc_log
            if log is not None:
                at = _find_extension(data, TWCC_ID, 2)
                if at >= 0:
                    log.record((data[at] << 8) | data[at + 1], time.monotonic_ns() // 1000)
            decrypted = self._count(data)
            self.received += 1
            if decrypted or self.decrypt_every == 0 or self.received % self.decrypt_every:
                return
        super()._on_srtp(data)

    def _count(self, data: bytes) -> bool:
        """Count one packet; True if it was decrypted here (payload latency)."""
        ssrc = int.from_bytes(data[8:12], "big")
        stream = self.streams.get(ssrc)
        if stream is None:
            stream = self.streams[ssrc] = Stream()
        seq = (data[2] << 8) | data[3]
        if stream.last_seq is not None:
            delta = (seq - stream.last_seq) & 0xFFFF
            if delta < 0x8000:
                stream.lost += delta - 1
                stream.last_seq = seq
        else:
            stream.last_seq = seq
        stream.packets += 1
        stream.octets += len(data)
        if self.latency_every and stream.packets % self.latency_every == 0:
            if self.latency_source == "payload":
                self._payload_latency(stream, data)
                return True
            sent = _find_abs_send_time(data)
            if sent is not None:
                arrived = abs_send_time(self._arrival_time())
                stream.latencies.append(((arrived - sent) & 0xFFFFFF) / (1 << 18))
        return False

    def _payload_latency(self, stream: Stream, data: bytes) -> None:
        """Decrypt this packet (which also checks SRTP) and read its send stamp."""
        arrived = self._arrival_time()
        packet = self.unprotect(data)
        if packet is None:
            self.counters.srtp_errors += 1
            return
        sent = read_stamp(packet)
        if sent is not None:
            stream.latencies.append(arrived - sent)

    async def gather(self) -> None:
        await super().gather()
        for fd in self._socket_fds():
            # The first SIOCGSTAMP turns on receive timestamps for the socket.
            with contextlib.suppress(OSError):
                fcntl.ioctl(fd, SIOCGSTAMP, bytes(16))

    def _socket_fds(self) -> list[int]:
        return [p.transport.get_extra_info("socket").fileno() for p in self._ice._protocols]

    def _arrival_time(self) -> float:
        """When the kernel queued the packet being handled (this loop may be late)."""
        selected = self._ice.selected
        if selected is None:
            return time.time()
        try:
            fd = selected[0].transport.get_extra_info("socket").fileno()
            seconds, micros = struct.unpack("qq", fcntl.ioctl(fd, SIOCGSTAMP, bytes(16)))
        except OSError:
            return time.time()
        return float(seconds + micros / 1e6)

    def unprotect(self, data: bytes) -> bytes | None:
        rx = self._rx
        if rx is None:
            return None
        try:
            return rx.unprotect(data)
        except pylibsrtp.Error:
            return None

    def protect(self, packet: bytes) -> bytes:
        assert self._tx is not None
        return self._tx.protect(packet)

    def protect_rtcp(self, packet: bytes) -> bytes:
        assert self._tx is not None
        return self._tx.protect_rtcp(packet)

    def send_raw(self, data: bytes) -> None:
        """Any bytes, unprotected, from our selected socket to the SFU."""
        self._ice.send_media(data)

    def pending_dtls(self) -> int:
        return self._ice._queue.qsize()


def _find_abs_send_time(data: bytes) -> int | None:
    at = _find_extension(data, ABS_ID, 3)
    return int.from_bytes(data[at : at + 3], "big") if at >= 0 else None


def _find_extension(data: bytes, ext_id: int, size: int) -> int:
    """Offset of the value of one-byte header extension `ext_id` of `size` bytes, or -1."""
    if not data[0] & 0x10:
        return -1
    offset = 12 + 4 * (data[0] & 0x0F)
    if offset + 4 > len(data) or data[offset : offset + 2] != b"\xbe\xde":
        return -1
    end = offset + 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
    i = offset + 4
    while i < min(end, len(data)):
        b = data[i]
        if b == 0:
            i += 1
            continue
        found, length = b >> 4, (b & 0x0F) + 1
        if found == ext_id:
            return i + 1 if length == size and i + 1 + size <= len(data) else -1
        i += 1 + length
    return -1


class SyntheticPeer:
    """One client session (see module doc)."""

    def __init__(
        self,
        *,
        audio: bool = False,
        video: bool = False,
        audio_slots: int = 0,
        video_slots: int = 0,
        decrypt_every: int = 0,
        latency_every: int = 0,
        announce_ssrcs: bool = True,
        address: str = "127.0.0.1",
        latency_source: str = "abs-send-time",
        stamp: bool = False,
        simulcast: tuple[str, ...] = (),
        transport_cc: bool = False,
        feedback_interval: float = 0.1,
    ) -> None:
        self.sink = Sink()
        self.transport_cc = transport_cc
        self.feedback_interval = feedback_interval
        self.twcc_seq = random.getrandbits(16)
        self.rtcp_ssrc = random.getrandbits(32) | 1
        self.feedback_sent = 0  # transport-cc feedback packets
        self._feedback: asyncio.Task[None] | None = None
        self.simulcast = simulcast if video else ()
        self.layer_ssrcs = {rid: random.getrandbits(32) | 1 for rid in self.simulcast}
        self.layer_rtx_ssrcs = {rid: random.getrandbits(32) | 1 for rid in self.simulcast}
        self.layer_seq = {rid: random.getrandbits(15) for rid in self.simulcast}
        self.layer_rtx_seq = {rid: random.getrandbits(15) for rid in self.simulcast}
        self.transport = PeerTransport(
            self.sink, decrypt_every, latency_every, address, latency_source
        )
        self.stamp = stamp
        self.audio_ssrc = random.getrandbits(32) | 1 if audio else None
        self.video_ssrc = random.getrandbits(32) | 1 if video else None
        self.rtx_ssrc = random.getrandbits(32) | 1 if video else None
        self.audio_slots = audio_slots
        self.video_slots = video_slots
        self.announce_ssrcs = announce_ssrcs
        self.session_id = random.getrandbits(62)
        self.offers = 0
        self.mids: list[tuple[str, str, str]] = []  # (mid, kind, direction)
        self.answer: aiortc_sdp.SessionDescription | None = None
        self.remote_offer: aiortc_sdp.SessionDescription | None = None
        self.seq = {"audio": random.getrandbits(15), "video": random.getrandbits(15)}
        self.ts = {"audio": random.getrandbits(31), "video": random.getrandbits(31)}
        self._frame_done = {"audio": False, "video": False}
        self._plan()

    def _plan(self) -> None:
        index = 0
        for kind, publishes, slots in (
            ("audio", self.audio_ssrc is not None, self.audio_slots),
            ("video", self.video_ssrc is not None, self.video_slots),
        ):
            count = max(int(publishes), slots)
            for n in range(count):
                send = publishes and n == 0
                recv = n < slots
                direction = {(1, 1): "sendrecv", (1, 0): "sendonly", (0, 1): "recvonly"}[
                    (int(send), int(recv))
                ]
                self.mids.append((str(index), kind, direction))
                index += 1

    async def offer(self) -> str:
        await self.transport.gather()
        return self._offer_text()

    async def restart_offer(self) -> str:
        """An ICE restart: a new agent (new ufrag/pwd, a new socket), same DTLS, same m-lines."""
        await self.transport.prepare_restart()
        return self._offer_text()

    async def restarted(self, answer: str, timeout: float = 10.0) -> None:
        """Apply the answer to `restart_offer()` and wait until the new agent carries media."""
        session = aiortc_sdp.SessionDescription.parse(answer)
        first = next(m for m in session.media if m.port)
        assert first.ice is not None
        restarts = self.transport.counters.ice_restarts
        self.transport.restart(
            ufrag=str(first.ice.usernameFragment),
            pwd=str(first.ice.password),
            candidates=[aiortc_sdp.candidate_to_sdp(c) for c in first.ice_candidates],
            timeout=timeout,
        )
        async with asyncio.timeout(timeout):
            while self.transport.counters.ice_restarts == restarts:
                if not self.transport.restarting:
                    raise ConnectionError("the synthetic peer's ICE restart failed")
                await asyncio.sleep(0.01)

    def cut_path(self) -> None:
        """The network went away: the current sockets are closed, nothing is sent or answered."""
        self.transport._ice.close_sockets()

    def _offer_text(self) -> str:
        local = self.transport.local("actpass")
        # one session id per peer (as a browser's RTCPeerConnection), a new version per offer
        self.offers += 1
        lines = ["v=0", f"o=- {self.session_id} {self.offers} IN IP4 0.0.0.0", "s=-", "t=0 0"]
        lines.append("a=group:BUNDLE " + " ".join(m for m, _, _ in self.mids))
        lines.append("a=msid-semantic: WMS *")
        for mid, kind, direction in self.mids:
            lines += self._media(mid, kind, direction, local)
        return "\r\n".join(lines) + "\r\n"

    def _media(self, mid: str, kind: str, direction: str, local: object) -> list[str]:
        pts = f"{OPUS_PT}" if kind == "audio" else f"{VP8_PT} {RTX_PT}"
        lines = [
            f"m={kind} 9 UDP/TLS/RTP/SAVPF {pts}",
            "c=IN IP4 0.0.0.0",
            f"a=ice-ufrag:{local.ice_ufrag}",  # type: ignore[attr-defined]
            f"a=ice-pwd:{local.ice_pwd}",  # type: ignore[attr-defined]
        ]
        lines += [f"a=fingerprint:{a} {v}" for a, v in local.fingerprints]  # type: ignore[attr-defined]
        lines += ["a=setup:actpass", f"a=mid:{mid}", f"a={direction}", "a=rtcp-mux"]
        if kind == "audio":
            lines += [f"a=extmap:{LEVEL_ID} {AUDIO_LEVEL_URI}"]
        lines += [f"a=extmap:{ABS_ID} {ABS_SEND_TIME_URI}", f"a=extmap:{MID_ID} {MID_URI}"]
        if self.transport_cc:
            lines.append(f"a=extmap:{TWCC_ID} {TWCC_URI}")
        sending = direction in ("sendrecv", "sendonly")
        if kind == "video" and sending and self.simulcast:
            lines += [f"a=extmap:{RID_ID} {RID_URI}", f"a=extmap:{RRID_ID} {RRID_URI}"]
        tcc = ("transport-cc",) if self.transport_cc else ()
        if kind == "audio":
            lines += [f"a=rtpmap:{OPUS_PT} opus/48000/2", f"a=fmtp:{OPUS_PT} minptime=10"]
            lines += [f"a=rtcp-fb:{OPUS_PT} {fb}" for fb in tcc]
        else:
            lines += [f"a=rtpmap:{VP8_PT} VP8/90000"]
            feedback = ("nack", "nack pli", "ccm fir", "goog-remb", *tcc)
            lines += [f"a=rtcp-fb:{VP8_PT} {fb}" for fb in feedback]
            lines += [f"a=rtpmap:{RTX_PT} rtx/90000", f"a=fmtp:{RTX_PT} apt={VP8_PT}"]
        if kind == "video" and sending and self.simulcast:
            lines += [f"a=rid:{rid} send" for rid in self.simulcast]
            lines.append("a=simulcast:send " + ";".join(self.simulcast))
        elif sending and self.announce_ssrcs:
            lines += self._ssrc_lines(kind)
        lines += [f"a=candidate:{c}" for c in local.candidates]  # type: ignore[attr-defined]
        return lines

    def _ssrc_lines(self, kind: str) -> list[str]:
        ssrcs = [self.audio_ssrc] if kind == "audio" else [self.video_ssrc, self.rtx_ssrc]
        lines = [f"a=ssrc-group:FID {ssrcs[0]} {ssrcs[1]}"] if len(ssrcs) == 2 else []
        return lines + [f"a=ssrc:{s} cname:synthetic" for s in ssrcs]

    async def connect(self, answer: str, timeout: float = 10.0) -> None:
        """Apply the SFU's answer and wait until SRTP is keyed."""
        session = aiortc_sdp.SessionDescription.parse(answer)
        self.answer = session
        first = next(m for m in session.media if m.port)
        assert first.dtls is not None and first.ice is not None
        fingerprints = tuple((f.algorithm, f.value) for f in first.dtls.fingerprints)
        setup_role = first.dtls.role  # "client" means the SFU is active
        self.transport.add_remote_candidates(
            [aiortc_sdp.candidate_to_sdp(c) for c in first.ice_candidates]
        )
        self.transport.start(
            ufrag=str(first.ice.usernameFragment),
            pwd=str(first.ice.password),
            fingerprints=fingerprints,
            dtls_role="server" if setup_role == "client" else "client",
            timeout=timeout,
        )
        async with asyncio.timeout(timeout):
            while not self.transport.connected:
                if self.transport.state == TransportState.FAILED:
                    raise ConnectionError("the synthetic peer failed to connect")
                await asyncio.sleep(0.01)
        if self.transport_cc and self._feedback is None:
            self.transport.twcc_log = ReceiveLog()
            self._feedback = asyncio.create_task(self._send_feedback())

    async def _send_feedback(self) -> None:
        """transport-cc feedback about what arrived, every `feedback_interval`."""
        log = self.transport.twcc_log
        assert log is not None
        while True:
            await asyncio.sleep(self.feedback_interval)
            media = next(iter(self.transport.streams), 0)
            for packet in log.feedback(self.rtcp_ssrc, media):
                self.transport.send_rtcp(packet)
                self.feedback_sent += 1

    def _next_twcc(self) -> bytes:
        seq = self.twcc_seq
        self.twcc_seq = (seq + 1) & 0xFFFF
        return seq.to_bytes(2, "big")

    async def answer_offer(self, offer: str, timeout: float = 10.0) -> str:
        """Answer an SFU's offer (receive only) and start connecting in the background.

        Every m-line with a port is accepted recvonly with the first Opus or
        VP8 payload type (and VP8's RTX), the feedback this peer offers
        itself, and of the offered header extensions only audio level,
        abs-send-time and mid (what `offer()` proposes).  We are the ICE
        controlled agent and the DTLS client (setup:active).  Call
        `wait_connected()` for the result.
        """
        session = aiortc_sdp.SessionDescription.parse(offer)
        self.remote_offer = session
        await self.transport.gather()
        local = self.transport.local("active")
        lines = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0"]
        accepted = [m.rtp.muxId for m in session.media if m.port]
        lines.append("a=group:BUNDLE " + " ".join(accepted))
        lines.append("a=msid-semantic: WMS *")
        self.mids = []
        for media in session.media:
            lines += self._answer_media(media, local)
        first = next(m for m in session.media if m.port)
        assert first.dtls is not None and first.ice is not None
        self.transport.add_remote_candidates(
            [aiortc_sdp.candidate_to_sdp(c) for c in first.ice_candidates]
        )
        self.transport._ice.ice_controlling = False
        self.transport.start(
            ufrag=str(first.ice.usernameFragment),
            pwd=str(first.ice.password),
            fingerprints=tuple((f.algorithm, f.value) for f in first.dtls.fingerprints),
            dtls_role="client",
            timeout=timeout,
        )
        return "\r\n".join(lines) + "\r\n"

    def _answer_media(self, media: aiortc_sdp.MediaDescription, local: object) -> list[str]:
        mid = media.rtp.muxId
        wanted = {"audio": "opus", "video": "vp8"}.get(media.kind)
        codec = next((c for c in media.rtp.codecs if c.name.lower() == wanted), None)
        if not media.port or codec is None:
            return [f"m={media.kind} 0 {media.profile} {' '.join(map(str, media.fmt))}"]
        rtx = next(
            (
                c
                for c in media.rtp.codecs
                if c.name.lower() == "rtx" and c.parameters.get("apt") == codec.payloadType
            ),
            None,
        )
        pts = [codec.payloadType] + ([rtx.payloadType] if rtx is not None else [])
        direction = "recvonly" if media.direction in ("sendonly", "sendrecv") else "inactive"
        self.mids.append((mid, media.kind, direction))
        lines = [
            f"m={media.kind} 9 UDP/TLS/RTP/SAVPF {' '.join(map(str, pts))}",
            "c=IN IP4 0.0.0.0",
            f"a=ice-ufrag:{local.ice_ufrag}",  # type: ignore[attr-defined]
            f"a=ice-pwd:{local.ice_pwd}",  # type: ignore[attr-defined]
        ]
        lines += [f"a=fingerprint:{a} {v}" for a, v in local.fingerprints]  # type: ignore[attr-defined]
        lines += ["a=setup:active", f"a=mid:{mid}", f"a={direction}", "a=rtcp-mux"]
        known = {AUDIO_LEVEL_URI, ABS_SEND_TIME_URI, MID_URI}
        lines += [f"a=extmap:{e.id} {e.uri}" for e in media.rtp.headerExtensions if e.uri in known]
        channels = f"/{codec.channels}" if codec.channels else ""
        lines.append(f"a=rtpmap:{codec.payloadType} {codec.name}/{codec.clockRate}{channels}")
        if media.kind == "audio":
            lines.append(f"a=fmtp:{codec.payloadType} minptime=10")
        else:
            feedback = ("nack", "nack pli", "ccm fir", "goog-remb")
            offered = {f"{fb.type} {fb.parameter}".strip() for fb in codec.rtcpFeedback}
            lines += [f"a=rtcp-fb:{codec.payloadType} {fb}" for fb in feedback if fb in offered]
        if rtx is not None:
            lines.append(f"a=rtpmap:{rtx.payloadType} rtx/{rtx.clockRate}")
            lines.append(f"a=fmtp:{rtx.payloadType} apt={codec.payloadType}")
        lines += [f"a=candidate:{c}" for c in local.candidates]  # type: ignore[attr-defined]
        return lines

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Until SRTP is keyed (after `connect` or `answer`)."""
        async with asyncio.timeout(timeout):
            while not self.transport.connected:
                if self.transport.state == TransportState.FAILED:
                    raise ConnectionError("the synthetic peer failed to connect")
                await asyncio.sleep(0.01)

    def offered_ssrcs(self) -> dict[str, int]:
        """mid -> the media SSRC the offer (`answer_offer()`) announced per accepted m-line."""
        assert self.remote_offer is not None
        accepted = {mid for mid, _, direction in self.mids if direction != "inactive"}
        out = {}
        for media in self.remote_offer.media:
            if media.rtp.muxId not in accepted or not media.ssrc:
                continue
            repairs = {int(g.items[1]) for g in media.ssrc_group if g.semantic == "FID"}
            primary = [s.ssrc for s in media.ssrc if s.ssrc not in repairs]
            if primary:
                out[media.rtp.muxId] = primary[0]
        return out

    async def hang_up(self) -> None:
        """Close like a browser: a DTLS close_notify first, then the sockets."""
        await self.transport._dtls.stop()
        self.close()

    def slot_ssrcs(self) -> dict[str, int]:
        """mid -> the SSRC the SFU announced for that receive slot."""
        assert self.answer is not None
        return {m.rtp.muxId: m.ssrc[0].ssrc for m in self.answer.media if m.ssrc}

    def rtp(
        self,
        kind: str,
        payload: bytes,
        *,
        marker: bool = False,
        level: int | None = None,
        timestamp_step: int | None = None,
        sequence: int | None = None,
    ) -> bytes:
        """The next plain RTP packet of our `kind` track (not yet protected)."""
        seq = self.seq[kind] if sequence is None else sequence
        if sequence is None:
            self.seq[kind] = (seq + 1) & 0xFFFF
        step = timestamp_step if timestamp_step is not None else (960 if kind == "audio" else 3000)
        if self._frame_done[kind]:  # a new frame (video) or packet (audio) starts
            self.ts[kind] = (self.ts[kind] + step) & 0xFFFFFFFF
        self._frame_done[kind] = marker or kind == "audio"
        extensions = {ABS_ID: abs_send_time().to_bytes(3, "big")}
        if kind == "audio" and level is not None:
            extensions[LEVEL_ID] = bytes([0x80 | level])
        if self.transport_cc:
            extensions[TWCC_ID] = self._next_twcc()
        if self.stamp:
            payload = stamp_payload(payload)
        return build_rtp(
            payload_type=OPUS_PT if kind == "audio" else VP8_PT,
            sequence=seq,
            timestamp=self.ts[kind],
            ssrc=(self.audio_ssrc if kind == "audio" else self.video_ssrc) or 0,
            payload=payload,
            marker=marker,
            extensions=extensions,
        )

    def layer_rtp(self, rid: str, payload: bytes, *, timestamp: int, marker: bool) -> bytes:
        """The next plain RTP packet of simulcast layer `rid`, with sdes:mid and RID."""
        seq = self.layer_seq[rid]
        self.layer_seq[rid] = (seq + 1) & 0xFFFF
        mid = next(m for m, kind, d in self.mids if kind == "video" and d != "recvonly")
        return build_rtp(
            payload_type=VP8_PT,
            sequence=seq,
            timestamp=timestamp & 0xFFFFFFFF,
            ssrc=self.layer_ssrcs[rid],
            payload=payload,
            marker=marker,
            extensions=self._numbered(
                {
                    ABS_ID: abs_send_time().to_bytes(3, "big"),
                    MID_ID: mid.encode(),
                    RID_ID: rid.encode(),
                }
            ),
        )

    def layer_rtx(self, rid: str, original: bytes) -> bytes:
        """An RFC 4588 retransmission of a packet of layer `rid`, marked with its repaired RID."""
        seq = self.layer_rtx_seq[rid]
        self.layer_rtx_seq[rid] = (seq + 1) & 0xFFFF
        mid = next(m for m, kind, d in self.mids if kind == "video" and d != "recvonly")
        h = parse_rtp(original)
        return build_rtp(
            payload_type=RTX_PT,
            sequence=seq,
            timestamp=h.timestamp,
            ssrc=self.layer_rtx_ssrcs[rid],
            payload=original[2:4]
            + original[h.payload_offset : h.payload_offset + h.payload_length],
            marker=h.marker,
            extensions=self._numbered({MID_ID: mid.encode(), RRID_ID: rid.encode()}),
        )

    def _numbered(self, extensions: dict[int, bytes]) -> dict[int, bytes]:
        """`extensions` with the next transport-wide sequence number, with transport-cc."""
        if self.transport_cc:
            extensions[TWCC_ID] = self._next_twcc()
        return extensions

    def send(self, packet: bytes) -> None:
        self.transport.send_rtp(packet)

    def send_raw_plain(self, data: bytes) -> None:
        """Bytes as they are (no SRTP) from our selected socket."""
        self.transport.send_raw(data)

    def close(self) -> None:
        if self._feedback is not None:
            self._feedback.cancel()
        self.transport.close()


# VP8 payloads: a payload descriptor (X, I with a 15-bit picture id, S=1) and a
# frame header whose first bit says key frame (0) or not (1).
def vp8_payload(picture_id: int, keyframe: bool, size: int = 1000, start: bool = True) -> bytes:
    descriptor = bytes(
        [0x90 if start else 0x80, 0x80, 0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF]
    )
    if not start:
        return descriptor + bytes(size)
    header = bytes([0x00 if keyframe else 0x01, 0x00, 0x00])
    if keyframe:
        header += b"\x9d\x01\x2a" + (320).to_bytes(2, "little") + (240).to_bytes(2, "little")
    body = random.randbytes(max(0, size - len(header)))
    return descriptor + header + body
