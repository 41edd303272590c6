"""Simulcast in the offer and the answer: rids, a=simulcast, RID extensions, limits."""

from __future__ import annotations

import pytest
from aiortc import sdp as aiortc_sdp

from common.config import ConfigError
from sfu.control import MediaError
from sfu.sdp.answer import AnswerContext, SendStream, render_answer
from sfu.sdp.negotiate import RID_URI, RRID_URI, negotiate
from sfu.sdp.offer import MAX_RIDS, Simulcast, parse_offer
from signalling.config import from_env
from signalling.media import media_settings
from tests.sfu_offers import CHROME_OFFER, simulcast_offer
from tests.test_sfu_answer import LOCAL


def refused(text: str) -> str:
    with pytest.raises(MediaError) as info:
        parse_offer(text)
    assert info.value.code == "bad_request"
    return info.value.message


def rendered(text: str) -> str:
    offer = parse_offer(text)
    plans = negotiate(offer, video_slots_cap=5, audio_slots_cap=3)
    streams = {"2": SendStream(ssrc=31, rtx_ssrc=32, stream_id="vr-slot-0", track_id="v2")}
    return render_answer(offer, plans, streams, LOCAL, AnswerContext(7, 3, "vr-cname"))


def section(answer: str, mid: str) -> list[str]:
    sections = answer.split("\r\nm=")
    return next(s for s in sections if f"a=mid:{mid}\r\n" in s).split("\r\n")


def test_a_chromium_simulcast_offer_is_read_in_offer_order() -> None:
    video = parse_offer(simulcast_offer()).media[1]
    assert video.simulcast == Simulcast((("q",), ("h",), ("f",)))
    assert (video.ssrc, video.rtx_ssrc) == (None, None)


def test_the_answer_receives_every_rid_and_accepts_both_rid_extensions() -> None:
    lines = section(rendered(simulcast_offer()), "1")
    assert [x for x in lines if x.startswith(("a=rid:", "a=simulcast:"))] == [
        "a=rid:q recv",
        "a=rid:h recv",
        "a=rid:f recv",
        "a=simulcast:recv q;h;f",
    ]
    assert f"a=extmap:10 {RID_URI}" in lines
    assert f"a=extmap:11 {RRID_URI}" in lines
    assert "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid" in lines
    aiortc_sdp.SessionDescription.parse(rendered(simulcast_offer()))  # still valid SDP


def test_a_simulcast_answer_asks_the_publisher_for_key_frames_per_layer() -> None:
    """libwebrtc's `x-google-per-layer-pli=1` in the answer: a PLI then brings a key
    frame on the asked layer only, not on all three (issue 13: a key frame of the top
    layer made Chromium's encoder skip that layer's frames, and every viewer's switch
    of any layer asked for one)."""
    lines = section(rendered(simulcast_offer()), "1")
    fmtp = [x for x in lines if x.startswith("a=fmtp:")]
    assert "a=fmtp:96 x-google-per-layer-pli=1" in fmtp
    assert "a=fmtp:97 apt=96" in fmtp  # not on RTX
    h264 = next(x for x in fmtp if x.startswith("a=fmtp:104 "))
    assert h264.endswith(";profile-level-id=42e01f;x-google-per-layer-pli=1")
    aiortc_sdp.SessionDescription.parse(rendered(simulcast_offer()))  # still valid SDP


def test_an_answer_without_simulcast_keeps_the_offered_fmtp() -> None:
    assert "per-layer-pli" not in rendered(CHROME_OFFER)
    assert "per-layer-pli" not in rendered(simulcast_offer(extensions=False))


def test_per_layer_key_frames_can_be_turned_off() -> None:
    """`VISITROOM_PER_LAYER_KEYFRAMES=0`: the answer as before (every layer re-keys)."""
    offer = parse_offer(simulcast_offer())
    plans = negotiate(offer, video_slots_cap=5, audio_slots_cap=3, per_layer_pli=False)
    assert plans[1].simulcast is not None
    assert not any(c.per_layer_pli for plan in plans for c in plan.codecs)
    on = negotiate(offer, video_slots_cap=5, audio_slots_cap=3)
    assert all(c.per_layer_pli for c in on[1].codecs)


def test_the_per_layer_switch_comes_from_the_environment() -> None:
    base = {"VISITROOM_API_KEY": "k", "VISITROOM_API_SECRET": "z" * 40}
    assert media_settings(from_env(base)).per_layer_keyframes, "on unless turned off"
    off = from_env({**base, "VISITROOM_PER_LAYER_KEYFRAMES": "0"})
    assert not media_settings(off).per_layer_keyframes
    with pytest.raises(ConfigError):
        from_env({**base, "VISITROOM_PER_LAYER_KEYFRAMES": "maybe"})


def test_paused_streams_alternatives_and_the_old_rid_form_are_read() -> None:
    offer = simulcast_offer(
        ("a=rid:q send", "a=rid:h send", "a=rid:h2 send", "a=rid:f send"),
        "a=simulcast: send rid=q;h,h2;~f",
    )
    video = parse_offer(offer).media[1]
    assert video.simulcast == Simulcast((("q",), ("h", "h2"), ("f",)), frozenset({"f"}))
    assert video.simulcast is not None and video.simulcast.layer_of("h2") == 1
    lines = section(rendered(offer), "1")
    assert "a=simulcast:recv q;h,h2;~f" in lines


def test_restrictions_are_accepted_when_they_name_the_m_lines_payload_types() -> None:
    offer = simulcast_offer(
        ("a=rid:q send pt=96;max-width=320;max-height=180", "a=rid:f send max-fps=30"),
        "a=simulcast:send q;f",
    )
    assert parse_offer(offer).media[1].simulcast == Simulcast((("q",), ("f",)))


def test_without_the_rid_extension_the_answer_has_no_simulcast() -> None:
    offer = simulcast_offer(extensions=False)
    plans = negotiate(parse_offer(offer), video_slots_cap=5, audio_slots_cap=3)
    assert plans[1].publish and plans[1].simulcast is None
    assert not [x for x in section(rendered(offer), "1") if x.startswith(("a=rid", "a=simul"))]


def test_an_offer_without_simulcast_is_answered_as_before() -> None:
    offer = parse_offer(CHROME_OFFER)
    assert all(m.simulcast is None for m in offer.media)
    answer = rendered(CHROME_OFFER)
    assert "a=rid" not in answer and "a=simulcast" not in answer


@pytest.mark.parametrize(
    ("rids", "simulcast", "message"),
    [
        (("a=rid:q send",), None, "a=rid without a=simulcast"),
        ((), "a=simulcast:send q;h", "without its a=rid line"),
        (("a=rid:q send", "a=rid:h send"), "a=simulcast:send q", "not listed in a=simulcast"),
        (("a=rid:q send", "a=rid:q send"), "a=simulcast:send q", "declared twice"),
        (("a=rid:q recv",), "a=simulcast:recv q", "only receives simulcast"),
        (("a=rid:q send",), "a=simulcast:send q recv q", "only receives simulcast"),
        (("a=rid:q send", "a=rid:h send"), "a=simulcast:send q;q,h", "lists a rid twice"),
        (("a=rid:q send pt=100",), "a=simulcast:send q", "payload type '100'"),
        (("a=rid:q send max-width=wide",), "a=simulcast:send q", "malformed max-width"),
        (("a=rid:q send",), "a=simulcast:send q\r\na=simulcast:send q", "more than one"),
        (("a=rid:" + "x" * 17 + " send",), "a=simulcast:send q", "malformed a=rid"),
        (("a=rid:q! send",), "a=simulcast:send q", "malformed a=rid"),
        (("a=rid:q send",), "a=simulcast:send q;;", "malformed rid"),
        (("a=rid:q send",), "a=simulcast:send q$", "malformed a=simulcast"),
    ],
)
def test_hostile_rid_and_simulcast_lines_are_refused(
    rids: tuple[str, ...], simulcast: str | None, message: str
) -> None:
    assert message in refused(simulcast_offer(rids, simulcast))


def test_more_rids_than_the_limit_are_refused() -> None:
    many = tuple(f"a=rid:r{i} send" for i in range(MAX_RIDS + 1))
    listed = ";".join(f"r{i}" for i in range(MAX_RIDS + 1))
    assert f"more than {MAX_RIDS} rids" in refused(
        simulcast_offer(many, f"a=simulcast:send {listed}")
    )
    few = tuple(f"a=rid:r{i} send" for i in range(MAX_RIDS))
    alternatives = ";".join(f"r{i}" for i in range(MAX_RIDS))
    assert parse_offer(simulcast_offer(few, f"a=simulcast:send {alternatives}")).media[1].simulcast


def test_simulcast_on_audio_or_at_session_level_is_refused() -> None:
    audio = CHROME_OFFER.replace(
        "a=rtcp-fb:111 transport-cc",
        "a=rtcp-fb:111 transport-cc\r\na=rid:q send\r\na=simulcast:send q",
    )
    assert "only accepted on video" in refused(audio)
    session = CHROME_OFFER.replace("a=extmap-allow-mixed", "a=extmap-allow-mixed\r\na=rid:q send")
    assert "not the session" in refused(session)
