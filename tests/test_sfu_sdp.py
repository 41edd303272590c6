"""Reading offers: what is kept, and every limit that refuses an offer."""

from __future__ import annotations

import pytest

from sfu.control import MediaError
from sfu.sdp.offer import MAX_MEDIA, MAX_SDP_BYTES, parse_candidate, parse_offer
from tests.sfu_offers import CHROME_OFFER, FINGERPRINT, replace_line, without_prefix


def refused(text: object) -> str:
    with pytest.raises(MediaError) as info:
        parse_offer(text)
    assert info.value.code == "bad_request"
    return info.value.message


def test_a_chrome_offer_is_read_with_its_transport_and_media() -> None:
    offer = parse_offer(CHROME_OFFER)
    assert offer.ice_ufrag == "a1B2"
    assert offer.ice_pwd == "abcdefghijklmnopqrstuvwx"
    assert offer.fingerprints == (("sha-256", FINGERPRINT),)
    assert offer.setup == "actpass"
    assert offer.bundle == ("0", "1", "2")
    assert offer.two_byte_extensions
    assert [(m.mid, m.kind, m.direction) for m in offer.media] == [
        ("0", "audio", "sendrecv"),
        ("1", "video", "sendrecv"),
        ("2", "video", "recvonly"),
    ]
    assert offer.candidates == ("1 1 udp 2113937151 127.0.0.1 50000 typ host generation 0",)


def test_publisher_ssrcs_come_from_ssrc_lines_and_the_fid_group() -> None:
    audio, video, slot = parse_offer(CHROME_OFFER).media
    assert (audio.ssrc, audio.rtx_ssrc) == (1001, None)
    assert (video.ssrc, video.rtx_ssrc) == (2001, 2002)
    assert (slot.ssrc, slot.rtx_ssrc) == (None, None)
    assert audio.publishes and audio.receives
    assert slot.receives and not slot.publishes


def test_codecs_keep_their_feedback_and_fmtp() -> None:
    video = parse_offer(CHROME_OFFER).media[1]
    vp8 = next(c for c in video.codecs if c.name == "vp8")
    assert vp8.payload_type == 96 and vp8.clock_rate == 90000
    assert set(vp8.feedback) >= {"nack", "nack pli", "ccm fir", "goog-remb"}
    rtx = next(c for c in video.codecs if c.payload_type == 97)
    assert rtx.name == "rtx" and rtx.param("apt") == "96"


def test_an_offer_larger_than_the_cap_is_refused() -> None:
    padding = "a=x-pad:" + "p" * 1000
    text = CHROME_OFFER + "\r\n".join([padding] * (MAX_SDP_BYTES // 1000 + 1)) + "\r\n"
    assert "larger than" in refused(text)


def test_a_megabyte_line_is_refused() -> None:
    assert "larger than" in refused(CHROME_OFFER + "a=x:" + "y" * 1_000_000 + "\r\n")


def test_a_long_line_under_the_size_cap_is_refused() -> None:
    assert "longer than" in refused(CHROME_OFFER + "a=x:" + "y" * 5000 + "\r\n")


def test_a_thousand_m_lines_are_refused() -> None:
    section = "\r\n".join(["m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=rtpmap:111 opus/48000/2"])
    text = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" + "\r\n".join([section] * 1000)
    assert "lines" in refused(text)


def test_more_m_lines_than_the_limit_are_refused_even_when_short() -> None:
    section = "m=audio 0 UDP/TLS/RTP/SAVPF 0"
    text = "v=0\r\ns=-\r\nt=0 0\r\n" + "\r\n".join([section] * (MAX_MEDIA + 1)) + "\r\n"
    assert f"more than {MAX_MEDIA} m-lines" in refused(text)


def test_invalid_utf8_is_refused() -> None:
    assert "UTF-8" in refused(CHROME_OFFER + "a=x:\udcff\r\n")


def test_control_characters_are_refused() -> None:
    assert "not a valid SDP line" in refused(CHROME_OFFER + "a=x:\x00\r\n")


def test_a_non_string_offer_is_refused() -> None:
    assert "string" in refused(b"v=0")


@pytest.mark.parametrize("ext_id", ["0", "256", "1000"])
def test_extmap_ids_outside_1_to_255_are_refused(ext_id: str) -> None:
    text = replace_line(
        CHROME_OFFER,
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        f"a=extmap:{ext_id} urn:ietf:params:rtp-hdrext:sdes:mid",
    )
    assert "extmap" in refused(text)


def test_extmap_ids_above_14_need_extmap_allow_mixed() -> None:
    text = without_prefix(CHROME_OFFER, "a=extmap-allow-mixed")
    text = replace_line(
        text,
        "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
        "a=extmap:15 urn:ietf:params:rtp-hdrext:toffset",
    )
    assert "two-byte" in refused(text)
    assert parse_offer(without_prefix(CHROME_OFFER, "a=extmap-allow-mixed"))


def test_a_dangling_apt_is_refused() -> None:
    text = replace_line(CHROME_OFFER, "a=fmtp:105 apt=104", "a=fmtp:105 apt=99")
    assert "apt=99" in refused(text)


def test_rtx_without_apt_is_refused() -> None:
    assert "apt" in refused(replace_line(CHROME_OFFER, "a=fmtp:105 apt=104", None))


def test_a_missing_fingerprint_is_refused() -> None:
    assert "fingerprint" in refused(without_prefix(CHROME_OFFER, "a=fingerprint:"))


def test_a_sha1_only_fingerprint_is_refused() -> None:
    text = CHROME_OFFER.replace("a=fingerprint:sha-256 " + FINGERPRINT, "a=fingerprint:sha-1 AA:BB")
    assert "fingerprint" in refused(text)


def test_missing_ice_credentials_are_refused() -> None:
    assert "ice-pwd" in refused(without_prefix(CHROME_OFFER, "a=ice-pwd:"))
    assert "ice-ufrag" in refused(without_prefix(CHROME_OFFER, "a=ice-ufrag:"))


def test_rtcp_mux_is_required() -> None:
    assert "rtcp-mux" in refused(without_prefix(CHROME_OFFER, "a=rtcp-mux"))


def test_bundle_is_required_for_several_m_lines() -> None:
    assert "BUNDLE" in refused(without_prefix(CHROME_OFFER, "a=group:BUNDLE"))


def test_unencrypted_rtp_is_refused() -> None:
    text = CHROME_OFFER.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP")
    assert "unencrypted" in refused(text)


def test_duplicate_mids_are_refused() -> None:
    assert "unique a=mid" in refused(replace_line(CHROME_OFFER, "a=mid:2", "a=mid:1"))


def test_a_payload_type_above_127_is_refused() -> None:
    text = CHROME_OFFER.replace(
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n", "m=video 9 UDP/TLS/RTP/SAVPF 96 200\r\n"
    )
    assert "payload type" in refused(text)


def test_an_unknown_setup_value_is_refused() -> None:
    text = CHROME_OFFER.replace("a=setup:actpass", "a=setup:holdconn")
    assert "setup" in refused(text)


def test_an_ssrc_beyond_32_bits_is_refused() -> None:
    text = CHROME_OFFER.replace("a=ssrc:1001 cname", "a=ssrc:4294967296 cname")
    assert "32 bits" in refused(text)


def test_garbage_is_refused_without_reaching_aiortc() -> None:
    assert "not a valid SDP line" in refused("hello")
    assert "v=0" in refused("s=-\r\nv=0\r\n")
    assert "m-line" in refused("v=0\r\nm=audio x\r\n")


def test_a_missing_setup_means_actpass() -> None:
    assert parse_offer(without_prefix(CHROME_OFFER, "a=setup:")).setup == "actpass"


def test_trickled_candidates_are_validated() -> None:
    line = "candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host generation 0"
    assert parse_candidate(line) == line.removeprefix("candidate:")
    assert parse_candidate("a=" + line) == line.removeprefix("candidate:")
    assert parse_candidate("") is None
    with pytest.raises(MediaError) as info:
        parse_candidate("candidate:garbage")
    assert info.value.code == "bad_request"
