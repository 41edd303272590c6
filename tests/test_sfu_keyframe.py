"""sfu.packet.keyframe: key frames recognised from payload descriptors and NAL headers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.packet.keyframe import is_keyframe

FUZZ = settings(max_examples=300, deadline=None)

# A VP8 key frame's first bytes: frame tag with P=0, then the 9d 01 2a start code.
VP8_KEY = b"\x50\x02\x00\x9d\x01\x2a"
VP8_DELTA = b"\x51\x02\x00"


# --- VP8 (RFC 7741) ----------------------------------------------------------


def test_a_vp8_partition_start_with_p_clear_is_a_key_frame() -> None:
    assert is_keyframe("vp8", b"\x10" + VP8_KEY)


def test_a_vp8_inter_frame_is_not() -> None:
    assert not is_keyframe("vp8", b"\x10" + VP8_DELTA)


def test_a_vp8_continuation_packet_is_not_even_with_key_frame_bytes() -> None:
    assert not is_keyframe("vp8", b"\x00" + VP8_KEY)  # S=0


def test_a_vp8_packet_of_another_partition_is_not() -> None:
    assert not is_keyframe("vp8", b"\x11" + VP8_KEY)  # PID=1


@pytest.mark.parametrize(
    ("extension", "expected"),
    [
        (b"\x80\x05", True),  # I: 7-bit PictureID
        (b"\x80\x85\x01", True),  # I: 15-bit PictureID
        (b"\xc0\x85\x01\x07", True),  # I + L: TL0PICIDX
        (b"\xe0\x85\x01\x07\x40", True),  # I + L + T
        (b"\x10\x40", True),  # K only
        (b"\xf0\x05\x07\x40", True),  # I(7) + L + T/K
        (b"\x80\x85", False),  # 15-bit PictureID cut short: header byte missing
        (b"\x80", False),  # PictureID missing
    ],
)
def test_vp8_extension_fields_are_skipped_before_the_payload_header(
    extension: bytes, expected: bool
) -> None:
    payload = b"\x90" + extension + (VP8_KEY if expected else b"")
    assert is_keyframe("vp8", payload) is expected


def test_an_inter_frame_behind_a_long_extension_is_not_a_key_frame() -> None:
    assert not is_keyframe("vp8", b"\x90\xe0\x85\x01\x07\x40" + VP8_DELTA)


def test_a_vp8_descriptor_with_no_payload_header_is_not() -> None:
    assert not is_keyframe("vp8", b"\x10")
    assert not is_keyframe("vp8", b"\x90")
    assert not is_keyframe("vp8", b"")


# --- H.264 (RFC 6184) --------------------------------------------------------


@pytest.mark.parametrize(
    ("nal", "expected"), [(0x65, True), (0x67, True), (0x68, False), (0x41, False), (0x06, False)]
)
def test_single_nal_units_idr_and_sps_are_key_frames(nal: int, expected: bool) -> None:
    assert is_keyframe("h264", bytes((nal, 0x88, 0x84))) is expected


def test_a_nal_unit_with_the_forbidden_bit_is_not() -> None:
    assert not is_keyframe("h264", b"\xe5\x88")


def test_a_stap_a_with_sps_pps_idr_is_a_key_frame() -> None:
    sps = b"\x67\x42\x00\x1f"
    pps = b"\x68\xce\x3c\x80"
    idr = b"\x65\x88\x84"
    stap = b"\x78" + b"".join(len(n).to_bytes(2, "big") + n for n in (sps, pps, idr))
    assert is_keyframe("h264", stap)


def test_a_stap_a_whose_idr_comes_after_other_units_is_found() -> None:
    sei = b"\x06\x05\x01"
    idr = b"\x65\x88"
    stap = b"\x78" + b"".join(len(n).to_bytes(2, "big") + n for n in (sei, idr))
    assert is_keyframe("h264", stap)


def test_a_stap_a_of_non_key_units_is_not() -> None:
    stap = b"\x78" + b"\x00\x02\x41\x9a" + b"\x00\x02\x06\x05"
    assert not is_keyframe("h264", stap)


@pytest.mark.parametrize(
    "stap",
    [
        b"\x78",
        b"\x78\x00",
        b"\x78\x00\x09\x65",
        b"\x78\x00\x00\x65",
        b"\x78\x00\x02\x41\x9a\x00\x05\x65",
    ],
)
def test_a_truncated_or_zero_sized_stap_a_is_not(stap: bytes) -> None:
    assert not is_keyframe("h264", stap)


def test_an_fu_a_start_of_an_idr_is_a_key_frame_but_not_its_continuation() -> None:
    assert is_keyframe("h264", b"\x7c\x85\x88")  # S=1, type 5
    assert not is_keyframe("h264", b"\x7c\x05\x88")  # S=0
    assert not is_keyframe("h264", b"\x7c\x45\x88")  # E=1 only
    assert not is_keyframe("h264", b"\x7c\x81\x88")  # start of a non-IDR slice
    assert not is_keyframe("h264", b"\x7c")  # no FU header


def test_an_fu_b_start_of_an_idr_is_a_key_frame() -> None:
    assert is_keyframe("h264", b"\x7d\x85\x00\x01\x88")


# --- VP9 (best effort) -------------------------------------------------------


def test_a_vp9_frame_start_without_inter_prediction_is_a_key_frame() -> None:
    assert is_keyframe("vp9", b"\x08\x82\x49\x83")  # B=1, P=0


def test_a_vp9_inter_frame_or_continuation_is_not() -> None:
    assert not is_keyframe("vp9", b"\x48\x00")  # P=1
    assert not is_keyframe("vp9", b"\x00\x00")  # B=0
    assert not is_keyframe("vp9", b"")


def test_vp9_picture_id_and_layer_index_are_skipped_and_checked() -> None:
    assert is_keyframe("vp9", b"\xa8\x85\x01\x00\x07")  # I(15 bits) + L with SID 0
    assert is_keyframe("vp9", b"\xa8\x05\x00\x07")  # I(7 bits) + L with SID 0
    assert not is_keyframe("vp9", b"\xa8\x05\x02\x07")  # SID 1: not the base layer
    assert not is_keyframe("vp9", b"\xa8\x85")  # layer byte missing
    assert not is_keyframe("vp9", b"\x88")  # PictureID missing


# --- codec names and garbage -------------------------------------------------


def test_codec_names_are_case_insensitive_and_may_carry_the_media_type() -> None:
    key = b"\x10" + VP8_KEY
    assert is_keyframe("VP8", key)
    assert is_keyframe("video/VP8", key)
    assert is_keyframe("H264", b"\x65")


def test_an_unknown_codec_is_never_a_key_frame() -> None:
    assert not is_keyframe("av1", b"\x10" + VP8_KEY)
    assert not is_keyframe("opus", b"\x65")


def test_all_kinds_of_buffers_are_accepted() -> None:
    key = b"\x10" + VP8_KEY
    assert is_keyframe("vp8", memoryview(key))
    assert is_keyframe("vp8", bytearray(key))
    assert is_keyframe("vp8", memoryview(b"xx" + key)[2:])


@FUZZ
@given(st.sampled_from(["vp8", "h264", "vp9", "VP8", "x"]), st.binary(max_size=64))
def test_garbage_never_raises(codec: str, payload: bytes) -> None:
    assert is_keyframe(codec, payload) in (True, False)
    assert is_keyframe(codec, memoryview(payload)) == is_keyframe(codec, payload)
