"""What the SFU accepts of an offer: codecs, feedback, extensions, directions.

Pure policy over a parsed `Offer`; the answer text is written by
`answer.py`.  The SFU never transcodes, so every participant must send a
codec every receiver understands: the answer lists VP8 first (browsers send
the first codec of the answer), H.264 only when offered, Opus for audio.

Audio redundancy (RFC 2198): when the offer has `red/48000/2` wrapping
the chosen Opus (`a=fmtp:63 111/111`), the answer lists RED first, then
Opus: Chromium then sends every Opus frame twice (in its own packet and
again in the next one), and receives RED from the SFU.  A participant whose
offer lacks RED still gets Opus: the SFU sends it the primary blocks
(`sfu.packet.red`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from sfu.sdp.offer import Codec, Offer, OfferedMedia, Simulcast

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
RRID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
ACCEPTED_EXTENSIONS = {
    "audio": (AUDIO_LEVEL_URI, ABS_SEND_TIME_URI, MID_URI, TWCC_URI),
    "video": (ABS_SEND_TIME_URI, MID_URI, RID_URI, RRID_URI, TWCC_URI),
}
ACCEPTED_FEEDBACK = {
    "audio": ("transport-cc",),
    "video": ("nack", "nack pli", "ccm fir", "goog-remb", "transport-cc"),
}
MAX_PUBLISHED = {"audio": 1, "video": 2}
RED = "red"
# libwebrtc's format parameter for a per-layer answer to a PLI/FIR (module doc).
PER_LAYER_PLI = "x-google-per-layer-pli=1"


@dataclass(frozen=True)
class CodecChoice:
    """A codec the SFU accepts on an m-line, with the offerer's payload types."""

    name: str
    payload_type: int
    clock_rate: int
    channels: int | None
    fmtp: str
    feedback: tuple[str, ...]
    rtx_payload_type: int | None

    def has_feedback(self, value: str) -> bool:
        return value in self.feedback

    @property
    def per_layer_pli(self) -> bool:
        """Whether the answer asked for per-layer key frames (`PER_LAYER_PLI`, module doc)."""
        return PER_LAYER_PLI in self.fmtp.split(";")

    @property
    def key(self) -> str:
        """What the forwarder matches a publisher's and a subscriber's codecs by.

        The name, except for RED: `red/<PT inside>` (`red/111`), because the
        blocks of a forwarded RED packet keep the publisher's Opus PT, which
        is right as it is only for a subscriber that gave Opus the same PT.
        """
        if self.name == RED:
            return f"{RED}/{self.fmtp.split('/', 1)[0]}"
        return self.name


@dataclass(frozen=True)
class MediaPlan:
    """The SFU's decision for one m-line of the offer."""

    index: int
    mid: str | None
    kind: str
    accepted: bool  # False: answered with port 0
    publish: bool  # the client's track on this m-line is forwarded
    receive: bool  # the SFU fills this m-line as a receive slot
    codecs: tuple[CodecChoice, ...]
    extensions: tuple[tuple[int, str], ...]
    ssrc: int | None
    rtx_ssrc: int | None
    # The simulcast streams the SFU receives on this m-line (answered with
    # a=rid recv + a=simulcast:recv); None: one stream, as without simulcast.
    simulcast: Simulcast | None = None

    @property
    def direction(self) -> str:
        """The answer's direction, seen from the SFU."""
        if self.publish and self.receive:
            return "sendrecv"
        if self.publish:
            return "recvonly"
        if self.receive:
            return "sendonly"
        return "inactive"

    def extension_id(self, uri: str) -> int | None:
        for ext_id, ext_uri in self.extensions:
            if ext_uri == uri:
                return ext_id
        return None


def negotiate(
    offer: Offer,
    *,
    video_slots_cap: int,
    audio_slots_cap: int,
    transport_cc: bool = True,
    per_layer_pli: bool = True,
) -> tuple[MediaPlan, ...]:
    """Decide every m-line of `offer`; caps limit receive slots, not m-lines.

    `transport_cc` False: answer without transport-cc (a pre-call test: the
    browser then sends at the REMB's rate at once, instead of ramping up its
    own estimate from 300 kbit/s during the few seconds the test measures).
    `per_layer_pli` False: a simulcast publisher's answer without
    `x-google-per-layer-pli=1` (module doc; `VISITROOM_PER_LAYER_KEYFRAMES=0`).
    """
    plans = _negotiate(offer, video_slots_cap, audio_slots_cap)
    if per_layer_pli:
        plans = tuple(_asking_per_layer(p) for p in plans)
    return plans if transport_cc else tuple(_without_transport_cc(p) for p in plans)


def _asking_per_layer(plan: MediaPlan) -> MediaPlan:
    if plan.simulcast is None or plan.kind != "video":
        return plan
    return replace(plan, codecs=tuple(_per_layer_pli(c) for c in plan.codecs))


def _without_transport_cc(plan: MediaPlan) -> MediaPlan:
    codecs = tuple(
        replace(c, feedback=tuple(f for f in c.feedback if f != "transport-cc"))
        for c in plan.codecs
    )
    extensions = tuple((i, uri) for i, uri in plan.extensions if uri != TWCC_URI)
    return replace(plan, codecs=codecs, extensions=extensions)


def _negotiate(offer: Offer, video_slots_cap: int, audio_slots_cap: int) -> tuple[MediaPlan, ...]:
    published = {"audio": 0, "video": 0}
    slots = {"audio": 0, "video": 0}
    caps = {"audio": audio_slots_cap, "video": video_slots_cap}
    plans = []
    for media in offer.media:
        codecs = choose_codecs(media)
        if media.rejected or not codecs:
            plans.append(_rejected(media))
            continue
        publish = media.publishes and published[media.kind] < MAX_PUBLISHED[media.kind]
        receive = media.receives and slots[media.kind] < caps[media.kind]
        published[media.kind] += publish
        slots[media.kind] += receive
        plans.append(_accepted(media, codecs, publish, receive))
    return tuple(plans)


def choose_codecs(media: OfferedMedia) -> tuple[CodecChoice, ...]:
    """RED (when it wraps Opus) and Opus for audio; VP8 then H.264 (one profile) for video."""
    if media.kind == "audio":
        opus = _first(media, _is_opus)
        names = [_red_for(media, opus), opus]
    elif media.kind == "video":
        names = [_first(media, lambda c: c.name == "vp8"), _best_h264(media)]
    else:
        return ()
    return tuple(_choice(media, codec) for codec in names if codec is not None)


def _is_opus(codec: Codec) -> bool:
    return codec.name == "opus" and codec.clock_rate == 48000


def _red_for(media: OfferedMedia, opus: Codec | None) -> Codec | None:
    """The offered RED whose blocks are all `opus` (`a=fmtp:63 111/111`), if any.

    A RED without fmtp, or naming another codec, is not chosen: the SFU
    would have to guess what its blocks hold.
    """
    if opus is None:
        return None
    for codec in media.codecs:
        if codec.name == RED and codec.clock_rate == 48000 and _red_blocks_are(codec, opus):
            return codec
    return None


def _red_blocks_are(red: Codec, opus: Codec) -> bool:
    blocks = red.fmtp.split("/")
    return 2 <= len(blocks) <= 8 and all(b == str(opus.payload_type) for b in blocks)


def _first(media: OfferedMedia, accept: Callable[[Codec], bool]) -> Codec | None:
    for codec in media.codecs:
        if accept(codec):
            return codec
    return None


def _best_h264(media: OfferedMedia) -> Codec | None:
    h264 = [c for c in media.codecs if c.name == "h264" and c.param("packetization-mode") == "1"]
    # Constrained baseline is what every browser decodes in hardware and software.
    for codec in h264:
        if (codec.param("profile-level-id") or "").lower().startswith("42e0"):
            return codec
    return h264[0] if h264 else None


def _choice(media: OfferedMedia, codec: Codec) -> CodecChoice:
    accepted = ACCEPTED_FEEDBACK[media.kind]
    return CodecChoice(
        name=codec.name,
        payload_type=codec.payload_type,
        clock_rate=codec.clock_rate,
        channels=codec.channels,
        fmtp=codec.fmtp,
        feedback=tuple(f for f in codec.feedback if f in accepted),
        rtx_payload_type=_rtx_for(media, codec.payload_type),
    )


def _rtx_for(media: OfferedMedia, payload_type: int) -> int | None:
    for codec in media.codecs:
        if codec.name == "rtx" and codec.param("apt") == str(payload_type):
            return codec.payload_type
    return None


def _accepted(
    media: OfferedMedia, codecs: tuple[CodecChoice, ...], publish: bool, receive: bool
) -> MediaPlan:
    allowed = ACCEPTED_EXTENSIONS[media.kind]
    # Simulcast needs the RID extension to tell the layers' SSRCs apart;
    # without it the answer has no simulcast lines and the browser sends one stream.
    offered = {uri for _, uri in media.extensions}
    simulcast = media.simulcast if publish and RID_URI in offered else None
    return MediaPlan(
        index=media.index,
        mid=media.mid,
        kind=media.kind,
        accepted=True,
        publish=publish,
        receive=receive,
        codecs=codecs,
        extensions=tuple((i, uri) for i, uri in media.extensions if uri in allowed),
        ssrc=media.ssrc if publish and simulcast is None else None,
        rtx_ssrc=media.rtx_ssrc if publish and simulcast is None else None,
        simulcast=simulcast,
    )


def _per_layer_pli(codec: CodecChoice) -> CodecChoice:
    if codec.name == RED or codec.per_layer_pli:
        return codec
    return replace(codec, fmtp=f"{codec.fmtp};{PER_LAYER_PLI}" if codec.fmtp else PER_LAYER_PLI)


def _rejected(media: OfferedMedia) -> MediaPlan:
    return MediaPlan(
        index=media.index,
        mid=media.mid,
        kind=media.kind,
        accepted=False,
        publish=False,
        receive=False,
        codecs=(),
        extensions=(),
        ssrc=None,
        rtx_ssrc=None,
    )
