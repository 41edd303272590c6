"""Transport-wide congestion control on the wire: the sequence extension and the feedback.

Every RTP packet a transport sends carries a transport-wide sequence number
(a 2-byte header extension shared by all its streams); the receiver answers
with RTCP transport-cc feedback saying, per sequence number, whether the
packet arrived and when (draft-holmer-rmcat-transport-wide-cc-extensions-01).

* `packet_statuses` / `receive_times` read a feedback `sfu.packet.rtcp`
  validated (`parse_rtcp` walks the chunks once, bounded by the packet
  length, and keeps one status symbol per packet and the raw deltas);
* `build_feedback` writes feedback packets from arrival times, split when a
  delta does not fit 16 bits or a packet would pass `MAX_FEEDBACK_BYTES`;
* `ReceiveLog` keeps a publisher transport's arrival times (bounded) and
  turns them into feedback on the clock, as libwebrtc's
  remote_estimator_proxy does (a late packet re-opens the window so it is
  reported too);
* `transport_seq_offset` / `transport_seq_at` / `with_transport_seq` find
  or insert the extension in an RTP packet.

Times on the wire: receive deltas in 250 us ticks (1 byte unsigned, or 2 bytes
signed for large or negative ones), the reference time in 64 ms units
(signed 24 bits).  Arrival times here are integer microseconds.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from sfu import native
from sfu.packet.rtcp import TransportCc
from sfu.packet.rtp import (
    ONE_BYTE_PROFILE,
    BytesLike,
    RtpError,
    RtpHeader,
    SeqUnwrapper,
    build_rtp,
    extensions,
)

__all__ = [
    "DELTA_US",
    "MAX_FEEDBACK_BYTES",
    "REFERENCE_US",
    "TRANSPORT_CC_FEEDBACK",
    "TWCC_URI",
    "PacketStatus",
    "ReceiveLog",
    "build_feedback",
    "packet_statuses",
    "receive_times",
    "transport_seq_at",
    "transport_seq_offset",
    "unwrap_reference",
    "with_transport_seq",
]

TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
TRANSPORT_CC_FEEDBACK = "transport-cc"

DELTA_US = 250
REFERENCE_US = 64_000
TICKS_PER_REFERENCE = REFERENCE_US // DELTA_US  # 256
# Well under a 1200-byte MTU budget once SRTCP and IP/UDP headers are added.
MAX_FEEDBACK_BYTES = 1100
MAX_STATUS_COUNT = 0xFFFF

_RTPFB, _FMT_TCC = 205, 15
_HEAD = struct.Struct("!BBHIIHHI")  # RTCP header, sender, media, base, count, ref+fb count
_CHUNK = struct.Struct("!H")
_SMALL, _LARGE = 1, 2


class PacketStatus(NamedTuple):
    """One packet of a feedback: its 16-bit sequence, whether it came, its delta in ticks."""

    sequence: int
    received: bool
    delta: int  # 250 us ticks after the previous received packet (or the reference time)


# --- reading -----------------------------------------------------------------


def packet_statuses(fb: TransportCc) -> list[PacketStatus]:
    """Every packet `fb` reports, in sequence order (`fb` was validated by parse_rtcp)."""
    deltas = fb.deltas
    at = 0
    out: list[PacketStatus] = []
    base = fb.base_seq
    for k, symbol in enumerate(fb.symbols):
        seq = (base + k) & 0xFFFF
        if symbol == _SMALL:
            out.append(PacketStatus(seq, True, deltas[at]))
            at += 1
        elif symbol == _LARGE:
            delta = (deltas[at] << 8) | deltas[at + 1]
            out.append(PacketStatus(seq, True, delta - 0x10000 if delta & 0x8000 else delta))
            at += 2
        else:
            out.append(PacketStatus(seq, False, 0))
    return out


def receive_times(fb: TransportCc, reference: int | None = None) -> list[tuple[int, int | None]]:
    """(16-bit sequence, arrival in us on the receiver's clock, or None when lost).

    `reference` replaces the feedback's reference time (64 ms units), e.g.
    one unwrapped across feedbacks by `unwrap_reference`.  One pass over the
    symbols, no object per packet but its tuple: it runs for every packet
    every subscriber reports.
    """
    ticks = (fb.reference_time if reference is None else reference) * TICKS_PER_REFERENCE
    deltas = fb.deltas
    at = 0
    seq = fb.base_seq
    out: list[tuple[int, int | None]] = []
    append = out.append
    for symbol in fb.symbols:
        if symbol == _SMALL:
            ticks += deltas[at]
            at += 1
            append((seq & 0xFFFF, ticks * DELTA_US))
        elif symbol == _LARGE:
            delta = (deltas[at] << 8) | deltas[at + 1]
            ticks += delta - 0x10000 if delta & 0x8000 else delta
            at += 2
            append((seq & 0xFFFF, ticks * DELTA_US))
        else:
            append((seq & 0xFFFF, None))
        seq += 1
    return out


def unwrap_reference(previous: int | None, reference: int) -> int:
    """`reference` (24 bits on the wire) continued from `previous` by the shorter way round.

    The field wraps every 2^24 x 64 ms (12.4 days); a receiver whose clock
    is past half of that would otherwise jump by 12 days between feedbacks.
    """
    if previous is None:
        return reference
    step = (reference - previous) & 0xFFFFFF
    return previous + (step - 0x1000000 if step >= 0x800000 else step)


# --- building ----------------------------------------------------------------


def build_feedback(
    sender_ssrc: int,
    media_ssrc: int,
    base_seq: int,
    arrivals: Sequence[int | None],
    fb_count: int = 0,
) -> list[bytes]:
    """Feedback packets for `base_seq`, `base_seq + 1`, ... (arrival in us, None = lost).

    One packet when everything fits; a new one (base sequence and reference
    time of its own, `fb_count` + 1) whenever a delta does not fit 16 signed
    bits of 250 us or the packet would pass `MAX_FEEDBACK_BYTES`.
    """
    if not arrivals:
        raise ValueError("feedback about no packets")
    packets: list[bytes] = []
    start = 0
    while start < len(arrivals):
        end, data = _one_feedback(
            sender_ssrc, media_ssrc, base_seq + start, arrivals, start, fb_count + len(packets)
        )
        packets.append(data)
        start = end
    return packets


def _one_feedback(
    sender: int, media: int, base_seq: int, arrivals: Sequence[int | None], start: int, count: int
) -> tuple[int, bytes]:
    first = next((a for a in arrivals[start:] if a is not None), 0)
    reference = (first // DELTA_US) // TICKS_PER_REFERENCE
    previous = reference * TICKS_PER_REFERENCE
    symbols = bytearray()
    deltas = bytearray()
    end = start
    # The chunks' size: exact for the first `exact_at` symbols, at worst one
    # 2-byte chunk per 7 statuses after them; re-measured a few times near the limit.
    exact, exact_at, measures = 0, 0, 0
    while end < len(arrivals) and len(symbols) < MAX_STATUS_COUNT:
        arrival = arrivals[end]
        if arrival is None:
            symbol, encoded = 0, b""
        else:
            ticks = arrival // DELTA_US
            delta = ticks - previous
            if 0 <= delta <= 0xFF:
                symbol, encoded = _SMALL, bytes((delta,))
            elif -0x8000 <= delta <= 0x7FFF:
                symbol, encoded = _LARGE, (delta & 0xFFFF).to_bytes(2, "big")
            elif symbols:
                break  # a new feedback packet with its own reference time
            else:
                raise ValueError(f"arrival {arrival} us is out of range of its reference time")
        size = 20 + exact + 2 * ((len(symbols) - exact_at) // 7 + 1) + len(deltas) + len(encoded)
        if size > MAX_FEEDBACK_BYTES and symbols:
            if measures >= 8:
                break
            measures += 1
            exact, exact_at = len(_chunks(symbols + bytes((symbol,)))), len(symbols) + 1
            if 20 + exact + len(deltas) + len(encoded) > MAX_FEEDBACK_BYTES:
                break
        symbols.append(symbol)
        deltas += encoded
        if arrival is not None:
            previous = arrival // DELTA_US
        end += 1
    body = _chunks(symbols) + bytes(deltas)
    return end, _packet(sender, media, base_seq, len(symbols), reference, count, body)


def _packet(
    sender: int, media: int, base_seq: int, n: int, reference: int, count: int, body: bytes
) -> bytes:
    padding = -len(body) % 4
    if padding:
        body += bytes(padding - 1) + bytes((padding,))
    words = (20 + len(body)) // 4 - 1
    ref_and_count = ((reference & 0xFFFFFF) << 8) | (count & 0xFF)
    head = _HEAD.pack(
        0x80 | (0x20 if padding else 0) | _FMT_TCC,
        _RTPFB,
        words,
        sender & 0xFFFFFFFF,
        media & 0xFFFFFFFF,
        base_seq & 0xFFFF,
        n,
        ref_and_count,
    )
    return head + body


def _chunks(symbols: bytearray) -> bytes:
    """Packet status chunks for `symbols`: run lengths where they pay, else vectors."""
    out = bytearray()
    i, n = 0, len(symbols)
    while i < n:
        symbol = symbols[i]
        run = 1
        while i + run < n and symbols[i + run] == symbol and run < 0x1FFF:
            run += 1
        window = symbols[i : i + 14]
        if run >= 14 or (run == n - i and run > 7):
            out += _CHUNK.pack((symbol << 13) | run)
            i += run
        elif max(window) <= 1:
            bits = 0
            for k, s in enumerate(window):
                bits |= s << (13 - k)
            out += _CHUNK.pack(0x8000 | bits)
            i += len(window)
        elif run >= 7:
            out += _CHUNK.pack((symbol << 13) | run)
            i += run
        else:
            bits = 0
            for k, s in enumerate(symbols[i : i + 7]):
                bits |= s << (12 - 2 * k)
            out += _CHUNK.pack(0xC000 | bits)
            i += 7
    return bytes(out)


# --- the receive side: arrivals -> feedback ----------------------------------


class ReceiveLog:
    """Arrival times of one transport's packets, by transport-wide sequence (bounded).

    `record` runs per received packet; `feedback` on the clock builds the
    packets for everything recorded since the last call (from the oldest
    late arrival, so reordered packets get reported).  At most `window`
    sequence numbers behind the highest are kept; older ones are forgotten,
    and a packet further behind than that means the sender started over.
    """

    __slots__ = ("_arrivals", "_highest", "_start", "_unwrapper", "fb_count", "window")

    def __init__(self, window: int = 4096) -> None:
        self.window = window
        self.fb_count = 0
        self._unwrapper = SeqUnwrapper()
        self._arrivals: dict[int, int] = {}
        self._highest: int | None = None
        self._start: int | None = None

    def record(self, sequence: int, arrival_us: int) -> None:
        seq = self._unwrapper.unwrap(sequence)
        highest = self._highest
        if highest is None or seq > highest:
            self._highest = highest = seq
        elif seq < highest - self.window:
            # Far behind: no reordering is that deep, the sender started
            # over (a new transport); report from here on.
            self._restart(sequence)
            self.record(sequence, arrival_us)
            return
        self._arrivals.setdefault(seq, arrival_us)
        if self._start is None or seq < self._start:
            self._start = seq
        if len(self._arrivals) > 2 * self.window:
            self._forget(highest - self.window)

    def _restart(self, sequence: int) -> None:
        self._unwrapper = SeqUnwrapper()
        self._arrivals = {}
        self._highest = self._start = None

    def _forget(self, below: int) -> None:
        self._arrivals = {s: t for s, t in self._arrivals.items() if s >= below}

    @property
    def pending(self) -> bool:
        return self._start is not None

    def feedback(self, sender_ssrc: int, media_ssrc: int) -> list[bytes]:
        """Feedback for what came since the last call ([] when nothing did)."""
        start, highest = self._start, self._highest
        if start is None or highest is None:
            return []
        start = max(start, highest - self.window)
        get = self._arrivals.get
        arrivals = [get(seq) for seq in range(start, highest + 1)]
        packets = build_feedback(sender_ssrc, media_ssrc, start, arrivals, self.fb_count)
        self.fb_count = (self.fb_count + len(packets)) & 0xFF
        self._start = None
        # Keep a little history: a late packet re-opens the window from itself.
        if len(self._arrivals) > self.window // 2:
            self._forget(highest - self.window // 2)
        return packets


# --- the extension in RTP packets --------------------------------------------


def transport_seq_offset(data: BytesLike, h: RtpHeader, ext_id: int) -> int:
    """Offset of the 2-byte transport-wide sequence number (extension `ext_id`), or -1.

    -1 too when the element has another length or the block is malformed:
    the caller then inserts a fresh element (`with_transport_seq`).
    """
    profile = h.ext_profile
    if profile is None:
        return -1
    return _element_value(data, profile, h.ext_offset, h.ext_offset + h.ext_length, ext_id)


def transport_seq_at(data: BytesLike, ext_id: int) -> int:
    """`transport_seq_offset` read from the packet's own header, without parsing the rest.

    For a packet the SFU built or already parsed (a copy it sends, a
    retransmission, padding): the send path numbers it in place instead of
    parsing it again.  -1 when there is no such element (or no valid block).
    """
    first = data[0] if data else 0
    if first >> 6 != 2 or not first & 0x10:
        return -1
    i = 12 + 4 * (first & 0x0F)
    if i + 4 > len(data):
        return -1
    profile = (data[i] << 8) | data[i + 1]
    start = i + 4
    return _element_value(
        data, profile, start, start + 4 * ((data[i + 2] << 8) | data[i + 3]), ext_id
    )


def element_value_python(data: BytesLike, profile: int, i: int, end: int, ext_id: int) -> int:
    """Offset of extension `ext_id`'s 2-byte value in the block `data[i:end]`, or -1."""
    if end > len(data) or i < 0:
        return -1
    if profile == ONE_BYTE_PROFILE:
        while i < end:
            b = data[i]
            if b == 0:
                i += 1
                continue
            found = b >> 4
            if found == 15 or found == 0:
                return -1
            length = (b & 0x0F) + 1
            if found == ext_id:
                return i + 1 if length == 2 and i + 3 <= end else -1
            i += 1 + length
        return -1
    if profile & 0xFFF0 == 0x1000:
        while i + 1 < end:
            found = data[i]
            if found == 0:
                i += 1
                continue
            length = data[i + 1]
            if found == ext_id:
                return i + 2 if length == 2 and i + 4 <= end else -1
            i += 2 + length
    return -1


class ElementValue(Protocol):
    def __call__(self, data: BytesLike, profile: int, i: int, end: int, ext_id: int, /) -> int: ...


# The compiled twin (sfu/native/_rtp.c) when built: the same offsets.
_rtp = native.load("_rtp")
_element_value: ElementValue = element_value_python if _rtp is None else _rtp.element_value


def with_transport_seq(packet: BytesLike, h: RtpHeader, ext_id: int, sequence: int) -> bytes:
    """`packet` carrying `sequence` in extension `ext_id`: written in place, else inserted.

    Inserting rebuilds the header extension block (the other elements keep
    their ids and values); a packet with a non-RFC 8285 extension profile
    raises `RtpError`, as does a malformed block.
    """
    value = (sequence & 0xFFFF).to_bytes(2, "big")
    at = transport_seq_offset(packet, h, ext_id)
    if at >= 0:
        out = bytearray(packet)
        out[at : at + 2] = value
        return bytes(out)
    profile = h.ext_profile
    if profile is not None and profile != ONE_BYTE_PROFILE and profile & 0xFFF0 != 0x1000:
        raise RtpError(f"extension profile {h.ext_profile:#06x} is not RFC 8285")
    elements = extensions(packet, h)
    elements[ext_id] = value
    po = h.payload_offset
    csrcs = tuple(
        int.from_bytes(packet[12 + 4 * k : 16 + 4 * k], "big") for k in range(h.csrc_count)
    )
    return build_rtp(
        payload_type=h.payload_type,
        sequence=h.sequence,
        timestamp=h.timestamp,
        ssrc=h.ssrc,
        payload=packet[po : po + h.payload_length],
        marker=h.marker,
        csrcs=csrcs,
        extensions=elements,
        two_byte=h.ext_profile is not None and h.ext_profile != ONE_BYTE_PROFILE,
        padding=h.padding_length,
    )
