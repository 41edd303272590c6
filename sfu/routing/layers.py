"""Simulcast layers: what the forwarding path reads of VP8, rates per temporal layer, order.

* `vp8_descriptor` reads the VP8 payload descriptor (RFC 7741 4.2) of one
  packet once, on ingress: temporal layer (TID), layer sync (Y), picture id,
  TL0PICIDX, KEYIDX, whether the packet starts a frame or a key frame, and a
  key frame's width and height (RFC 6386 9.1).  Garbage never raises.
* `rewrite_vp8` adds deltas to the picture id, TL0PICIDX and KEYIDX of a
  packet in place (a consumer's continuous stream across layer switches and
  temporal drops).
* `RateMeter` measures a layer's bit rate per TID, cumulative (index t: all
  packets with TID <= t), over about the last second, at the cost of one add
  per packet.
* `order_layers` orders a track's layers by resolution: layers whose key
  frames told their size are sorted by area (width x height) among the
  places they hold in the offer order; a layer whose size is not known yet
  keeps its place in the offer (a=simulcast) order.  So with no sizes known
  the order is the offer's, and once the layers have sent key frames it is
  the true one whatever the rids are called or listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from sfu.routing.producer import Producer

NO_TID = -1
MAX_TID = 3  # VP8's TID is two bits
RATE_WINDOW_S = 0.5


class Vp8Descriptor(NamedTuple):
    frame_start: bool  # S=1 and partition index 0
    keyframe: bool  # the first packet of a key frame
    picture_id: int  # -1 when absent
    tl0picidx: int  # -1 when absent
    tid: int  # NO_TID when absent
    sync: bool  # the layer sync bit Y
    keyidx: int  # -1 when absent
    size: tuple[int, int] | None  # a key frame's (width, height), on its first packet


NOT_VP8 = Vp8Descriptor(False, False, -1, -1, NO_TID, False, -1, None)


def vp8_descriptor(data: bytes | bytearray, offset: int, end: int) -> Vp8Descriptor:
    """The descriptor of the VP8 payload data[offset:end]; NOT_VP8 when malformed."""
    if offset >= end:
        return NOT_VP8
    b = data[offset]
    i = offset + 1
    picture_id = tl0 = keyidx = -1
    tid = NO_TID
    sync = False
    if b & 0x80:
        if i >= end:
            return NOT_VP8
        x = data[i]
        i += 1
        if x & 0x80:
            if i >= end:
                return NOT_VP8
            if data[i] & 0x80:
                if i + 1 >= end:
                    return NOT_VP8
                picture_id = ((data[i] & 0x7F) << 8) | data[i + 1]
                i += 2
            else:
                picture_id = data[i]
                i += 1
        if x & 0x40:
            if i >= end:
                return NOT_VP8
            tl0 = data[i]
            i += 1
        if x & 0x30:
            if i >= end:
                return NOT_VP8
            tk = data[i]
            i += 1
            if x & 0x20:
                tid = tk >> 6
                sync = bool(tk & 0x20)
            if x & 0x10:
                keyidx = tk & 0x1F
    start = bool(b & 0x10) and not b & 0x07
    keyframe = start and i < end and not data[i] & 0x01
    size = None
    if keyframe and i + 10 <= end and data[i + 3 : i + 6] == b"\x9d\x01\x2a":
        width = (data[i + 6] | (data[i + 7] << 8)) & 0x3FFF
        height = (data[i + 8] | (data[i + 9] << 8)) & 0x3FFF
        size = (width, height)
    return Vp8Descriptor(start, keyframe, picture_id, tl0, tid, sync, keyidx, size)


def rewrite_vp8(packet: bytearray, offset: int, pic: int, tl0: int, key: int) -> None:
    """Add `pic` to the picture id, `tl0` to TL0PICIDX, `key` to KEYIDX, in place."""
    end = len(packet)
    if offset + 1 >= end or not packet[offset] & 0x80:
        return
    x = packet[offset + 1]
    i = offset + 2
    if x & 0x80 and i < end:
        if packet[i] & 0x80:
            if i + 1 >= end:
                return
            value = ((((packet[i] & 0x7F) << 8) | packet[i + 1]) + pic) & 0x7FFF
            packet[i] = 0x80 | (value >> 8)
            packet[i + 1] = value & 0xFF
            i += 2
        else:
            packet[i] = (packet[i] + pic) & 0x7F
            i += 1
    if x & 0x40 and i < end:
        packet[i] = (packet[i] + tl0) & 0xFF
        i += 1
    if x & 0x10 and i < end:
        packet[i] = (packet[i] & 0xE0) | ((packet[i] + key) & 0x1F)


class RateMeter:
    """Bits per second per TID over the last one to two windows (see module doc)."""

    __slots__ = ("_current", "_previous", "_start", "top")

    def __init__(self, now: float) -> None:
        self._current = [0, 0, 0, 0]
        self._previous: list[int] | None = None
        self._start = now
        self.top = NO_TID  # the highest TID seen

    def add(self, tid: int, size: int, now: float) -> None:
        if not 0.0 <= now - self._start < RATE_WINDOW_S:
            self._roll(now)
        if tid > self.top:
            self.top = tid
        self._current[tid if tid > 0 else 0] += size

    def _roll(self, now: float) -> None:
        fresh = 0.0 <= now - self._start < 2 * RATE_WINDOW_S
        self._previous = self._current if fresh else None
        self._current = [0, 0, 0, 0]
        self._start = now

    def rates(self, now: float) -> tuple[int, ...]:
        """Cumulative bits/s per highest TID; one entry when there are no TIDs."""
        if not 0.0 <= now - self._start < RATE_WINDOW_S:
            self._roll(now)
        span = now - self._start
        totals = list(self._current)
        if self._previous is not None:
            span += RATE_WINDOW_S
            totals = [a + b for a, b in zip(totals, self._previous, strict=True)]
        if span <= 0.0:
            span = RATE_WINDOW_S
        count = max(1, self.top + 1)
        out, running = [], 0
        for t in range(count):
            running += totals[t]
            out.append(int(running * 8 / span))
        return tuple(out)


def order_layers(layers: Sequence[Producer]) -> tuple[Producer, ...]:
    """`layers` (in offer order) lowest resolution first (see module doc)."""
    by_offer = sorted(layers, key=lambda p: p.offer_index)
    known = [p for p in by_offer if p.frame_size is not None]
    ranked = iter(sorted(known, key=_area))
    return tuple(next(ranked) if p.frame_size is not None else p for p in by_offer)


def _area(producer: Producer) -> tuple[int, int]:
    size = producer.frame_size or (0, 0)
    return (size[0] * size[1], producer.offer_index)
