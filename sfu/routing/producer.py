"""A Producer: one track a participant publishes, and its fan-out.

`on_rtp` is the heart of the forwarding path: per packet it updates the
receive statistics, notices loss and NACKs it upstream at once, keeps the
packet for retransmission (video), reads the RFC 6464 audio level (audio)
and hands the packet to every attached consumer, which rewrites and sends.
Nothing here decodes a payload.

Key frame requests to the publisher are coalesced: at most one per
`keyframe_min_interval` (PLI if the publisher negotiated it, else FIR), and
a layer of a simulcast track is not asked while the answer to another
layer's request (less than that interval ago) has not come: Chromium's VP8
simulcast answers a request on any layer with a key frame on every layer,
and a key frame of a big layer can make its encoder skip that layer's next
frames for up to two seconds (issue 13: the room's uncapped viewer froze after
each one), so a second request would cost every viewer of the track a second
key frame for nothing.  When the answer came on other layers only (a
publisher that answers per layer), the layer is asked at once.  A publisher
whose answer asked for per-layer key frames (`x-google-per-layer-pli=1`,
`sfu.sdp.negotiate`; `per_layer_pli`) makes one on the asked layer only:
each layer is then asked on its own, at most once per interval, unless it
shows it re-keys every layer anyway (a key frame on a layer not asked while
another was, after two requests: `_learn`), when the coalescing above applies again.

Simulcast: each encoding of a track is a Producer of its own (its own SSRC,
RTX SSRC, statistics, NACKs, cache and key frame requests), with its `rid`;
`layers` are the track's layers lowest resolution first (`spatial` is the
index there, see `sfu.routing.layers.order_layers` for the rule) and
`track` the layer that stands for the whole track (`Participant.producers`
holds it; the first in the offer, whose identity never changes).  Without
simulcast `layers == (self,)` and `track is self`.  On ingress a VP8 packet's
descriptor is read once (`desc`, for the consumers: TID, sync, picture ids)
and measured (`bitrate_bps`, `temporal_bitrates`, `frame_size`, `active`);
`newest` says whether the packet is the highest sequence number so far (a
consumer switches only on a key frame that is, see `sfu.routing.consumer`).

RED audio (RFC 2198, `sfu.packet.red`): a packet of the RED payload type
has its block headers checked once here (`red`, for the consumers that
strip it to Opus); a malformed one is dropped for everyone and counted
(`bad_red`).  `red_missing` says how many packets just before it never came
(at most its redundant blocks), which a consumer without RED recovers from
those blocks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

from sfu import native
from sfu.packet.counters import Counters
from sfu.packet.red import RedBlock, RedError, parse_red
from sfu.packet.rtcp import build_fir, build_nack, build_pli, ntp_middle32
from sfu.packet.rtp import (
    RtpError,
    RtpHeader,
    SeqUnwrapper,
    find_extension,
    parse_audio_level,
    parse_rtp,
)
from sfu.packet.rtx import RetransmissionCache, parse_rtx
from sfu.packet.streamstats import NackGenerator, ReceiveStats
from sfu.packet.vp8 import Vp8Descriptor, Vp8Error, read_vp8_at, vp8_frame_size
from sfu.policy.speaker import LOG_MAX, LevelLog
from sfu.routing.layers import NO_TID, RATE_WINDOW_S, RateMeter, order_layers
from sfu.sdp.negotiate import AUDIO_LEVEL_URI, CodecChoice

if TYPE_CHECKING:
    from sfu.routing.consumer import Consumer

LevelSink = Callable[[str, int, bool, float], None]
# Where a producer puts its packets' audio levels: a callable, or a speaker's
# log (`DominantSpeaker.log`), a list appended to without a call per packet.
LevelTarget = LevelSink | LevelLog
ACTIVE_S = 1.0  # a layer that sent no media for this long is not active (paused)
# Requests followed by a key frame on another layer before a track counts as re-keying
# every layer (`_learn`): one can be chance (Chromium re-keys a layer it reconfigures
# while its encoders start, and once did so 30-50 ms after the join's request on h).
REKEY_SIGNS = 2
# A layer that sent no media for this long is quiet: its rates are held (`temporal_bitrates`).
# Longer than the gap between a 30 fps layer's frames (33 ms) and than a tick (0.2 s)
# minus it, so a flowing layer's rates are read every tick, at most ~0.1 s into its emptying.
QUIET_S = 0.1


class RelayTap(Protocol):
    """Where a producer's packets also go when other SFU workers need them (sfu.relay.endpoint)."""

    def rtp(self, data: bytes) -> None: ...

    def sender_report(self, ntp: int, rtp_timestamp: int) -> None: ...

    def wanted(self) -> bool:
        """Whether some other worker's subscribers need these packets now."""
        ...


class RtcpOutput(Protocol):
    """Where a producer's feedback to its publisher goes."""

    rtcp_ssrc: int

    def send_rtcp(self, packet: bytes) -> None: ...


class Producer:
    """One published track (see module doc)."""

    __slots__ = (
        "_asked",
        "_cache",
        "_fanout",
        "_fir_seq",
        "_flowing",
        "_last_keyframe_request",
        "_level_id",
        "_receive",
        "_red_seq",
        "_rekey_request",
        "_rekey_signs",
        "_rekeys_all",
        "_unwrapper",
        "_vad_seen",
        "apt_by_rtx",
        "clock_rate",
        "closed",
        "codec_by_pt",
        "codecs",
        "consumers",
        "counters",
        "desc",
        "ext_ids",
        "feedback",
        "frame_size",
        "keyframe_interval",
        "keyframe_requests",
        "keyframes",
        "kind",
        "last_media",
        "last_sr",
        "layers",
        "level_sink",
        "meter",
        "mid",
        "nack",
        "newest",
        "offer_index",
        "output",
        "owner",
        "per_layer_pli",
        "red",
        "red_missing",
        "refresh_due",
        "relay",
        "rid",
        "rtx_ssrc",
        "source",
        "spatial",
        "ssrc",
        "stats",
        "track",
        "twcc_at",
        "use_fir",
        "use_pli",
        "use_remb",
    )

    def __init__(
        self,
        *,
        owner: str,
        mid: str,
        kind: str,
        source: str,
        codecs: tuple[CodecChoice, ...],
        ssrc: int | None,
        rtx_ssrc: int | None,
        ext_ids: Mapping[str, int],
        output: RtcpOutput,
        keyframe_interval: float = 0.5,
        cache_size: int = 512,
        cache_age: float = 1.0,
        rid: str | None = None,
    ) -> None:
        self.owner = owner
        self.rid = rid
        self.spatial = 0
        self.offer_index = 0
        self.layers: tuple[Producer, ...] = (self,)
        self.track: Producer = self
        self.frame_size: tuple[int, int] | None = None
        self.desc: Vp8Descriptor | None = None  # of the packet being forwarded (VP8)
        self.red: tuple[RedBlock, ...] = ()  # of the packet being forwarded (RED audio)
        self.red_missing = 0
        self._red_seq = -1  # the highest extended sequence number of a RED packet
        # The packet being forwarded is the highest sequence number so far:
        # not a late, repeated or retransmitted (RTX) copy of an older one.
        self.newest = False
        self.mid = mid
        self.kind = kind
        self.source = source  # "audio", "camera" or "screen"
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.output = output
        self.keyframe_interval = keyframe_interval
        self.consumers: list[Consumer] = []
        self.counters: Counters | None = None  # the publisher transport's
        self.closed = False
        self.level_sink: LevelTarget | None = None
        self.relay: RelayTap | None = None
        self.refresh_due = 0.0  # next key frame request for thumbnail subscribers
        # Where the packet being forwarded carries its transport-wide sequence
        # number (set per packet by the publisher's Participant; -1: nowhere).
        self.twcc_at = -1
        self.last_sr: tuple[int, int, float] | None = None
        # When the last packet with a payload came (padding-only probes do not
        # count); a new producer gets a grace period as if one just came.
        self.last_media = time.monotonic()
        self.meter = RateMeter(self.last_media)
        self._flowing: tuple[int, ...] = ()  # `temporal_bitrates` when it last flowed
        self._last_keyframe_request = float("-inf")
        # On the track's base layer: when a layer of the track was last asked for a key
        # frame, and the track's key frames received by then (`_answer_coming`).
        self._asked = (float("-inf"), 0)
        # On the track's base layer: the publisher answered a request on one layer with
        # key frames on others too, though per-layer key frames were negotiated (`_learn`).
        self._rekeys_all = False
        self._rekey_signs = 0  # requests followed by a key frame on a layer not asked (`_learn`)
        self._rekey_request = float("-inf")  # the request the last sign followed
        self.keyframes = 0  # key frames received (for the layer trace, sfu.routing.trace)
        self.keyframe_requests = 0  # PLIs/FIRs sent to the publisher
        self._fir_seq = 0
        self._vad_seen = False
        self._unwrapper = SeqUnwrapper()
        video = kind == "video"
        self._cache = RetransmissionCache(cache_size, cache_age) if video else None
        self.update(codecs, ext_ids)
        self.stats = ReceiveStats(self.clock_rate)
        # The fan-out loop in C (sfu.native._fanout.fanout), or None: the Python loop.
        self._fanout = _compiled_fanout()
        # on_rtp in C (sfu.native._recv.receive), or None: the Python path.
        self._receive = _compiled_receive()

    def update(self, codecs: tuple[CodecChoice, ...], ext_ids: Mapping[str, int]) -> None:
        """New negotiated codecs/extensions (renegotiation)."""
        self.codecs = codecs
        self.codec_by_pt = {c.payload_type: c.key for c in codecs}
        self.apt_by_rtx = {
            c.rtx_payload_type: c.payload_type for c in codecs if c.rtx_payload_type is not None
        }
        self.clock_rate = codecs[0].clock_rate if codecs else 90000
        self.ext_ids = dict(ext_ids)
        self._level_id = ext_ids.get(AUDIO_LEVEL_URI) if self.kind == "audio" else None
        self.use_pli = any(c.has_feedback("nack pli") for c in codecs)
        self.use_fir = any(c.has_feedback("ccm fir") for c in codecs)
        self.use_remb = any(c.has_feedback("goog-remb") for c in codecs)
        # The answer asked for a key frame on the asked layer only (sfu.sdp.negotiate).
        self.per_layer_pli = any(c.per_layer_pli for c in codecs)
        nack = any(c.has_feedback("nack") for c in codecs)
        self.nack = NackGenerator() if nack and self.kind == "video" else None

    def set_ssrc(self, ssrc: int) -> None:
        """The publisher's SSRC (learned from the first packet or changed)."""
        if ssrc != self.ssrc:
            restarted = self.ssrc is not None
            self.ssrc = ssrc
            if restarted:
                self._unwrapper = SeqUnwrapper()
                self.stats = ReceiveStats(self.clock_rate)
                self.last_sr = None
                for consumer in self.consumers:
                    consumer.restart()

    # consumers

    def attach(self, consumer: Consumer) -> None:
        if consumer not in self.consumers:
            # A new list, so an iteration in progress keeps its own.
            self.consumers = [*self.consumers, consumer]

    def detach(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers = [c for c in self.consumers if c is not consumer]

    def close(self) -> None:
        """Close this layer (`close_track` closes every layer of a track)."""
        if self.closed:
            return
        self.closed = True
        for consumer in self.consumers:
            consumer.producer_closed(self)
        self.consumers = []
        self.level_sink = None
        self.relay = None

    # packets from the publisher

    def on_rtp(self, data: bytes, h: RtpHeader, now: float) -> bool:
        """One packet from the publisher; False if its payload type is unknown.

        `_receive` (sfu.native._recv.receive) is the compiled twin of what
        follows it here; it answers None, having changed nothing, for objects
        it was not made for.
        """
        receive = self._receive
        if receive is not None:
            answer = receive(self, data, h, now)
            if answer is not None:
                return answer
        codec = self._book(data, h, now)
        if codec is True or codec is False:
            return codec
        fanout = self._fanout
        if fanout is not None:  # the same, the plain copies in one C call
            fanout(self, self.consumers, data, h, codec, now, self.twcc_at)
        else:
            for consumer in self.consumers:
                consumer.forward(self, data, h, codec, now)
        relay = self.relay
        if relay is not None:
            relay.rtp(data)
        return True

    def _book(self, data: bytes, h: RtpHeader, now: float) -> str | bool:
        """What a packet changes here before its fan-out: the codec to forward it
        with, or on_rtp's answer (False: unknown payload type; True: nothing to
        forward)."""
        codec = self.codec_by_pt.get(h.payload_type)
        if codec is None:
            return False
        ext_seq = self._unwrapper.unwrap(h.sequence)
        newest = self.newest = ext_seq > self.stats.max_seq
        if h.payload_length:
            self.last_media = now
        self.stats.add(ext_seq, h.timestamp, len(data), now)
        if self.nack is not None:
            lost = self.nack.add(ext_seq, now)
            if lost:
                self.send_nack(lost)
        cache = self._cache
        if cache is not None:
            if not newest and cache.get(h.sequence, now) is not None:
                # A copy of a packet already forwarded (Chromium's bandwidth
                # probes resend old packets over RTX): nothing new for anyone.
                return True
            cache.store(h.sequence, data, now)
        if self._level_id is not None:
            self._read_level(data, h, self._level_id, now)
        if codec == "vp8":
            desc = self.desc = read_vp8_at(data, h.payload_offset, h.payload_length)
            if desc is not None and desc.keyframe:
                self._keyframe(data, h)
            self.meter.add(desc.tid if desc is not None else NO_TID, len(data), now)
        else:
            self.desc = None
            self.meter.add(NO_TID, len(data), now)
            if codec[:4] == "red/" and not self._read_red(data, h, ext_seq):
                return True
        return codec

    def _keyframe(self, data: bytes, h: RtpHeader) -> None:
        """A key frame tells the layer's size (the order of a track's layers)."""
        self.keyframes += 1
        if len(self.layers) > 1 and self.per_layer_pli and self.keyframes > 1:
            self._learn(self.last_media)  # (a layer's first key frame starts it: no answer)
        offset = h.payload_offset
        size = vp8_frame_size(memoryview(data)[offset : offset + h.payload_length])
        if size is not None and size != self.frame_size:
            self._resized(size)

    # layers

    def _resized(self, size: tuple[int, int]) -> None:
        self.frame_size = size
        if len(self.layers) > 1:
            link_layers(order_layers(self.layers))

    def bitrate_bps(self, now: float) -> int:
        """Bits per second received over about the last second (all TIDs)."""
        return self.meter.rates(now)[-1]

    def temporal_bitrates(self, now: float) -> tuple[int, ...]:
        """Cumulative bits/s per highest TID (one entry when the stream has no TIDs).

        From `QUIET_S` without media until it is no longer `active`, what the
        layer sent while it flowed (its last reading before): a layer that stops
        (its publisher told to, or stalled) is still worth that, and its meter,
        emptying, says less and less for up to a second (the network lab's
        300 kbit/s viewer was stepped up to h on its meter's half, a second after
        h stopped, and froze 4.8 s).
        """
        quiet = now - self.last_media
        if quiet < QUIET_S or quiet >= ACTIVE_S:  # flowing, or paused: what it sends now
            self._flowing = self.meter.rates(now)
        return self._flowing

    def active(self, now: float) -> bool:
        """Whether media came within the last `ACTIVE_S` (a paused layer is not active)."""
        return now - self.last_media < ACTIVE_S and not self.closed

    def in_use(self) -> bool:
        """Whether a subscriber here or on another worker forwards (or awaits) this layer.

        What the publisher needs to keep sending (`publish_layers`).
        """
        return bool(self.consumers) or (self.relay is not None and self.relay.wanted())

    @property
    def media_at(self) -> float:
        """When the last media of the whole track (any of its layers) came."""
        return max(layer.last_media for layer in self.layers)

    def on_rtx(self, data: bytes, h: RtpHeader, now: float) -> bool:
        """An RFC 4588 retransmission: unwrap it and treat it as the original."""
        apt = self.apt_by_rtx.get(h.payload_type)
        if apt is None or self.ssrc is None:
            return False
        try:
            _, original = parse_rtx(data, h, ssrc=self.ssrc, payload_type=apt)
            return self.on_rtp(original, parse_rtp(original), now)
        except RtpError:
            return False

    def _read_red(self, data: bytes, h: RtpHeader, ext_seq: int) -> bool:
        try:
            self.red = blocks = parse_red(data, h)
        except RedError:
            self.red = ()
            self.red_missing = 0
            if self.counters is not None:
                self.counters.bad_red += 1
            return False
        last, self._red_seq = self._red_seq, max(self._red_seq, ext_seq)
        gap = ext_seq - last - 1 if last >= 0 else 0
        self.red_missing = min(gap, len(blocks) - 1) if gap > 0 else 0
        return True

    def _read_level(self, data: bytes, h: RtpHeader, level_id: int, now: float) -> None:
        try:
            value = find_extension(data, h, level_id)
            if value is not None:
                voice, level = parse_audio_level(value)
                # Trust the RFC 6464 voice flag once the sender has shown it
                # sets it; some senders (aiortc, gateways) never do, and for
                # them the level alone must tell speech from silence.
                self._vad_seen = self._vad_seen or voice
                sink = self.level_sink
                if isinstance(sink, list):  # a speaker's log (the compiled twin: the same)
                    if len(sink) < LOG_MAX:
                        sink.append((level, voice or not self._vad_seen, now))
                elif sink is not None:
                    sink(self.owner, level, voice or not self._vad_seen, now)
        except RtpError:
            pass

    def on_sender_report(self, ntp: int, rtp_timestamp: int, now: float) -> None:
        self.last_sr = (ntp, rtp_timestamp, now)
        self.stats.sender_report(ntp_middle32(ntp), now)
        if self.relay is not None:
            self.relay.sender_report(ntp, rtp_timestamp)

    def cached(self, sequence: int, now: float) -> bytes | None:
        if self._cache is None:
            return None
        return self._cache.get(sequence, now)

    # feedback to the publisher

    def request_keyframe(self, now: float) -> bool:
        """Ask the publisher for a key frame unless one was asked for recently."""
        if self.kind != "video" or self.ssrc is None or self.closed:
            return False
        if now - self._last_keyframe_request < self.keyframe_interval or self._answer_coming(now):
            return False
        self._last_keyframe_request = now
        if len(self.layers) > 1:
            self.track._asked = (now, self._track_keyframes())
        self.keyframe_requests += 1
        sender = self.output.rtcp_ssrc
        if self.use_pli or not self.use_fir:
            self.output.send_rtcp(build_pli(sender, self.ssrc))
        else:
            self._fir_seq = (self._fir_seq + 1) & 0xFF
            self.output.send_rtcp(build_fir(sender, self.ssrc, self._fir_seq))
        return True

    def _answer_coming(self, now: float) -> bool:
        """Whether another layer of this track was asked for a key frame less than the
        interval ago and none came since (it will be on every layer: module doc)."""
        if len(self.layers) < 2 or self.keyframes_per_layer:
            return False
        at, seen = self.track._asked
        return now - at < self.keyframe_interval and self._track_keyframes() == seen

    @property
    def keyframes_per_layer(self) -> bool:
        """Whether a request brings a key frame on the asked layer only (module doc)."""
        return self.per_layer_pli and not self.track._rekeys_all

    def _learn(self, now: float) -> None:
        """A key frame of this layer came at `now`: if this layer was not asked within the
        interval but another layer was, that is a sign the publisher re-keys every layer
        despite the answer's `x-google-per-layer-pli=1` (a browser that ignores it).  After
        `REKEY_SIGNS` requests each followed by such a sign its layers are coalesced from
        then on, as without it (a single one can be chance: an encoder reconfigured while
        the layers start).  An unasked key frame for another reason close to requests
        costs only that: the old coalescing."""
        if now - self._last_keyframe_request < self.keyframe_interval:
            return  # the answer to this layer's own request
        asked = [
            layer._last_keyframe_request
            for layer in self.layers
            if layer is not self and now - layer._last_keyframe_request < layer.keyframe_interval
        ]
        if not asked:
            return
        track, at = self.track, max(asked)
        if at != track._rekey_request:  # one request's answers count once, on any layers
            track._rekey_request = at
            track._rekey_signs += 1
            track._rekeys_all = track._rekey_signs >= REKEY_SIGNS

    def _track_keyframes(self) -> int:
        return sum(layer.keyframes for layer in self.layers)

    def send_nack(self, ext_sequences: list[int]) -> None:
        if self.ssrc is not None and ext_sequences:
            self.output.send_rtcp(build_nack(self.output.rtcp_ssrc, self.ssrc, ext_sequences))
            if self.counters is not None:
                self.counters.nacks_sent += 1

    def retry_nacks(self, now: float) -> None:
        if self.nack is not None:
            self.send_nack(self.nack.due(now))


def _compiled_fanout() -> Callable[..., None] | None:
    from sfu.routing.consumer import compiled_fanout

    module = compiled_fanout()
    return None if module is None else module.fanout


def _compiled_receive() -> Callable[[Producer, bytes, RtpHeader, float], bool | None] | None:
    module = native.configured("_recv", "receive", _configure_receive)
    return None if module is None else module.receive


def _configure_receive(module: ModuleType) -> None:
    """Tell sfu.native._recv the classes whose fields it reads, and the parsers it calls."""
    parsers = native.load("_rtp")
    if parsers is None:
        raise TypeError("sfu.native._rtp (the parsers receive calls) is not compiled")
    # Bound here too: sfu.packet.rtp/vp8 bind them on import only if the module
    # loaded then (VISITROOM_NATIVE may have been 0 at that time).
    parsers.bind_rtp(RtpHeader, RtpError)
    parsers.bind_vp8(Vp8Descriptor, Vp8Error)
    module.configure("producer", Producer)
    module.configure("header", RtpHeader)
    module.configure("cache", RetransmissionCache)
    module.configure("meter", RateMeter)
    module.configure("nack", NackGenerator)
    fields = Vp8Descriptor._fields
    module.bind(
        parsers.read_vp8_at,
        parsers.find_extension,
        RtpError,
        Vp8Descriptor,
        fields.index("tid"),
        fields.index("keyframe"),
        RATE_WINDOW_S,
        LOG_MAX,
    )


def link_layers(layers: tuple[Producer, ...]) -> None:
    """Make `layers` (lowest first) one track's; the track is the first in offer order."""
    track = min(layers, key=lambda p: p.offer_index)
    for spatial, layer in enumerate(layers):
        layer.layers = layers
        layer.spatial = spatial
        layer.track = track


def close_track(track: Producer) -> None:
    for layer in track.layers:
        layer.close()
