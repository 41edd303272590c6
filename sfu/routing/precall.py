"""Pre-call test statistics: what the echo session tells about the network.

Once a second the meter reports, for one pre-call participant:

* `rtt_ms`: the round trip measured from the client's receiver reports
  about the echoed streams (LSR/DLSR against our own SR send times);
* `loss`: the worse of the upstream loss the SFU measured on the client's
  packets and the downstream loss the client reported, as a fraction;
* `jitter_ms`: the worse of the upstream and reported downstream jitter;
* `bitrate_kbps`: what the SFU received from the client since last time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sfu.control import PrecallStats

if TYPE_CHECKING:
    from sfu.routing.participant import Participant


class PrecallMeter:
    """Interval statistics of one pre-call session."""

    def __init__(self, started: float, interval: float = 1.0) -> None:
        self.started = started
        self.interval = interval
        self.next_at = started + interval
        self._time = started
        self._bytes = 0
        self._counts: dict[str, tuple[int, int]] = {}  # mid -> (expected, received)

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def measure(self, participant: Participant, now: float) -> PrecallStats:
        """Statistics since the previous call; schedules the next one."""
        elapsed = max(now - self._time, 1e-3)
        total = sum(p.stats.bytes for p in participant.producers.values())
        bitrate = max(0, total - self._bytes) * 8 / 1000 / elapsed
        self._bytes, self._time = total, now
        self.next_at = now + self.interval
        consumers = list(participant.consumers.values())
        rtts = [c.rtt for c in consumers if c.rtt is not None]
        jitters = [c.reported_jitter for c in consumers if c.reported_jitter is not None]
        jitters += [p.stats.jitter_s for p in participant.producers.values() if p.stats.received]
        loss = max([self._upstream_loss(participant), *(c.reported_loss for c in consumers)])
        return PrecallStats(
            rtt_ms=round(min(rtts) * 1000, 1) if rtts else None,
            loss=round(loss, 4),
            jitter_ms=round(max(jitters) * 1000, 1) if jitters else None,
            bitrate_kbps=round(bitrate, 1),
        )

    def _upstream_loss(self, participant: Participant) -> float:
        worst = 0.0
        for mid, producer in participant.producers.items():
            expected, received = producer.stats.expected, producer.stats.received
            last_expected, last_received = self._counts.get(mid, (0, 0))
            self._counts[mid] = (expected, received)
            interval_expected = expected - last_expected
            if interval_expected > 0:
                lost = interval_expected - (received - last_received)
                worst = max(worst, min(1.0, max(0, lost) / interval_expected))
        return worst
