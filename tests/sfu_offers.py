"""SDP offers for the SFU tests: a Chrome-like one and a builder for variants."""

from __future__ import annotations

FINGERPRINT = ":".join(["AB"] * 32)

CHROME_OFFER = (
    "\r\n".join(
        [
            "v=0",
            "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0 1 2",
            "a=extmap-allow-mixed",
            "a=msid-semantic: WMS stream",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
            "c=IN IP4 0.0.0.0",
            "a=rtcp:9 IN IP4 0.0.0.0",
            "a=ice-ufrag:a1B2",
            "a=ice-pwd:abcdefghijklmnopqrstuvwx",
            "a=ice-options:trickle",
            f"a=fingerprint:sha-256 {FINGERPRINT}",
            "a=setup:actpass",
            "a=mid:0",
            "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
            "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=sendrecv",
            "a=msid:stream audio-track",
            "a=rtcp-mux",
            "a=rtcp-rsize",
            "a=rtpmap:111 opus/48000/2",
            "a=rtcp-fb:111 transport-cc",
            "a=fmtp:111 minptime=10;useinbandfec=1",
            "a=rtpmap:63 red/48000/2",
            "a=fmtp:63 111/111",
            "a=rtpmap:9 G722/8000",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:13 CN/8000",
            "a=rtpmap:110 telephone-event/48000",
            "a=rtpmap:126 telephone-event/8000",
            "a=ssrc:1001 cname:chrome",
            "a=ssrc:1001 msid:stream audio-track",
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105 45 46",
            "c=IN IP4 0.0.0.0",
            "a=rtcp:9 IN IP4 0.0.0.0",
            "a=ice-ufrag:a1B2",
            "a=ice-pwd:abcdefghijklmnopqrstuvwx",
            "a=ice-options:trickle",
            f"a=fingerprint:sha-256 {FINGERPRINT}",
            "a=setup:actpass",
            "a=mid:1",
            "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
            "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            "a=extmap:13 urn:3gpp:video-orientation",
            "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
            "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=sendrecv",
            "a=msid:stream video-track",
            "a=rtcp-mux",
            "a=rtcp-rsize",
            "a=rtpmap:96 VP8/90000",
            "a=rtcp-fb:96 goog-remb",
            "a=rtcp-fb:96 transport-cc",
            "a=rtcp-fb:96 ccm fir",
            "a=rtcp-fb:96 nack",
            "a=rtcp-fb:96 nack pli",
            "a=rtpmap:97 rtx/90000",
            "a=fmtp:97 apt=96",
            "a=rtpmap:102 H264/90000",
            "a=rtcp-fb:102 nack",
            "a=rtcp-fb:102 nack pli",
            "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
            "a=rtpmap:103 rtx/90000",
            "a=fmtp:103 apt=102",
            "a=rtpmap:104 H264/90000",
            "a=rtcp-fb:104 nack",
            "a=rtcp-fb:104 nack pli",
            "a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            "a=rtpmap:105 rtx/90000",
            "a=fmtp:105 apt=104",
            "a=rtpmap:45 AV1/90000",
            "a=rtpmap:46 rtx/90000",
            "a=fmtp:46 apt=45",
            "a=ssrc-group:FID 2001 2002",
            "a=ssrc:2001 cname:chrome",
            "a=ssrc:2002 cname:chrome",
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
            "c=IN IP4 0.0.0.0",
            "a=ice-ufrag:a1B2",
            "a=ice-pwd:abcdefghijklmnopqrstuvwx",
            f"a=fingerprint:sha-256 {FINGERPRINT}",
            "a=setup:actpass",
            "a=mid:2",
            "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=recvonly",
            "a=rtcp-mux",
            "a=rtpmap:96 VP8/90000",
            "a=rtcp-fb:96 nack",
            "a=rtcp-fb:96 nack pli",
            "a=rtpmap:97 rtx/90000",
            "a=fmtp:97 apt=96",
            "a=candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host generation 0",
        ]
    )
    + "\r\n"
)


def replace_line(offer: str, old: str, new: str | None) -> str:
    """`offer` with every line equal to `old` replaced by `new` (None: removed)."""
    lines = offer.split("\r\n")
    out = [new if line == old else line for line in lines]
    return "\r\n".join(line for line in out if line is not None)


def without_prefix(offer: str, prefix: str) -> str:
    return "\r\n".join(line for line in offer.split("\r\n") if not line.startswith(prefix))


RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
RRID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"


def simulcast_offer(
    rid_lines: tuple[str, ...] = ("a=rid:q send", "a=rid:h send", "a=rid:f send"),
    simulcast: str | None = "a=simulcast:send q;h;f",
    extensions: bool = True,
) -> str:
    """CHROME_OFFER whose camera m-line (mid 1) publishes simulcast as Chromium does.

    Chromium drops the a=ssrc lines of a simulcast sender and adds the RID
    and repaired-RID header extensions, the rid lines and a=simulcast.
    """
    lines = CHROME_OFFER.split("\r\n")
    out: list[str] = []
    for line in lines:
        if line in ("a=ssrc-group:FID 2001 2002", "a=ssrc:2001 cname:chrome"):
            continue
        if line == "a=ssrc:2002 cname:chrome":
            out += list(rid_lines)
            if simulcast is not None:
                out.append(simulcast)
            continue
        out.append(line)
        if line == "a=extmap:13 urn:3gpp:video-orientation" and extensions:
            out += [f"a=extmap:10 {RID_URI}", f"a=extmap:11 {RRID_URI}"]
    return "\r\n".join(out)
