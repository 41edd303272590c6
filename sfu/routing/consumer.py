"""A Consumer: one receive slot of a subscriber, fed by one producer at a time.

Each consumer has its own SSRC (announced in the answer), payload types and
extension ids, and its own sequence number and timestamp spaces.  Packets of
the current source are rewritten with offsets fixed at the start of a
*segment* (a run of packets from one source): the first packet of a new
segment gets the sequence number after the last one sent (no gap, so the
receiver never NACKs across a switch) and a timestamp advanced by the wall
time since the last packet (a plausible jump).  Packets of a source older
than its segment start are dropped; gaps inside a segment are real loss and
stay visible so the subscriber NACKs them.

A video switch is *pending* until the new source sends a key frame: until
then the old source keeps playing and the new one's packets are dropped.

A *thumbnail* (`set_thumbnail`; `MediaSettings.stage_video_slots`) is a
video slot at a reduced rate without simulcast: only the source's key
frames are forwarded (every packet carrying a key frame's timestamp), each
one starting a new segment, so the receiver sees no sequence gap and no
reference to a frame it never got.  Turning a thumbnail back into a full
slot waits for a key frame like a switch.
The last few segments are remembered to map a NACKed sequence number back
to the producer's packet in its retransmission cache.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple, Protocol

from sfu.packet.keyframe import is_keyframe
from sfu.packet.rtp import RtpError, RtpHeader, parse_rtp, remap_extensions, rewrite_header
from sfu.packet.rtx import build_rtx
from sfu.sdp.negotiate import CodecChoice

if TYPE_CHECKING:
    from sfu.routing.producer import Producer

MAX_SEGMENTS = 4


class RtpOutput(Protocol):
    """Where a consumer's packets go (the subscriber's transport: sfu.transport.webrtc)."""

    def send_rtp(self, packet: bytes) -> None: ...

    def send_rewritten(
        self,
        packet: bytes,
        *,
        ssrc: int,
        sequence: int,
        timestamp: int,
        payload_type: int,
        twcc_at: int = -1,
    ) -> None:
        """Send `packet` with these header fields (`rewrite_header`'s), marker kept.

        The transport writes the new header where it builds the datagram
        (the send batch), so a forwarded packet is copied once; `twcc_at` is
        where `packet` carries a transport-wide sequence number (the
        producer's `twcc_at`), for the transport to write its own there.
        """


class Segment(NamedTuple):
    first_out: int  # first sequence number sent in this segment
    producer: Producer
    seq_offset: int
    ts_offset: int
    ext_map: dict[int, int] | None


class Consumer:
    """One receive slot (see module doc); `forward` is the per-packet path."""

    __slots__ = (
        "_ext_map",
        "_first_in",
        "_fresh",
        "_rtx_seq",
        "_segments",
        "_seq",
        "_seq_offset",
        "_sr_times",
        "_time",
        "_ts",
        "_ts_offset",
        "clock_rate",
        "closed",
        "ext_ids",
        "kind",
        "mid",
        "octets_sent",
        "output",
        "owner",
        "packets_sent",
        "pending",
        "pt_by_codec",
        "reported_jitter",
        "reported_loss",
        "rtt",
        "rtx_pt_by_codec",
        "rtx_ssrc",
        "source",
        "ssrc",
        "thumbnail",
        "thumbnail_ts",
    )

    def __init__(
        self,
        *,
        owner: str,
        mid: str,
        kind: str,
        ssrc: int,
        rtx_ssrc: int | None,
        codecs: tuple[CodecChoice, ...],
        ext_ids: Mapping[str, int],
        output: RtpOutput,
    ) -> None:
        self.owner = owner
        self.mid = mid
        self.kind = kind
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.output = output
        self.source: Producer | None = None
        self.pending: Producer | None = None
        self.thumbnail = False
        self.thumbnail_ts: int | None = None  # RTP timestamp of the key frame being passed
        self.closed = False
        self.packets_sent = 0
        self.octets_sent = 0
        self._seq = random.getrandbits(15)
        self._ts = random.getrandbits(31)
        self._time: float | None = None
        self._rtx_seq = random.getrandbits(15)
        self._seq_offset = 0
        self._ts_offset = 0
        self._first_in = 0
        self._fresh = True
        self._ext_map: dict[int, int] | None = None
        self._segments: deque[Segment] = deque(maxlen=MAX_SEGMENTS)
        self._sr_times: dict[int, float] = {}
        self.reported_loss = 0.0  # fraction lost, from the subscriber's reports
        self.reported_jitter: float | None = None  # seconds
        self.rtt: float | None = None  # seconds
        self.update(codecs, ext_ids)

    def update(self, codecs: tuple[CodecChoice, ...], ext_ids: Mapping[str, int]) -> None:
        """New negotiated codecs/extensions (renegotiation); the SSRC stays."""
        self.pt_by_codec = {c.name: c.payload_type for c in codecs}
        self.rtx_pt_by_codec = {
            c.name: c.rtx_payload_type for c in codecs if c.rtx_payload_type is not None
        }
        self.clock_rate = codecs[0].clock_rate if codecs else 90000
        self.ext_ids = dict(ext_ids)
        self._fresh = True

    # switching

    @property
    def target(self) -> Producer | None:
        """The producer this slot is switching to, or showing."""
        return self.pending if self.pending is not None else self.source

    def switch(self, producer: Producer | None) -> bool:
        """Make `producer` this slot's source; True if a key frame is needed first."""
        if producer is self.target:
            return self.pending is not None
        if self.pending is not None:
            self.pending.detach(self)
            self.pending = None
        if producer is None:
            self._drop_source()
            return False
        if self.kind == "video" and producer.kind == "video":
            self.pending = producer
            producer.attach(self)
            return True
        self._drop_source()
        self.source = producer
        self._fresh = True
        producer.attach(self)
        return False

    def _drop_source(self) -> None:
        if self.source is not None:
            self.source.detach(self)
            self.source = None

    def _promote(self) -> None:
        pending = self.pending
        self._drop_source()
        self.source = pending
        self.pending = None
        self._fresh = True

    def producer_closed(self, producer: Producer) -> None:
        """`producer` is gone: forget it, keep a switch to another one pending."""
        if self.pending is producer:
            self.pending = None
        if self.source is producer:
            self.source = None
            self._fresh = True

    def resync(self) -> bool:
        """Start the video again from a key frame; True if one must be asked for.

        Used when the subscriber's transport connects: whatever was "sent"
        before that never arrived, so a decoder would start mid-stream.
        """
        if self.kind != "video" or self.pending is not None:
            return self.pending is not None
        if self.source is None:
            return False
        self.pending, self.source = self.source, None  # stays attached
        return True

    def set_thumbnail(self, thumbnail: bool) -> bool:
        """Key frames only (True) or every frame; True if a key frame must be asked for."""
        if thumbnail == self.thumbnail or self.kind != "video":
            return False
        self.thumbnail = thumbnail
        self.thumbnail_ts = None
        return not thumbnail and self.resync()

    def _thumbnail_passes(self, codec: str, data: bytes, h: RtpHeader) -> bool:
        if h.timestamp == self.thumbnail_ts:
            return True  # the rest of the key frame being passed
        if not is_keyframe(codec, data[h.payload_offset :]):
            return False
        self.thumbnail_ts = h.timestamp
        self._fresh = True  # a new segment: what was dropped leaves no gap
        return True

    def restart(self) -> None:
        """The source restarted its stream (new SSRC): begin a new segment."""
        self._fresh = True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.switch(None)

    # forwarding

    def forward(
        self, producer: Producer, data: bytes, h: RtpHeader, codec: str, now: float
    ) -> None:
        """Rewrite one packet of `producer` for this slot and send it."""
        if producer is not self.source:
            if producer is not self.pending or not is_keyframe(codec, data[h.payload_offset :]):
                return
            self._promote()
            self.thumbnail_ts = h.timestamp
        elif self.thumbnail and not self._thumbnail_passes(codec, data, h):
            return
        pt = self.pt_by_codec.get(codec)
        if pt is None:
            return  # the subscriber did not negotiate this codec
        seq_in = h.sequence
        if self._fresh:
            self._begin_segment(producer, seq_in, h.timestamp, now)
        elif (seq_in - self._first_in) & 0xFFFF >= 0x8000:
            return  # older than the switch to this source
        seq = (seq_in + self._seq_offset) & 0xFFFF
        ts = (h.timestamp + self._ts_offset) & 0xFFFFFFFF
        if (seq - self._seq) & 0xFFFF < 0x8000:
            self._seq = seq
            self._ts = ts
            self._time = now
        if self._ext_map is None:
            self.output.send_rewritten(
                data,
                ssrc=self.ssrc,
                sequence=seq,
                timestamp=ts,
                payload_type=pt,
                twcc_at=producer.twcc_at,
            )
        else:
            packet = bytearray(data)
            rewrite_header(packet, ssrc=self.ssrc, sequence=seq, timestamp=ts, payload_type=pt)
            try:
                remap_extensions(packet, h, self._ext_map)
            except RtpError:
                return
            self.output.send_rtp(bytes(packet))
        self.packets_sent += 1
        self.octets_sent += h.payload_length

    def _begin_segment(self, producer: Producer, seq_in: int, ts_in: int, now: float) -> None:
        first_out = (self._seq + 1) & 0xFFFF
        elapsed = 0 if self._time is None else int((now - self._time) * self.clock_rate)
        self._seq_offset = (first_out - seq_in) & 0xFFFF
        self._ts_offset = (self._ts + max(1, elapsed) - ts_in) & 0xFFFFFFFF
        self._first_in = seq_in
        self._fresh = False
        self._ext_map = extension_map(producer.ext_ids, self.ext_ids)
        self._segments.append(
            Segment(first_out, producer, self._seq_offset, self._ts_offset, self._ext_map)
        )

    # retransmission

    def retransmit(self, sequences: Iterable[int], now: float) -> int:
        """Answer a NACK from the producers' caches; returns packets resent."""
        sent = 0
        for seq in sequences:
            segment = self._segment_of(seq & 0xFFFF)
            if segment is not None and self._resend(segment, seq & 0xFFFF, now):
                sent += 1
        return sent

    def _segment_of(self, seq: int) -> Segment | None:
        if (self._seq - seq) & 0xFFFF >= 0x8000:
            return None  # never sent
        for segment in reversed(self._segments):
            if (seq - segment.first_out) & 0xFFFF < 0x8000:
                return segment
        return None

    def _resend(self, segment: Segment, seq: int, now: float) -> bool:
        producer = segment.producer
        original = producer.cached(((seq - segment.seq_offset) & 0xFFFF), now)
        if original is None:
            return False
        try:
            h = parse_rtp(original)
        except RtpError:
            return False
        codec = producer.codec_by_pt.get(h.payload_type)
        pt = self.pt_by_codec.get(codec or "")
        if codec is None or pt is None:
            return False
        packet = bytearray(original)
        ts = (h.timestamp + segment.ts_offset) & 0xFFFFFFFF
        rewrite_header(packet, ssrc=self.ssrc, sequence=seq, timestamp=ts, payload_type=pt)
        if segment.ext_map is not None:
            try:
                remap_extensions(packet, h, segment.ext_map)
            except RtpError:
                return False
        self.output.send_rtp(self._maybe_rtx(bytes(packet), codec))
        return True

    def padding_header(self) -> tuple[int, int, int, int] | None:
        """(SSRC, PT, sequence, timestamp) for a padding-only probe on this slot's RTX stream.

        None unless this is a video slot with RTX negotiated that has sent
        media (the transport's `send_padding` then tries another slot).
        """
        if self.kind != "video" or self.rtx_ssrc is None or self.packets_sent == 0:
            return None
        rtx_pt = next(iter(self.rtx_pt_by_codec.values()), None)
        if rtx_pt is None:
            return None
        self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        return self.rtx_ssrc, rtx_pt, self._rtx_seq, self._ts

    def _maybe_rtx(self, packet: bytes, codec: str) -> bytes:
        rtx_pt = self.rtx_pt_by_codec.get(codec)
        if rtx_pt is None or self.rtx_ssrc is None:
            return packet  # RFC 4588 not negotiated: resend the packet itself
        self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        return build_rtx(
            packet,
            parse_rtp(packet),
            rtx_ssrc=self.rtx_ssrc,
            rtx_payload_type=rtx_pt,
            rtx_sequence=self._rtx_seq,
        )

    # sender reports

    def sender_report(self, now: float) -> tuple[int, int] | None:
        """(NTP, RTP timestamp) for an SR now, from the source's own SR mapping.

        The NTP clock is the publisher's, so the audio and video consumers
        of one publisher stay in sync for the receiver; None until the source
        has sent an SR (or when nothing was sent yet).
        """
        source = self.source
        if source is None or source.last_sr is None or self.packets_sent == 0 or self._fresh:
            return None
        ntp, rtp_ts, received = source.last_sr
        elapsed = now - received
        rtp_out = (rtp_ts + self._ts_offset + int(elapsed * self.clock_rate)) & 0xFFFFFFFF
        return ntp + int(elapsed * 0x1_0000_0000), rtp_out

    def sr_sent(self, lsr: int, now: float) -> None:
        """Remember when the SR whose NTP middle bits are `lsr` left."""
        self._sr_times[lsr] = now
        if len(self._sr_times) > 8:
            del self._sr_times[next(iter(self._sr_times))]

    def on_report(self, fraction_lost: int, jitter: int, lsr: int, dlsr: int, now: float) -> None:
        """A report block about this consumer's stream from the subscriber.

        The round trip is measured against our own send time of the SR the
        block refers to, since the SR's NTP clock is the publisher's.
        """
        self.reported_loss = fraction_lost / 256.0
        self.reported_jitter = jitter / self.clock_rate
        sent = self._sr_times.get(lsr) if lsr else None
        if sent is not None:
            self.rtt = max(0.0, now - sent - dlsr / 65536.0)


def extension_map(
    publisher: Mapping[str, int], subscriber: Mapping[str, int]
) -> dict[int, int] | None:
    """Publisher id -> subscriber id by URI; None when no rewrite is needed."""
    mapping = {pid: subscriber[uri] for uri, pid in publisher.items() if uri in subscriber}
    if len(mapping) == len(publisher) and all(k == v for k, v in mapping.items()):
        return None
    return mapping
