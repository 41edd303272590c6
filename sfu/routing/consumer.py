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
else by the wall clock rule above, and always moves forward.

Two paths.  The *plain* path above (offsets fixed per segment) serves a slot
that never switched layers within a track and drops no temporal layer: its
packets keep the `send_rewritten` fast path.  The first time a VP8 slot
switches layers within a track, or is asked for fewer temporal layers than
its source sends, it moves for good to the *mapped* path at a frame start:
`sfu.routing.vp8map.Vp8Map` judges every packet (temporal thinning, picture
id / TL0PICIDX / KEYIDX continuity) and `sfu.routing.seqmap.SeqMap` numbers
them (no gap for a dropped packet, real loss stays visible, NACKs mapped
back); only packets whose descriptor changes are copied.

RED audio (RFC 2198): a publisher's RED packets take the plain path to a
subscriber that negotiated RED around the same Opus PT (`CodecChoice.key`
matches).  Any other subscriber takes `_forward_red`, a copy: a RED one gets
the block PTs rewritten to its own Opus PT, one without RED gets the primary
block as a plain Opus packet (same sequence number and timestamp), preceded
by the packets lost before the SFU that its redundant blocks repeat.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple, Protocol

from sfu import native
from sfu.packet.keyframe import is_keyframe
from sfu.packet.red import primary_packet, rewrite_pts
from sfu.packet.rtp import RtpError, RtpHeader, parse_rtp, remap_extensions, rewrite_header
from sfu.packet.rtx import build_rtx
from sfu.packet.vp8 import Vp8Descriptor, parse_vp8
from sfu.policy.resend import (
    KEYFRAME_INTERVAL_S,
    LOST_AFTER_S,
    LOST_KEYFRAME_AFTER_S,
    MAX_RESENDS,
    NACKED_FOR_S,
    ResendBudget,
    Verdict,
)
from sfu.routing.layers import MAX_TID
from sfu.routing.seqmap import SeqMap
from sfu.routing.vp8map import DROP, REWRITE, Vp8Map
from sfu.sdp.negotiate import RED, CodecChoice

if TYPE_CHECKING:
    from sfu.routing.producer import Producer

MAX_SEGMENTS = 4
HIGHEST = 1 << 16  # a spatial wish above every layer: the highest active one
MAX_SR_JUMP_S = 5.0  # a sender-report alignment further ahead than this is not trusted
# A packet is not resent again within a round trip (`Consumer.retransmit`): this one while
# none is measured (mediasoup's default), and the measured one within these bounds.
RESEND_RTT_S = 0.1
RESEND_GAP_S = (0.01, 0.5)
MAX_RESENT = 512  # NACKed numbers remembered per slot (their first NACK, their resends)
NO_CUT, CUT_ARMED, CUTTING = 0, 1, 2  # `Consumer._cut`: the old layer of a down-switch


class RtpOutput(Protocol):
    """Where a consumer's packets go (the subscriber's transport: sfu.transport.webrtc)."""

    def send_rtp(self, packet: bytes, twcc_at: int = -1) -> None:
        """Send `packet` as it is; `twcc_at` (when known, else -1): where it carries
        a transport-wide sequence number, for the transport to write its own."""

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


class Pacing(Protocol):
    """Paces a switching slot's burst to the subscriber's estimate (sfu.routing.pacedoutput)."""

    def engage(self, consumer: Consumer) -> bool:
        """Point `consumer.output` at the pacing until its burst has left; False: not now."""


class Segment(NamedTuple):
    first_out: int  # first sequence number sent in this segment
    producer: Producer
    seq_offset: int
    ts_offset: int
    ext_map: dict[int, int] | None


class Consumer:
    """One receive slot (see module doc); `forward` is the per-packet path."""

    __slots__ = (
        "_cut",
        "_cut_desc",
        "_ext_map",
        "_first_in",
        "_fresh",
        "_keyframe_at",
        "_lost_asked_at",
        "_maps",
        "_maps_first",
        "_memo",
        "_nacks",
        "_resend_from",
        "_rtx_seq",
        "_segments",
        "_seq",
        "_seq_offset",
        "_sr_times",
        "_switched_from",
        "_tid_target",
        "_time",
        "_ts",
        "_ts_offset",
        "_want_spatial",
        "clock_rate",
        "closed",
        "ext_ids",
        "kind",
        "mid",
        "octets_sent",
        "output",
        "owner",
        "pacer",
        "packets_sent",
        "pending",
        "pt_by_codec",
        "red_pt",
        "reported_jitter",
        "reported_loss",
        "rtt",
        "rtx_pt_by_codec",
        "rtx_ssrc",
        "source",
        "ssrc",
        "switches",
        "thumbnail",
        "thumbnail_ts",
        "track",
        "unfilled",
        "wake",
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
        # The subscriber's pacing (video slots with a transport; Participant._bind_outputs).
        self.pacer: Pacing | None = None
        self.track: Producer | None = None
        self.source: Producer | None = None
        self.pending: Producer | None = None
        # Told when a switch becomes pending: the clock retries its key frame request
        # every tick until it completes (`Participant.wake`, `sfu.routing.ticker`).
        self.wake: Callable[[], None] = _no_wake
        self.thumbnail = False
        self.thumbnail_ts: int | None = None  # RTP timestamp of the key frame being passed
        self.closed = False
        self.packets_sent = 0
        self.octets_sent = 0
        self.switches = 0  # pending layers that became the source (for the layer trace)
        # NACKed numbers it had no copy of at their first NACK (for the layer trace): a
        # hole, a packet no longer cached, or one from before the slot knew its source.
        self.unfilled = 0
        self._seq = random.getrandbits(15)
        self._ts = random.getrandbits(31)
        self._time: float | None = None
        self._rtx_seq = random.getrandbits(15)
        self._seq_offset = 0
        self._ts_offset = 0
        self._first_in = 0
        # The compiled fan-out's copy of the plain path's fields (sfu.native._fanout.Memo,
        # made there; each value checked against its field by identity): nothing else sets it.
        self._memo: object = None
        self._fresh = True
        self._ext_map: dict[int, int] | None = None
        self._switched_from: Producer | None = None
        self._cut = NO_CUT  # a down-switch for bandwidth: the old layer stops (see set_layers)
        self._cut_desc: Vp8Descriptor | None = None  # the last one forwarded before a cut
        self._resend_from: int | None = None  # NACKs of numbers before this: not answered
        # sequence number -> (when first NACKed, when last resent, times resent)
        self._nacks: dict[int, tuple[float, float, int]] = {}
        # When the slot last started from a key frame, or asked for one for its losses.
        self._keyframe_at = -1e18
        self._lost_asked_at = -1e18  # when it last asked for one for a packet lost for good
        self._want_spatial: int | None = HIGHEST
        self._tid_target = MAX_TID
        self._maps: tuple[SeqMap[Producer], Vp8Map] | None = None  # the mapped path
        self._maps_first = 0  # the first sequence number the mapped path gave
        self._segments: deque[Segment] = deque(maxlen=MAX_SEGMENTS)
        self._sr_times: dict[int, float] = {}
        self.reported_loss = 0.0  # fraction lost, from the subscriber's reports
        self.reported_jitter: float | None = None  # seconds
        self.rtt: float | None = None  # seconds
        self.update(codecs, ext_ids)

    def update(self, codecs: tuple[CodecChoice, ...], ext_ids: Mapping[str, int]) -> None:
        """New negotiated codecs/extensions (renegotiation); the SSRC stays."""
        self.pt_by_codec = {c.key: c.payload_type for c in codecs}
        self.red_pt = next((c.payload_type for c in codecs if c.name == RED), None)
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
        self, spatial: int | None, temporal: int, now: float | None = None, *, cut: bool = False
    ) -> Producer | None:
        """Forward `spatial` (clamped to the active layers; None: no video) and TIDs <= `temporal`.

        Returns the layer producer to ask for a key frame (the caller does),
        or None.  `now`: the monotonic clock (read when not given).

        `cut`: the switch is down for bandwidth (the link cannot carry the
        current layer).  Then the current layer stops at its next frame
        start instead of playing on until the lower layer's key frame: on a
        full bottleneck that key frame would queue behind the old layer and
        be lost (the network lab saw 1-3 s stalls).  The picture holds
        meanwhile.  Without `cut` (a smaller tile) the old layer plays on.
        """
        self._want_spatial = spatial
        self._tid_target = max(0, min(MAX_TID, temporal))
        if self._maps is not None:
            self._maps[1].set_max_temporal(self._tid_target)
        awaited = self.refresh_layers(time.monotonic() if now is None else now)
        source, pending = self.source, self.pending
        down = (
            pending is not None
            and source is not None
            and pending.track is source.track
            and pending.spatial < source.spatial
        )
        if not down:
            self._cut = NO_CUT
        elif cut and self._cut == NO_CUT:
            self._cut = CUT_ARMED
            self._cut_desc = source.desc if source is not None else None
        return awaited

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
        temporal = self._maps[1].temporal if self._maps is not None else MAX_TID
        return source.spatial, max(0, min(temporal, source.meter.top))

    @property
    def wanted_layers(self) -> tuple[int | None, int]:
        return self._want_spatial, self._tid_target

    @property
    def switching(self) -> tuple[int, bool]:
        """(the cut state: NO_CUT, CUT_ARMED or CUTTING; on the mapped path) for the trace."""
        return self._cut, self._maps is not None

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
            self._cut = NO_CUT
            self.pending = None
            old_source, self.source = self.source, None
            self._release(old_pending)
            self._release(old_source)
            return False
        if layer is self.source:
            self.pending = None
            self._release(old_pending)
            if self._cut == CUTTING:  # frames were left out: start again from a key frame
                self._cut = NO_CUT
                return self.resync()
            self._cut = NO_CUT
            return False
        if layer is old_pending:
            return True
        self.pending = layer
        layer.attach(self)
        self._release(old_pending)
        self.wake()
        return True

    def _release(self, producer: Producer | None) -> None:
        if producer is not None and producer is not self.source and producer is not self.pending:
            producer.detach(self)

    def _promote(self) -> None:
        if self._cut != NO_CUT:  # the old layer was cut: nothing of it is resent
            self._resend_from = (self._seq + 1) & 0xFFFF  # this key frame's first packet
        pending = self.pending
        old = self.source
        self.source = pending
        self.pending = None
        self.switches += 1
        self._release(old)
        self._switched_from = old
        self._fresh = True
        self._cut = NO_CUT

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
        self.wake()
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

    def _thumbnail_passes(self, producer: Producer, codec: str, data: bytes, h: RtpHeader) -> bool:
        if h.timestamp == self.thumbnail_ts:
            return True  # the rest of the key frame being passed
        if not self._starts_keyframe(producer, codec, data, h):
            return False
        self.thumbnail_ts = h.timestamp
        self._fresh = True  # a new segment: what was dropped leaves no gap
        return True

    def _cuts(self, producer: Producer, h: RtpHeader) -> bool:
        """Whether this packet of the source is left out (a cut, see `set_layers`): every
        packet from the first one of a new frame on (the frame being sent ends whole)."""
        if self._cut == CUT_ARMED:
            if h.timestamp == (self._ts - self._ts_offset) & 0xFFFFFFFF:
                self._cut_desc = producer.desc
                return False
            self._cut = CUTTING
            self._resend_from = (self._seq + 1) & 0xFFFF  # see `retransmit`
        return True

    def restart(self) -> None:
        """The source restarted its stream (new SSRC): begin a new segment."""
        self._fresh = True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.switch(None)
            self.wake = _no_wake  # no cycle back to its participant once it left

    # forwarding

    def forward(
        self, producer: Producer, data: bytes, h: RtpHeader, codec: str, now: float
    ) -> None:
        """Rewrite one packet of `producer` for this slot and send it."""
        if producer is not self.source:
            if producer is not self.pending or not self._starts_keyframe(producer, codec, data, h):
                return
            self._promote()
            self._keyframe_at = now  # see `_recover_with_keyframe`
            if self.pacer is not None and self._switched_from is not None:
                self.pacer.engage(self)  # a switch's key frame: paced (sfu.policy.pacing)
            self.thumbnail_ts = h.timestamp
            if self._maps is None and self._needs_maps(producer, codec):
                self._enter_maps(self._switched_from)
            self._cut_desc = None
        elif self._cut and self._cuts(producer, h):
            return
        elif self.thumbnail:
            if not self._thumbnail_passes(producer, codec, data, h):
                return
        elif self._maps is None and self._tid_target < MAX_TID and codec == "vp8":
            desc = producer.desc  # a frame above the temporal limit starts: thin from here
            if desc is not None and desc.tid > self._tid_target and desc.frame_start:
                self._enter_maps(None)
        if self._maps is not None and codec == "vp8":
            self._forward_mapped(self._maps, producer, data, h, codec, now)
            return
        pt = self.pt_by_codec.get(codec)
        if pt is None:
            if codec[:4] == "red/":
                self._forward_red(producer, data, h, int(codec[4:]), now)
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
            packet = self._copy(data, h, seq, ts, pt, self._ext_map)
            if packet is None:
                return
            self.output.send_rtp(bytes(packet))
        self.packets_sent += 1
        self.octets_sent += h.payload_length

    def _forward_red(
        self, producer: Producer, data: bytes, h: RtpHeader, opus_in: int, now: float
    ) -> None:
        """A RED packet (Opus PT `opus_in` inside) to a slot whose codecs differ (module doc)."""
        opus = self.pt_by_codec.get("opus")
        blocks = producer.red
        if opus is None or not blocks:
            return
        if self.red_pt is not None:
            packet = bytearray(data)
            rewrite_pts(packet, blocks, {opus_in: opus})
            pt = self.red_pt
        elif blocks[-1].payload_type == opus_in:
            if producer.red_missing and not self._fresh:
                self._recover(producer, data, h, opus_in, opus)
            packet = primary_packet(data, h, blocks[-1])
            pt = opus
        else:
            return  # the primary block is not Opus: nothing this slot can play
        placed = self._place(producer, h, now)
        if placed is not None:
            self._send_copy(packet, h, placed[0], placed[1], pt)

    def _recover(
        self, producer: Producer, data: bytes, h: RtpHeader, opus_in: int, pt: int
    ) -> None:
        """Send the packets lost before the SFU that this RED packet repeats, oldest first.

        Block `d` places before the primary is the packet `d` sequence
        numbers earlier (Chromium repeats the packets just before), at the
        block's timestamp offset; LiveKit's RedPrimaryReceiver does the same.
        """
        blocks = producer.red
        for distance in range(producer.red_missing, 0, -1):
            block = blocks[-1 - distance]
            seq_in = (h.sequence - distance) & 0xFFFF
            if block.payload_type != opus_in or (seq_in - self._first_in) & 0xFFFF >= 0x8000:
                continue  # not Opus, or older than this slot's segment
            seq = (seq_in + self._seq_offset) & 0xFFFF
            ts = (h.timestamp - block.ts_offset + self._ts_offset) & 0xFFFFFFFF
            self._send_copy(primary_packet(data, h, block), h, seq, ts, pt)

    def _send_copy(self, packet: bytearray, h: RtpHeader, seq: int, ts: int, pt: int) -> None:
        """Send `packet` (a copy laid out as `h`) with this slot's header fields."""
        rewrite_header(packet, ssrc=self.ssrc, sequence=seq, timestamp=ts, payload_type=pt)
        if self._ext_map is not None:
            try:
                remap_extensions(packet, h, self._ext_map)
            except RtpError:
                return
        self.output.send_rtp(bytes(packet))
        self.packets_sent += 1
        self.octets_sent += len(packet) - h.payload_offset

    def _place(self, producer: Producer, h: RtpHeader, now: float) -> tuple[int, int] | None:
        """(sequence, timestamp) out for a packet of the source; None: older than its segment.

        The plain path in `forward` does the same inline (a call per packet
        costs there); this serves the copying paths.
        """
        if self._fresh:
            self._begin_segment(producer, h.sequence, h.timestamp, now)
        elif (h.sequence - self._first_in) & 0xFFFF >= 0x8000:
            return None
        seq = (h.sequence + self._seq_offset) & 0xFFFF
        ts = (h.timestamp + self._ts_offset) & 0xFFFFFFFF
        if (seq - self._seq) & 0xFFFF < 0x8000:
            self._seq = seq
            self._ts = ts
            self._time = now
        return seq, ts

    def _forward_mapped(
        self,
        maps: tuple[SeqMap[Producer], Vp8Map],
        producer: Producer,
        data: bytes,
        h: RtpHeader,
        codec: str,
        now: float,
    ) -> None:
        pt = self.pt_by_codec.get(codec)
        if pt is None:
            return
        seqmap, vp8map = maps
        if self._fresh:
            self._begin_segment(producer, h.sequence, h.timestamp, now)
        desc = producer.desc
        if desc is None:  # padding or garbage: nothing a decoder could use, and no gap
            seqmap.drop(h.sequence, absorb_gap=False)
            return
        verdict = vp8map.packet(desc, h.timestamp, h.marker)
        if verdict == DROP:
            seqmap.drop(h.sequence, vp8map.gap_dropped)
            return
        seq = seqmap.forward(h.sequence, vp8map.gap_dropped)
        if seq is None:
            return
        ts = (h.timestamp + self._ts_offset) & 0xFFFFFFFF
        if (seq - self._seq) & 0xFFFF < 0x8000:
            self._seq = seq
            self._ts = ts
            self._time = now
        if self._ext_map is None and verdict != REWRITE:
            self.output.send_rewritten(
                data,
                ssrc=self.ssrc,
                sequence=seq,
                timestamp=ts,
                payload_type=pt,
                twcc_at=producer.twcc_at,
            )
        else:
            packet = self._copy(data, h, seq, ts, pt, self._ext_map)
            if packet is None:
                return
            if verdict == REWRITE:
                vp8map.write(packet, h.payload_offset, desc)
            # the copy has the original's layout unless extension ids were remapped
            at = producer.twcc_at if self._ext_map is None else -1
            self.output.send_rtp(bytes(packet), at)
        self.packets_sent += 1
        self.octets_sent += h.payload_length

    def _needs_maps(self, producer: Producer, codec: str) -> bool:
        """A layer switch within a track (picture ids must continue) or thinning, in VP8."""
        previous = self._switched_from
        within = previous is not None and previous is not producer
        return codec == "vp8" and (
            (within and previous is not None and previous.track is producer.track)
            or self._tid_target < producer.meter.top
        )

    def _enter_maps(self, previous: Producer | None) -> None:
        """Move to the mapped path (see module doc), numbering on from what was sent.

        `previous`: the layer just left (a switch; its last picture ids are
        continued); None: the same source goes on (timestamps too).
        """
        vp8map = Vp8Map()
        last = previous.desc if previous is not None else None
        if self._cut_desc is not None:  # the old layer was cut: continue after what it gave
            last = self._cut_desc
        if last is not None:  # continue after the last picture the old layer gave
            vp8map.begin()
            vp8map.packet(last, 0, True)
        vp8map.set_max_temporal(self._tid_target)
        self._maps_first = (self._seq + 1) & 0xFFFF
        seqmap: SeqMap[Producer] = SeqMap(first=self._maps_first)
        if self.source is not None:
            seqmap.begin(self.source)
        vp8map.begin()
        self._maps = (seqmap, vp8map)

    @staticmethod
    def _starts_keyframe(producer: Producer, codec: str, data: bytes, h: RtpHeader) -> bool:
        """The first packet of a new key frame: never an old one sent again.

        Chromium probes bandwidth by resending old packets over RTX ("payload
        padding"), preferring big ones: a layer's last key frame.  Starting
        at such a copy would continue with frames that reference frames never
        sent (a sequence, picture id and TL0PICIDX jump that freezes the
        decoder until the next key frame); the switch waits for a new one.
        """
        if not producer.newest:
            return False
        if codec == "vp8":
            desc = producer.desc
            return desc is not None and desc.keyframe
        return is_keyframe(codec, data[h.payload_offset :])

    def _begin_segment(self, producer: Producer, seq_in: int, ts_in: int, now: float) -> None:
        first_out = (self._seq + 1) & 0xFFFF
        previous, self._switched_from = self._switched_from, None
        ts_out = self._aligned_ts(previous, producer, ts_in)
        if ts_out is None:
            elapsed = 0 if self._time is None else int((now - self._time) * self.clock_rate)
            ts_out = self._ts + max(1, elapsed)
        self._seq_offset = (first_out - seq_in) & 0xFFFF
        self._ts_offset = (ts_out - ts_in) & 0xFFFFFFFF
        self._first_in = seq_in
        self._fresh = False
        self._ext_map = extension_map(producer.ext_ids, self.ext_ids)
        if self._maps is not None:
            self._maps[0].begin(producer)
            self._maps[1].begin()
        else:
            self._segments.append(
                Segment(first_out, producer, self._seq_offset, self._ts_offset, self._ext_map)
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

    # retransmission

    def retransmit(
        self, sequences: Iterable[int], now: float, budget: ResendBudget | None = None
    ) -> int:
        """Answer a NACK from the producers' caches; returns packets resent.

        Nothing sent before a cut (`set_layers`) is resent: the link could not
        carry that layer, the receiver NACKs what it lost of it until the new
        layer's key frame is complete, and those packets would go down the full
        link ahead of or between that key frame's (which make them useless).
        A packet resent less than a round trip ago is not resent again: a
        receiver behind a full bottleneck NACKs it again before the first copy
        came out of the queue (mediasoup's and libwebrtc's rule); nor one
        resent `MAX_RESENDS` times already.  A packet of a frame the next ones
        refer to, still NACKed `LOST_AFTER_S` after its first NACK, is lost
        for good: the slot asks its source for a key frame (and forwards on
        meanwhile).  With a `budget` (the subscriber
        transport's, refilled by the caller) the resends stay within it, and a
        video slot that lost more than it could repay soon starts again from
        a key frame instead (sfu.policy.resend).
        """
        since = self._resend_from
        if since is not None and 0x4000 <= (self._seq - since) & 0xFFFF < 0x8000:
            since = self._resend_from = None  # long past: no old number is NACKed any more
        rtt = self.rtt
        gap = RESEND_RTT_S if rtt is None else min(max(rtt, RESEND_GAP_S[0]), RESEND_GAP_S[1])
        nacks = self._nacks
        copies: list[tuple[int, bytes]] = []
        lost = False
        for seq in sequences:
            seq &= 0xFFFF
            if since is not None and (seq - since) & 0xFFFF >= 0x8000:
                continue  # before the cut
            entry = nacks.get(seq)
            fresh = entry is None or now - entry[0] > NACKED_FOR_S  # (another packet's, if any)
            if entry is None or fresh:
                nacks.pop(seq, None)
                entry = nacks[seq] = (now, -1e18, 0)
                if len(nacks) > MAX_RESENT:
                    del nacks[next(iter(nacks))]
            first, last, times = entry
            if not lost and now - first >= LOST_AFTER_S:
                lost = self._referred_to(seq, now)  # lost for good (sfu.policy.resend)
            if now - last < gap or times >= MAX_RESENDS:
                continue  # its copy is still on the way, or the link has no room for it
            packet = self._resend_one(seq, now)
            if packet is not None:
                copies.append((seq, packet))
            elif fresh:
                self.unfilled += 1
        if lost and self._ask_keyframe(now) and budget is not None:
            budget.lost += 1
        if not copies:
            return 0
        if budget is not None:
            verdict = budget.plan(sum(len(packet) for _, packet in copies))
            if verdict is Verdict.KEYFRAME and self._recover_with_keyframe(now):
                budget.keyframes += 1
                return 0
        sent = 0
        for seq, packet in copies:
            if budget is not None and not budget.take(len(packet)):
                break  # the rest is NACKed again, by when the budget has refilled
            self.output.send_rtp(packet)
            sent += 1
            first, _, times = nacks.get(seq, (now, now, 0))
            nacks[seq] = (first, now, times + 1)
        return sent

    def _ask_keyframe(self, now: float) -> bool:
        """Ask the source for a key frame for a packet lost for good (`retransmit`), not
        within `LOST_KEYFRAME_AFTER_S` of the slot's last start from one or of the last
        such request; True if the request went out.  One the source turns down (it asks
        its publisher at most once per `keyframe_min_interval_s`, and another slot's
        request came first: its key frame may be lost too) is no request: the next NACK
        asks again, until the source takes it."""
        source = self.source
        if (
            self.kind != "video"
            or source is None
            or self.pending is not None  # a key frame is coming anyway
            or now - max(self._keyframe_at, self._lost_asked_at) < LOST_KEYFRAME_AFTER_S
            or not source.request_keyframe(now)
        ):
            return False
        self._lost_asked_at = now
        return True

    def _referred_to(self, seq: int, now: float) -> bool:
        """Whether the frame of sent packet `seq` is one later frames refer to (VP8 TID
        0, or no TID); True when it cannot tell, e.g. no longer cached (sfu.policy.resend)."""
        original = None
        if self._maps is not None and (found := self._maps[0].lookup(seq)) is not None:
            original = found[0].cached(found[1], now)
        elif (segment := self._segment_of(seq)) is not None:
            original = segment.producer.cached((seq - segment.seq_offset) & 0xFFFF, now)
            if (
                original is not None
                and segment.producer.codec_by_pt.get(original[1] & 0x7F) != "vp8"
            ):
                return True
        parsed = None if original is None else _vp8_packet(original)
        return parsed is None or parsed[1].tid <= 0

    def _recover_with_keyframe(self, now: float) -> bool:
        """Start the video again from its source's next key frame instead of resending
        more than the link has room for (`retransmit`); False when not due.

        Not within `KEYFRAME_INTERVAL_S` of the slot's last start from a key frame
        (a switch, a start, an earlier one of these): what it lost then is most
        likely that key frame, which overflowed the link's queue, and another one
        would overflow it the same way (the network lab's 300 kbit/s viewer, at
        its step down); resends within the budget repair it.
        """
        if self.kind != "video" or now - self._keyframe_at < KEYFRAME_INTERVAL_S:
            return False
        if self.pending is None and not self.resync():
            return False
        pending = self.pending
        if pending is None:
            return False
        self._keyframe_at = now
        # Nothing is forwarded until the key frame, whose first packet gets the next number.
        self._resend_from = (self._seq + 1) & 0xFFFF
        pending.request_keyframe(now)
        return True

    def _resend_one(self, seq: int, now: float) -> bytes | None:
        """The copy to resend as `seq` (RTX when negotiated), or None."""
        if self._maps is not None:
            found = self._maps[0].lookup(seq)
            if found is not None:
                return self._resend_mapped(self._maps[1], *found, seq, now)
            if (seq - self._maps_first) & 0xFFFF < 0x8000:
                return None  # a number of the mapped path it cannot fill (a hole): never a guess
        segment = self._segment_of(seq)
        return None if segment is None else self._resend(segment, seq, now)

    def _resend_mapped(
        self, vp8map: Vp8Map, producer: Producer, seq_in: int, seq: int, now: float
    ) -> bytes | None:
        original = producer.cached(seq_in, now)
        parsed = None if original is None else _vp8_packet(original)
        if original is None or parsed is None:
            return None
        h, desc = parsed
        pt = self.pt_by_codec.get("vp8")
        verdict = vp8map.resend(desc, h.timestamp)
        if pt is None or verdict == DROP:
            return None
        packet = self._copy(original, h, seq, h.timestamp + self._ts_offset, pt, self._ext_map)
        if packet is None:
            return None
        if verdict == REWRITE:
            vp8map.write(packet, h.payload_offset, desc)
        return self._maybe_rtx(bytes(packet), "vp8")

    def _segment_of(self, seq: int) -> Segment | None:
        if (self._seq - seq) & 0xFFFF >= 0x8000:
            return None  # never sent
        for segment in reversed(self._segments):
            if (seq - segment.first_out) & 0xFFFF < 0x8000:
                return segment
        return None

    def _resend(self, segment: Segment, seq: int, now: float) -> bytes | None:
        producer = segment.producer
        original = producer.cached(((seq - segment.seq_offset) & 0xFFFF), now)
        if original is None:
            return None
        try:
            h = parse_rtp(original)
        except RtpError:
            return None
        codec = producer.codec_by_pt.get(h.payload_type)
        pt = self.pt_by_codec.get(codec or "")
        if codec is None or pt is None:
            return None
        packet = self._copy(original, h, seq, h.timestamp + segment.ts_offset, pt, segment.ext_map)
        if packet is None:
            return None
        return self._maybe_rtx(bytes(packet), codec)

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

    def _copy(
        self,
        original: bytes,
        h: RtpHeader,
        seq: int,
        ts: int,
        pt: int,
        ext_map: dict[int, int] | None,
    ) -> bytearray | None:
        """`original` with this slot's header (and extension ids); None if malformed."""
        packet = bytearray(original)
        rewrite_header(
            packet, ssrc=self.ssrc, sequence=seq, timestamp=ts & 0xFFFFFFFF, payload_type=pt
        )
        if ext_map is not None:
            try:
                remap_extensions(packet, h, ext_map)
            except RtpError:
                return None
        return packet

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


def compiled_fanout() -> ModuleType | None:
    """sfu.native._fanout, told the `Consumer` class (whose plain path it runs) and the
    VP8 descriptor class (whose `frame_start` it reads from the fields), or None."""
    return native.configured("_fanout", "consumer", _configure_fanout)


def _configure_fanout(module: ModuleType) -> None:
    module.configure("consumer", Consumer, MAX_TID)
    module.configure("descriptor", Vp8Descriptor)


def extension_map(
    publisher: Mapping[str, int], subscriber: Mapping[str, int]
) -> dict[int, int] | None:
    """Publisher id -> subscriber id by URI; None when no rewrite is needed.

    No rewrite is needed when every extension both use has the same id on both
    sides, even if the publisher uses more (a simulcast publisher's RID and
    repaired-RID): a receiver ignores ids it did not negotiate (RFC 8285), so
    they may stay, unless the subscriber uses one of those ids for something
    else. That keeps such copies on the fast path (`send_rewritten`).
    """
    mapping = {pid: subscriber[uri] for uri, pid in publisher.items() if uri in subscriber}
    if all(k == v for k, v in mapping.items()):
        used = set(subscriber.values())
        if not any(pid in used for uri, pid in publisher.items() if uri not in subscriber):
            return None
    return mapping


def _no_wake() -> None:
    """A consumer's `wake` until its participant sets its own."""


def _vp8_packet(original: bytes) -> tuple[RtpHeader, Vp8Descriptor] | None:
    """A cached VP8 packet's RTP header and payload descriptor; None if malformed."""
    try:
        h = parse_rtp(original)
        desc = parse_vp8(
            memoryview(original)[h.payload_offset : h.payload_offset + h.payload_length]
        )
    except ValueError:  # RtpError, Vp8Error
        return None
    return h, desc
