"""How many packets a subscriber may have resent: a share of its downlink estimate (pure).

A viewer behind a full bottleneck NACKs what the bottleneck dropped, then
NACKs it again before the copies came out of its queue; answering every NACK
sent 1.7-6 Mbit/s down a 300 kbit/s link in the network lab (the layer trace:
165-460 packets resent in 0.8 s after a step down), which dropped the new
layer's key frame again and again.  libwebrtc bounds a sender's
retransmissions by a rate limiter (RtpSenderEgress); this is that bound for
what the SFU resends to one subscriber: a token bucket in packets (of
`PACKET_BYTES`, about an MTU) filled at `share` x the subscriber's estimate
(at least `min_bps`), holding `burst_s` of it.  No estimate (no
transport-cc): no bound.
"""

from __future__ import annotations

__all__ = ["RetransmitBudget"]

PACKET_BYTES = 1200


class RetransmitBudget:
    """`take` says whether one more packet may be resent now (module doc)."""

    __slots__ = ("_at", "_tokens", "burst_s", "min_bps", "share")

    def __init__(self, share: float = 0.5, burst_s: float = 0.5, min_bps: int = 100_000) -> None:
        self.share = share
        self.burst_s = burst_s
        self.min_bps = min_bps
        self._tokens: float | None = None  # None: full (nothing taken yet)
        self._at = 0.0

    def take(self, estimate_bps: int | None, now: float) -> bool:
        if estimate_bps is None:
            return True
        rate = max(self.min_bps, self.share * estimate_bps) / 8 / PACKET_BYTES  # packets/s
        full = max(1.0, rate * self.burst_s)
        if self._tokens is None:
            tokens = full
        else:
            tokens = min(full, self._tokens + rate * max(0.0, now - self._at))
        self._at = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True
