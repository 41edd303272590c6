"""sfu.packet.vp8: the VP8 payload descriptor (RFC 7741) parsed, sized and rewritten in place."""

from __future__ import annotations

import fractions

import av
import pytest
from aiortc.codecs.vpx import Vp8Encoder
from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.packet.keyframe import is_keyframe
from sfu.packet.vp8 import (
    Vp8Error,
    _parse_any,
    is_vp8_keyframe,
    parse_vp8,
    read_vp8,
    rewrite_vp8,
    vp8_frame_size,
)

FUZZ = settings(max_examples=400, deadline=None)

# A key frame's first payload bytes (RFC 6386 9.1): frame tag with P=0, start
# code, then 14-bit width 640 and height 360 (little endian, scale bits 0).
KEY_640x360 = b"\x50\x02\x00\x9d\x01\x2a\x80\x02\x68\x01" + bytes(20)
DELTA = b"\x51\x02\x00" + bytes(20)


# --- hand-written descriptors -------------------------------------------------


def test_no_extension_is_one_byte() -> None:
    d = parse_vp8(b"\x10" + KEY_640x360)
    assert d.header_size == 1
    assert d.start and d.partition == 0 and d.frame_start and d.keyframe
    assert (d.picture_id, d.picture_id_bits, d.tl0picidx, d.tid, d.keyidx) == (-1, 0, -1, -1, -1)
    assert (d.picture_id_offset, d.tl0picidx_offset, d.tk_offset) == (-1, -1, -1)


def test_7_bit_picture_id() -> None:
    d = parse_vp8(b"\x90\x80\x2a" + DELTA)
    assert (d.picture_id, d.picture_id_bits, d.picture_id_offset, d.header_size) == (42, 7, 2, 3)
    assert not d.keyframe


def test_15_bit_picture_id_with_every_field() -> None:
    # X S, I L T K, M + 0x1234, TL0PICIDX 200, TID 2 Y KEYIDX 17
    d = parse_vp8(b"\x90\xf0\x92\x34\xc8\xb1" + KEY_640x360)
    assert (d.picture_id, d.picture_id_bits, d.picture_id_offset) == (0x1234, 15, 2)
    assert (d.tl0picidx, d.tl0picidx_offset) == (200, 4)
    assert (d.tid, d.sync, d.keyidx, d.tk_offset) == (2, True, 17, 5)
    assert d.header_size == 6 and d.keyframe


def test_non_reference_and_partition_bits() -> None:
    d = parse_vp8(b"\xa3\x00" + DELTA)  # X N, partition 3, S=0
    assert d.non_reference and d.partition == 3 and not d.start and not d.frame_start
    assert not d.keyframe


def test_t_without_k_and_k_without_t() -> None:
    t_only = parse_vp8(b"\x90\x20\x40" + DELTA)
    assert (t_only.tid, t_only.sync, t_only.keyidx) == (1, False, -1)
    k_only = parse_vp8(b"\x90\x10\xff" + DELTA)
    assert (k_only.tid, k_only.keyidx) == (-1, 31)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x90",  # X without the extension byte
        b"\x90\x80",  # I without the picture id
        b"\x90\x80\x81",  # M without the second picture id byte
        b"\x90\x40",  # L without TL0PICIDX
        b"\x90\x20",  # T without its byte
        b"\x90\xf0\x81\x02\x03",  # everything but the TID/KEYIDX byte
    ],
)
def test_a_truncated_descriptor_is_a_clear_error(payload: bytes) -> None:
    with pytest.raises(Vp8Error):
        parse_vp8(payload)
    assert read_vp8(payload) is None
    assert not is_vp8_keyframe(payload)
    assert vp8_frame_size(payload) is None


def test_a_descriptor_with_no_frame_bytes_is_not_a_key_frame() -> None:
    d = parse_vp8(b"\x90\x80\x05")
    assert d.header_size == 3 and not d.keyframe


def test_frame_size_of_a_key_frame() -> None:
    assert vp8_frame_size(b"\x90\x80\x05" + KEY_640x360) == (640, 360)
    assert vp8_frame_size(b"\x10" + KEY_640x360) == (640, 360)


def test_frame_size_ignores_scaling_bits() -> None:
    key = bytearray(KEY_640x360)
    key[7] |= 0xC0  # horizontal scale 3
    key[9] |= 0x40
    assert vp8_frame_size(b"\x10" + bytes(key)) == (640, 360)


def test_no_frame_size_without_a_start_code_or_on_an_inter_frame() -> None:
    assert vp8_frame_size(b"\x10\x50\x02\x00\x9d\x01\x2b" + bytes(8)) is None
    assert vp8_frame_size(b"\x10" + DELTA) is None
    assert vp8_frame_size(b"\x00" + KEY_640x360) is None  # not the frame's first packet
    assert vp8_frame_size(b"\x10" + KEY_640x360[:8]) is None  # cut short


def test_rewrite_a_15_bit_picture_id_tl0picidx_and_keyidx_in_place() -> None:
    packet = bytearray(b"\xff\xee" + b"\x90\xf0\x92\x34\xc8\xb1" + DELTA)
    d = parse_vp8(memoryview(packet)[2:])
    rewrite_vp8(packet, 2, d, picture_id=0x7FFF + 5, tl0picidx=257, keyidx=33)
    again = parse_vp8(bytes(packet[2:]))
    assert again.picture_id == 4 and again.picture_id_bits == 15
    assert again.tl0picidx == 1
    assert (again.keyidx, again.tid, again.sync) == (1, 2, True)
    assert packet[:2] == b"\xff\xee" and packet[8:] == DELTA


def test_rewrite_a_7_bit_picture_id_keeps_its_width() -> None:
    packet = bytearray(b"\x90\x80\x05" + DELTA)
    d = parse_vp8(packet)
    rewrite_vp8(packet, 0, d, picture_id=300)
    again = parse_vp8(packet)
    assert again.picture_id == 300 % 128 and again.picture_id_bits == 7
    assert again.header_size == 3 and packet[3:] == DELTA


def test_rewrite_leaves_absent_or_unset_fields() -> None:
    packet = bytearray(b"\x90\x80\x05" + DELTA)
    before = bytes(packet)
    rewrite_vp8(packet, 0, parse_vp8(packet), tl0picidx=9, keyidx=3)  # not in this packet
    rewrite_vp8(packet, 0, parse_vp8(packet))  # nothing given
    assert bytes(packet) == before


def test_keyframe_module_uses_the_same_check() -> None:
    assert is_keyframe("vp8", b"\x90\x80\x05" + KEY_640x360)
    assert not is_keyframe("video/VP8", b"\x91\x80\x05" + KEY_640x360)  # partition 1


@FUZZ
@given(st.binary(max_size=24))
def test_garbage_never_raises_except_vp8error(data: bytes) -> None:
    d = read_vp8(data)
    try:
        strict = parse_vp8(data)
    except Vp8Error:
        strict = None
    assert d == strict
    if d is not None:
        assert 1 <= d.header_size <= len(data)
        assert d.keyframe == is_vp8_keyframe(data)
        for at in (d.picture_id_offset, d.tl0picidx_offset, d.tk_offset):
            assert -1 <= at < d.header_size
    else:
        assert not is_vp8_keyframe(data)
    vp8_frame_size(data)


@FUZZ
@given(
    st.binary(min_size=1, max_size=12),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFF),
)
def test_rewrite_changes_only_the_named_fields(
    data: bytes, picture_id: int, tl0: int, keyidx: int
) -> None:
    d = read_vp8(data)
    if d is None:
        return
    packet = bytearray(data)
    rewrite_vp8(packet, 0, d, picture_id=picture_id, tl0picidx=tl0, keyidx=keyidx)
    after = parse_vp8(packet)
    assert after.header_size == d.header_size and packet[d.header_size :] == data[d.header_size :]
    assert (after.start, after.partition, after.tid, after.sync) == (
        d.start,
        d.partition,
        d.tid,
        d.sync,
    )
    if d.picture_id >= 0:
        mask = 0x7FFF if d.picture_id_bits == 15 else 0x7F
        assert after.picture_id == picture_id & mask
        assert after.picture_id_bits == d.picture_id_bits
    if d.tl0picidx >= 0:
        assert after.tl0picidx == tl0 & 0xFF
    if d.keyidx >= 0:
        assert after.keyidx == keyidx & 0x1F


@FUZZ
@given(st.sampled_from([0x80, 0x90, 0xB0, 0x93]), st.binary(min_size=5, max_size=10))
def test_the_chromium_layout_fast_path_agrees_with_the_general_parser(b0: int, rest: bytes) -> None:
    data = bytes([b0, 0xF0, rest[0] | 0x80]) + rest[1:]
    assert parse_vp8(data) == _parse_any(data, len(data), b0)


# --- a real VP8 stream (aiortc's libvpx encoder) -------------------------------


def _frame(width: int, height: int, shade: int, pts: int) -> av.VideoFrame:
    frame = av.VideoFrame(width=width, height=height, format="yuv420p")
    for plane in frame.planes:
        plane.update(bytes([shade]) * plane.buffer_size)
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, 90000)
    return frame


def test_a_real_vp8_stream_key_frame_and_size() -> None:
    encoder = Vp8Encoder()
    frames: list[list[bytes]] = []
    for i in range(5):
        payloads, _ts = encoder.encode(_frame(320, 240, 16 + 30 * i, i * 3000), i == 0)
        frames.append(payloads)
    first = frames[0][0]
    d = parse_vp8(first)
    assert d.keyframe and d.frame_start and d.picture_id_bits in (7, 15)
    assert vp8_frame_size(first) == (320, 240)
    assert is_keyframe("vp8", first)
    pids = []
    for payloads in frames[1:]:
        head = parse_vp8(payloads[0])
        assert head.frame_start and not head.keyframe
        assert vp8_frame_size(payloads[0]) is None
        pids.append(head.picture_id)
        for rest in payloads[1:]:
            assert not parse_vp8(rest).frame_start
    assert pids == [(d.picture_id + i) % (1 << d.picture_id_bits) for i in range(1, 5)]


def test_a_real_key_frame_after_a_resize() -> None:
    encoder = Vp8Encoder()
    encoder.encode(_frame(320, 240, 40, 0), True)
    payloads, _ts = encoder.encode(_frame(640, 480, 80, 3000), True)
    assert parse_vp8(payloads[0]).keyframe
    assert vp8_frame_size(payloads[0]) == (640, 480)
