"""RFC 2198 redundant audio (RED) payloads: header work only, never a decode.

Chromium sends Opus inside RED (`red/48000/2`, `a=fmtp:63 111/111`) when RED
is the first audio codec of the answer: each packet carries the previous
packet's Opus frame again (a *redundant block*) before its own (the *primary
block*), so a receiver that lost one packet gets its audio from the next.
The SFU forwards RED as it is to subscribers that negotiated it and gives
the others the primary block as a plain Opus packet (`primary_packet`).

A RED payload is a list of block headers, then the blocks' data in the
same order::

    non-final header (4 bytes): F=1 | block PT (7) | ts offset (14) | length (10)
    final header (1 byte):      F=0 | block PT (7)   -- the primary block

The primary block has no length: it is the rest of the payload.  Everything
here is bounds-checked: a malformed payload raises `RedError` and the
caller drops the packet and counts it (DESIGN.md convention 6).
"""

from __future__ import annotations

from typing import NamedTuple

from sfu.packet.rtp import BytesLike, RtpHeader

__all__ = ["MAX_BLOCKS", "RedBlock", "RedError", "parse_red", "primary_packet", "rewrite_pts"]

# Chromium sends one or two redundant blocks; more than this is not audio
# redundancy but a peer making us walk headers.
MAX_BLOCKS = 8
_PADDING_BIT = 0x20


class RedError(ValueError):
    """A malformed RED payload; drop the packet and count it."""


class RedBlock(NamedTuple):
    """One block of a RED payload; offsets index the packet itself."""

    payload_type: int
    ts_offset: int  # how much older than the packet's timestamp (0 for the primary)
    offset: int
    length: int
    header_at: int  # where the block's header (its PT byte) is


def parse_red(data: BytesLike, h: RtpHeader) -> tuple[RedBlock, ...]:
    """The blocks of the RED packet `data` (parsed as `h`), the primary last."""
    start = h.payload_offset
    end = start + h.payload_length
    headers: list[tuple[int, int, int, int]] = []  # (pt, ts offset, length, header_at)
    at = start
    while True:
        if at >= end:
            raise RedError("RED payload ends inside its block headers")
        first = data[at]
        if not first & 0x80:
            headers.append((first & 0x7F, 0, -1, at))
            at += 1
            break
        if len(headers) >= MAX_BLOCKS - 1:
            raise RedError(f"RED payload has more than {MAX_BLOCKS} blocks")
        if at + 4 > end:
            raise RedError("RED block header is cut short")
        word = int.from_bytes(data[at : at + 4], "big")
        headers.append(((word >> 24) & 0x7F, (word >> 10) & 0x3FFF, word & 0x3FF, at))
        at += 4
    return _blocks(headers, at, end)


def _blocks(headers: list[tuple[int, int, int, int]], at: int, end: int) -> tuple[RedBlock, ...]:
    blocks = []
    for pt, ts_offset, length, header_at in headers:
        size = end - at if length < 0 else length
        if at + size > end:
            raise RedError("RED block data runs past the payload")
        blocks.append(RedBlock(pt, ts_offset, at, size, header_at))
        at += size
    return tuple(blocks)


def primary_packet(data: BytesLike, h: RtpHeader, primary: RedBlock) -> bytearray:
    """`data` with the primary block as its whole payload (padding dropped, PT unchanged).

    The header and its extensions stay; the caller rewrites the header
    fields (PT included) as for any forwarded packet.
    """
    packet = bytearray(data[: h.payload_offset])
    packet[0] &= ~_PADDING_BIT & 0xFF
    packet += data[primary.offset : primary.offset + primary.length]
    return packet


def rewrite_pts(packet: bytearray, blocks: tuple[RedBlock, ...], pt_map: dict[int, int]) -> None:
    """Rewrite the block PTs of a copy of the parsed packet (`pt_map`: old -> new).

    A subscriber that names Opus differently from the publisher must see
    its own payload type inside the RED blocks too.
    """
    for block in blocks:
        new = pt_map.get(block.payload_type)
        if new is not None:
            at = block.header_at
            packet[at] = (packet[at] & 0x80) | (new & 0x7F)
