"""Simulcast layers: rates per temporal layer, and the order of a track's layers.

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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sfu.routing.producer import Producer

NO_TID = -1
MAX_TID = 3  # VP8's TID is two bits
RATE_WINDOW_S = 0.5


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
