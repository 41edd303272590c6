"""Publishers of other SFU workers, as seen here through the relay.

The origin worker describes each published track as plain data
(`describe`): its mid, kind, source (audio/camera/screen), the negotiated
codecs with the publisher's payload types, the header extension ids and the
SSRC.  A receiving worker turns a description into an ordinary `Producer`
(`RemoteStream`) fed by relayed packets, so its consumers forward, switch,
rewrite, answer NACKs from the cache and map sender reports exactly as for
a local publisher.  Its feedback (PLI/FIR, NACK for relay loss) goes back
to the origin through the relay.  A `RemotePublisher` holds one remote
participant's streams in one group and is that group's `Publisher`.

Simulcast: every layer of a track is a stream of its own (its packets,
sender reports, key frame requests and NACKs travel with its stream id), and
its description adds its `rid` and `layer` (its index in the publisher's
offer).  The receiving worker links the streams of one mid with rids into
one track again (`link_layers`), and learns their order from their key
frames as the origin does, so its consumers switch layers as on the origin.
A layer none of this worker's subscribers forwards (or waits for) is
paused at the origin (`demand`, sent by `sfu.shard.ShardMedia`), except the
lowest layer (it keeps the track live for the group's selection), a layer
whose size is not known here yet, and a layer a consumer wants (its
`set_layers`) while it forwards a lower one because this one is paused.
"""

from __future__ import annotations

import random
import re
from typing import Any

from sfu.packet.counters import Counters
from sfu.packet.rtp import RtpError, parse_rtp
from sfu.packet.twcc import TWCC_URI, transport_seq_offset
from sfu.relay.endpoint import RelayEndpoint
from sfu.routing.layers import order_layers
from sfu.routing.producer import Producer, link_layers
from sfu.sdp.negotiate import CodecChoice
from sfu.settings import MediaSettings

KINDS = {"audio": ("audio",), "video": ("camera", "screen")}
MAX_LAYERS = 4
DEMAND_REPEAT_S = 1.0
_RID = re.compile(r"[A-Za-z0-9_\-]{1,16}")


class DescriptionError(ValueError):
    """A stream description that cannot be used."""


def describe(producer: Producer) -> dict[str, Any]:
    """A local producer as plain (msgpack-able) data."""
    return {
        "mid": producer.mid,
        "kind": producer.kind,
        "source": producer.source,
        "codecs": [_codec(c) for c in producer.codecs],
        "ext": sorted([uri, ext_id] for uri, ext_id in producer.ext_ids.items()),
        "ssrc": producer.ssrc,
        "rid": producer.rid,
        "layer": producer.offer_index,
    }


def _codec(c: CodecChoice) -> list[Any]:
    return [
        c.name,
        c.payload_type,
        c.clock_rate,
        c.channels,
        c.fmtp,
        list(c.feedback),
        c.rtx_payload_type,
    ]


def codecs_of(description: dict[str, Any]) -> tuple[CodecChoice, ...]:
    """The codecs of a description; DescriptionError when malformed."""
    try:
        return tuple(
            CodecChoice(
                name=str(name),
                payload_type=_pt(pt),
                clock_rate=int(clock),
                channels=None if channels is None else int(channels),
                fmtp=str(fmtp),
                feedback=tuple(str(f) for f in feedback),
                rtx_payload_type=None if rtx is None else _pt(rtx),
            )
            for name, pt, clock, channels, fmtp, feedback, rtx in description["codecs"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DescriptionError(f"bad codecs: {exc}") from None


def _pt(value: Any) -> int:
    pt = int(value)
    if not 0 <= pt <= 127:
        raise ValueError(f"payload type {pt}")
    return pt


def check(description: dict[str, Any]) -> tuple[str, str, dict[str, int]]:
    """(kind, source, extension ids) of a description; DescriptionError when malformed."""
    kind, source = description.get("kind"), description.get("source")
    if kind not in KINDS or source not in KINDS[str(kind)]:
        raise DescriptionError(f"bad kind/source {kind!r}/{source!r}")
    try:
        ext = {str(uri): int(ext_id) for uri, ext_id in description.get("ext", [])}
    except (TypeError, ValueError):
        raise DescriptionError("bad extension ids") from None
    ssrc = description.get("ssrc")
    if ssrc is not None and not (isinstance(ssrc, int) and 0 <= ssrc < 2**32):
        raise DescriptionError("bad ssrc")
    rid, layer = description.get("rid"), description.get("layer", 0)
    if rid is not None and not (isinstance(rid, str) and _RID.fullmatch(rid)):
        raise DescriptionError("bad rid")
    if not isinstance(layer, int) or not 0 <= layer < MAX_LAYERS:
        raise DescriptionError("bad layer")
    return str(kind), str(source), ext


class RelayFeedback:
    """A remote producer's `RtcpOutput`: PLI/FIR/NACK go to the origin worker."""

    def __init__(self, endpoint: RelayEndpoint, origin: int, stream: int) -> None:
        self.rtcp_ssrc = random.getrandbits(32) | 1
        self._endpoint = endpoint
        self._origin = origin
        self._stream = stream

    def send_rtcp(self, packet: bytes) -> None:
        self._endpoint.send_feedback(self._origin, self._stream, packet)


class RemoteStream:
    """One relayed track: a `Producer` fed by the relay (a `RemoteSink`)."""

    def __init__(
        self,
        endpoint: RelayEndpoint,
        origin: int,
        stream: int,
        owner: str,
        description: dict[str, Any],
        settings: MediaSettings,
        counters: Counters,
    ) -> None:
        kind, source, ext = check(description)
        self.origin = origin
        self.stream = stream
        self.producer = Producer(
            owner=owner,
            mid=str(description.get("mid", "")),
            kind=kind,
            source=source,
            codecs=codecs_of(description),
            ssrc=description.get("ssrc"),
            rtx_ssrc=None,
            ext_ids=ext,
            output=RelayFeedback(endpoint, origin, stream),
            keyframe_interval=settings.keyframe_min_interval_s,
            cache_size=settings.rtx_cache_packets,
            cache_age=settings.rtx_cache_age_s,
            rid=description.get("rid"),
        )
        self.producer.offer_index = int(description.get("layer", 0))
        self._demanded: bool | None = None
        self._demanded_at = float("-inf")
        self.producer.counters = counters

    def demand(self, now: float) -> bool | None:
        """Whether this worker needs this simulcast layer, when that is due to be (re)sent."""
        producer = self.producer
        if producer.rid is None:
            return None
        wanted = (
            bool(producer.consumers)
            or producer.spatial == 0
            or producer.frame_size is None
            or _wanted_by_a_consumer(producer)
        )
        if wanted == self._demanded and now - self._demanded_at < DEMAND_REPEAT_S:
            return None
        self._demanded, self._demanded_at = wanted, now
        return wanted

    def update(self, description: dict[str, Any]) -> None:
        """A renegotiation at the origin changed codecs or extension ids."""
        _, _, ext = check(description)
        self.producer.update(codecs_of(description), ext)

    def on_relay_rtp(self, data: bytes, now: float) -> bool:
        try:
            h = parse_rtp(data)
        except RtpError:
            return False
        producer = self.producer
        if h.ssrc != producer.ssrc:
            producer.set_ssrc(h.ssrc)
        twcc_id = producer.ext_ids.get(TWCC_URI)  # this worker's copies write their own there
        producer.twcc_at = transport_seq_offset(data, h, twcc_id) if twcc_id else -1
        return producer.on_rtp(data, h, now)

    def on_relay_sr(self, ntp: int, rtp_timestamp: int, now: float) -> None:
        self.producer.on_sender_report(ntp, rtp_timestamp, now)

    def close(self) -> None:
        self.producer.close()


class RemotePublisher:
    """One participant of another worker in one group: its relayed tracks, by mid."""

    def __init__(self, participant_id: str) -> None:
        self.id = participant_id
        self.streams: dict[tuple[int, int], RemoteStream] = {}  # (origin, stream)
        self.producers: dict[str, Producer] = {}

    def add(self, remote: RemoteStream) -> None:
        self.streams[(remote.origin, remote.stream)] = remote
        self._index()

    def remove(self, key: tuple[int, int]) -> RemoteStream | None:
        remote = self.streams.pop(key, None)
        if remote is not None:
            remote.close()
            self._index()
        return remote

    def _index(self) -> None:
        """One producer per track: the layers of a simulcast track are linked to it."""
        producers: dict[str, Producer] = {}
        tracks: dict[tuple[int, str], list[Producer]] = {}
        for (origin, stream), remote in sorted(self.streams.items()):
            producer = remote.producer
            if producer.rid is None:
                producers[f"{origin}:{stream}"] = producer
            else:
                tracks.setdefault((origin, producer.mid), []).append(producer)
        for (origin, mid), layers in tracks.items():
            link_layers(order_layers(layers))
            producers[f"{origin}:{mid}"] = layers[0].track
        self.producers = producers


def _wanted_by_a_consumer(layer: Producer) -> bool:
    """Whether a consumer of its track wants this layer or a higher one (`set_layers`).

    Such a consumer forwards a lower layer while this one is paused at its
    publisher (not active), so it is not among this layer's consumers; the
    layer must be asked for all the same, or it never comes back.
    """
    for other in layer.layers:
        for consumer in other.consumers:
            spatial = consumer.wanted_layers[0]
            if spatial is not None and spatial >= layer.spatial:
                return True
    return False
