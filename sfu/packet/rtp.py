"""RTP packets on the forwarding path: parse, read and rewrite in place, never decode.

Everything here runs once per packet, so it works on offsets into the packet
(``struct.unpack_from`` and plain indexing) instead of building objects per
field.  ``parse_rtp`` is the one validating step: the offsets in the
`RtpHeader` it returns are guaranteed to lie inside the packet, so the other
functions can trust them.  Anything malformed raises `RtpError`; the caller
drops the packet and counts it (DESIGN.md convention 6).

References: RFC 3550 (header, padding), RFC 5761 (RTP/RTCP demultiplexing),
RFC 8285 (one-byte and two-byte header extensions), RFC 6464 (audio level).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from sfu import native

__all__ = [
    "ABS_SEND_TIME_URI",
    "AUDIO_LEVEL_URI",
    "MAX_PACKET",
    "ONE_BYTE_PROFILE",
    "BytesLike",
    "RtpError",
    "RtpHeader",
    "SeqUnwrapper",
    "build_rtp",
    "extensions",
    "find_extension",
    "is_rtcp",
    "parse_abs_send_time",
    "parse_audio_level",
    "parse_rtp",
    "remap_extensions",
    "rewrite_header",
]

BytesLike = bytes | bytearray | memoryview

# Larger datagrams cannot have come through a 1500-byte MTU path unfragmented;
# accepting them would only let a peer make us buffer and copy more per packet.
MAX_PACKET = 1500

ONE_BYTE_PROFILE = 0xBEDE
# The two-byte form is 0x100 followed by 4 "appbits" (RFC 8285 section 4.3).
_TWO_BYTE_MASK = 0xFFF0
_TWO_BYTE_PROFILE = 0x1000
_ONE_BYTE_STOP_ID = 15

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"

_FIXED = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC
_EXT_HEADER = struct.Struct("!HH")  # profile, length in 32-bit words
_REWRITE = struct.Struct("!BHII")  # M/PT .. SSRC, written at offset 1


class RtpError(ValueError):
    """A malformed RTP packet (or header extension); drop it and count it."""


@dataclass(slots=True, frozen=True)
class RtpHeader:
    """Where the parts of one RTP packet are; offsets index the packet itself."""

    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrc_count: int
    ext_profile: int | None  # None when the X bit is clear
    ext_offset: int  # first byte of the extension data (after its 4-byte header)
    ext_length: int  # bytes of extension data; 0/0 when there is none
    payload_offset: int
    payload_length: int  # excludes padding
    padding_length: int


def _header_factory() -> Callable[..., RtpHeader]:
    """A constructor for `RtpHeader` about twice as fast as the frozen ``__init__``.

    A frozen dataclass's ``__init__`` stores each field through
    ``object.__setattr__`` (about 70 ns per field in CPython 3.11); calling
    the slot descriptors' ``__set__`` directly does the same store without
    the attribute lookups.  parse_rtp runs once per received packet, so this
    is worth ~0.35 us there; the class stays frozen for everyone else.
    """
    new = object.__new__
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11 = (
        getattr(RtpHeader, name).__set__ for name in RtpHeader.__dataclass_fields__
    )

    def make(
        marker: bool,
        payload_type: int,
        sequence: int,
        timestamp: int,
        ssrc: int,
        csrc_count: int,
        ext_profile: int | None,
        ext_offset: int,
        ext_length: int,
        payload_offset: int,
        payload_length: int,
        padding_length: int,
    ) -> RtpHeader:
        h = new(RtpHeader)
        s0(h, marker)
        s1(h, payload_type)
        s2(h, sequence)
        s3(h, timestamp)
        s4(h, ssrc)
        s5(h, csrc_count)
        s6(h, ext_profile)
        s7(h, ext_offset)
        s8(h, ext_length)
        s9(h, payload_offset)
        s10(h, payload_length)
        s11(h, padding_length)
        return h

    return make


_new_header = _header_factory()


def is_rtcp(data: BytesLike) -> bool:
    """RFC 5761 demultiplexing: RTCP packet types 192..223 sit where RTP has M+PT."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def parse_rtp_python(data: BytesLike, max_size: int = MAX_PACKET) -> RtpHeader:
    """Validate an RTP packet and locate its parts; raises `RtpError`.

    A padding-only packet (payload_length 0) is valid: senders use them to
    probe bandwidth, and whether to forward one is the caller's decision.
    `parse_rtp` is this, or its compiled twin (sfu/native/_rtp.c) when built.
    """
    size = len(data)
    if size < 12:
        raise RtpError(f"RTP packet of {size} bytes is shorter than the fixed header")
    if size > max_size:
        raise RtpError(f"RTP packet of {size} bytes exceeds {max_size}")
    b0, b1, sequence, timestamp, ssrc = _FIXED.unpack_from(data)
    if b0 >> 6 != 2:
        raise RtpError(f"RTP version {b0 >> 6}, expected 2")
    csrc_count = b0 & 0x0F
    offset = 12 + 4 * csrc_count
    if offset > size:
        raise RtpError(f"{csrc_count} CSRCs run past the end of a {size}-byte packet")
    ext_profile: int | None = None
    ext_offset = ext_length = 0
    if b0 & 0x10:
        if offset + 4 > size:
            raise RtpError("header extension header runs past the end of the packet")
        ext_profile, words = _EXT_HEADER.unpack_from(data, offset)
        ext_offset = offset + 4
        ext_length = 4 * words
        offset = ext_offset + ext_length
        if offset > size:
            raise RtpError(f"header extension of {ext_length} bytes runs past the end")
    padding = 0
    if b0 & 0x20:
        padding = data[size - 1]
        if padding == 0 or padding > size - offset:
            raise RtpError(f"padding count {padding} with {size - offset} bytes after the header")
    return _new_header(
        bool(b1 & 0x80),
        b1 & 0x7F,
        sequence,
        timestamp,
        ssrc,
        csrc_count,
        ext_profile,
        ext_offset,
        ext_length,
        offset,
        size - offset - padding,
        padding,
    )


class ParseRtp(Protocol):
    def __call__(self, data: BytesLike, max_size: int = MAX_PACKET) -> RtpHeader: ...


class FindElement(Protocol):
    def __call__(
        self, data: BytesLike, profile: int, start: int, length: int, ext_id: int, /
    ) -> bytes | None: ...


# The compiled twins (sfu/native/_rtp.c) when built: same results, same errors.
_native = native.load("_rtp")
parse_rtp: ParseRtp = parse_rtp_python
_find_element: FindElement | None = None
if _native is not None:
    _native.bind_rtp(RtpHeader, RtpError)
    parse_rtp = _native.parse_rtp
    _find_element = _native.find_extension


def _ext_bounds(data: BytesLike, h: RtpHeader) -> tuple[int, int]:
    end = h.ext_offset + h.ext_length
    if end > len(data):
        # Only reachable with a header parsed from another packet.
        raise RtpError("header does not match the packet")
    return h.ext_offset, end


def extensions(data: BytesLike, h: RtpHeader) -> dict[int, bytes]:
    """All header extension elements by id (RFC 8285); the first of duplicate ids wins.

    An unknown extension profile yields {}: it is not RFC 8285 and cannot be
    interpreted.  Elements running past the extension block raise `RtpError`.
    """
    found: dict[int, bytes] = {}
    if h.ext_profile == ONE_BYTE_PROFILE:
        for ext_id, start, length in _one_byte_elements(data, h):
            if ext_id not in found:
                found[ext_id] = bytes(data[start : start + length])
    elif h.ext_profile is not None and h.ext_profile & _TWO_BYTE_MASK == _TWO_BYTE_PROFILE:
        for ext_id, start, length in _two_byte_elements(data, h):
            if ext_id not in found:
                found[ext_id] = bytes(data[start : start + length])
    return found


def _one_byte_elements(data: BytesLike, h: RtpHeader) -> list[tuple[int, int, int]]:
    """(id, data offset, data length) of each one-byte-form element, in order."""
    i, end = _ext_bounds(data, h)
    out: list[tuple[int, int, int]] = []
    while i < end:
        b = data[i]
        if b == 0:  # a padding byte
            i += 1
            continue
        ext_id = b >> 4
        # Id 15 means "stop here" (RFC 8285 4.2); id 0 with a length is not
        # padding and not an element, and libwebrtc stops on it the same way.
        if ext_id == _ONE_BYTE_STOP_ID or ext_id == 0:
            break
        length = (b & 0x0F) + 1
        if i + 1 + length > end:
            raise RtpError(f"extension id {ext_id} of {length} bytes runs past the block")
        out.append((ext_id, i + 1, length))
        i += 1 + length
    return out


def _two_byte_elements(data: BytesLike, h: RtpHeader) -> list[tuple[int, int, int]]:
    i, end = _ext_bounds(data, h)
    return _two_byte_walk(data, i, end)


def _two_byte_walk(data: BytesLike, i: int, end: int) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    while i < end:
        ext_id = data[i]
        if ext_id == 0:
            i += 1
            continue
        if i + 2 > end:
            raise RtpError(f"two-byte extension id {ext_id} is missing its length")
        length = data[i + 1]
        if i + 2 + length > end:
            raise RtpError(f"extension id {ext_id} of {length} bytes runs past the block")
        out.append((ext_id, i + 2, length))
        i += 2 + length
    return out


def find_extension(data: BytesLike, h: RtpHeader, ext_id: int) -> bytes | None:
    """The value of extension `ext_id`, or None; the per-packet fast path (no dict).

    Stops at the first match, so a malformed element after it goes unnoticed;
    use `extensions` to validate the whole block.
    """
    profile = h.ext_profile
    if profile is None:
        return None
    if _find_element is not None:
        return _find_element(data, profile, h.ext_offset, h.ext_length, ext_id)
    return find_element_python(data, profile, h.ext_offset, h.ext_length, ext_id)


def find_element_python(
    data: BytesLike, profile: int, start: int, length: int, ext_id: int
) -> bytes | None:
    """`find_extension` in the block `data[start:start + length]` of `profile`."""
    i = start
    end = i + length
    if end > len(data):
        raise RtpError("header does not match the packet")
    if i < 0 or length < 0:
        raise ValueError("negative extension offset or length")
    if profile == ONE_BYTE_PROFILE:
        while i < end:
            b = data[i]
            if b == 0:
                i += 1
                continue
            found = b >> 4
            if found == _ONE_BYTE_STOP_ID or found == 0:
                return None
            stop = i + 2 + (b & 0x0F)
            if stop > end:
                raise RtpError(f"extension id {found} runs past the block")
            if found == ext_id:
                return bytes(data[i + 1 : stop])
            i = stop
        return None
    if profile & _TWO_BYTE_MASK == _TWO_BYTE_PROFILE:
        for found, at, size in _two_byte_walk(data, i, end):
            if found == ext_id:
                return bytes(data[at : at + size])
    return None


def parse_audio_level(value: BytesLike) -> tuple[bool, int]:
    """RFC 6464 value -> (voice activity flag, level in -dBov 0..127; 127 is silence)."""
    if len(value) != 1:
        raise RtpError(f"audio level element of {len(value)} bytes, expected 1")
    b = value[0]
    return bool(b & 0x80), b & 0x7F


def parse_abs_send_time(value: BytesLike) -> int:
    """abs-send-time value -> 24-bit 6.18 fixed-point seconds; exactly 3 bytes or RtpError."""
    if len(value) != 3:
        raise RtpError(f"abs-send-time element of {len(value)} bytes, expected 3")
    return int.from_bytes(value, "big")


def remap_extensions(packet: bytearray, h: RtpHeader, id_map: Mapping[int, int]) -> None:
    """Rewrite extension ids in place to the ids the subscriber negotiated.

    An element whose id is not in `id_map` (or maps to an id its form cannot
    carry) is blanked to padding bytes, never removed: shifting bytes would
    change the packet length and the offsets in `h`.  An unknown extension
    profile is left alone.  Raises `RtpError` on an element past the block,
    possibly after rewriting earlier elements: drop the packet then.
    """
    if h.ext_profile == ONE_BYTE_PROFILE:
        for ext_id, start, length in _one_byte_elements(packet, h):
            new = id_map.get(ext_id, 0)
            if 1 <= new <= 14:
                packet[start - 1] = (new << 4) | (length - 1)
            else:
                packet[start - 1 : start + length] = bytes(length + 1)
    elif h.ext_profile is not None and h.ext_profile & _TWO_BYTE_MASK == _TWO_BYTE_PROFILE:
        for ext_id, start, length in _two_byte_elements(packet, h):
            new = id_map.get(ext_id, 0)
            if 1 <= new <= 255:
                packet[start - 2] = new
            else:
                packet[start - 2 : start + length] = bytes(length + 2)


def rewrite_header(
    packet: bytearray, *, ssrc: int, sequence: int, timestamp: int, payload_type: int
) -> None:
    """Give a forwarded packet the consumer's SSRC/sequence/timestamp/PT; keeps M.

    Values are reduced modulo their field width, so callers can pass running
    counters without masking them first.
    """
    _REWRITE.pack_into(
        packet,
        1,
        (packet[1] & 0x80) | (payload_type & 0x7F),
        sequence & 0xFFFF,
        timestamp & 0xFFFFFFFF,
        ssrc & 0xFFFFFFFF,
    )


def rewritten(
    packet: bytes, *, ssrc: int, sequence: int, timestamp: int, payload_type: int
) -> bytes:
    """A copy of `packet` with `rewrite_header` applied."""
    copy = bytearray(packet)
    rewrite_header(
        copy, ssrc=ssrc, sequence=sequence, timestamp=timestamp, payload_type=payload_type
    )
    return bytes(copy)


def build_rtp(
    *,
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: BytesLike = b"",
    marker: bool = False,
    csrcs: tuple[int, ...] = (),
    extensions: Mapping[int, bytes] | None = None,
    two_byte: bool = False,
    padding: int = 0,
) -> bytes:
    """Serialize an RTP packet (tests, padding probes, relays).

    Extensions use the one-byte form unless `two_byte` is set or an element
    cannot be carried by it (id > 14 or a value of 0 or > 16 bytes).
    """
    if len(csrcs) > 15:
        raise ValueError("at most 15 CSRCs")
    if not 0 <= padding <= 255:
        raise ValueError("padding must be 0..255")
    if not 0 <= payload_type <= 127:
        raise ValueError("payload type must be 0..127")
    ext_block = _build_extension_block(extensions, two_byte) if extensions is not None else b""
    b0 = 0x80 | len(csrcs) | (0x10 if ext_block else 0) | (0x20 if padding else 0)
    b1 = (0x80 if marker else 0) | payload_type
    parts = [_FIXED.pack(b0, b1, sequence, timestamp, ssrc)]
    parts.extend(c.to_bytes(4, "big") for c in csrcs)
    parts.append(ext_block)
    parts.append(bytes(payload))
    if padding:
        parts.append(bytes(padding - 1) + bytes([padding]))
    return b"".join(parts)


def _build_extension_block(elements: Mapping[int, bytes], two_byte: bool) -> bytes:
    one_byte_ok = all(1 <= i <= 14 and 1 <= len(v) <= 16 for i, v in elements.items())
    body = bytearray()
    if one_byte_ok and not two_byte:
        profile = ONE_BYTE_PROFILE
        for ext_id, value in elements.items():
            body.append((ext_id << 4) | (len(value) - 1))
            body += value
    else:
        profile = _TWO_BYTE_PROFILE
        for ext_id, value in elements.items():
            if not 1 <= ext_id <= 255 or len(value) > 255:
                raise ValueError(f"extension id {ext_id} / length {len(value)} out of range")
            body += bytes((ext_id, len(value)))
            body += value
    body += bytes(-len(body) % 4)
    return _EXT_HEADER.pack(profile, len(body) // 4) + bytes(body)


class SeqUnwrapperPython:
    """Extends 16-bit sequence numbers to unbounded integers across wraps.

    The reference point only moves forward; a number within half the space
    (32767) behind it is a reordered or late packet and maps below it.  The
    first number maps to itself, so a packet reordered before the very first
    one can come out negative.  `SeqUnwrapper` is this, or its compiled twin.
    """

    __slots__ = ("_ext", "_last")

    def __init__(self) -> None:
        self._last = -1
        self._ext = 0

    def unwrap(self, seq: int) -> int:
        if self._last < 0:
            self._last = seq
            self._ext = seq
            return seq
        delta = (seq - self._last) & 0xFFFF
        if delta >= 0x8000:
            return self._ext + delta - 0x10000
        self._ext += delta
        self._last = seq
        return self._ext


# The compiled twin (sfu/native/_rtp.c) when built: the same numbers (64-bit).
SeqUnwrapper: type[SeqUnwrapperPython] = (
    SeqUnwrapperPython if _native is None else _native.SeqUnwrapper
)
