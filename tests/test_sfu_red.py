"""RFC 2198 RED payloads: block headers, the primary block, hostile input (sfu.packet.red)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sfu.packet.red import MAX_BLOCKS, RedError, parse_red, primary_packet, rewrite_pts
from sfu.packet.rtp import build_rtp, extensions, parse_rtp
from tests.sfu_fakes import red, red_payload


def packet(payload: bytes, padding: int = 0) -> bytes:
    return build_rtp(
        payload_type=63,
        sequence=7,
        timestamp=96000,
        ssrc=42,
        payload=payload,
        extensions={1: b"\x9e"},
        padding=padding,
    )


def test_a_chromium_red_packet_has_the_previous_frame_then_its_own() -> None:
    data = red(10, 9600)
    h = parse_rtp(data)
    old, primary = parse_red(data, h)
    assert (old.payload_type, old.ts_offset, old.length) == (111, 960, 35)
    assert data[old.offset : old.offset + 5] == b"\xfc" + (9).to_bytes(4, "big")
    assert (primary.payload_type, primary.ts_offset, primary.length) == (111, 0, 41)
    assert data[primary.offset : primary.offset + 5] == b"\xfc" + (10).to_bytes(4, "big")
    assert primary.offset + primary.length == h.payload_offset + h.payload_length


def test_the_primary_packet_keeps_the_header_and_extensions_and_drops_padding() -> None:
    data = red(10, 9600, level=42, padding=8)
    h = parse_rtp(data)
    primary = parse_red(data, h)[-1]
    out = primary_packet(data, h, primary)
    oh = parse_rtp(out)
    assert (oh.sequence, oh.timestamp, oh.ssrc, oh.padding_length) == (10, 9600, 6000, 0)
    assert out[oh.payload_offset :] == b"\xfc" + (10).to_bytes(4, "big") + bytes(36)
    assert extensions(out, oh) == {1: bytes([0x80 | 42])}


def test_a_red_packet_without_redundancy_is_its_primary_block() -> None:
    data = packet(red_payload([], 111, b"\xfcopus"))
    (primary,) = parse_red(data, parse_rtp(data))
    assert (primary.payload_type, primary.length) == (111, 5)


def test_an_empty_primary_block_is_valid() -> None:
    data = packet(red_payload([(111, 960, b"\xfcold")], 111, b""))
    assert parse_red(data, parse_rtp(data))[-1].length == 0


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"", "ends inside"),
        (b"\x80\x00", "cut short"),
        (bytes([0xEF, 0x00, 0x3C, 0x10]), "ends inside"),  # one full non-final header, no final
        (red_payload([(111, 960, b"x" * 20)], 111, b"")[:-10], "runs past"),
        (b"".join([bytes([0xEF, 0, 0, 0])] * MAX_BLOCKS) + b"\x6f", "more than"),
    ],
)
def test_malformed_red_payloads_are_refused_with_a_reason(payload: bytes, why: str) -> None:
    data = packet(payload)
    with pytest.raises(RedError, match=why):
        parse_red(data, parse_rtp(data))


def test_the_padding_is_never_read_as_block_data() -> None:
    payload = red_payload([(111, 960, b"x" * 20)], 111, b"")[:-5]  # the block is 5 bytes short
    data = packet(payload, padding=10)
    with pytest.raises(RedError):
        parse_red(data, parse_rtp(data))


def test_block_payload_types_are_rewritten_and_the_follow_bits_kept() -> None:
    data = red(3, 2880)
    blocks = parse_red(data, parse_rtp(data))
    copy = bytearray(data)
    rewrite_pts(copy, blocks, {111: 109})
    again = parse_red(copy, parse_rtp(copy))
    assert [b.payload_type for b in again] == [109, 109]
    assert [(b.offset, b.length, b.ts_offset) for b in again] == [
        (b.offset, b.length, b.ts_offset) for b in blocks
    ]


blocks_strategy = st.lists(
    st.tuples(st.integers(0, 127), st.integers(0, 0x3FFF), st.binary(max_size=60)),
    max_size=MAX_BLOCKS - 1,
)


@settings(max_examples=300, deadline=None)
@given(blocks_strategy, st.integers(0, 127), st.binary(max_size=200))
def test_any_well_formed_red_payload_parses_back_to_its_blocks(
    redundant: list[tuple[int, int, bytes]], primary_pt: int, primary: bytes
) -> None:
    data = packet(red_payload(redundant, primary_pt, primary))
    blocks = parse_red(data, parse_rtp(data))
    assert [(b.payload_type, b.ts_offset) for b in blocks] == [
        *((pt, offset) for pt, offset, _ in redundant),
        (primary_pt, 0),
    ]
    assert [bytes(data[b.offset : b.offset + b.length]) for b in blocks] == [
        *(d for _, _, d in redundant),
        primary,
    ]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 40))
@example(b"\xff" * 40, 0)
@example(b"\x80\x00\x03\xff\x00", 0)
def test_hostile_payloads_raise_red_error_or_give_blocks_inside_the_payload(
    payload: bytes, padding: int
) -> None:
    data = packet(payload, padding=padding)
    h = parse_rtp(data)
    try:
        blocks = parse_red(data, h)
    except RedError:
        return
    end = h.payload_offset + h.payload_length
    assert len(blocks) <= MAX_BLOCKS
    for block in blocks:
        assert h.payload_offset <= block.header_at < block.offset or block.length == 0
        assert h.payload_offset <= block.offset and block.offset + block.length <= end
    out = primary_packet(data, h, blocks[-1])
    assert parse_rtp(out).payload_length == blocks[-1].length
