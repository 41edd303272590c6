"""The answer: BUNDLE, mirrored m-lines, candidates, one SSRC per receive slot."""

from __future__ import annotations

from aiortc import sdp as aiortc_sdp

from sfu.sdp.answer import AnswerContext, LocalTransport, SendStream, render_answer
from sfu.sdp.negotiate import negotiate
from sfu.sdp.offer import parse_offer
from tests.sfu_offers import CHROME_OFFER

LOCAL = LocalTransport(
    ice_ufrag="srvr",
    ice_pwd="p" * 22,
    fingerprints=(("sha-256", "CD:" * 31 + "CD"),),
    setup="active",
    candidates=("f1 1 udp 2130706431 127.0.0.1 40000 typ host generation 0",),
    address="127.0.0.1",
    port=40000,
)


def answer(text: str = CHROME_OFFER) -> aiortc_sdp.SessionDescription:
    offer = parse_offer(text)
    plans = negotiate(offer, video_slots_cap=5, audio_slots_cap=3)
    streams = {
        "0": SendStream(ssrc=11, rtx_ssrc=None, stream_id="vr-slot-0", track_id="a0"),
        "1": SendStream(ssrc=21, rtx_ssrc=22, stream_id="vr-slot-0", track_id="v1"),
        "2": SendStream(ssrc=31, rtx_ssrc=32, stream_id="vr-slot-1", track_id="v2"),
    }
    rendered = render_answer(offer, plans, streams, LOCAL, AnswerContext(7, 3, "vr-cname"))
    assert rendered.endswith("\r\n")
    return aiortc_sdp.SessionDescription.parse(rendered)


def test_the_answer_bundles_every_m_line_on_one_transport() -> None:
    session = answer()
    assert [str(g) for g in session.group] == ["BUNDLE 0 1 2"]
    for media in session.media:
        assert media.ice is not None and media.dtls is not None
        assert media.rtcp_mux
        assert media.ice.usernameFragment == "srvr"
        assert media.dtls.role == "client"  # a=setup:active
        assert [c.ip for c in media.ice_candidates] == ["127.0.0.1"]
        assert media.ice_candidates_complete
        assert media.port == 40000


def test_directions_are_mirrored() -> None:
    assert [m.direction for m in answer().media] == ["sendrecv", "sendrecv", "sendonly"]


def test_each_receive_slot_announces_its_own_ssrc_and_rtx_group() -> None:
    audio, video, slot = answer().media
    assert [s.ssrc for s in audio.ssrc] == [11]
    assert [s.ssrc for s in video.ssrc] == [21, 22]
    assert [(g.semantic, g.items) for g in slot.ssrc_group] == [("FID", [31, 32])]
    assert slot.ssrc[0].msid == "vr-slot-1 v2"
    assert video.msid == "vr-slot-0 v1"


def test_codecs_and_feedback_use_the_offered_payload_types() -> None:
    video = answer().media[1]
    assert [c.payloadType for c in video.rtp.codecs] == [96, 97, 104, 105]
    vp8 = video.rtp.codecs[0]
    assert {(f.type, f.parameter) for f in vp8.rtcpFeedback} == {
        ("goog-remb", None),
        ("transport-cc", None),
        ("ccm", "fir"),
        ("nack", None),
        ("nack", "pli"),
    }
    assert video.rtp.codecs[1].parameters == {"apt": 96}


def test_audio_answers_red_first_with_its_fmtp_then_opus() -> None:
    audio = answer().media[0]
    assert audio.fmt == [63, 111]  # Chromium sends RED only when it comes first
    red, opus = audio.rtp.codecs
    assert (red.mimeType, red.clockRate, red.channels) == ("audio/red", 48000, 2)
    assert "a=fmtp:63 111/111" in str(audio)
    assert opus.mimeType == "audio/opus"


def test_a_rejected_m_line_keeps_its_place_with_port_zero() -> None:
    text = CHROME_OFFER.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 foo/48000/2")
    audio = answer(text).media[0]
    assert audio.port == 0 and audio.direction == "inactive" and audio.rtp.muxId == "0"


def test_the_session_version_comes_from_the_context() -> None:
    assert answer().origin == "visitroom 7 3 IN IP4 0.0.0.0"
