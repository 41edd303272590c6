"""A switch's key frame paced to the subscriber's estimate (pure).

A layer switch starts from the new layer's key frame, and a key frame is
many times a layer's usual frame: the network lab's 640x360 key frames are
20-37 kB, and a 1 Mbit/s link whose bottleneck queue holds 200 ms holds
~25 kB.  Forwarded at line rate, the key frame lands in that queue all at
once, and when the old layer's packets are still queued there (a step down
comes when the link is already full) its tail is dropped: the viewer stays
frozen until resends or a new key frame repair it (docs/benchmarks.md,
"The switch's key frame paced to the link": 2.2 s frozen in one lab run of
the merged tree).  Senders pace (libwebrtc's pacer releases media at 2.5x
the target, and a key frame at the target when the queue is long; LiveKit's
and mediasoup's senders pace too); an SFU that only forwards can release
such a burst at about the estimate and hold the rest, which keeps what
enters the bottleneck below its rate, so the queue there drains instead of
overflowing.

`Pacer` is that rule for one subscriber: a token bucket of bytes refilled
at the pacing rate, holding at most `DEPTH_S` of it (at least
`MIN_DEPTH_BYTES`), and a FIFO of what waits.  `offer` says whether an item
goes now (nothing waits and the bucket is not in debt: the item's bytes are
taken, possibly into debt, so one packet larger than the bucket still
passes) or waits; `due` releases what the bucket pays for, in order, and
anything that waited `MAX_HOLD_S` (a burst the rate would hold for longer
is worth less late than lost: the bound keeps a very low or stale estimate
from freezing the picture by itself).  The bucket starts empty, so a burst
leaves at the rate from its second packet on.  `idle` says when the pacing
is no longer needed: nothing waits and the bucket has refilled (what came
since fitted the rate).

Pure: no clock of its own, everything is driven by `now` (seconds).
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

__all__ = ["DEPTH_S", "MAX_HOLD_S", "MIN_DEPTH_BYTES", "PACE_SHARE", "Pacer"]

PACE_SHARE = 1.0  # the pacing rate, x the subscriber's estimate
DEPTH_S = 0.01  # the bucket holds this long of the rate
MIN_DEPTH_BYTES = 2 * 1250  # two full packets, whatever the rate
MAX_HOLD_S = 0.5  # nothing waits longer than this
OVERHEAD_BYTES = 48  # SRTP tag, UDP and IP headers: what the link carries besides the RTP
_PAID = -1e-6  # a level this close to zero has paid (the timer computed it in floats)

T = TypeVar("T")


class Pacer(Generic[T]):
    """What one subscriber's paced burst may send now, and what waits (module doc)."""

    __slots__ = ("_at", "_depth", "_level", "_queue", "_queued_bytes", "_rate", "max_hold_s")

    def __init__(self, rate_bps: float, now: float, *, max_hold_s: float = MAX_HOLD_S) -> None:
        self._rate = 0.0  # bytes a second
        self._depth = float(MIN_DEPTH_BYTES)
        self._level = 0.0  # empty: a burst's second packet already waits
        self._at = now
        self._queue: deque[tuple[float, int, T]] = deque()  # (when offered, bytes, item)
        self._queued_bytes = 0
        self.max_hold_s = max_hold_s
        self.set_rate(rate_bps, now)

    @property
    def rate_bps(self) -> float:
        return self._rate * 8

    @property
    def waiting(self) -> int:
        """Items waiting."""
        return len(self._queue)

    @property
    def waiting_bytes(self) -> int:
        return self._queued_bytes

    def set_rate(self, rate_bps: float, now: float) -> None:
        """Pace at `rate_bps` x `PACE_SHARE` from `now` (what was earned so far is kept)."""
        self._refill(now)
        self._rate = max(0.0, rate_bps * PACE_SHARE / 8)
        self._depth = max(float(MIN_DEPTH_BYTES), self._rate * DEPTH_S)
        self._level = min(self._level, self._depth)

    def offer(self, item: T, size: int, now: float) -> bool:
        """True: send `item` now (its bytes taken); False: it waits (`due` releases it)."""
        self._refill(now)
        size += OVERHEAD_BYTES
        if not self._queue and self._level >= _PAID:
            self._level -= size
            return True
        self._queue.append((now, size, item))
        self._queued_bytes += size
        return False

    def due(self, now: float) -> list[T]:
        """What may go now, in the order offered."""
        self._refill(now)
        out: list[T] = []
        queue = self._queue
        while queue:
            offered, size, item = queue[0]
            if self._level < _PAID and now - offered < self.max_hold_s:
                break
            queue.popleft()
            self._queued_bytes -= size
            self._level -= size
            out.append(item)
        return out

    def next_at(self, now: float) -> float | None:
        """When `due` releases the next item (None: nothing waits)."""
        if not self._queue:
            return None
        self._refill(now)
        held_until = self._queue[0][0] + self.max_hold_s
        if self._level >= _PAID:
            return now
        if self._rate <= 0:
            return held_until
        return min(now + -self._level / self._rate, held_until)

    def idle(self, now: float) -> bool:
        """Nothing waits and the bucket is full again: pacing is not needed any more."""
        self._refill(now)
        return not self._queue and self._level >= self._depth

    def drop(self) -> list[T]:
        """Forget what waits (the output closed); returns it."""
        items = [item for _, _, item in self._queue]
        self._queue.clear()
        self._queued_bytes = 0
        return items

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._level = min(self._depth, self._level + (now - self._at) * self._rate)
        self._at = max(self._at, now)
