"""Reading the client's SDP offer, with limits, before aiortc.sdp sees it.

A hostile offer must never reach a parser that can loop, allocate without
bound or raise something unexpected.  `parse_offer` first checks the raw
text (size, line count and length, UTF-8, control characters, the syntax of
every line the SFU relies on), then lets `aiortc.sdp` build its objects and
finally checks the meaning (BUNDLE, rtcp-mux, ICE credentials, a supported
fingerprint, no dangling `apt=`).  Every refusal is a
`MediaError("bad_request", ...)` saying what is wrong.

Simulcast (RFC 8853 / RFC 8851): a video m-line may carry `a=rid:<id> send
[restrictions]` lines and one `a=simulcast:send <streams>` line (streams
separated by `;`, alternatives by `,`, a `~` prefix marks a paused stream;
the old draft form `send rid=q;h;f` is read too).  Limits: at most
`MAX_RIDS` rids per m-line, rid ids of 1-16 letters, digits, `-` or `_`,
every rid listed in a=simulcast and every listed rid declared, send only (the
SFU never sends simulcast), a `pt=` restriction only naming the m-line's
payload types, no simulcast on audio or at session level.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiortc import sdp as aiortc_sdp
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from sfu.control import MAX_SDP_BYTES as MAX_SDP_BYTES
from sfu.control import MediaError

MAX_LINE_CHARS = 2048
MAX_LINES = 4000
MAX_MEDIA = 20
MAX_FORMATS = 128
MAX_CANDIDATES = 64
MAX_SSRC_LINES = 64
MAX_RIDS = 4

SUPPORTED_HASHES = ("sha-256", "sha-384", "sha-512")
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
SETUPS = ("actpass", "active", "passive")
# RFC 5761: payload types that clash with RTCP packet types under rtcp-mux.
FORBIDDEN_PTS = range(72, 77)

_LINE = re.compile(r"[a-z]=[^\x00-\x08\x0a-\x1f\x7f]*")
_M_LINE = re.compile(r"m=([a-z]+) (\d{1,5})(?:/\d{1,3})? ([A-Za-z/]+)((?: [\w\-.]+)+)")
_RTPMAP = re.compile(r"(\d{1,3}) ([\w\-.]{1,32})/(\d{1,6})(?:/(\d{1,2}))?")
_FMTP = re.compile(r"(\d{1,3}) (\S.*)")
_RTCP_FB = re.compile(r"(\d{1,3}|\*) ([\w\-]{1,32})(?: ([\w\-]{1,32}))?.*")
_EXTMAP = re.compile(r"(\d{1,3})(?:/(sendrecv|sendonly|recvonly|inactive))? (\S{1,256})(?: .*)?")
_SSRC = re.compile(r"(\d{1,10}) ([\w\-]{1,32})(?::(.*))?")
_SSRC_GROUP = re.compile(r"([\w\-]{1,16})((?: \d{1,10})+)")
_FINGERPRINT = re.compile(r"([\w\-]{1,16}) ([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){15,63})")
_ICE_UFRAG = re.compile(r"[A-Za-z0-9+/]{4,256}")
_ICE_PWD = re.compile(r"[A-Za-z0-9+/]{22,256}")
_RID = re.compile(
    r"([A-Za-z0-9_\-]{1,16}) (send|recv)"
    r"(?: ([\w\-]{1,16}=[\w\-.,]{1,64}(?:;[\w\-]{1,16}=[\w\-.,]{1,64}){0,15}))?"
)
_SIMULCAST = re.compile(
    r" ?(send|recv) (?:rid=)?([\w\-~,;]{1,200})(?: (send|recv) (?:rid=)?([\w\-~,;]{1,200}))?"
)
_RID_ID = re.compile(r"[A-Za-z0-9_\-]{1,16}")
_MID = re.compile(r"[\w\-.~]{1,64}")
_CANDIDATE = re.compile(
    r"(?:candidate:)?([\w+/]{1,32}) (\d{1,3}) ([A-Za-z]{3}) (\d{1,10}) ([\w.:\-]{1,253}) "
    r"(\d{1,5}) typ (host|srflx|prflx|relay)(?: .*)?"
)


@dataclass(frozen=True)
class Codec:
    """One `a=rtpmap` of an m-line with its fmtp parameters and feedback."""

    payload_type: int
    name: str  # lower case: "opus", "vp8", "h264", "rtx", ...
    clock_rate: int
    channels: int | None
    parameters: tuple[tuple[str, str | None], ...]
    feedback: tuple[str, ...]  # "nack", "nack pli", "ccm fir", "goog-remb", ...

    def param(self, key: str) -> str | None:
        for k, v in self.parameters:
            if k == key:
                return v
        return None

    @property
    def fmtp(self) -> str:
        return ";".join(k if v is None else f"{k}={v}" for k, v in self.parameters)


@dataclass(frozen=True)
class Simulcast:
    """The simulcast streams a publisher offers on one m-line, in a=simulcast order.

    Each stream is a tuple of rids: the first is the stream's rid, the
    others its alternatives (the same layer under another rid).  The offer
    order is not guaranteed to be lowest resolution first (see
    `sfu.routing.producer.order_layers` for how layers are ordered).
    """

    streams: tuple[tuple[str, ...], ...]
    paused: frozenset[str] = frozenset()

    @property
    def rids(self) -> tuple[str, ...]:
        """The first rid of each stream (one per layer), in offer order."""
        return tuple(stream[0] for stream in self.streams)

    def layer_of(self, rid: str) -> int | None:
        """The index (offer order) of the stream `rid` names, None if unknown."""
        for index, stream in enumerate(self.streams):
            if rid in stream:
                return index
        return None


@dataclass(frozen=True)
class OfferedMedia:
    """One m-line of the offer, reduced to what the SFU uses."""

    index: int
    kind: str
    port: int
    proto: str
    mid: str | None
    direction: str
    codecs: tuple[Codec, ...]
    extensions: tuple[tuple[int, str], ...]  # (id, uri)
    ssrc: int | None  # the media SSRC the client will send, when it said so
    rtx_ssrc: int | None
    rtcp_mux: bool
    simulcast: Simulcast | None = None

    @property
    def rejected(self) -> bool:
        return self.port == 0 or self.kind not in ("audio", "video")

    @property
    def publishes(self) -> bool:
        return not self.rejected and self.direction in ("sendrecv", "sendonly")

    @property
    def receives(self) -> bool:
        return not self.rejected and self.direction in ("sendrecv", "recvonly")


@dataclass(frozen=True)
class Offer:
    media: tuple[OfferedMedia, ...]
    bundle: tuple[str, ...]
    ice_ufrag: str
    ice_pwd: str
    fingerprints: tuple[tuple[str, str], ...]  # (algorithm, value)
    setup: str
    two_byte_extensions: bool
    candidates: tuple[str, ...]  # candidate attribute values, as written
    # The o= line's sess-id: the same for every offer of one RTCPeerConnection (RFC 3264 8).
    session_id: str = ""


def bad(message: str) -> MediaError:
    return MediaError("bad_request", message)


def parse_offer(text: object) -> Offer:
    """Validate and parse an offer; raises MediaError("bad_request")."""
    lines = _checked_lines(text)
    _check_syntax(lines)
    try:
        session = aiortc_sdp.SessionDescription.parse("\r\n".join(lines) + "\r\n")
    except Exception as exc:  # aiortc raises assert/Key/Value/Index errors alike
        raise bad(f"unparsable SDP offer ({type(exc).__name__})") from None
    two_byte = any(line == "a=extmap-allow-mixed" for line in lines)
    simulcasts = _simulcasts(lines)
    if len(simulcasts) != len(session.media):
        raise bad("unparsable SDP offer (m-lines)")
    media = tuple(_media(i, m, two_byte, simulcasts[i]) for i, m in enumerate(session.media))
    return _offer(session, media, two_byte, lines)


def parse_candidate(text: str) -> str | None:
    """A trickled candidate line -> its attribute value; "" means end-of-candidates."""
    value = text.strip()
    if value.startswith("a="):
        value = value[2:]
    if value in ("", "end-of-candidates"):
        return None
    if len(value) > 512 or not _CANDIDATE.fullmatch(value):
        raise bad("malformed ICE candidate")
    return value.removeprefix("candidate:")


def _checked_lines(text: object) -> list[str]:
    if not isinstance(text, str):
        raise bad("the offer SDP must be a string")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise bad("the offer SDP is not valid UTF-8") from None
    if size > MAX_SDP_BYTES:
        raise bad(f"the offer SDP is larger than {MAX_SDP_BYTES} bytes")
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line]
    if len(lines) > MAX_LINES:
        raise bad(f"the offer SDP has more than {MAX_LINES} lines")
    for number, line in enumerate(lines, 1):
        if len(line) > MAX_LINE_CHARS:
            raise bad(f"line {number} of the offer is longer than {MAX_LINE_CHARS} characters")
        if not _LINE.fullmatch(line):
            raise bad(f"line {number} of the offer is not a valid SDP line")
    if not lines or lines[0] != "v=0":
        raise bad("the offer SDP must start with v=0")
    return lines


def _check_syntax(lines: list[str]) -> None:
    counts = {"m": 0, "candidate": 0, "ssrc": 0}
    for line in lines:
        if line.startswith("m="):
            counts["m"] += 1
            _check_m_line(line)
        elif line.startswith("a="):
            name, _, value = line[2:].partition(":")
            if name in counts:
                counts[name] += 1
            _check_attribute(name, value)
    if counts["m"] > MAX_MEDIA:
        raise bad(f"the offer has more than {MAX_MEDIA} m-lines")
    if counts["candidate"] > MAX_CANDIDATES:
        raise bad(f"the offer has more than {MAX_CANDIDATES} candidates")
    if counts["ssrc"] > MAX_SSRC_LINES:
        raise bad(f"the offer has more than {MAX_SSRC_LINES} a=ssrc lines")


def _check_m_line(line: str) -> None:
    match = _M_LINE.fullmatch(line)
    if not match:
        raise bad(f"malformed m-line: {line[:80]!r}")
    formats = match.group(4).split()
    if len(formats) > MAX_FORMATS:
        raise bad(f"an m-line lists more than {MAX_FORMATS} formats")
    if match.group(1) in ("audio", "video"):
        for fmt in formats:
            if not fmt.isdigit() or int(fmt) > 127 or int(fmt) in FORBIDDEN_PTS:
                raise bad(f"invalid payload type {fmt!r} in an m-line")


_ATTRIBUTE_SYNTAX = {
    "rtpmap": _RTPMAP,
    "fmtp": _FMTP,
    "rtcp-fb": _RTCP_FB,
    "extmap": _EXTMAP,
    "ssrc": _SSRC,
    "ssrc-group": _SSRC_GROUP,
    "fingerprint": _FINGERPRINT,
    "ice-ufrag": _ICE_UFRAG,
    "ice-pwd": _ICE_PWD,
    "mid": _MID,
    "rid": _RID,
    "simulcast": _SIMULCAST,
    "candidate": _CANDIDATE,
}


def _check_attribute(name: str, value: str) -> None:
    if name == "setup" and value not in SETUPS:
        raise bad(f"a=setup must be one of {', '.join(SETUPS)}")
    pattern = _ATTRIBUTE_SYNTAX.get(name)
    if pattern is not None and not pattern.fullmatch(value):
        raise bad(f"malformed a={name} line: {value[:80]!r}")
    if name == "ssrc":
        if int(value.split(" ", 1)[0]) > 0xFFFFFFFF:
            raise bad("an SSRC is larger than 32 bits")
    elif name == "extmap":
        ext_id = int(value.split(" ", 1)[0].split("/", 1)[0])
        if not 1 <= ext_id <= 255:
            raise bad(f"extmap id {ext_id} is outside 1-255")
    elif name == "rtpmap" and int(value.split(" ", 1)[0]) > 127:
        raise bad("an rtpmap payload type is larger than 127")


def _media(
    index: int, m: aiortc_sdp.MediaDescription, two_byte: bool, simulcast: Simulcast | None
) -> OfferedMedia:
    codecs = tuple(_codec(c) for c in m.rtp.codecs) if m.kind in ("audio", "video") else ()
    _check_codecs(codecs, m.fmt)
    extensions = tuple((e.id, e.uri) for e in m.rtp.headerExtensions)
    for ext_id, _uri in extensions:
        if not two_byte and ext_id > 14:
            raise bad(f"extmap id {ext_id} needs two-byte headers (a=extmap-allow-mixed)")
    if len({i for i, _ in extensions}) != len(extensions):
        raise bad("an extmap id is used twice in one m-line")
    ssrc, rtx_ssrc = _ssrcs(m)
    return OfferedMedia(
        index=index,
        kind=m.kind,
        port=m.port,
        proto=m.profile,
        mid=m.rtp.muxId,
        direction=m.direction or "sendrecv",
        codecs=codecs,
        extensions=extensions,
        ssrc=ssrc,
        rtx_ssrc=rtx_ssrc,
        rtcp_mux=m.rtcp_mux,
        simulcast=simulcast,
    )


def _codec(c: RTCRtpCodecParameters) -> Codec:
    name = c.mimeType.split("/", 1)[1].lower()
    params = tuple((str(k), None if v is None else str(v)) for k, v in c.parameters.items())
    feedback = tuple(
        f.type if not f.parameter else f"{f.type} {f.parameter}" for f in c.rtcpFeedback
    )
    return Codec(
        payload_type=c.payloadType or 0,  # aiortc always sets it from the rtpmap
        name=name,
        clock_rate=c.clockRate,
        channels=c.channels,
        parameters=params,
        feedback=feedback,
    )


def _check_codecs(codecs: tuple[Codec, ...], formats: list[object]) -> None:
    pts = {c.payload_type for c in codecs}
    if len(pts) != len(codecs):
        raise bad("a payload type has two rtpmap lines")
    for codec in codecs:
        if codec.payload_type not in formats:
            raise bad(f"rtpmap {codec.payload_type} is not listed in its m-line")
        if codec.name == "rtx":
            apt = codec.param("apt")
            if apt is None or not apt.isdigit() or int(apt) not in pts:
                raise bad(f"rtx payload type {codec.payload_type} has a dangling apt={apt}")


def _ssrcs(m: aiortc_sdp.MediaDescription) -> tuple[int | None, int | None]:
    for group in m.ssrc_group:
        if group.semantic == "FID" and len(group.items) == 2:
            return int(group.items[0]), int(group.items[1])
    if m.ssrc:
        return m.ssrc[0].ssrc, None
    return None, None


def _offer(
    session: aiortc_sdp.SessionDescription,
    media: tuple[OfferedMedia, ...],
    two_byte: bool,
    lines: list[str],
) -> Offer:
    active = [(m, d) for m, d in zip(media, session.media, strict=True) if not m.rejected]
    if not active:
        raise bad("the offer has no audio or video m-line")
    bundle = _bundle(session)
    mids = [m.mid for m, _ in active]
    if None in mids or len(set(mids)) != len(mids):
        raise bad("every audio/video m-line needs a unique a=mid")
    for m, _ in active:
        if not m.rtcp_mux:
            raise bad(f"m-line {m.mid} lacks a=rtcp-mux, which is required")
        if "SAVP" not in m.proto:
            raise bad(f"m-line {m.mid} is not DTLS-SRTP ({m.proto}); unencrypted media is refused")
        if len(active) > 1 and m.mid not in bundle:
            raise bad(f"m-line {m.mid} is not in the BUNDLE group, which is required")
    first = active[0][1]
    if first.ice is None:
        raise bad("the offer lacks ICE credentials")
    return Offer(
        media=media,
        bundle=bundle,
        ice_ufrag=_required(first.ice.usernameFragment, "a=ice-ufrag"),
        ice_pwd=_required(first.ice.password, "a=ice-pwd"),
        fingerprints=_fingerprints(lines),
        setup=_setup(lines),
        two_byte_extensions=two_byte,
        candidates=tuple(
            line[len("a=candidate:") :] for line in lines if line.startswith("a=candidate:")
        ),
        session_id=_session_id(lines),
    )


def _session_id(lines: list[str]) -> str:
    for line in lines:
        if line.startswith("o="):
            fields = line[2:].split(" ")
            return fields[1] if len(fields) > 1 else ""
    return ""


def _bundle(session: aiortc_sdp.SessionDescription) -> tuple[str, ...]:
    for group in session.group:
        if group.semantic == "BUNDLE":
            return tuple(str(item) for item in group.items)
    return ()


def _required(value: str | None, what: str) -> str:
    if not value:
        raise bad(f"the offer lacks {what}")
    return value


def _fingerprints(lines: list[str]) -> tuple[tuple[str, str], ...]:
    # All m-lines share one transport under BUNDLE; aiortc drops the
    # fingerprints of an offer without a=setup, so read the lines directly.
    prints = tuple(
        dict.fromkeys(
            (alg.lower(), value.upper())
            for alg, value in (
                line[len("a=fingerprint:") :].split(" ", 1)
                for line in lines
                if line.startswith("a=fingerprint:")
            )
        )
    )
    if not any(alg in SUPPORTED_HASHES for alg, _ in prints):
        raise bad("the offer lacks a DTLS fingerprint (sha-256, sha-384 or sha-512)")
    return prints


def _setup(lines: list[str]) -> str:
    for line in lines:
        if line.startswith("a=setup:"):
            return line[len("a=setup:") :]
    return "actpass"


def _simulcasts(lines: list[str]) -> list[Simulcast | None]:
    """The checked simulcast description of each m-line (None without simulcast)."""
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        elif line.startswith(("a=rid:", "a=simulcast:")):
            raise bad("a=rid and a=simulcast belong to a video m-line, not the session")
    return [_simulcast(section) for section in sections]


def _simulcast(section: list[str]) -> Simulcast | None:
    rids: dict[str, str] = {}
    simulcast: list[str] = []
    for line in section[1:]:
        if line.startswith("a=rid:"):
            value = line[len("a=rid:") :]
            match = _RID.fullmatch(value)
            assert match is not None  # checked by _check_attribute
            rid, direction, restrictions = match.groups()
            if rid in rids:
                raise bad(f"a=rid:{rid} is declared twice in one m-line")
            if direction != "send":
                raise bad(f"a=rid:{rid} {direction}: the SFU only receives simulcast")
            _check_restrictions(rid, restrictions or "", section[0])
            rids[rid] = direction
            if len(rids) > MAX_RIDS:
                raise bad(f"an m-line declares more than {MAX_RIDS} rids")
        elif line.startswith("a=simulcast:"):
            simulcast.append(line[len("a=simulcast:") :])
    if not rids and not simulcast:
        return None
    if not section[0].startswith("m=video "):
        raise bad("simulcast (a=rid, a=simulcast) is only accepted on video m-lines")
    if not simulcast:
        raise bad("a=rid without a=simulcast in an m-line")
    if len(simulcast) > 1:
        raise bad("an m-line has more than one a=simulcast line")
    result = _simulcast_streams(simulcast[0])
    listed = [rid for stream in result.streams for rid in stream]
    if len(set(listed)) != len(listed):
        raise bad("a=simulcast lists a rid twice")
    for rid in listed:
        if rid not in rids:
            raise bad(f"a=simulcast lists rid {rid!r} without its a=rid line")
    for rid in rids:
        if rid not in listed:
            raise bad(f"a=rid:{rid} is not listed in a=simulcast")
    return result


def _simulcast_streams(value: str) -> Simulcast:
    match = _SIMULCAST.fullmatch(value)
    assert match is not None  # checked by _check_attribute
    first, first_list, second, _ = match.groups()
    if first != "send" or second is not None:
        raise bad("a=simulcast must be send only: the SFU only receives simulcast")
    streams: list[tuple[str, ...]] = []
    paused: set[str] = set()
    for stream in first_list.split(";"):
        alternatives = []
        for item in stream.split(","):
            rid = item.removeprefix("~")
            if not _RID_ID.fullmatch(rid):
                raise bad(f"malformed rid {item[:20]!r} in a=simulcast")
            if item.startswith("~"):
                paused.add(rid)
            alternatives.append(rid)
        streams.append(tuple(alternatives))
    if len(streams) > MAX_RIDS:
        raise bad(f"a=simulcast lists more than {MAX_RIDS} streams")
    return Simulcast(tuple(streams), frozenset(paused))


def _check_restrictions(rid: str, restrictions: str, m_line: str) -> None:
    formats = m_line.split(" ")[3:]
    for item in restrictions.split(";") if restrictions else ():
        key, _, value = item.partition("=")
        if key == "pt":
            for pt in value.split(","):
                if pt not in formats:
                    raise bad(f"a=rid:{rid} restricts to payload type {pt!r} not in its m-line")
        elif key.startswith("max-") and not value.replace(".", "", 1).isdigit():
            raise bad(f"a=rid:{rid} has a malformed {key} restriction")
