"""RTCP: parse compound packets strictly, build the reports and feedback the SFU sends.

`parse_rtcp` walks a whole (decrypted) compound datagram and raises
`RtcpError` if any sub-packet is malformed; the caller drops the whole
datagram and counts it, because a peer that lies in one length field cannot
be trusted about the others.  Packet types the SFU does not act on (XR, APP,
SLI, unknown AFB ...) are carried as `Other` with their bytes, uninterpreted.

Every builder's output parses back to the same values (see the tests).

Stricter than RFC 3550 in one corner: a sub-packet whose length field is 0
(a bare 4-byte header) is rejected even for a BYE with no sources, the one
type where it would be legal; nothing sends those, and hostile-inputs.md
lists length 0 as an attack.

References: RFC 3550 (SR, RR, SDES, BYE), RFC 4585 (generic NACK, PLI),
RFC 5104 (FIR), draft-alvestrand-rmcat-remb (REMB),
draft-holmer-rmcat-transport-wide-cc-extensions (transport-cc).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

from sfu.native import load

__all__ = [
    "Bye",
    "Fir",
    "Nack",
    "Other",
    "Pli",
    "ReceiverReport",
    "Remb",
    "ReportBlock",
    "RtcpError",
    "RtcpPacket",
    "Sdes",
    "SenderReport",
    "TransportCc",
    "build_bye",
    "build_fir",
    "build_nack",
    "build_pli",
    "build_remb",
    "build_rr",
    "build_sdes",
    "build_sr",
    "compound",
    "ntp_from_time",
    "ntp_middle32",
    "parse_rtcp",
    "rtt_seconds",
    "time_from_ntp",
]

_Bytes = bytes | bytearray | memoryview

SR, RR, SDES, BYE, APP, RTPFB, PSFB, XR = 200, 201, 202, 203, 204, 205, 206, 207
_FMT_NACK, _FMT_TCC = 1, 15
_FMT_PLI, _FMT_FIR, _FMT_AFB = 1, 4, 15
_SDES_CNAME = 1

_HEADER = struct.Struct("!BBH")
_SSRC = struct.Struct("!I")
_TWO_SSRC = struct.Struct("!II")
_SENDER_INFO = struct.Struct("!IQIII")  # SSRC, NTP, RTP timestamp, packets, octets
_BLOCK = struct.Struct("!IIIIII")
_NACK_ITEM = struct.Struct("!HH")
_FIR_ITEM = struct.Struct("!IB3x")
_TCC_HEAD = struct.Struct("!HHI")  # base seq, status count, reference time + fb count
_CHUNK = struct.Struct("!H")

_NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


class RtcpError(ValueError):
    """A malformed RTCP datagram; drop all of it and count it."""


@dataclass(slots=True, frozen=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int  # 0..255, fixed point /256
    packets_lost: int  # cumulative, signed 24 bits (duplicates can make it negative)
    highest_seq: int  # extended highest sequence number received
    jitter: int
    lsr: int  # middle 32 bits of the NTP time of the last SR received
    dlsr: int  # delay since that SR, in 1/65536 s


@dataclass(slots=True, frozen=True)
class SenderReport:
    ssrc: int
    ntp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(slots=True, frozen=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(slots=True, frozen=True)
class Sdes:
    chunks: tuple[tuple[int, str], ...]  # (SSRC, CNAME or "" when the chunk has none)


@dataclass(slots=True, frozen=True)
class Bye:
    ssrcs: tuple[int, ...]
    reason: str = ""


@dataclass(slots=True, frozen=True)
class Pli:
    sender_ssrc: int
    media_ssrc: int


@dataclass(slots=True, frozen=True)
class Fir:
    sender_ssrc: int
    entries: tuple[tuple[int, int], ...]  # (media SSRC, command sequence number)


@dataclass(slots=True, frozen=True)
class Nack:
    sender_ssrc: int
    media_ssrc: int
    lost: tuple[int, ...]  # 16-bit sequence numbers, expanded from PID + BLP


@dataclass(slots=True, frozen=True)
class Remb:
    sender_ssrc: int
    bitrate: int  # bits per second
    ssrcs: tuple[int, ...]


@dataclass(slots=True, frozen=True)
class TransportCc:
    """A transport-wide CC feedback, validated; `sfu.packet.twcc` reads its packets.

    `symbols` holds one status symbol per packet (0 not received, 1 small
    delta, 2 large or negative delta), `deltas` the raw receive delta bytes.
    """

    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    status_count: int
    reference_time: int = 0  # signed, in multiples of 64 ms
    fb_count: int = 0
    symbols: bytes = b""
    deltas: bytes = b""


@dataclass(slots=True, frozen=True)
class Other:
    """A sub-packet carried but not interpreted (XR, APP, SLI, unknown types)."""

    packet_type: int
    fmt: int = 0  # the 5-bit count/FMT field
    data: bytes = b""  # the whole sub-packet, header included


RtcpPacket = (
    SenderReport | ReceiverReport | Sdes | Bye | Pli | Fir | Nack | Remb | TransportCc | Other
)

# --- parsing -----------------------------------------------------------------


def parse_rtcp(data: _Bytes) -> list[RtcpPacket]:
    """Every sub-packet of a compound RTCP datagram; `RtcpError` if any is malformed."""
    size = len(data)
    if size < 4:
        raise RtcpError(f"RTCP datagram of {size} bytes")
    out: list[RtcpPacket] = []
    offset = 0
    while offset < size:
        if size - offset < 4:
            raise RtcpError(f"{size - offset} trailing bytes after the last RTCP packet")
        b0, packet_type, words = _HEADER.unpack_from(data, offset)
        if b0 >> 6 != 2:
            raise RtcpError(f"RTCP version {b0 >> 6}, expected 2")
        if words == 0:
            # A bare header carries no SSRC; none of the types we read can be that short.
            raise RtcpError(f"RTCP packet type {packet_type} with length 0")
        end = offset + 4 * (words + 1)
        if end > size:
            raise RtcpError(f"RTCP packet type {packet_type} runs past the datagram")
        body_end = end
        if b0 & 0x20:
            padding = data[end - 1]
            if padding == 0 or padding > end - offset - 4:
                raise RtcpError(f"RTCP padding count {padding}")
            body_end -= padding
        count = b0 & 0x1F
        parse = _PARSERS.get(packet_type)
        packet = parse(data, offset, offset + 4, body_end, count) if parse else None
        if packet is None:
            packet = Other(packet_type, count, bytes(data[offset:end]))
        out.append(packet)
        offset = end
    return out


# (data, packet start, body start, body end, count/FMT) -> packet, or None to carry
# the sub-packet as `Other`.
_Parser = Callable[[_Bytes, int, int, int, int], RtcpPacket | None]


def _report_blocks(data: _Bytes, start: int, end: int, count: int) -> tuple[ReportBlock, ...]:
    if start + 24 * count > end:
        raise RtcpError(f"report count {count} does not fit the packet")
    blocks = []
    for i in range(count):
        ssrc, loss, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, start + 24 * i)
        lost = loss & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        blocks.append(ReportBlock(ssrc, loss >> 24, lost, highest, jitter, lsr, dlsr))
    return tuple(blocks)


def _parse_sr(data: _Bytes, _: int, start: int, end: int, count: int) -> RtcpPacket:
    if start + 24 > end:
        raise RtcpError("sender report shorter than its sender info")
    ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(data, start)
    return SenderReport(
        ssrc, ntp, rtp_ts, packets, octets, _report_blocks(data, start + 24, end, count)
    )


def _parse_rr(data: _Bytes, _: int, start: int, end: int, count: int) -> RtcpPacket:
    if start + 4 > end:
        raise RtcpError("receiver report without an SSRC")
    (ssrc,) = _SSRC.unpack_from(data, start)
    return ReceiverReport(ssrc, _report_blocks(data, start + 4, end, count))


def _parse_sdes(data: _Bytes, first: int, start: int, end: int, count: int) -> RtcpPacket:
    chunks = []
    i = start
    for _ in range(count):
        if i + 4 > end:
            raise RtcpError("SDES chunk count overruns the packet")
        (ssrc,) = _SSRC.unpack_from(data, i)
        i += 4
        cname = ""
        while True:  # items up to the null terminator
            if i >= end:
                raise RtcpError("SDES items overrun the packet")
            item = data[i]
            if item == 0:
                # Chunks are 32-bit aligned relative to the packet start.
                i = first + ((i - first) // 4 + 1) * 4
                break
            if i + 2 > end or i + 2 + data[i + 1] > end:
                raise RtcpError(f"SDES item {item} overruns the packet")
            length = data[i + 1]
            if item == _SDES_CNAME:
                cname = bytes(data[i + 2 : i + 2 + length]).decode("utf-8", "replace")
            i += 2 + length
        chunks.append((ssrc, cname))
    if i > end:
        raise RtcpError("SDES chunk padding overruns the packet")
    return Sdes(tuple(chunks))


def _parse_bye(data: _Bytes, _: int, start: int, end: int, count: int) -> RtcpPacket:
    reason_at = start + 4 * count
    if reason_at > end:
        raise RtcpError(f"BYE source count {count} does not fit the packet")
    ssrcs = struct.unpack_from(f"!{count}I", data, start)
    reason = ""
    if reason_at < end:
        length = data[reason_at]
        if reason_at + 1 + length > end:
            raise RtcpError("BYE reason overruns the packet")
        reason = bytes(data[reason_at + 1 : reason_at + 1 + length]).decode("utf-8", "replace")
    return Bye(tuple(ssrcs), reason)


def _feedback_ssrcs(data: _Bytes, start: int, end: int) -> tuple[int, int]:
    if start + 8 > end:
        raise RtcpError("feedback packet without sender and media SSRCs")
    sender, media = _TWO_SSRC.unpack_from(data, start)
    return sender, media


def _parse_rtpfb(data: _Bytes, _: int, start: int, end: int, fmt: int) -> RtcpPacket | None:
    sender, media = _feedback_ssrcs(data, start, end)
    fci = start + 8
    if fmt == _FMT_NACK:
        return Nack(sender, media, _nack_items(data, fci, end))
    if fmt == _FMT_TCC:
        return _parse_tcc(data, sender, media, fci, end)
    return None


def _nack_items(data: _Bytes, fci: int, end: int) -> tuple[int, ...]:
    length = end - fci
    if length == 0 or length % 4:
        raise RtcpError(f"NACK FCI of {length} bytes is not a positive multiple of 4")
    lost: list[int] = []
    for pid, blp in _NACK_ITEM.iter_unpack(bytes(data[fci:end])):
        lost.append(pid)
        bit = 0
        while blp >> bit:
            if blp >> bit & 1:
                lost.append((pid + bit + 1) & 0xFFFF)
            bit += 1
    return tuple(lost)


def _parse_tcc(data: _Bytes, sender: int, media: int, fci: int, end: int) -> RtcpPacket:
    if fci + 8 > end:
        raise RtcpError("transport-cc feedback shorter than its header")
    base_seq, status_count, ref_and_count = _TCC_HEAD.unpack_from(data, fci)
    if status_count == 0:
        raise RtcpError("transport-cc feedback with no packet statuses")
    walked: tuple[int, int, bytes | bytearray]
    if _GCC is None:
        walked = _tcc_chunk_walk(data, fci + 8, end, status_count)
    else:
        walked = _native_chunk_walk(_GCC, data, fci + 8, end, status_count)
    chunks_end, delta_bytes, symbols = walked
    if chunks_end + delta_bytes > end:
        raise RtcpError(f"transport-cc receive deltas for {status_count} statuses overrun")
    reference_time = ref_and_count >> 8
    if reference_time & 0x800000:  # a signed 24-bit field
        reference_time -= 0x1000000
    deltas = bytes(data[chunks_end : chunks_end + delta_bytes])
    return TransportCc(
        sender,
        media,
        base_seq,
        status_count,
        reference_time,
        ref_and_count & 0xFF,
        bytes(symbols),
        deltas,
    )


# `_tcc_chunk_walk`'s C twin, chosen once at import (parsing has no object to hold
# the choice, and looking it up per datagram would cost more than the walk itself)
_GCC = load("_gcc")


def _native_chunk_walk(
    native: ModuleType, data: _Bytes, i: int, end: int, status_count: int
) -> tuple[int, int, bytes]:
    """`_tcc_chunk_walk` by its C twin (`_gcc.tcc_chunk_walk`): the same walk, the same
    refusals (its ValueError becomes the RtcpError the Python raises, same message)."""
    try:
        walked: tuple[int, int, bytes] = native.tcc_chunk_walk(data, i, end, status_count)
    except ValueError as exc:
        raise RtcpError(str(exc)) from None
    return walked


def _tcc_chunk_walk(
    data: _Bytes, i: int, end: int, status_count: int
) -> tuple[int, int, bytearray]:
    """Walk the packet chunks covering `status_count` statuses.

    Returns (end offset, delta bytes, one status symbol per packet).  The
    loop is bounded by the packet length, not by the (attacker-chosen) status
    count; the symbols it expands are at most `status_count` (< 65536).
    """
    remaining = status_count
    delta_bytes = 0
    symbols = bytearray()
    while remaining > 0:
        if i + 2 > end:
            raise RtcpError(f"transport-cc status count {status_count} overruns the packet")
        (chunk,) = _CHUNK.unpack_from(data, i)
        i += 2
        if not chunk & 0x8000:  # run length: 2-bit symbol, 13-bit run
            symbol = (chunk >> 13) & 0x3
            if symbol == 3:
                raise RtcpError("transport-cc reserved status symbol")
            run = min(chunk & 0x1FFF, remaining)
            delta_bytes += run * symbol  # symbol 1: 1-byte delta, 2: 2-byte delta
            symbols += _SYMBOL_BYTES[symbol] * run
            remaining -= run
        else:  # a status vector: 14 one-bit or 7 two-bit symbols, expanded by table
            if not chunk & 0x4000:
                n = min(14, remaining)
                vector = _ONE_BIT[(chunk >> 7) & 0x7F] + _ONE_BIT[chunk & 0x7F]
            else:
                n = min(7, remaining)
                vector = _TWO_BIT_3[(chunk >> 8) & 0x3F] + _TWO_BIT_4[chunk & 0xFF]
                if 3 in vector[:n]:
                    raise RtcpError("transport-cc reserved status symbol")
            if n < len(vector):
                vector = vector[:n]
            delta_bytes += sum(vector)  # symbol 1: 1-byte delta, 2: 2-byte delta
            symbols += vector
            remaining -= n
    return i, delta_bytes, symbols


_SYMBOL_BYTES = (b"\x00", b"\x01", b"\x02")


def _vectors(bits: int, symbols: int) -> tuple[bytes, ...]:
    """Every `symbols` x `bits`-bit value, most significant first, as one byte per symbol."""
    mask = (1 << bits) - 1
    return tuple(
        bytes((value >> (bits * (symbols - 1 - k))) & mask for k in range(symbols))
        for value in range(1 << (bits * symbols))
    )


# Status vector chunks read 7 one-bit or 3 + 4 two-bit symbols at a time.
_ONE_BIT = _vectors(1, 7)
_TWO_BIT_3 = _vectors(2, 3)
_TWO_BIT_4 = _vectors(2, 4)


def _parse_psfb(data: _Bytes, _: int, start: int, end: int, fmt: int) -> RtcpPacket | None:
    sender, media = _feedback_ssrcs(data, start, end)
    fci = start + 8
    if fmt == _FMT_PLI:
        return Pli(sender, media)
    if fmt == _FMT_FIR:
        return Fir(sender, _fir_entries(data, fci, end))
    if fmt == _FMT_AFB and end - fci >= 4 and bytes(data[fci : fci + 4]) == b"REMB":
        return _parse_remb(data, sender, fci + 4, end)
    return None


def _fir_entries(data: _Bytes, fci: int, end: int) -> tuple[tuple[int, int], ...]:
    length = end - fci
    if length == 0 or length % 8:
        raise RtcpError(f"FIR FCI of {length} bytes is not a positive multiple of 8")
    return tuple(_FIR_ITEM.unpack_from(data, at) for at in range(fci, end, 8))


def _parse_remb(data: _Bytes, sender: int, i: int, end: int) -> RtcpPacket:
    if i + 4 > end:
        raise RtcpError("REMB without its bitrate")
    num_ssrc = data[i]
    exponent = data[i + 1] >> 2
    mantissa = ((data[i + 1] & 0x03) << 16) | (data[i + 2] << 8) | data[i + 3]
    if i + 4 + 4 * num_ssrc > end:
        raise RtcpError(f"REMB claims {num_ssrc} SSRCs but the packet has fewer")
    ssrcs = struct.unpack_from(f"!{num_ssrc}I", data, i + 4)
    return Remb(sender, mantissa << exponent, tuple(ssrcs))


_PARSERS: dict[int, _Parser] = {
    SR: _parse_sr,
    RR: _parse_rr,
    SDES: _parse_sdes,
    BYE: _parse_bye,
    RTPFB: _parse_rtpfb,
    PSFB: _parse_psfb,
}

# --- building ----------------------------------------------------------------


def _header(count: int, packet_type: int, body_length: int) -> bytes:
    return _HEADER.pack(0x80 | count, packet_type, body_length // 4)


def _blocks(reports: Sequence[ReportBlock]) -> bytes:
    if len(reports) > 31:
        raise ValueError("at most 31 report blocks per packet")
    return b"".join(
        _BLOCK.pack(
            b.ssrc,
            (b.fraction_lost << 24) | (max(-0x800000, min(0x7FFFFF, b.packets_lost)) & 0xFFFFFF),
            b.highest_seq,
            b.jitter,
            b.lsr,
            b.dlsr,
        )
        for b in reports
    )


def build_sr(
    ssrc: int,
    ntp: int,
    rtp_ts: int,
    packets: int,
    octets: int,
    reports: Sequence[ReportBlock] = (),
) -> bytes:
    """A sender report; `ntp` is the 64-bit NTP time (see `ntp_from_time`)."""
    body = _SENDER_INFO.pack(ssrc, ntp, rtp_ts, packets & 0xFFFFFFFF, octets & 0xFFFFFFFF)
    body += _blocks(reports)
    return _header(len(reports), SR, len(body)) + body


def build_rr(ssrc: int, reports: Sequence[ReportBlock] = ()) -> bytes:
    body = _SSRC.pack(ssrc) + _blocks(reports)
    return _header(len(reports), RR, len(body)) + body


def build_pli(sender: int, media: int) -> bytes:
    return _header(_FMT_PLI, PSFB, 8) + _TWO_SSRC.pack(sender, media)


def build_fir(sender: int, media: int, seq: int) -> bytes:
    """A FIR asking `media` for a key frame; bump `seq` per new request (RFC 5104)."""
    # The common header's media SSRC is unused by FIR and must be 0.
    body = _TWO_SSRC.pack(sender, 0) + _FIR_ITEM.pack(media, seq & 0xFF)
    return _header(_FMT_FIR, PSFB, len(body)) + body


def build_nack(sender: int, media: int, seqs: Iterable[int]) -> bytes:
    """A generic NACK for `seqs` (16-bit), packed into as few PID/BLP pairs as possible."""
    pairs = _nack_pairs(seqs)
    body = _TWO_SSRC.pack(sender, media) + b"".join(_NACK_ITEM.pack(p, b) for p, b in pairs)
    return _header(_FMT_NACK, RTPFB, len(body)) + body


def _nack_pairs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    ordered = sorted({s & 0xFFFF for s in seqs})
    if not ordered:
        raise ValueError("a NACK needs at least one sequence number")
    # Start after the widest circular gap, so a run across 65535 -> 0 stays one run.
    start, widest = 0, (ordered[0] - ordered[-1]) & 0xFFFF
    for k in range(1, len(ordered)):
        if ordered[k] - ordered[k - 1] > widest:
            start, widest = k, ordered[k] - ordered[k - 1]
    ordered = ordered[start:] + ordered[:start]
    pairs: list[tuple[int, int]] = []
    pid, blp = ordered[0], 0
    for seq in ordered[1:]:
        distance = (seq - pid) & 0xFFFF
        if distance <= 16:
            blp |= 1 << (distance - 1)
        else:
            pairs.append((pid, blp))
            pid, blp = seq, 0
    pairs.append((pid, blp))
    return pairs


def build_remb(sender: int, bitrate: int, ssrcs: Sequence[int]) -> bytes:
    """A REMB; the bitrate is rounded down to an 18-bit mantissa and 6-bit exponent."""
    if bitrate < 0:
        raise ValueError("bitrate must not be negative")
    if len(ssrcs) > 255:
        raise ValueError("at most 255 SSRCs in a REMB")
    exponent = max(0, bitrate.bit_length() - 18)
    if exponent > 63:
        raise ValueError("bitrate too large for REMB")
    mantissa = bitrate >> exponent
    body = (
        _TWO_SSRC.pack(sender, 0)
        + b"REMB"
        + bytes(
            (
                len(ssrcs),
                (exponent << 2) | (mantissa >> 16),
                (mantissa >> 8) & 0xFF,
                mantissa & 0xFF,
            )
        )
        + b"".join(_SSRC.pack(s) for s in ssrcs)
    )
    return _header(_FMT_AFB, PSFB, len(body)) + body


def build_sdes(ssrc: int, cname: str) -> bytes:
    """An SDES with one chunk carrying a CNAME (at most 255 UTF-8 bytes)."""
    text = cname.encode()
    if len(text) > 255:
        raise ValueError("CNAME longer than 255 bytes")
    chunk = _SSRC.pack(ssrc) + bytes((_SDES_CNAME, len(text))) + text + b"\x00"
    chunk += bytes(-len(chunk) % 4)  # extra null octets pad the chunk to 32 bits
    return _header(1, SDES, len(chunk)) + chunk


def build_bye(ssrcs: Sequence[int], reason: str = "") -> bytes:
    """A BYE for 1..31 sources (an empty BYE would have length 0, which we reject)."""
    if not 1 <= len(ssrcs) <= 31:
        raise ValueError("a BYE carries 1..31 SSRCs")
    body = b"".join(_SSRC.pack(s) for s in ssrcs)
    if reason:
        text = reason.encode()
        if len(text) > 255:
            raise ValueError("BYE reason longer than 255 bytes")
        body += bytes((len(text),)) + text
        body += bytes(-len(body) % 4)
    return _header(len(ssrcs), BYE, len(body)) + body


def compound(*packets: bytes) -> bytes:
    """Concatenate RTCP packets into one compound datagram."""
    return b"".join(packets)


# --- NTP time ----------------------------------------------------------------


def ntp_from_time(t: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point since 1900) for UNIX time `t`."""
    seconds = t + _NTP_EPOCH_OFFSET
    whole = int(seconds)
    fraction = int((seconds - whole) * 0x1_0000_0000)
    return ((whole & 0xFFFFFFFF) << 32) | (fraction & 0xFFFFFFFF)


def time_from_ntp(ntp: int) -> float:
    """UNIX seconds for a 64-bit NTP timestamp (era 0, i.e. before 2036)."""
    return (ntp >> 32) - _NTP_EPOCH_OFFSET + (ntp & 0xFFFFFFFF) / 0x1_0000_0000


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: what LSR carries in report blocks."""
    return (ntp >> 16) & 0xFFFFFFFF


def rtt_seconds(block: ReportBlock, arrival_ntp: int) -> float | None:
    """Round-trip time from a report block about our SR (RFC 3550 6.4.1).

    None when the peer has not received an SR yet (LSR 0); a negative result
    from clock jitter is reported as 0.
    """
    if block.lsr == 0:
        return None
    delta = (ntp_middle32(arrival_ntp) - block.lsr - block.dlsr) & 0xFFFFFFFF
    if delta >= 0x80000000:
        return 0.0
    return delta / 65536
