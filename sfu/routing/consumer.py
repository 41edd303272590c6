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

Simulcast (see `sfu.routing.producer` for layers): `switch` takes a *track*
and `set_layers(spatial, temporal)` picks which of its layers (clamped to the
active ones) and which temporal layers (VP8 TID) are forwarded.  A spatial
switch is pending until a key frame of the target layer (the caller asks the
layer for one); the current layer keeps playing meanwhile.  The new layer's
first timestamp is aligned with the old one through both layers' sender
reports (the publisher's NTP clock, as mediasoup's SimulcastConsumer does),
else by the wall clock rule above, and always moves forward.  Temporal
down-switches happen at the next frame start, up-switches at a TL0 frame or
a layer-sync (Y) frame; a dropped packet leaves no sequence gap (a new
segment with the offset lowered starts at the next forwarded packet) and a
dropped picture leaves no picture id gap.  After a layer switch the VP8
picture id, TL0PICIDX and KEYIDX are rewritten to continue the old ones;
as long as no layer switch and no temporal drop happened, packets keep the
`send_rewritten` fast path (no payload copy).
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple, Protocol

from sfu.packet.keyframe import is_keyframe
from sfu.packet.rtp import RtpError, RtpHeader, parse_rtp, remap_extensions, rewrite_header
from sfu.packet.rtx import build_rtx
from sfu.routing.layers import MAX_TID, rewrite_vp8
from sfu.sdp.negotiate import CodecChoice

if TYPE_CHECKING:
    from sfu.routing.producer import Producer

MAX_SEGMENTS = 64  # switches and temporal drops; about a second of history while thinning
HIGHEST = 1 << 16  # a spatial wish above every layer: the highest active one
MAX_SR_JUMP_S = 5.0  # a sender-report alignment further ahead than this is not trusted

Vp8Offsets = tuple[int, int, int]  # picture id, TL0PICIDX, KEYIDX deltas


class RtpOutput(Protocol):
    """Where a consumer's packets go (the subscriber's transport: sfu.transport.webrtc)."""

    def send_rtp(self, packet: bytes) -> None: ...

    def send_rewritten(
        self, packet: bytes, *, ssrc: int, sequence: int, timestamp: int, payload_type: int
    ) -> None:
        """Send `packet` with these header fields (`rewrite_header`'s), marker kept.

        The transport writes the new header where it builds the datagram
        (the send batch), so a forwarded packet is copied once.
        """


class Segment(NamedTuple):
    first_out: int  # first sequence number sent in this segment
    producer: Producer
    seq_offset: int
    ts_offset: int
    ext_map: dict[int, int] | None
    vp8: Vp8Offsets | None = None


class Consumer:
    """One receive slot (see module doc); `forward` is the per-packet path."""

    __slots__ = (
        "_drop_hi",
        "_drop_pic",
        "_dropped",
        "_ext_map",
        "_filtering",
        "_first_in",
        "_fresh",
        "_rtx_seq",
        "_segments",
        "_seq",
        "_seq_offset",
        "_sr_times",
        "_switched_from",
        "_tid_now",
        "_tid_target",
        "_time",
        "_ts",
        "_ts_offset",
        "_vp8",
        "_want_spatial",
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
        "track",
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
        self.track: Producer | None = None
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
        self._vp8: Vp8Offsets | None = None  # None: no payload rewrite
        self._switched_from: Producer | None = None
        self._want_spatial: int | None = HIGHEST
        self._tid_target = MAX_TID
        self._tid_now = MAX_TID
        self._filtering = False
        self._dropped = 0  # packets dropped since the last one forwarded
        self._drop_hi = -1  # the last dropped sequence number
        self._drop_pic = -1  # the last dropped picture id
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
        """The layer producer this slot is switching to, or showing."""
        return self.pending if self.pending is not None else self.source

    def switch(self, producer: Producer | None) -> bool:
        """Make the track `producer` this slot's; True if a key frame is needed first.

        The layer is the one `set_layers` asked for (the highest active one
        until then); the key frame must come from `pending`.
        """
        if producer is self.track:
            return self.pending is not None
        self.track = producer
        if producer is None:
            self._aim(None)
            return False
        if self.kind == "video" and producer.kind == "video":
            return self._aim(self._layer_for(producer, self._want_spatial, time.monotonic()))
        self._aim(None)
        self.source = producer
        self._fresh = True
        producer.attach(self)
        return False

    def set_layers(
        self, spatial: int | None, temporal: int, now: float | None = None
    ) -> Producer | None:
        """Forward `spatial` (clamped to the active layers; None: no video) and TIDs <= `temporal`.

        Returns the layer producer to ask for a key frame (the caller does),
        or None.  `now`: the monotonic clock (read when not given).
        """
        self._want_spatial = spatial
        self._tid_target = max(0, min(MAX_TID, temporal))
        self._filtering = self._tid_target < MAX_TID or self._tid_now != self._tid_target
        return self.refresh_layers(time.monotonic() if now is None else now)

    def refresh_layers(self, now: float) -> Producer | None:
        """Re-apply the wanted layers (a layer was paused or came back); as `set_layers`."""
        track = self.track
        if self.kind != "video" or track is None:
            return None
        layer = self._layer_for(track, self._want_spatial, now)
        if layer is self.target:
            return None
        return self.pending if self._aim(layer) else None

    @property
    def layers_now(self) -> tuple[int | None, int]:
        """(spatial, temporal) forwarded now."""
        source = self.source
        if source is None:
            return None, 0
        return source.spatial, max(0, min(self._tid_now, source.meter.top))

    @property
    def wanted_layers(self) -> tuple[int | None, int]:
        return self._want_spatial, self._tid_target

    @staticmethod
    def _layer_for(track: Producer, spatial: int | None, now: float) -> Producer | None:
        if spatial is None:
            return None
        layers = track.layers
        if len(layers) == 1:
            return track
        wanted = min(max(spatial, 0), len(layers) - 1)
        for layer in reversed(layers[: wanted + 1]):
            if layer.active(now):
                return layer
        for layer in layers[wanted + 1 :]:
            if layer.active(now):
                return layer
        return layers[wanted]

    def _aim(self, layer: Producer | None) -> bool:
        """Make `layer` the target; True if it must wait for a key frame."""
        old_pending = self.pending
        if layer is None:
            self.pending = None
            old_source, self.source = self.source, None
            self._release(old_pending)
            self._release(old_source)
            return False
        if layer is self.source:
            self.pending = None
            self._release(old_pending)
            return False
        if layer is old_pending:
            return True
        self.pending = layer
        layer.attach(self)
        self._release(old_pending)
        return True

    def _release(self, producer: Producer | None) -> None:
        if producer is not None and producer is not self.source and producer is not self.pending:
            producer.detach(self)

    def _promote(self) -> None:
        pending = self.pending
        old = self.source
        self.source = pending
        self.pending = None
        self._release(old)
        self._switched_from = old
        self._fresh = True

    def producer_closed(self, producer: Producer) -> None:
        """`producer` is gone: forget it, keep a switch to another one pending."""
        if self.pending is producer:
            self.pending = None
        if self.source is producer:
            self.source = None
            self._fresh = True
        if self.track is producer.track and producer.track.closed:
            self.track = None

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
        """Key frames only (True) or every frame; True if a key frame must be asked for.

        The fallback for publishers without simulcast (a simulcast track
        gets its lowest layer instead, see `Group`).
        """
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
            if producer is not self.pending or not self._starts_keyframe(producer, codec, data, h):
                return
            self._promote()
            self.thumbnail_ts = h.timestamp
            self._tid_now = self._tid_target
            self._filtering = self._tid_now < MAX_TID
        elif self.thumbnail:
            if not self._thumbnail_passes(codec, data, h):
                return
        elif self._filtering and not self._temporal_passes(producer, h):
            return
        pt = self.pt_by_codec.get(codec)
        if pt is None:
            return  # the subscriber did not negotiate this codec
        seq_in = h.sequence
        if self._fresh:
            self._begin_segment(producer, seq_in, h.timestamp, now)
        elif (seq_in - self._first_in) & 0xFFFF >= 0x8000:
            return  # older than the switch to this source (or than a drop)
        elif self._dropped:
            self._close_gap(producer, seq_in)
        seq = (seq_in + self._seq_offset) & 0xFFFF
        ts = (h.timestamp + self._ts_offset) & 0xFFFFFFFF
        if (seq - self._seq) & 0xFFFF < 0x8000:
            self._seq = seq
            self._ts = ts
            self._time = now
        if self._ext_map is None and self._vp8 is None:
            self.output.send_rewritten(
                data, ssrc=self.ssrc, sequence=seq, timestamp=ts, payload_type=pt
            )
        else:
            packet = bytearray(data)
            rewrite_header(packet, ssrc=self.ssrc, sequence=seq, timestamp=ts, payload_type=pt)
            if self._ext_map is not None:
                try:
                    remap_extensions(packet, h, self._ext_map)
                except RtpError:
                    return
            if self._vp8 is not None:
                rewrite_vp8(packet, h.payload_offset, *self._vp8)
            self.output.send_rtp(bytes(packet))
        self.packets_sent += 1
        self.octets_sent += h.payload_length

    @staticmethod
    def _starts_keyframe(producer: Producer, codec: str, data: bytes, h: RtpHeader) -> bool:
        if codec == "vp8":
            return producer.desc.keyframe
        return is_keyframe(codec, data[h.payload_offset :])

    def _temporal_passes(self, producer: Producer, h: RtpHeader) -> bool:
        """Whether this packet's temporal layer is forwarded (switching at frame starts)."""
        desc = producer.desc
        tid = desc.tid
        if tid < 0:
            return True  # no temporal layers
        if self._tid_now != self._tid_target and desc.frame_start:
            target = self._tid_target
            if target < self._tid_now or tid == 0:
                self._tid_now = target
            elif desc.sync and self._tid_now < tid <= target:
                self._tid_now = tid
            self._filtering = self._tid_now < MAX_TID or self._tid_now != target
        if tid <= self._tid_now:
            return True
        self._drop(h.sequence, desc.picture_id)
        return False

    def _drop(self, seq_in: int, picture_id: int) -> None:
        """A packet not forwarded: the next one forwarded closes the sequence gap."""
        if self._fresh or self.source is None:
            return
        newest = self._drop_hi if self._dropped else (self._seq - self._seq_offset) & 0xFFFF
        if not 0 < (seq_in - newest) & 0xFFFF < 0x8000:
            return  # late or repeated: it never took a number
        self._dropped += 1
        self._drop_hi = seq_in
        if picture_id >= 0 and picture_id != self._drop_pic:
            self._drop_pic = picture_id
            pic, tl0, key = self._vp8 or (0, 0, 0)
            self._vp8 = ((pic - 1) & 0x7FFF, tl0, key)

    def _close_gap(self, producer: Producer, seq_in: int) -> None:
        self._seq_offset = (self._seq_offset - self._dropped) & 0xFFFF
        self._dropped = 0
        self._drop_hi = -1
        self._first_in = seq_in
        self._segments.append(
            Segment(
                (seq_in + self._seq_offset) & 0xFFFF,
                producer,
                self._seq_offset,
                self._ts_offset,
                self._ext_map,
                self._vp8,
            )
        )

    def _begin_segment(self, producer: Producer, seq_in: int, ts_in: int, now: float) -> None:
        first_out = (self._seq + 1) & 0xFFFF
        previous, self._switched_from = self._switched_from, None
        ts_out = self._aligned_ts(previous, producer, ts_in)
        if ts_out is None:
            elapsed = 0 if self._time is None else int((now - self._time) * self.clock_rate)
            ts_out = self._ts + max(1, elapsed)
        self._vp8 = self._vp8_offsets(previous, producer)
        self._seq_offset = (first_out - seq_in) & 0xFFFF
        self._ts_offset = (ts_out - ts_in) & 0xFFFFFFFF
        self._first_in = seq_in
        self._fresh = False
        self._dropped = 0
        self._drop_hi = -1
        self._drop_pic = -1
        self._ext_map = extension_map(producer.ext_ids, self.ext_ids)
        self._segments.append(
            Segment(
                first_out, producer, self._seq_offset, self._ts_offset, self._ext_map, self._vp8
            )
        )

    def _aligned_ts(self, previous: Producer | None, producer: Producer, ts_in: int) -> int | None:
        """`ts_in` of a new layer in the output timeline, through both layers' SRs."""
        if previous is None or previous.track is not producer.track or previous is producer:
            return None
        old_sr, new_sr = previous.last_sr, producer.last_sr
        if old_sr is None or new_sr is None or self.packets_sent == 0:
            return None
        ntp_delta = (new_sr[0] - old_sr[0]) / 0x1_0000_0000
        since_sr = ((ts_in - new_sr[1] + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        in_old = old_sr[1] + round(ntp_delta * self.clock_rate) + since_sr
        ts_out = (in_old + self._ts_offset) & 0xFFFFFFFF
        ahead = (ts_out - self._ts) & 0xFFFFFFFF
        if ahead == 0 or ahead >= 0x80000000:
            return (self._ts + 1) & 0xFFFFFFFF  # never back in time, never the same frame
        if ahead > MAX_SR_JUMP_S * self.clock_rate:
            return None
        return ts_out

    def _vp8_offsets(self, previous: Producer | None, producer: Producer) -> Vp8Offsets | None:
        """Continue the picture ids of the layer left (same track only), else keep them."""
        if previous is None or previous is producer or previous.track is not producer.track:
            return None
        old, new = previous.desc, producer.desc
        if new.picture_id < 0:
            return None
        pic, tl0, key = self._vp8 or (0, 0, 0)
        pic = (old.picture_id + pic + 1 - new.picture_id) & 0x7FFF if old.picture_id >= 0 else 0
        tl0 = (
            (old.tl0picidx + tl0 + 1 - new.tl0picidx) & 0xFF
            if min(old.tl0picidx, new.tl0picidx) >= 0
            else 0
        )
        key = (old.keyidx + key + 1 - new.keyidx) & 0x1F if min(old.keyidx, new.keyidx) >= 0 else 0
        return None if pic == tl0 == key == 0 else (pic, tl0, key)

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
        if segment.vp8 is not None:
            rewrite_vp8(packet, h.payload_offset, *segment.vp8)
        self.output.send_rtp(self._maybe_rtx(bytes(packet), codec))
        return True

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
