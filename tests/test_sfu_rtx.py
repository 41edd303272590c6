"""sfu.packet.rtx: the bounded retransmission cache and RFC 4588 RTX wrapping."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sfu.packet.rtp import RtpError, build_rtp, extensions, parse_rtp
from sfu.packet.rtx import RetransmissionCache, build_rtx, parse_rtx

FUZZ = settings(max_examples=300, deadline=None)


def media(seq: int = 4000, payload: bytes = b"vp8-frame-bytes", **kw: object) -> bytes:
    fields: dict[str, object] = {
        "payload_type": 96,
        "sequence": seq,
        "timestamp": 12345,
        "ssrc": 0x1111,
        "payload": payload,
    }
    fields.update(kw)
    return build_rtp(**fields)  # type: ignore[arg-type]


# --- RetransmissionCache -----------------------------------------------------


def test_a_stored_packet_is_returned_within_its_age() -> None:
    cache = RetransmissionCache(size=16, max_age_s=1.0)
    cache.store(5, b"five", now=10.0)
    assert cache.get(5, now=10.5) == b"five"
    assert cache.get(5, now=11.0) == b"five"


def test_a_packet_older_than_max_age_is_gone() -> None:
    cache = RetransmissionCache(size=16, max_age_s=1.0)
    cache.store(5, b"five", now=10.0)
    assert cache.get(5, now=11.01) is None
    assert cache.get(5, now=10.5) is None, "an expired slot is freed, not revived"


def test_a_never_stored_packet_is_none() -> None:
    cache = RetransmissionCache(size=16)
    assert cache.get(0, now=0.0) is None
    assert cache.get(3, now=0.0) is None


def test_an_overwritten_slot_does_not_answer_for_the_old_number() -> None:
    cache = RetransmissionCache(size=16)
    cache.store(5, b"five", now=0.0)
    cache.store(21, b"twenty-one", now=0.1)
    assert cache.get(5, now=0.2) is None
    assert cache.get(21, now=0.2) == b"twenty-one"


def test_memory_stays_bounded_by_the_ring_size() -> None:
    cache = RetransmissionCache(size=64, max_age_s=100.0)
    for seq in range(10_000):
        cache.store(seq, bytes(10), now=seq * 0.001)
    held = [s for s in range(10_000) if cache.get(s, now=10.0) is not None]
    assert held == list(range(10_000 - 64, 10_000))
    assert cache.size == 64


def test_sixteen_bit_numbers_keep_working_across_the_wrap() -> None:
    cache = RetransmissionCache(size=1024)
    for i in range(65530, 65546):
        cache.store(i & 0xFFFF, bytes([i & 0xFF]), now=1.0)
    assert cache.get(65535, now=1.0) == bytes([0xFF])
    assert cache.get(3, now=1.0) == bytes([3])


def test_clear_forgets_everything() -> None:
    cache = RetransmissionCache(size=8)
    cache.store(1, b"x", now=0.0)
    cache.clear()
    assert cache.get(1, now=0.0) is None


def test_nonsense_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        RetransmissionCache(size=0)
    with pytest.raises(ValueError):
        RetransmissionCache(max_age_s=0)


# --- build_rtx / parse_rtx ---------------------------------------------------


def test_an_rtx_packet_puts_the_original_sequence_number_first() -> None:
    original = media(seq=4000, marker=True, extensions={3: b"\x01\x02\x03"}, csrcs=(9,))
    h = parse_rtp(original)
    rtx = build_rtx(original, h, rtx_ssrc=0x2222, rtx_payload_type=97, rtx_sequence=17)
    r = parse_rtp(rtx)
    assert (r.ssrc, r.payload_type, r.sequence, r.timestamp, r.marker) == (
        0x2222,
        97,
        17,
        12345,
        True,
    )
    assert r.csrc_count == 1
    assert extensions(rtx, r) == {3: b"\x01\x02\x03"}
    assert rtx[r.payload_offset : r.payload_offset + 2] == (4000).to_bytes(2, "big")
    assert rtx[r.payload_offset + 2 :] == b"vp8-frame-bytes"


def test_the_original_padding_is_dropped_from_the_rtx_packet() -> None:
    original = media(padding=7)
    rtx = build_rtx(original, parse_rtp(original), rtx_ssrc=1, rtx_payload_type=97, rtx_sequence=1)
    r = parse_rtp(rtx)
    assert r.padding_length == 0
    assert len(rtx) == len(original) - 7 + 2


def test_parse_rtx_rebuilds_the_original_packet() -> None:
    original = media(seq=65535, marker=True, extensions={1: b"\x85"})
    rtx = build_rtx(
        original, parse_rtp(original), rtx_ssrc=0x2222, rtx_payload_type=97, rtx_sequence=5
    )
    osn, rebuilt = parse_rtx(rtx, parse_rtp(rtx), ssrc=0x1111, payload_type=96)
    assert osn == 65535
    assert rebuilt == original


def test_parse_rtx_without_a_mapping_keeps_the_rtx_ssrc_and_payload_type() -> None:
    original = media()
    rtx = build_rtx(
        original, parse_rtp(original), rtx_ssrc=0x2222, rtx_payload_type=97, rtx_sequence=5
    )
    _, rebuilt = parse_rtx(rtx, parse_rtp(rtx))
    h = parse_rtp(rebuilt)
    assert (h.ssrc, h.payload_type, h.sequence) == (0x2222, 97, 4000)


@pytest.mark.parametrize("payload", [b"", b"\x0f"])
def test_an_rtx_payload_under_two_bytes_is_rejected(payload: bytes) -> None:
    data = media(payload=payload)
    with pytest.raises(RtpError, match="no original sequence number"):
        parse_rtx(data, parse_rtp(data))


def test_a_padding_only_rtx_probe_is_rejected_but_recognisable() -> None:
    probe = media(payload=b"", padding=200)
    h = parse_rtp(probe)
    assert h.payload_length == 0
    with pytest.raises(RtpError):
        parse_rtx(probe, h)


def test_an_rtx_header_from_another_packet_is_refused() -> None:
    long_one = media(payload=bytes(100))
    with pytest.raises(RtpError, match="does not match"):
        parse_rtx(media(payload=b"ab"), parse_rtp(long_one))


# --- property tests ----------------------------------------------------------


@FUZZ
@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.booleans(),
    st.binary(max_size=200),
    st.none() | st.dictionaries(st.integers(1, 14), st.binary(min_size=1, max_size=16), max_size=4),
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
)
def test_rtx_round_trips_any_media_packet(
    seq: int,
    ts: int,
    marker: bool,
    payload: bytes,
    exts: dict[int, bytes] | None,
    padding: int,
    rtx_seq: int,
) -> None:
    original = build_rtp(
        payload_type=100,
        sequence=seq,
        timestamp=ts,
        ssrc=7,
        marker=marker,
        payload=payload,
        extensions=exts,
    )
    rtx = build_rtx(
        original, parse_rtp(original), rtx_ssrc=8, rtx_payload_type=101, rtx_sequence=rtx_seq
    )
    if padding:  # padding on the RTX packet itself must not matter either
        rtx = build_rtp(
            payload_type=101,
            sequence=rtx_seq,
            timestamp=ts,
            ssrc=8,
            marker=marker,
            payload=rtx[parse_rtp(rtx).payload_offset :],
            extensions=exts,
            padding=padding,
        )
    osn, rebuilt = parse_rtx(rtx, parse_rtp(rtx), ssrc=7, payload_type=100)
    assert osn == seq
    assert rebuilt == original


@FUZZ
@given(st.binary(max_size=200))
@example(bytes.fromhex("800000010000000200000003"))
@example(bytes.fromhex("a00000010000000200000003aa01"))
def test_arbitrary_bytes_unwrap_or_raise_rtp_error_only(data: bytes) -> None:
    for candidate in (data, bytes([0x80 | (data[0] & 0x3F)]) + data[1:] if data else b""):
        try:
            h = parse_rtp(candidate)
            osn, rebuilt = parse_rtx(candidate, h)
        except RtpError:
            continue
        assert 0 <= osn <= 0xFFFF
        assert parse_rtp(rebuilt).sequence == osn


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, 5000), st.floats(0, 100)), max_size=200), st.integers(1, 64)
)
def test_the_cache_answers_only_with_what_was_stored_for_that_number(
    ops: list[tuple[int, float]], size: int
) -> None:
    cache = RetransmissionCache(size=size, max_age_s=1000.0)
    latest: dict[int, bytes] = {}
    for seq, now in ops:
        packet = f"{seq}@{now}".encode()
        cache.store(seq, packet, now)
        latest[seq] = packet
    for seq in range(5001):
        got = cache.get(seq, now=100.0)
        assert got is None or got == latest[seq]
