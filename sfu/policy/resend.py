"""Resends within the subscriber's estimate, or a key frame instead of a storm (pure).

A resent packet is not free bandwidth: it goes down the same link as the
media, behind the same bottleneck queue.  The network lab (docs/benchmarks.md,
branch resend) saw a 300 kbit/s viewer whose 7.5 kB link queue had just
overflowed NACK what it lost, and the SFU answer 174 packets in 1.8 s: ~810
kbit/s into the 300 kbit/s link for 2 s, the queue full throughout, every
resend pushing out a packet of the media that was still coming, which the
viewer NACKed in turn, and the picture frozen 3.6 s until the viewer's own key
frame request.  libwebrtc sends retransmissions within its pacer's budget
(and its retransmission rate limiter holds them to the target rate);
LiveKit and mediasoup count a packet's resends and skip one resent less
than a round trip ago.

`ResendBudget` (one per subscriber transport: every slot's resends share its
link) is a token bucket of bytes refilled at `SHARE` x the bandwidth
estimate, holding at most `BURST_S` of the estimate (at least
`MIN_BURST_BYTES`, two full packets, so that a lone loss on a slow link is
always answered at once).  For one NACK the consumer asks `plan(total,
now)` with the bytes it would resend:

- `RESEND`: the bucket holds them all: resend, `take` each.
- `PARTIAL`: more than the bucket holds now but no more than it gains
  within `RECOVER_S`: resend what it holds, in order (the receiver NACKs
  the rest again a round trip later, by which time the bucket has refilled).
- `KEYFRAME`: more than the bucket could pay within `RECOVER_S`.  The
  receiver can decode nothing after the first lost frame until every lost
  packet of every frame since has come, so resending that much at a rate
  the link has room for would come too late, and resending it faster is
  the storm above.  A video slot asks its source for a key frame instead
  (and sends nothing of the old frames: `Consumer.retransmit`), at most once
  per `KEYFRAME_INTERVAL_S`, and not within `KEYFRAME_INTERVAL_S` of its
  last start from a key frame (a switch: what it lost is most likely that
  key frame, which overflowed the queue, and another one would overflow it
  the same way, as the lab's first runs of this rule showed at the step
  down); otherwise (or without video) it is `PARTIAL`.

The values: a key frame takes a round trip to the publisher, its encoding
and its own transit (0.4-0.8 s in the lab), so resends that finish within
about a second are the quicker repair.  A first try (0.2 x the estimate,
100 ms, 0.5 s) sent the lab's 300 kbit/s viewer a key frame for 9 lost
packets, frozen 1.15 s where resends repair such a loss in 0.25-0.7 s
(docs/benchmarks.md, branch resend).

A packet is resent at most `MAX_RESENDS` times: when its copies keep being
lost, the link has no room for them.  Six, not fewer: at random loss the
chance that a packet and all its copies are lost is the loss rate to the
power of one more than the copies, and a packet lost for good costs its frame
and every frame after it until a key frame (`LOST_AFTER_S`, below, then the
key frame's round trip: the lab's 5 % loss viewer froze 0.9 s for one, in 1
of 25 runs at three resends, docs/benchmarks.md, branch resend13).  At 5 %
loss and three resends that is 6e-6 a packet, once in ~27 runs of 30 s at
~200 packets a second; at six, 8e-10.  A link with no room is held by the
budget and the key-frame rules whatever the count.  libwebrtc's receiver
NACKs a packet up to 10 times and its sender resends one as often as asked,
a round trip apart; mediasoup's consumer likewise counts no resends.

A packet still NACKed `LOST_AFTER_S` after its first NACK is lost for good
when it belongs to a frame the next ones refer to (VP8: TID 0; a lost frame
of a higher TID costs only that frame): the receiver waits, frozen, until it
has gone about 3 s without a decodable frame before it asks for a key frame
itself.  It NACKs a packet at the pace of its own round-trip estimate, which
may not see the downlink's queue (the lab's Chromium 156 NACKed every ~15 ms
behind a 200 ms queue, the same number for over 2 s: branch resend13), so
the rule is timed, not counted.  So the slot asks its source for one then
(`Consumer.retransmit`), and keeps forwarding meanwhile (a copy still on its
way may yet repair the frame), not within `LOST_KEYFRAME_AFTER_S` of its
last start from a key frame (the queue that lost that one must drain first)
nor of its last such request.  The network lab's room viewer capped at 1
Mbit/s (docs/benchmarks.md, branch tid13) lost q's switch key frame in the
queue a step up had filled, the SFU resent 33 packets until 0.8 s after the
switch, then nothing, and the picture stayed frozen until the viewer's own
key frame request 2.8 s after the switch, 1.5 s after its queue had drained.
Timed from the first NACK, not from the first resend: the budget may delay
a packet's first resend until the receiver has nearly given up on it.

What the resends take is not the media's: `rate_bps` is the rate they were
paid at lately (bytes `take`n, decayed over `RATE_TAU_S`), and the layer
allocation leaves it out of the budget (`sfu.routing.layering`), as
libwebrtc's sender takes its measured retransmission rate out of the
encoder's target (the protection overhead).  Without that the 300 kbit/s lab
viewer's step down to its lowest layer kept the full frame rate of it on
top of ~80 kbit/s of resends: 310-390 kbit/s into the 300 kbit/s link for
2-3 s after the cap, the queue full throughout, every key frame and resend
of the new layer dropped again (docs/benchmarks.md, branch cap300).

Pure: no clock of its own, everything is driven by `now` (seconds).
"""

from __future__ import annotations

import math
from enum import Enum

__all__ = ["ResendBudget", "Verdict"]

SHARE = 0.3  # resends may use this x the estimate, on top of the media
BURST_S = 0.2  # the bucket holds this long of the estimate
MIN_BURST_BYTES = 2 * 1250  # two full packets, whatever the estimate
RECOVER_S = 1.0  # losses the bucket cannot repay within this: a key frame instead
KEYFRAME_INTERVAL_S = 2.0  # at most one key frame for losses per slot this often
MAX_RESENDS = 6  # a packet is resent at most this many times
LOST_AFTER_S = 0.7  # NACKed this long after its first NACK: lost for good
LOST_KEYFRAME_AFTER_S = 0.5  # ... a key frame, not this soon after the last
# A receiver NACKs a packet for about a second: what a slot remembers of a number's NACKs
# and resends from longer ago was of an earlier packet with that number (16 bits wrap).
NACKED_FOR_S = 5.0
RATE_TAU_S = 1.0  # `rate_bps`: resends paid this long ago count 1/e as much


class Verdict(Enum):
    RESEND = "resend"  # the bucket holds them all
    PARTIAL = "partial"  # resend what the bucket holds, in order
    KEYFRAME = "keyframe"  # more than the bucket repays within RECOVER_S


class ResendBudget:
    """The bytes one subscriber transport may resend now (see module doc)."""

    __slots__ = ("_at", "_level", "_rate", "_spent", "_spent_at", "denied", "keyframes", "lost")

    def __init__(self) -> None:
        self._rate = 0.0  # bytes a second
        self._level = float(MIN_BURST_BYTES)
        self._at: float | None = None
        self._spent = 0.0  # bytes taken, decayed to `_spent_at` (`rate_bps`)
        self._spent_at = 0.0
        self.denied = 0  # packets not resent for want of budget
        self.keyframes = 0  # verdicts of KEYFRAME
        self.lost = 0  # key frames asked for packets lost for good (module doc)

    @property
    def level(self) -> float:
        """The bytes the bucket holds (after the last `refill`)."""
        return self._level

    @property
    def capacity(self) -> float:
        return max(self._rate / SHARE * BURST_S, MIN_BURST_BYTES)

    def refill(self, now: float, estimate_bps: int) -> None:
        """Add what accrued since the last call at the rate of the last estimate,
        then take `estimate_bps` as the rate from now on."""
        at = self._at
        if at is not None and now > at:
            self._level = min(self._level + self._rate * (now - at), self.capacity)
        if at is None or now > at:
            self._at = now
        self._rate = max(estimate_bps, 0) * SHARE / 8
        self._level = min(self._level, self.capacity)

    def plan(self, total: int) -> Verdict:
        """What to do with a NACK asking for `total` bytes (call `refill` first)."""
        if total <= self._level:
            return Verdict.RESEND
        if total <= self._level + self._rate * RECOVER_S:
            return Verdict.PARTIAL
        return Verdict.KEYFRAME

    def take(self, size: int) -> bool:
        """Pay for one resend of `size` bytes if the bucket holds them."""
        if size > self._level:
            self.denied += 1
            return False
        self._level -= size
        at = self._at if self._at is not None else self._spent_at
        self._spent = self._decayed(at) + size
        self._spent_at = max(self._spent_at, at)
        return True

    def rate_bps(self, now: float) -> int:
        """Bits a second the resends took lately (module doc): a steady rate reads as itself."""
        return int(self._decayed(now) * 8 / RATE_TAU_S)

    def _decayed(self, now: float) -> float:
        if self._spent <= 0.0 or now <= self._spent_at:
            return self._spent
        return self._spent * math.exp(-(now - self._spent_at) / RATE_TAU_S)
