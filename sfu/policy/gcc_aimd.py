"""AIMD rate control of the delay-based estimate (libwebrtc's aimd_rate_control.cc).

The detector's state drives a small state machine: "normal" lets the rate
increase, "overusing" decreases it once (then holds until the queue has
drained), "underusing" holds.

- Far from the last known link capacity the rate grows multiplicatively,
  8 % per second; near it (once an overuse has told us where the link
  saturates) it grows additively, about one packet per response time
  (RTT + 100 ms).
- A decrease sets the rate to 0.85 x the acknowledged bitrate (what the
  receiver got), or 0.85 x the link capacity estimate if that is lower
  than the current rate (the caller may ask for another factor: gcc.py
  backs off less from a burst on a link the sender does not fill).
- An increase never takes the rate above 1.5 x the acknowledged bitrate
  + 10 kbit/s: a sender that only sends 150 kbit/s learns nothing about a
  3 Mbit/s link, so its estimate must not drift up unchecked (probes are
  how such a sender finds out more).

All rates are bits per second (floats inside, the caller rounds).
"""

from __future__ import annotations

import math

__all__ = ["AimdRateControl", "LinkCapacity"]

BETA = 0.85
INCREASE_PER_S = 1.08
MIN_MULTIPLICATIVE_BPS = 1000.0
MIN_ADDITIVE_BPS_PER_S = 4000.0
DEFAULT_RTT_S = 0.2
PACKET_BITS = 1200 * 8
FRAME_S = 1 / 30
THROUGHPUT_LIMIT_FACTOR = 1.5
THROUGHPUT_LIMIT_EXTRA_BPS = 10_000.0

HOLD = "hold"
INCREASE = "increase"
DECREASE = "decrease"


class LinkCapacity:
    """Average acknowledged rate at the moments of overuse, with its deviation."""

    def __init__(self) -> None:
        self.estimate_kbps: float | None = None
        self._deviation_kbps = 0.4

    def reset(self) -> None:
        self.estimate_kbps = None

    def _deviation(self) -> float:
        return math.sqrt(self._deviation_kbps * (self.estimate_kbps or 0.0))

    def upper_bps(self) -> float:
        if self.estimate_kbps is None:
            return math.inf
        return (self.estimate_kbps + 3 * self._deviation()) * 1000

    def lower_bps(self) -> float:
        if self.estimate_kbps is None:
            return 0.0
        return max(0.0, self.estimate_kbps - 3 * self._deviation()) * 1000

    def on_overuse(self, acked_bps: float) -> None:
        self._update(acked_bps / 1000, 0.05)

    def _update(self, sample_kbps: float, alpha: float) -> None:
        if self.estimate_kbps is None:
            self.estimate_kbps = sample_kbps
        else:
            self.estimate_kbps = (1 - alpha) * self.estimate_kbps + alpha * sample_kbps
        norm = max(self.estimate_kbps, 1.0)
        error = self.estimate_kbps - sample_kbps
        deviation = (1 - alpha) * self._deviation_kbps + alpha * error * error / norm
        self._deviation_kbps = min(max(deviation, 0.4), 2.5)


class AimdRateControl:
    """The delay-based estimate: additive increase, multiplicative decrease."""

    def __init__(self, start_bps: float, min_bps: float, max_bps: float) -> None:
        self.min_bps = min_bps
        self.max_bps = max_bps
        self.bps = self._clamp(start_bps)
        self.rtt_s = DEFAULT_RTT_S
        self.link = LinkCapacity()
        self._state = HOLD
        self._last_change: float | None = None
        self._last_acked_bps: float | None = None

    def _clamp(self, bps: float) -> float:
        return min(max(bps, self.min_bps), self.max_bps)

    def time_to_reduce_further(self, now: float, acked_bps: float) -> bool:
        """Whether another decrease is allowed while the overuse goes on."""
        interval = min(max(self.rtt_s, 0.01), 0.2)
        if self._last_change is None or now - self._last_change >= interval:
            return True
        return acked_bps < 0.5 * self.bps

    def set_estimate(self, bps: float, now: float) -> None:
        """Jump to a measured rate (a probe result)."""
        if bps > self.link.upper_bps():
            self.link.reset()  # measured faster than the old capacity: forget it
        self.bps = self._clamp(bps)
        self._last_change = now

    def update(
        self, detector_state: str, acked_bps: float | None, now: float, beta: float = BETA
    ) -> None:
        """One rate-control step for the detector's current state; a decrease goes to
        `beta` x the throughput (`acked_bps`)."""
        if acked_bps is not None:
            self._last_acked_bps = acked_bps
        throughput = acked_bps if acked_bps is not None else self._last_acked_bps
        if detector_state == "overusing":
            self._state = DECREASE
        elif detector_state == "underusing":
            self._state = HOLD
        elif self._state == HOLD:
            self._last_change = now
            self._state = INCREASE
        if self._state == INCREASE:
            self._increase(throughput, now)
        elif self._state == DECREASE:
            self._decrease(throughput, now, beta)

    def _increase(self, throughput: float | None, now: float) -> None:
        if throughput is not None and throughput > self.link.upper_bps():
            self.link.reset()  # the link got faster than we thought: ramp up quickly again
        limit = math.inf
        if throughput is not None:
            limit = THROUGHPUT_LIMIT_FACTOR * throughput + THROUGHPUT_LIMIT_EXTRA_BPS
        if self.bps < limit:
            elapsed = 0.0 if self._last_change is None else min(max(now - self._last_change, 0), 1)
            if self.link.estimate_kbps is not None:
                step = self._additive_bps_per_s() * elapsed
            else:
                step = max(self.bps * (INCREASE_PER_S**elapsed - 1), MIN_MULTIPLICATIVE_BPS)
            self.bps = self._clamp(min(self.bps + step, limit))
        self._last_change = now

    def _additive_bps_per_s(self) -> float:
        frame_bits = self.bps * FRAME_S
        packets = max(math.ceil(frame_bits / PACKET_BITS), 1)
        response_s = self.rtt_s + 0.1
        return max(MIN_ADDITIVE_BPS_PER_S, frame_bits / packets / response_s)

    def _decrease(self, throughput: float | None, now: float, beta: float) -> None:
        if throughput is None:
            return
        if not self.link.lower_bps() <= throughput <= self.link.upper_bps():
            self.link.reset()  # the capacity moved: start its average afresh
        decreased = beta * throughput
        if decreased > self.bps and self.link.estimate_kbps is not None:
            decreased = beta * self.link.estimate_kbps * 1000
        if decreased < self.bps:
            self.bps = self._clamp(decreased)
        self.link.on_overuse(throughput)
        self._state = HOLD
        self._last_change = now
