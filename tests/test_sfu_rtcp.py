"""sfu.packet.rtcp: strict compound parsing, builders that round-trip, NTP helpers."""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sfu.packet.rtcp import (
    Bye,
    Fir,
    Nack,
    Other,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtcpError,
    RtcpPacket,
    Sdes,
    SenderReport,
    TransportCc,
    build_bye,
    build_fir,
    build_nack,
    build_pli,
    build_remb,
    build_rr,
    build_sdes,
    build_sr,
    compound,
    ntp_from_time,
    ntp_middle32,
    parse_rtcp,
    rtt_seconds,
    time_from_ntp,
)

FUZZ = settings(max_examples=300, deadline=None)

BLOCK = ReportBlock(
    ssrc=0xAABBCCDD,
    fraction_lost=25,
    packets_lost=-3,
    highest_seq=70_000,
    jitter=12,
    lsr=0x12345678,
    dlsr=65536,
)


def raw(b0: int, packet_type: int, body: bytes, words: int | None = None) -> bytes:
    """A sub-packet with a hand-made header; `words` overrides the length field."""
    length = len(body) // 4 if words is None else words
    return struct.pack("!BBH", b0, packet_type, length) + body


def tcc(
    base: int, count: int, chunks: list[int], deltas: bytes, ref: int = 5, fb: int = 9
) -> bytes:
    body = struct.pack("!IIHHI", 1, 2, base, count, ((ref & 0xFFFFFF) << 8) | fb)
    body += b"".join(struct.pack("!H", c) for c in chunks) + deltas
    body += bytes(-len(body) % 4)
    return raw(0x8F, 205, body)


def only(data: bytes) -> object:
    packets = parse_rtcp(data)
    assert len(packets) == 1
    return packets[0]


# --- builders round-trip -----------------------------------------------------


def test_a_sender_report_round_trips_with_its_blocks() -> None:
    data = build_sr(1, ntp_from_time(1_700_000_000.25), 90_000, 10, 12_000, [BLOCK, BLOCK])
    assert len(data) == 28 + 48
    assert only(data) == SenderReport(
        1, ntp_from_time(1_700_000_000.25), 90_000, 10, 12_000, (BLOCK, BLOCK)
    )


def test_a_receiver_report_round_trips_with_and_without_blocks() -> None:
    assert only(build_rr(7)) == ReceiverReport(7, ())
    assert only(build_rr(7, [BLOCK])) == ReceiverReport(7, (BLOCK,))


def test_packets_lost_is_clamped_to_the_signed_24_bit_range() -> None:
    big = ReportBlock(1, 0, 10**9, 0, 0, 0, 0)
    small = ReportBlock(1, 0, -(10**9), 0, 0, 0, 0)
    parsed = only(build_rr(2, [big, small]))
    assert isinstance(parsed, ReceiverReport)
    assert [b.packets_lost for b in parsed.reports] == [0x7FFFFF, -0x800000]


def test_pli_and_fir_round_trip() -> None:
    assert only(build_pli(1, 2)) == Pli(1, 2)
    fir = build_fir(1, 0xDEADBEEF, 257)
    assert only(fir) == Fir(1, ((0xDEADBEEF, 1),))
    assert fir[8:12] == bytes(4), "FIR's common-header media SSRC is 0"


def test_a_nack_expands_pid_and_blp() -> None:
    data = build_nack(1, 2, [100, 101, 105, 116, 117, 200])
    parsed = only(data)
    assert parsed == Nack(1, 2, (100, 101, 105, 116, 117, 200))
    assert len(data) == 12 + 3 * 4  # (100: 101,105,116) (117) (200)


def test_a_nack_run_across_the_wrap_stays_one_pair() -> None:
    data = build_nack(1, 2, [65534, 65535, 0, 3])
    assert len(data) == 16
    assert only(data) == Nack(1, 2, (65534, 65535, 0, 3))


def test_a_nack_deduplicates_and_orders_its_input() -> None:
    assert only(build_nack(1, 2, [9, 5, 9, 7])) == Nack(1, 2, (5, 7, 9))


def test_a_nack_without_sequence_numbers_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="at least one"):
        build_nack(1, 2, [])


def test_remb_round_trips_exactly_for_small_bitrates() -> None:
    assert only(build_remb(3, 250_000, [10, 11])) == Remb(3, 250_000, (10, 11))
    assert only(build_remb(3, 0, [])) == Remb(3, 0, ())


def test_remb_rounds_large_bitrates_down_to_its_precision() -> None:
    parsed = only(build_remb(3, 1_234_567_891, [1]))
    assert isinstance(parsed, Remb)
    assert 1_234_567_891 * (1 - 2**-17) <= parsed.bitrate <= 1_234_567_891


def test_remb_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(ValueError):
        build_remb(1, -1, [])
    with pytest.raises(ValueError):
        build_remb(1, 2**82, [])
    with pytest.raises(ValueError):
        build_remb(1, 1, list(range(256)))


@pytest.mark.parametrize("cname", ["", "a", "ab", "abc", "abcd", "{2a6f-uuid}", "ärzte-ü"])
def test_sdes_round_trips_for_every_padding_length(cname: str) -> None:
    data = build_sdes(0x1234, cname)
    assert len(data) % 4 == 0
    assert only(data) == Sdes(((0x1234, cname),))


def test_a_cname_over_255_bytes_cannot_be_built() -> None:
    with pytest.raises(ValueError):
        build_sdes(1, "x" * 256)


def test_bye_round_trips_with_and_without_a_reason() -> None:
    assert only(build_bye([1, 2, 3])) == Bye((1, 2, 3))
    assert only(build_bye([4], "left the visit")) == Bye((4,), "left the visit")
    with pytest.raises(ValueError):
        build_bye(list(range(32)))
    with pytest.raises(ValueError):
        build_bye([])


def test_a_compound_packet_parses_into_its_parts_in_order() -> None:
    data = compound(
        build_rr(1, [BLOCK]),
        build_sdes(1, "cname"),
        build_pli(1, 2),
        build_remb(1, 500_000, [2]),
        build_bye([1]),
    )
    assert parse_rtcp(data) == [
        ReceiverReport(1, (BLOCK,)),
        Sdes(((1, "cname"),)),
        Pli(1, 2),
        Remb(1, 500_000, (2,)),
        Bye((1,)),
    ]


def test_sr_and_rr_may_carry_profile_extensions_after_the_blocks() -> None:
    data = raw(0x81, 201, struct.pack("!I", 9) + bytes(24) + b"ext!")
    parsed = only(data)
    assert isinstance(parsed, ReceiverReport)
    assert len(parsed.reports) == 1


def test_an_sdes_chunk_without_a_cname_has_an_empty_one() -> None:
    body = struct.pack("!I", 5) + b"\x02\x03bob\x00" + bytes(2)  # NAME item only
    assert only(raw(0x81, 202, body)) == Sdes(((5, ""),))


def test_an_sdes_with_two_chunks_reads_both() -> None:
    one = build_sdes(1, "a")[4:]
    two = build_sdes(2, "bcdefg")[4:]
    assert only(raw(0x82, 202, one + two)) == Sdes(((1, "a"), (2, "bcdefg")))


def test_a_padded_sub_packet_is_read_without_its_padding() -> None:
    body = struct.pack("!II", 1, 2) + struct.pack("!HH", 10, 1) + b"\x00\x00\x00\x04"
    assert only(raw(0xA1, 205, body)) == Nack(1, 2, (10, 11))


# --- carried but not interpreted ---------------------------------------------


def test_xr_and_app_are_carried_as_other() -> None:
    xr = raw(0x80, 207, struct.pack("!I", 1) + b"\x04\x00\x00\x02" + bytes(8))
    app = raw(0x85, 204, struct.pack("!I", 1) + b"NAME" + b"data")
    assert parse_rtcp(compound(xr, app)) == [Other(207, 0, xr), Other(204, 5, app)]


def test_unknown_types_and_feedback_formats_are_carried_as_other() -> None:
    unknown = raw(0x80, 195, bytes(8))
    tmmbr = raw(0x83, 205, struct.pack("!II", 1, 2) + bytes(8))
    sli = raw(0x82, 206, struct.pack("!II", 1, 2) + bytes(4))
    afb = raw(0x8F, 206, struct.pack("!II", 1, 2) + b"GOOG" + bytes(4))
    assert parse_rtcp(compound(unknown, tmmbr, sli, afb)) == [
        Other(195, 0, unknown),
        Other(205, 3, tmmbr),
        Other(206, 2, sli),
        Other(206, 15, afb),
    ]


# --- transport-cc ------------------------------------------------------------


def test_transport_cc_header_is_read_after_validating_statuses() -> None:
    # 3 received (run of symbol 1) + vector of 14 one-bit symbols (2 received).
    data = tcc(1000, 17, [0x2003, 0xA001], b"\x01\x02\x03" + b"\x04\x05")
    symbols = b"\x01" * 4 + b"\x00" * 12 + b"\x01"
    assert only(data) == TransportCc(1, 2, 1000, 17, 5, 9, symbols, b"\x01\x02\x03\x04\x05")


def test_transport_cc_two_bit_vectors_count_large_deltas() -> None:
    # 7 two-bit symbols: 2,1,0,0,0,0,0 -> 3 delta bytes.
    chunk = 0xC000 | (2 << 12) | (1 << 10)
    assert isinstance(only(tcc(5, 7, [chunk], b"\x00\x10\x01")), TransportCc)
    with pytest.raises(RtcpError, match="overrun"):
        parse_rtcp(tcc(5, 7, [chunk], b""))


def test_transport_cc_reference_time_is_signed() -> None:
    parsed = only(tcc(0, 1, [0x0001], b"", ref=-2))
    assert isinstance(parsed, TransportCc)
    assert parsed.reference_time == -2


def test_transport_cc_with_a_huge_status_count_is_rejected() -> None:
    with pytest.raises(RtcpError, match="status count 65535"):
        parse_rtcp(tcc(0, 65535, [0x2002], b"\x01\x01"))


def test_transport_cc_deltas_past_the_packet_are_rejected() -> None:
    # A run of 100 received packets needs 100 delta bytes.
    with pytest.raises(RtcpError, match="overrun"):
        parse_rtcp(tcc(0, 100, [0x2064], b"\x01" * 10))


def test_transport_cc_reserved_symbols_and_empty_feedback_are_rejected() -> None:
    with pytest.raises(RtcpError, match="reserved"):
        parse_rtcp(tcc(0, 3, [0x6003], b""))
    with pytest.raises(RtcpError, match="reserved"):
        parse_rtcp(tcc(0, 3, [0xF000], b""))
    with pytest.raises(RtcpError, match="no packet statuses"):
        parse_rtcp(tcc(0, 0, [], b""))
    with pytest.raises(RtcpError, match="shorter"):
        parse_rtcp(raw(0x8F, 205, struct.pack("!IIHH", 1, 2, 0, 1)))


# --- hostile inputs (hostile-inputs.md item 1) -------------------------------


def test_a_length_field_of_zero_is_rejected() -> None:
    with pytest.raises(RtcpError, match="length 0"):
        parse_rtcp(raw(0x80, 201, b"", words=0))
    with pytest.raises(RtcpError, match="length 0"):
        parse_rtcp(build_rr(1) + raw(0x80, 203, b"", words=0))


def test_a_length_past_the_datagram_is_rejected() -> None:
    with pytest.raises(RtcpError, match="past the datagram"):
        parse_rtcp(raw(0x80, 201, struct.pack("!I", 1), words=6))


def test_a_report_count_of_31_with_one_block_is_rejected() -> None:
    rr = raw(0x9F, 201, struct.pack("!I", 1) + bytes(24))
    sr = raw(0x9F, 200, bytes(24) + bytes(24))
    for data in (rr, sr):
        with pytest.raises(RtcpError, match="report count 31"):
            parse_rtcp(data)


def test_a_sender_report_without_sender_info_is_rejected() -> None:
    with pytest.raises(RtcpError, match="sender info"):
        parse_rtcp(raw(0x80, 200, bytes(8)))
    with pytest.raises(RtcpError, match="without an SSRC"):
        parse_rtcp(raw(0xA0, 201, b"\x00\x00\x00\x04"))  # all four body bytes are padding


def test_nack_fci_that_is_not_a_multiple_of_4_is_rejected() -> None:
    nack = build_nack(1, 2, [5])
    # Via padding: the last 2 bytes of the FCI are declared padding.
    padded = raw(0xA1, 205, nack[4:-1] + b"\x02")
    with pytest.raises(RtcpError, match="not a positive multiple of 4"):
        parse_rtcp(padded)
    # Via a datagram cut 2 bytes short of what the length claims.
    with pytest.raises(RtcpError, match="past the datagram"):
        parse_rtcp(nack[:-2])
    # Via 2 stray bytes after a well-formed packet.
    with pytest.raises(RtcpError, match="trailing"):
        parse_rtcp(nack + b"\x00\x05")


def test_a_nack_with_no_fci_is_rejected() -> None:
    with pytest.raises(RtcpError, match="NACK FCI of 0"):
        parse_rtcp(raw(0x81, 205, struct.pack("!II", 1, 2)))


def test_feedback_without_its_ssrcs_is_rejected() -> None:
    with pytest.raises(RtcpError, match="sender and media"):
        parse_rtcp(raw(0x81, 206, struct.pack("!I", 1)))


def test_fir_fci_that_is_not_a_multiple_of_8_is_rejected() -> None:
    with pytest.raises(RtcpError, match="FIR"):
        parse_rtcp(raw(0x84, 206, struct.pack("!III", 1, 0, 2)))


def test_remb_claiming_255_ssrcs_with_one_is_rejected() -> None:
    body = struct.pack("!II", 1, 0) + b"REMB" + bytes((255, 0x04, 0, 1)) + struct.pack("!I", 9)
    with pytest.raises(RtcpError, match="255 SSRCs"):
        parse_rtcp(raw(0x8F, 206, body))


def test_remb_cut_before_its_bitrate_is_rejected() -> None:
    with pytest.raises(RtcpError, match="REMB without"):
        parse_rtcp(raw(0x8F, 206, struct.pack("!II", 1, 0) + b"REMB"))


def test_sdes_overruns_are_rejected() -> None:
    item_too_long = struct.pack("!I", 1) + b"\x01\x20abc" + bytes(3)
    no_terminator = struct.pack("!I", 1) + b"\x01\x02ab"
    too_many_chunks = build_sdes(1, "ab")[4:]
    second_chunk_missing = struct.pack("!I", 1) + b"\x00\x00\x00\x01"
    cases = [
        (0x81, item_too_long),
        (0x81, no_terminator),
        (0x83, too_many_chunks),
        (0x82, second_chunk_missing),
    ]
    for b0, body in cases:
        with pytest.raises(RtcpError, match="SDES"):
            parse_rtcp(raw(b0, 202, body))


def test_an_sdes_item_header_at_the_very_end_is_rejected() -> None:
    body = struct.pack("!I", 1) + b"\x01\x01a\x00" + struct.pack("!I", 2) + b"\x02\x01x\x03"
    with pytest.raises(RtcpError, match="SDES"):
        parse_rtcp(raw(0x82, 202, body))


def test_a_bye_source_count_too_large_is_rejected() -> None:
    with pytest.raises(RtcpError, match="BYE source count 3"):
        parse_rtcp(raw(0x83, 203, struct.pack("!II", 1, 2)))


def test_a_bye_reason_overrun_is_rejected() -> None:
    with pytest.raises(RtcpError, match="reason"):
        parse_rtcp(raw(0x81, 203, struct.pack("!I", 1) + b"\x09abc"))


def test_a_bad_version_anywhere_rejects_the_whole_datagram() -> None:
    bad = bytearray(build_pli(1, 2))
    bad[0] = 0x41
    with pytest.raises(RtcpError, match="version 1"):
        parse_rtcp(build_rr(1) + bytes(bad))


def test_bad_padding_counts_are_rejected() -> None:
    body = struct.pack("!I", 1) + b"\x00\x00\x00\x00"
    with pytest.raises(RtcpError, match="padding count 0"):
        parse_rtcp(raw(0xA0, 201, body))
    with pytest.raises(RtcpError, match="padding count 9"):
        parse_rtcp(raw(0xA0, 201, body[:-1] + b"\x09"))


def test_datagrams_too_short_for_a_header_are_rejected() -> None:
    for data in (b"", b"\x80", b"\x80\xc9\x00"):
        with pytest.raises(RtcpError):
            parse_rtcp(data)


# --- NTP ---------------------------------------------------------------------


def test_ntp_time_is_seconds_since_1900_in_32_32_fixed_point() -> None:
    assert ntp_from_time(0.0) == 2_208_988_800 << 32
    assert ntp_from_time(1.5) == ((2_208_988_801 << 32) | 0x80000000)
    assert abs(time_from_ntp(ntp_from_time(1_764_000_000.123456)) - 1_764_000_000.123456) < 1e-6


def test_the_middle_32_bits_are_what_lsr_carries() -> None:
    assert ntp_middle32(0x1122334455667788) == 0x33445566


def test_round_trip_time_comes_from_lsr_and_dlsr() -> None:
    sent = ntp_from_time(1_000.0)
    block = ReportBlock(1, 0, 0, 0, 0, ntp_middle32(sent), dlsr=65536 // 2)  # held 0.5 s
    assert rtt_seconds(block, ntp_from_time(1_000.75)) == pytest.approx(0.25, abs=1e-4)
    assert rtt_seconds(ReportBlock(1, 0, 0, 0, 0, 0, 0), sent) is None
    assert rtt_seconds(block, ntp_from_time(1_000.25)) == 0.0


# --- property tests ----------------------------------------------------------

u32 = st.integers(0, 0xFFFFFFFF)
blocks = st.builds(
    ReportBlock, u32, st.integers(0, 255), st.integers(-0x800000, 0x7FFFFF), u32, u32, u32, u32
)
built = st.one_of(
    st.builds(
        lambda s, n, t, p, o, r: (
            build_sr(s, n, t, p, o, r),
            SenderReport(s, n, t, p, o, tuple(r)),
        ),
        u32,
        st.integers(0, 2**64 - 1),
        u32,
        u32,
        u32,
        st.lists(blocks, max_size=31),
    ),
    st.builds(
        lambda s, r: (build_rr(s, r), ReceiverReport(s, tuple(r))),
        u32,
        st.lists(blocks, max_size=31),
    ),
    st.builds(lambda s, m: (build_pli(s, m), Pli(s, m)), u32, u32),
    st.builds(
        lambda s, m, q: (build_fir(s, m, q), Fir(s, ((m, q),))), u32, u32, st.integers(0, 255)
    ),
    st.builds(
        lambda s, m, r: (build_remb(s, 200_000, r), Remb(s, 200_000, tuple(r))),
        u32,
        u32,
        st.lists(u32, max_size=20),
    ),
    st.builds(lambda s, c: (build_sdes(s, c), Sdes(((s, c),))), u32, st.text(max_size=60)),
    st.builds(
        lambda s, r: (build_bye(s, r), Bye(tuple(s), r)),
        st.lists(u32, min_size=1, max_size=31),
        st.text(max_size=40),
    ),
)


@FUZZ
@given(st.lists(built, min_size=1, max_size=6))
def test_any_compound_of_built_packets_parses_back(parts: list[tuple[bytes, object]]) -> None:
    data = compound(*(p for p, _ in parts))
    assert parse_rtcp(data) == [expected for _, expected in parts]
    assert parse_rtcp(memoryview(data)) == parse_rtcp(bytearray(data)) == parse_rtcp(data)


@FUZZ
@given(u32, u32, st.sets(st.integers(0, 0xFFFF), min_size=1, max_size=60))
@example(1, 2, {65535, 0})
@example(1, 2, {0, 32768})
def test_nack_round_trips_any_set_of_sequence_numbers(
    sender: int, media: int, seqs: set[int]
) -> None:
    parsed = only(build_nack(sender, media, seqs))
    assert isinstance(parsed, Nack)
    assert sorted(parsed.lost) == sorted(seqs)
    assert len(parsed.lost) == len(seqs)


@FUZZ
@given(st.integers(1000, 1060), st.integers(0, 30))
def test_a_contiguous_loss_burst_uses_one_pair_per_17_packets(start: int, n: int) -> None:
    seqs = [(start + i) & 0xFFFF for i in range(n + 1)]
    assert len(build_nack(1, 2, seqs)) == 12 + 4 * ((n + 1 + 16) // 17)


@FUZZ
@given(st.integers(0, 2**70))
def test_remb_bitrates_round_down_by_less_than_one_part_in_2_17(bitrate: int) -> None:
    parsed = only(build_remb(1, bitrate, [2]))
    assert isinstance(parsed, Remb)
    assert parsed.bitrate <= bitrate
    assert bitrate - parsed.bitrate <= bitrate >> 17


@FUZZ
@given(st.binary(max_size=400))
@example(b"\x80\xc9\x00\x00")
@example(b"\x9f\xc9\x00\x07" + bytes(28))
@example(b"\x8f\xcd\x00\x04" + bytes(8) + b"\x00\x00\xff\xff" + bytes(4))
def test_arbitrary_bytes_parse_or_raise_rtcp_error_only(data: bytes) -> None:
    try:
        packets = parse_rtcp(data)
    except RtcpError:
        return
    assert packets
    assert all(isinstance(p, RtcpPacket) for p in packets)


sub_packets = st.tuples(
    st.integers(0, 63),  # P bit and count/FMT (version forced to 2)
    st.sampled_from([200, 201, 202, 203, 204, 205, 206, 207, 195]),
    st.binary(max_size=80).map(lambda b: b + bytes(-len(b) % 4)),
)


@FUZZ
@given(st.lists(sub_packets, min_size=1, max_size=5))
def test_well_framed_sub_packets_with_random_bodies_never_crash(
    parts: list[tuple[int, int, bytes]],
) -> None:
    data = b"".join(raw(0x80 | flags, pt, body) for flags, pt, body in parts)
    try:
        packets = parse_rtcp(data)
    except RtcpError:
        return
    assert len(packets) == len(parts)
