"""The VP8 RTP payload descriptor (RFC 7741): parse, read a key frame's size, rewrite in place.

    0 1 2 3 4 5 6 7
   +-+-+-+-+-+-+-+-+
   |X|R|N|S|R| PID |   X: extension byte follows; N: non-reference frame;
   +-+-+-+-+-+-+-+-+   S: start of a partition; PID: partition index
   |I|L|T|K| RSV   |   (if X) I: PictureID; L: TL0PICIDX; T: TID; K: KEYIDX
   +-+-+-+-+-+-+-+-+
   |M| PictureID   |   (if I) M=1: 15-bit PictureID (one more byte)
   +-+-+-+-+-+-+-+-+
   |   TL0PICIDX   |   (if L)
   +-+-+-+-+-+-+-+-+
   |TID|Y| KEYIDX  |   (if T or K) Y: layer sync
   +-+-+-+-+-+-+-+-+

A frame starts with S=1 and PID=0; it is a key frame when the P bit (the
lowest bit of the VP8 frame tag that follows the descriptor) is 0, and the
key frame's first packet carries its size (RFC 6386 9.1: after the 3-byte
frame tag, the start code 9d 01 2a, then 14-bit width and height, little
endian, with 2 scaling bits each).

Nothing here copies the payload: `parse_vp8` reads a bytes/bytearray/
memoryview and returns the fields with the offsets (from the start of the
payload) of the bytes an SFU rewrites: picture id, TL0PICIDX and the
TID/Y/KEYIDX byte.  `rewrite_vp8` writes new values there, in place.
`parse_vp8` raises `Vp8Error` on a truncated descriptor; `read_vp8`,
`is_vp8_keyframe` and `vp8_frame_size` never raise on garbage.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from sfu import native

__all__ = [
    "Vp8Descriptor",
    "Vp8Error",
    "is_vp8_keyframe",
    "parse_vp8",
    "read_vp8",
    "read_vp8_at",
    "rewrite_vp8",
    "vp8_frame_size",
]

Payload = bytes | bytearray | memoryview
Buffer = bytearray | memoryview


class Vp8Error(ValueError):
    """The payload does not hold a complete VP8 payload descriptor."""


class Vp8Descriptor(NamedTuple):
    """One packet's descriptor; absent fields are -1 (their offsets too)."""

    start: bool  # S: the packet starts a partition
    partition: int  # PID
    non_reference: bool  # N
    picture_id: int  # 7- or 15-bit value without the M bit, -1 if absent
    picture_id_bits: int  # 0 (absent), 7 or 15
    tl0picidx: int
    tid: int  # temporal layer, -1 if T=0
    sync: bool  # Y: layer sync (only meaningful with T)
    keyidx: int  # -1 if K=0
    header_size: int  # bytes of descriptor before the VP8 payload
    keyframe: bool  # the first packet of a key frame
    picture_id_offset: int
    tl0picidx_offset: int
    tk_offset: int  # the TID/Y/KEYIDX byte

    @property
    def frame_start(self) -> bool:
        """The first packet of a frame (S=1, partition 0)."""
        return self.start and self.partition == 0


_new = tuple.__new__  # builds the NamedTuple without its Python-level __new__ (5x faster)


def parse_vp8_python(p: Payload) -> Vp8Descriptor:
    """The descriptor at the start of an RTP payload; `Vp8Error` if truncated.

    `parse_vp8` is this, or its compiled twin (sfu/native/_rtp.c) when built.
    """
    n = len(p)
    if n == 0:
        raise Vp8Error("empty VP8 payload")
    b = p[0]
    if n > 6 and b & 0x80 and p[1] == 0xF0 and p[2] & 0x80:
        # What Chromium sends with temporal layers: I (15 bits), L, T, K.
        t = p[5]
        start = bool(b & 0x10)
        part = b & 0x07
        return _new(
            Vp8Descriptor,
            (
                start,
                part,
                bool(b & 0x20),
                ((p[2] & 0x7F) << 8) | p[3],
                15,
                p[4],
                t >> 6,
                bool(t & 0x20),
                t & 0x1F,
                6,
                start and part == 0 and not p[6] & 0x01,
                2,
                4,
                5,
            ),
        )
    return _parse_any(p, n, b)


def _parse_any(p: Payload, n: int, b: int) -> Vp8Descriptor:
    pid = -1
    bits = 0
    tl0 = -1
    tid = -1
    sync = False
    keyidx = -1
    pid_at = tl0_at = tk_at = -1
    i = 1
    if b & 0x80:
        if n < 2:
            raise Vp8Error("VP8 descriptor truncated: no extension byte")
        x = p[1]
        i = 2
        if x & 0x80:
            if i >= n:
                raise Vp8Error("VP8 descriptor truncated: no picture id")
            pid_at = i
            m = p[i]
            if m & 0x80:
                if i + 1 >= n:
                    raise Vp8Error("VP8 descriptor truncated: 15-bit picture id")
                pid = ((m & 0x7F) << 8) | p[i + 1]
                bits = 15
                i += 2
            else:
                pid = m
                bits = 7
                i += 1
        if x & 0x40:
            if i >= n:
                raise Vp8Error("VP8 descriptor truncated: no TL0PICIDX")
            tl0_at = i
            tl0 = p[i]
            i += 1
        if x & 0x30:
            if i >= n:
                raise Vp8Error("VP8 descriptor truncated: no TID/KEYIDX byte")
            tk_at = i
            t = p[i]
            if x & 0x20:
                tid = t >> 6
                sync = bool(t & 0x20)
            if x & 0x10:
                keyidx = t & 0x1F
            i += 1
    start = bool(b & 0x10)
    part = b & 0x07
    key = start and part == 0 and i < n and not p[i] & 0x01
    return _new(
        Vp8Descriptor,
        (
            start,
            part,
            bool(b & 0x20),
            pid,
            bits,
            tl0,
            tid,
            sync,
            keyidx,
            i,
            key,
            pid_at,
            tl0_at,
            tk_at,
        ),
    )


class ParseVp8(Protocol):
    def __call__(self, p: Payload, /) -> Vp8Descriptor: ...


class ReadVp8At(Protocol):
    def __call__(self, data: Payload, offset: int, length: int, /) -> Vp8Descriptor | None: ...


def read_vp8_at_python(data: Payload, offset: int, length: int) -> Vp8Descriptor | None:
    """`read_vp8` of `data[offset:offset + length]` (an RTP packet's payload), no slice
    made; ValueError if that range is not inside `data`."""
    if offset < 0 or length < 0 or offset > len(data) or length > len(data) - offset:
        raise ValueError(f"payload [{offset}, +{length}) outside a {len(data)}-byte packet")
    return read_vp8(memoryview(data)[offset : offset + length])


# The compiled twins (sfu/native/_rtp.c) when built: same results, same errors.
_native = native.load("_rtp")
parse_vp8: ParseVp8 = parse_vp8_python
read_vp8_at: ReadVp8At = read_vp8_at_python
if _native is not None:
    _native.bind_vp8(Vp8Descriptor, Vp8Error)
    parse_vp8 = _native.parse_vp8
    read_vp8_at = _native.read_vp8_at


def read_vp8(p: Payload) -> Vp8Descriptor | None:
    """`parse_vp8`, or None for anything that is not a complete descriptor."""
    try:
        return parse_vp8(p)
    except Vp8Error:
        return None


def is_vp8_keyframe(p: Payload) -> bool:
    """True if `p` is the first packet of a VP8 key frame; never raises."""
    n = len(p)
    if n == 0:
        return False
    b = p[0]
    if not b & 0x10 or b & 0x07:  # only S=1, partition 0 starts a frame
        return False
    i = 1
    if b & 0x80:
        if n < 2:
            return False
        x = p[1]
        i = 2
        if x & 0x80:
            if i >= n:
                return False
            i += 2 if p[i] & 0x80 else 1
        if x & 0x40:
            i += 1
        if x & 0x30:
            i += 1
    return i < n and not p[i] & 0x01


def vp8_frame_size(p: Payload) -> tuple[int, int] | None:
    """(width, height) from a key frame's first packet, else None; never raises."""
    d = read_vp8(p)
    if d is None or not d.keyframe:
        return None
    i = d.header_size
    if len(p) < i + 10 or p[i + 3] != 0x9D or p[i + 4] != 0x01 or p[i + 5] != 0x2A:
        return None
    width = (p[i + 6] | (p[i + 7] << 8)) & 0x3FFF
    height = (p[i + 8] | (p[i + 9] << 8)) & 0x3FFF
    if width == 0 or height == 0:
        return None
    return width, height


def rewrite_vp8(
    buf: Buffer,
    offset: int,
    d: Vp8Descriptor,
    *,
    picture_id: int = -1,
    tl0picidx: int = -1,
    keyidx: int = -1,
) -> None:
    """Write new values into the descriptor `d` describes, at `buf[offset:]`.

    Only fields present in `d` are written, and only those given (>= 0).
    A picture id keeps the width it has in the packet: a 7-bit one is
    written modulo 128, a 15-bit one modulo 32768 (M bit kept).  KEYIDX is
    written modulo 32 with TID and Y kept.
    """
    if picture_id >= 0 and d.picture_id_offset >= 0:
        at = offset + d.picture_id_offset
        if d.picture_id_bits == 15:
            buf[at] = 0x80 | ((picture_id >> 8) & 0x7F)
            buf[at + 1] = picture_id & 0xFF
        else:
            buf[at] = picture_id & 0x7F
    if tl0picidx >= 0 and d.tl0picidx_offset >= 0:
        buf[offset + d.tl0picidx_offset] = tl0picidx & 0xFF
    if keyidx >= 0 and d.keyidx >= 0:
        at = offset + d.tk_offset
        buf[at] = (buf[at] & 0xE0) | (keyidx & 0x1F)
