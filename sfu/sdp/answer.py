"""Writing the SDP answer.

The answer mirrors the offer m-line by m-line (same order, same mids, the
offerer's payload types and extension ids), bundles everything on one
transport with rtcp-mux, carries all of the SFU's host candidates followed by
a=end-of-candidates (the SFU never trickles), and announces, for each receive
slot, the SSRC (and RTX SSRC) the SFU will send from, so the browser creates
one track per slot.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sfu.sdp.negotiate import MediaPlan
from sfu.sdp.offer import Offer


@dataclass(frozen=True)
class SendStream:
    """What the SFU announces for a receive slot it fills."""

    ssrc: int
    rtx_ssrc: int | None
    stream_id: str
    track_id: str


@dataclass(frozen=True)
class LocalTransport:
    """The SFU side of the bundled transport."""

    ice_ufrag: str
    ice_pwd: str
    fingerprints: tuple[tuple[str, str], ...]
    setup: str  # "active" or "passive"
    candidates: tuple[str, ...]  # candidate attribute values
    address: str
    port: int


@dataclass(frozen=True)
class AnswerContext:
    session_id: int
    version: int
    cname: str


def render_answer(
    offer: Offer,
    plans: Sequence[MediaPlan],
    streams: Mapping[str, SendStream],
    transport: LocalTransport,
    context: AnswerContext,
) -> str:
    """The complete answer text (CRLF line endings)."""
    accepted = [p.mid for p in plans if p.accepted and p.mid is not None]
    lines = [
        "v=0",
        f"o=visitroom {context.session_id} {context.version} IN IP4 0.0.0.0",
        "s=visitroom",
        "t=0 0",
    ]
    if accepted:
        lines.append("a=group:BUNDLE " + " ".join(accepted))
    if offer.two_byte_extensions:
        lines.append("a=extmap-allow-mixed")
    lines.append("a=msid-semantic: WMS *")
    for plan, media in zip(plans, offer.media, strict=True):
        stream = streams.get(plan.mid or "") if plan.receive else None
        if plan.accepted:
            lines += _media_lines(plan, stream, transport, context.cname)
        else:
            lines += _rejected_lines(plan, media.kind, media.proto)
    return "\r\n".join(lines) + "\r\n"


def _connection_line(address: str) -> str:
    version = ipaddress.ip_address(address).version
    return f"c=IN IP{version} {address}"


def _media_lines(
    plan: MediaPlan, stream: SendStream | None, transport: LocalTransport, cname: str
) -> list[str]:
    pts = []
    for codec in plan.codecs:
        pts.append(codec.payload_type)
        if codec.rtx_payload_type is not None:
            pts.append(codec.rtx_payload_type)
    lines = [
        f"m={plan.kind} {transport.port} UDP/TLS/RTP/SAVPF {' '.join(map(str, pts))}",
        _connection_line(transport.address),
        "a=rtcp:9 IN IP4 0.0.0.0",
        f"a=ice-ufrag:{transport.ice_ufrag}",
        f"a=ice-pwd:{transport.ice_pwd}",
    ]
    lines += [f"a=fingerprint:{alg} {value}" for alg, value in transport.fingerprints]
    lines += [f"a=setup:{transport.setup}", f"a=mid:{plan.mid}"]
    lines += [f"a=extmap:{ext_id} {uri}" for ext_id, uri in plan.extensions]
    lines += [f"a={plan.direction}"]
    lines += _simulcast_lines(plan)
    if stream is not None:
        lines.append(f"a=msid:{stream.stream_id} {stream.track_id}")
    lines.append("a=rtcp-mux")
    lines += _codec_lines(plan)
    if stream is not None:
        lines += _ssrc_lines(stream, cname)
    lines += [f"a=candidate:{c}" for c in transport.candidates]
    lines.append("a=end-of-candidates")
    return lines


def _simulcast_lines(plan: MediaPlan) -> list[str]:
    """a=rid:<id> recv for every offered rid and a=simulcast:recv in the offer's order."""
    simulcast = plan.simulcast
    if simulcast is None:
        return []
    lines = [f"a=rid:{rid} recv" for stream in simulcast.streams for rid in stream]
    streams = ";".join(
        ",".join(("~" if rid in simulcast.paused else "") + rid for rid in stream)
        for stream in simulcast.streams
    )
    lines.append(f"a=simulcast:recv {streams}")
    return lines


def _codec_lines(plan: MediaPlan) -> list[str]:
    lines = []
    for codec in plan.codecs:
        channels = f"/{codec.channels}" if plan.kind == "audio" and codec.channels else ""
        pt = codec.payload_type
        lines.append(f"a=rtpmap:{pt} {_mime_name(codec.name)}/{codec.clock_rate}{channels}")
        lines += [f"a=rtcp-fb:{pt} {fb}" for fb in codec.feedback]
        if codec.fmtp:
            lines.append(f"a=fmtp:{pt} {codec.fmtp}")
        if codec.rtx_payload_type is not None:
            rtx = codec.rtx_payload_type
            lines += [f"a=rtpmap:{rtx} rtx/{codec.clock_rate}", f"a=fmtp:{rtx} apt={pt}"]
    return lines


def _mime_name(name: str) -> str:
    return {"opus": "opus", "vp8": "VP8", "h264": "H264"}.get(name, name)


def _ssrc_lines(stream: SendStream, cname: str) -> list[str]:
    lines = []
    ssrcs = [stream.ssrc]
    if stream.rtx_ssrc is not None:
        ssrcs.append(stream.rtx_ssrc)
        lines.append(f"a=ssrc-group:FID {stream.ssrc} {stream.rtx_ssrc}")
    for ssrc in ssrcs:
        lines.append(f"a=ssrc:{ssrc} cname:{cname}")
        lines.append(f"a=ssrc:{ssrc} msid:{stream.stream_id} {stream.track_id}")
    return lines


def _rejected_lines(plan: MediaPlan, kind: str, proto: str) -> list[str]:
    # A rejected m-line keeps its kind and protocol with port 0 (RFC 3264 6).
    fmt = "0" if kind in ("audio", "video") else "webrtc-datachannel"
    lines = [f"m={kind} 0 {proto} {fmt}", "c=IN IP4 0.0.0.0", "a=inactive"]
    if plan.mid is not None:
        lines.append(f"a=mid:{plan.mid}")
    return lines
