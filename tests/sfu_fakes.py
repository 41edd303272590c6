"""In-memory stand-ins for transports, for the SFU's pure-core tests."""

from __future__ import annotations

from sfu.packet.rtp import RtpHeader, build_rtp, parse_rtp, rewritten
from sfu.routing.producer import Producer
from sfu.sdp.negotiate import ABS_SEND_TIME_URI, AUDIO_LEVEL_URI, MID_URI, CodecChoice, MediaPlan

VP8 = CodecChoice(
    name="vp8",
    payload_type=96,
    clock_rate=90000,
    channels=None,
    fmtp="",
    feedback=("nack", "nack pli", "ccm fir", "goog-remb"),
    rtx_payload_type=97,
)
OPUS = CodecChoice(
    name="opus",
    payload_type=111,
    clock_rate=48000,
    channels=2,
    fmtp="minptime=10",
    feedback=(),
    rtx_payload_type=None,
)
RED = CodecChoice(
    name="red",
    payload_type=63,
    clock_rate=48000,
    channels=2,
    fmtp="111/111",
    feedback=(),
    rtx_payload_type=None,
)
EXT_IDS = {AUDIO_LEVEL_URI: 1, ABS_SEND_TIME_URI: 2, MID_URI: 3}


class Capture:
    """Collects what would have been sent (plain RTP and RTCP)."""

    rtcp_ssrc = 0xABCDEF

    def __init__(self) -> None:
        self.rtp: list[bytes] = []
        self.rtcp: list[bytes] = []
        self.whole_twcc_at: list[int] = []  # what each send_rtp said of its twcc element

    def send_rtp(self, packet: bytes, twcc_at: int = -1) -> None:
        self.rtp.append(packet)
        self.whole_twcc_at.append(twcc_at)

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
        self.rtp.append(
            rewritten(
                packet, ssrc=ssrc, sequence=sequence, timestamp=timestamp, payload_type=payload_type
            )
        )

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)

    def headers(self) -> list[RtpHeader]:
        return [parse_rtp(p) for p in self.rtp]


def producer(kind: str = "video", ssrc: int = 5000, owner: str = "alice", **kw: object) -> Producer:
    return Producer(
        owner=owner,
        mid="0",
        kind=kind,
        source="camera" if kind == "video" else "audio",
        codecs=(VP8,) if kind == "video" else (OPUS,),
        ssrc=ssrc,
        rtx_ssrc=ssrc + 1 if kind == "video" else None,
        ext_ids=EXT_IDS,
        output=kw.pop("output", Capture()),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def vp8(seq: int, ts: int, ssrc: int = 5000, keyframe: bool = False, start: bool = True) -> bytes:
    descriptor = bytes([0x10 if start else 0x00])
    header = bytes([0x00 if keyframe else 0x01, 0, 0]) if start else b""
    if keyframe:
        header += b"\x9d\x01\x2a\x40\x01\xf0\x00"
    return build_rtp(
        payload_type=96,
        sequence=seq & 0xFFFF,
        timestamp=ts & 0xFFFFFFFF,
        ssrc=ssrc,
        payload=descriptor + header + bytes(50),
        extensions={3: b"0"},
    )


def opus(seq: int, ts: int, ssrc: int = 6000, level: int = 30) -> bytes:
    return build_rtp(
        payload_type=111,
        sequence=seq & 0xFFFF,
        timestamp=ts & 0xFFFFFFFF,
        ssrc=ssrc,
        payload=b"\xfc" + bytes(40),
        extensions={1: bytes([0x80 | level])},
    )


def red_payload(redundant: list[tuple[int, int, bytes]], primary_pt: int, primary: bytes) -> bytes:
    """An RFC 2198 payload: (PT, timestamp offset, data) per redundant block, then the primary."""
    headers = b"".join(
        (0x80000000 | pt << 24 | offset << 10 | len(data)).to_bytes(4, "big")
        for pt, offset, data in redundant
    )
    return headers + bytes([primary_pt]) + b"".join(d for _, _, d in redundant) + primary


def red(seq: int, ts: int, ssrc: int = 6000, level: int = 30, padding: int = 0) -> bytes:
    """A RED packet as Chromium sends it: the previous Opus frame again, then this one's."""
    previous = b"\xfc" + (seq - 1).to_bytes(4, "big") + bytes(30)
    primary = b"\xfc" + seq.to_bytes(4, "big") + bytes(36)
    return build_rtp(
        payload_type=63,
        sequence=seq & 0xFFFF,
        timestamp=ts & 0xFFFFFFFF,
        ssrc=ssrc,
        payload=red_payload([(111, 960, previous)], 111, primary),
        extensions={1: bytes([0x80 | level])},
        padding=padding,
    )


def media_plans(
    *,
    audio: bool = True,
    video: bool = True,
    screen: bool = False,
    audio_slots: int = 3,
    video_slots: int = 4,
    ssrc: int = 10_000,
) -> tuple[MediaPlan, ...]:
    """Negotiated m-lines: published tracks first ("a", "v", "s"), then slots."""
    ext = tuple((i, uri) for uri, i in EXT_IDS.items())
    out: list[MediaPlan] = []

    def add(mid: str, kind: str, publish: bool, receive: bool, media_ssrc: int | None) -> None:
        out.append(
            MediaPlan(
                index=len(out),
                mid=mid,
                kind=kind,
                accepted=True,
                publish=publish,
                receive=receive,
                codecs=(OPUS,) if kind == "audio" else (VP8,),
                extensions=ext,
                ssrc=media_ssrc,
                rtx_ssrc=media_ssrc + 1 if media_ssrc and kind == "video" else None,
            )
        )

    if audio:
        add("a", "audio", True, False, ssrc)
    if video:
        add("v", "video", True, False, ssrc + 10)
    if screen:
        add("s", "video", True, False, ssrc + 20)
    for n in range(audio_slots):
        add(f"ra{n}", "audio", False, True, None)
    for n in range(video_slots):
        add(f"rv{n}", "video", False, True, None)
    return tuple(out)
