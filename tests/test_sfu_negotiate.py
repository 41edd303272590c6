"""What the SFU accepts of an offer: codecs, feedback, extensions, directions."""

from __future__ import annotations

from sfu.sdp.negotiate import ABS_SEND_TIME_URI, AUDIO_LEVEL_URI, MID_URI, TWCC_URI, negotiate
from sfu.sdp.offer import parse_offer
from tests.sfu_offers import CHROME_OFFER, replace_line


def plans(text: str = CHROME_OFFER, video: int = 5, audio: int = 3):  # type: ignore[no-untyped-def]
    return negotiate(parse_offer(text), video_slots_cap=video, audio_slots_cap=audio)


def test_audio_gets_red_around_opus_first_then_opus_with_the_offered_payload_types() -> None:
    audio = plans()[0]
    assert [(c.name, c.payload_type) for c in audio.codecs] == [("red", 63), ("opus", 111)]
    red, opus = audio.codecs
    assert (red.fmtp, red.feedback, red.key) == ("111/111", (), "red/111")
    assert opus.fmtp == "minptime=10;useinbandfec=1"
    assert opus.feedback == ("transport-cc",)
    assert opus.key == "opus"


def test_audio_without_red_in_the_offer_gets_opus_only() -> None:
    text = replace_line(CHROME_OFFER, "a=rtpmap:63 red/48000/2", None)
    text = replace_line(text, "a=fmtp:63 111/111", None)
    text = text.replace("SAVPF 111 63 9", "SAVPF 111 9")
    assert [c.name for c in plans(text)[0].codecs] == ["opus"]


def test_red_is_not_chosen_unless_every_block_is_the_chosen_opus() -> None:
    for fmtp in ("a=fmtp:63 111/9", "a=fmtp:63 9/9", None, "a=fmtp:63 111"):
        text = replace_line(CHROME_OFFER, "a=fmtp:63 111/111", fmtp)
        assert [c.name for c in plans(text)[0].codecs] == ["opus"], fmtp


def test_video_offers_vp8_first_then_constrained_baseline_h264_with_rtx() -> None:
    video = plans()[1]
    assert [(c.name, c.payload_type, c.rtx_payload_type) for c in video.codecs] == [
        ("vp8", 96, 97),
        ("h264", 104, 105),
    ]
    assert video.codecs[0].feedback == ("goog-remb", "transport-cc", "ccm fir", "nack", "nack pli")


def test_only_the_supported_extensions_are_kept_with_the_offered_ids() -> None:
    audio, video, _ = plans()
    assert audio.extensions == (
        (1, AUDIO_LEVEL_URI),
        (2, ABS_SEND_TIME_URI),
        (3, TWCC_URI),
        (4, MID_URI),
    )
    assert video.extensions == ((2, ABS_SEND_TIME_URI), (3, TWCC_URI), (4, MID_URI))
    assert audio.extension_id(MID_URI) == 4


def test_directions_mirror_the_offer() -> None:
    audio, _, slot = plans()
    assert (audio.publish, audio.receive, audio.direction) == (True, True, "sendrecv")
    assert (slot.publish, slot.receive, slot.direction) == (False, True, "sendonly")
    sendonly = replace_line(CHROME_OFFER, "a=sendrecv", "a=sendonly")
    assert [p.direction for p in plans(sendonly)[:2]] == ["recvonly", "recvonly"]


def test_publisher_ssrcs_are_kept_only_for_published_tracks() -> None:
    audio, video, slot = plans()
    assert (audio.ssrc, video.ssrc, video.rtx_ssrc, slot.ssrc) == (1001, 2001, 2002, None)


def test_receive_slots_beyond_the_cap_are_not_filled() -> None:
    audio, video, slot = plans(video=1, audio=0)
    assert not audio.receive and audio.publish and audio.direction == "recvonly"
    assert video.receive and not slot.receive and slot.direction == "inactive"


def test_at_most_two_published_videos_and_one_audio() -> None:
    text = CHROME_OFFER.replace("a=recvonly", "a=sendonly")
    text = text.replace("a=group:BUNDLE 0 1 2", "a=group:BUNDLE 0 1 2 3")
    extra = "\r\n".join(
        [
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
            "a=mid:3",
            "a=sendonly",
            "a=rtcp-mux",
            "a=rtpmap:96 VP8/90000",
            "",
        ]
    )
    result = plans(text + extra)
    assert [p.publish for p in result] == [True, True, True, False]


def test_an_m_line_without_a_usable_codec_is_rejected() -> None:
    """Also: RED (offered here) is never chosen without the Opus it wraps."""
    text = CHROME_OFFER.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 foo/48000/2")
    audio = plans(text)[0]
    assert not audio.accepted and not audio.publish and not audio.receive


def test_a_precall_answer_has_no_transport_cc() -> None:
    """A pre-call test measures what the link carries in a few seconds: without
    transport-cc the browser sends at the REMB's rate at once (with it, Chromium ramps
    up from 300 kbit/s and the test called a healthy link weak)."""
    plans = negotiate(parse_offer(CHROME_OFFER), video_slots_cap=5, audio_slots_cap=3)
    precall = negotiate(
        parse_offer(CHROME_OFFER), video_slots_cap=5, audio_slots_cap=3, transport_cc=False
    )
    assert any(TWCC_URI in [uri for _, uri in p.extensions] for p in plans)
    for plan in precall:
        assert TWCC_URI not in [uri for _, uri in plan.extensions]
        assert all("transport-cc" not in c.feedback for c in plan.codecs)
    assert [p.mid for p in precall] == [p.mid for p in plans]
