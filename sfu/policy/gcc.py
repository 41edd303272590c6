"""Send-side bandwidth estimation for one subscriber, in the manner of Google Congestion Control.

The SFU numbers every packet it sends to a subscriber (transport-cc); the
subscriber's browser reports when each one arrived (TWCC feedback, every
50-100 ms).  The transport turns each feedback into `PacketResult`s and
calls `BandwidthEstimator.on_feedback`; the estimate says how many bits per
second the layer allocation may spend on that subscriber.  It runs per
feedback, never per forwarded packet.

Three estimates, combined as in libwebrtc's goog_cc (v1 loss controller):

- delay-based (gcc_delay.py, gcc_aimd.py): send-time groups, the trendline
  of their inter-group delay variation, an adaptive-threshold overuse
  detector and AIMD rate control driven by the acknowledged bitrate;
- probes (gcc_rates.py): a complete, consistent probe cluster measures the
  link directly and sets both estimates (how the estimate can grow past
  what the SFU forwards: see probe.py);
- loss-based (below): over each 20+ packets, more than 10 % lost cuts the
  rate by half the loss fraction (at most once per 300 ms + RTT), less
  than 2 % lets it grow 8 % a second, in between it holds.  Only packets
  sent after the last decrease (delay- or loss-based) count: the losses of
  a queue overflow that a decrease already answered must not cut again.
  And a loss decrease stops at 0.85 x the acknowledged bitrate: an SFU
  cannot always slow down at once (a publisher without simulcast, a layer
  switch waiting for its key frame), and while it cannot, the losses go
  on; the link still delivers what the receiver acknowledges, so the
  estimate must not fall to nothing below it.
  The delay-based estimate caps it; `estimate_bps` is the result.

Rates are bits per second on the wire: each packet's RTP size plus 38 bytes
of IPv4, UDP and SRTP tag (PACKET_OVERHEAD_BYTES).

Pure and synchronous; times are seconds (float): `now` is our monotonic
clock, `send_time` too, `arrival` the receiver's clock (any origin).
Hostile or broken feedback (NaN, absurd times, sizes) is dropped packet by
packet; the estimate always stays a finite integer in [min_bps, max_bps].
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from operator import itemgetter
from typing import NamedTuple, cast

from sfu.policy.gcc_aimd import AimdRateControl
from sfu.policy.gcc_delay import OVERUSING, InterArrival, TrendlineDetector
from sfu.policy.gcc_rates import AckedBitrate, ProbeRates

__all__ = ["BandwidthEstimator", "PacketResult"]


class PacketResult(NamedTuple):
    sequence: int  # unwrapped transport-wide sequence number
    send_time: float  # our monotonic send time
    size: int  # bytes on the wire (RTP incl. header; SRTP tag may be ignored)
    arrival: float | None  # receiver's clock (from the feedback), None = reported lost
    probe: int = -1  # probe cluster id, -1 = not a probe


MAX_TIME_S = 1e9  # |times| beyond this (~30 years) are garbage
MAX_PACKET_BYTES = 65_535
# What each packet costs on the wire beyond its RTP bytes: IPv4 (20) + UDP (8) + the
# SRTP tag (10). Rates (acknowledged, probes) count it, as libwebrtc does, so the
# estimate compares with a link's capacity (TURN or IPv6 add a little more).
PACKET_OVERHEAD_BYTES = 38
STREAM_TIMEOUT_S = 2.0  # no feedback for this long: start the delay detector afresh
MAX_FEEDBACKS_WITHOUT_ARRIVALS = 5
PROBE_DROP_FRACTION = 0.85
PROBE_FRESH_S = 1.0
LOSS_FLOOR_OF_ACKED = 0.85


class BandwidthEstimator:
    """Delay + loss based estimate of one subscriber's downlink, from TWCC feedback."""

    def __init__(
        self, *, start_bps: int = 1_000_000, min_bps: int = 30_000, max_bps: int = 10_000_000
    ) -> None:
        if not 0 < min_bps <= max_bps:
            raise ValueError(f"need 0 < min_bps <= max_bps, got {min_bps}, {max_bps}")
        start = min(max(start_bps, min_bps), max_bps)
        self._min = float(min_bps)
        self._max = float(max_bps)
        self._inter = InterArrival()
        self._detector = TrendlineDetector()
        self._aimd = AimdRateControl(start, self._min, self._max)
        self._acked = AckedBitrate()
        self._probes = ProbeRates()
        self._loss = LossController(start, self._min, self._max)
        self._last_feedback: float | None = None
        self._without_arrivals = 0
        self._last_probe: tuple[float, float] | None = None  # (bps, when measured)

    @property
    def estimate_bps(self) -> int:
        """The combined (delay + loss) estimate, bits per second."""
        return int(min(max(self._loss.bps, self._min), self._max))

    @property
    def state(self) -> str:
        """The delay detector's state: "normal", "overusing" or "underusing"."""
        return self._detector.state

    @property
    def delay_bps(self) -> int:
        """The delay-based estimate alone (for stats)."""
        return int(self._aimd.bps)

    @property
    def acked_bps(self) -> int | None:
        """What the receiver got recently, bits per second (None before the first window)."""
        acked = self._acked.bps
        return None if acked is None else int(acked)

    def on_rtt(self, rtt: float, now: float) -> None:
        if math.isfinite(rtt) and 0 <= rtt <= 10:
            self._aimd.rtt_s = rtt
            self._loss.rtt_s = rtt

    def set_max(self, max_bps: int) -> None:
        """Lower (or raise) the ceiling, e.g. to the subscriber's REMB or the room cap."""
        self._max = float(max(max_bps, self._min))
        self._aimd.max_bps = self._max
        self._aimd.bps = min(self._aimd.bps, self._max)
        self._loss.set_max(self._max)

    def on_feedback(self, results: Sequence[PacketResult], now: float) -> None:
        """Update the estimate from one TWCC feedback's packets (any order)."""
        if not results or not math.isfinite(now):
            return
        received, lost, counted = self._sort_out(results, now)
        if received:
            self._without_arrivals = 0
            self._on_arrivals(received, now)
        elif lost:
            self._without_arrivals += 1
            if self._without_arrivals >= MAX_FEEDBACKS_WITHOUT_ARRIVALS:
                self._without_arrivals = 0  # feedback keeps saying nothing arrived: halve
                self._aimd.set_estimate(self._aimd.bps / 2, now)
                self._loss.set_delay_limit(self._aimd.bps)
        acked = self._acked.bps
        self._loss.floor_bps = 0.0 if acked is None else LOSS_FLOOR_OF_ACKED * acked
        self._loss.on_packets(lost, lost + counted, now)

    def _sort_out(
        self, results: Sequence[PacketResult], now: float
    ) -> tuple[list[PacketResult], int, int]:
        """(received in arrival order, lost, received) of the sane packets; the
        counts only of packets sent since the last decrease (see the module doc)."""
        sane = [
            r
            for r in results
            if -MAX_TIME_S < r[1] < MAX_TIME_S and 0 < r[2] <= MAX_PACKET_BYTES  # no NaN/inf
        ]
        received = [r for r in sane if r[3] is not None and -MAX_TIME_S < r[3] < MAX_TIME_S]
        missing = [r for r in sane if r[3] is None]
        for result in missing:
            if result.probe >= 0:
                self._probes.add_lost(result.probe, result.sequence, now)
        received.sort(key=_ARRIVAL_ORDER)
        since = self._loss.counts_from
        if since == -math.inf:
            return received, len(missing), len(received)
        lost = sum(1 for r in missing if r[1] >= since)
        return received, lost, sum(1 for r in received if r[1] >= since)

    def _on_arrivals(self, received: list[PacketResult], now: float) -> None:
        last = self._last_feedback
        if last is None or not 0 <= now - last <= STREAM_TIMEOUT_S:
            self._inter.reset()
            self._detector = TrendlineDetector()
        self._last_feedback = now
        # `received` has arrival times only (see _sort_out): the casts say so to mypy
        extra = PACKET_OVERHEAD_BYTES
        wire = cast("list[tuple[float, int]]", [(r[3], r[2] + extra) for r in received])
        self._acked.add_all(wire)
        for packet in received:
            if packet.probe >= 0:
                arrival = cast(float, packet.arrival)
                size = packet.size + extra
                self._probes.add(
                    packet.probe, packet.sequence, packet.send_time, arrival, size, now
                )
        triples = cast("list[tuple[float, float, int]]", [(r[1], r[3], r[2]) for r in received])
        groups = self._inter.add_all(triples, now)
        for deltas, arrival in groups:
            self._detector.update(deltas, arrival)
        highest = max(r[0] for r in received)
        self._update_delay_based(self._probes.complete(highest), now)

    def _update_delay_based(self, probe_bps: float | None, now: float) -> None:
        acked = self._acked.bps
        aimd = self._aimd
        if probe_bps is not None:
            self._last_probe = (probe_bps, now)
        if self._detector.state == OVERUSING:
            if acked is not None and aimd.time_to_reduce_further(now, acked):
                before = aimd.bps
                aimd.update(OVERUSING, self._throughput(acked, now), now)
                if aimd.bps < before:
                    self._loss.decreased(now)
            elif acked is None and aimd.time_to_reduce_further(now, math.inf):
                aimd.set_estimate(aimd.bps / 2, now)  # overuse before any measured rate
        elif probe_bps is not None:
            if acked is not None:  # a probe may lower the estimate, but not far below what arrives
                probe_bps = max(probe_bps, min(aimd.bps, PROBE_DROP_FRACTION * acked))
            aimd.set_estimate(probe_bps, now)
            self._loss.set_delay_limit(aimd.bps)
            self._loss.set_bps(aimd.bps, now)
            return
        else:
            aimd.update(self._detector.state, acked, now)
        self._loss.set_delay_limit(aimd.bps)

    def _throughput(self, acked: float, now: float) -> float:
        """What a decrease starts from: the link's rate as best measured lately.

        The filtered acknowledged rate lags a jump (a new layer, a probe), so
        the plain rate of the last 500 ms and a probe measured within the
        last second count too: the overuse of a probe that saturated the
        link must not throw the estimate back below what the probe measured.
        """
        throughput = max(acked, self._acked.recent_bps or 0.0)
        if self._last_probe is not None and now - self._last_probe[1] <= PROBE_FRESH_S:
            throughput = max(throughput, self._last_probe[0])
        return throughput


_ARRIVAL_ORDER = itemgetter(3, 0)  # (arrival, sequence)


LOW_LOSS = 0.02
HIGH_LOSS = 0.10
MIN_PACKETS_FOR_LOSS = 20
INCREASE_INTERVAL_S = 1.0
DECREASE_INTERVAL_S = 0.3
START_PHASE_S = 2.0
LOSS_REPORT_VALID_S = 6.0


class LossController:
    """The v1 loss-based estimate (libwebrtc's SendSideBandwidthEstimation), capped by delay."""

    def __init__(self, start_bps: float, min_bps: float, max_bps: float) -> None:
        self.bps = start_bps
        self.rtt_s = 0.2
        self._min = min_bps
        self._max = max_bps
        self._delay_limit = math.inf
        self._lost = 0
        self._expected = 0
        self._fraction: float | None = None
        self._first_report: float | None = None
        self._last_report: float | None = None
        self._last_decrease: float | None = None
        self._decreased_since_report = False
        self._history: deque[tuple[float, float]] = deque()  # (time, bps), min over the last 1 s
        self.counts_from = -math.inf  # only packets sent since then count (see the module doc)
        self.floor_bps = 0.0  # a loss decrease stops here: 0.85 x what gets through

    def decreased(self, now: float) -> None:
        """The rate was just cut: losses of packets sent before now are answered."""
        self.counts_from = now
        self._lost = self._expected = 0

    def set_max(self, max_bps: float) -> None:
        self._max = max_bps
        self._apply_limits()

    def set_delay_limit(self, bps: float) -> None:
        self._delay_limit = bps
        self._apply_limits()

    def set_bps(self, bps: float, now: float) -> None:
        """Take a measured rate (probe result) as the new estimate."""
        self.bps = bps
        self._apply_limits()
        self._history.clear()
        self._history.append((now, self.bps))

    def on_packets(self, lost: int, expected: int, now: float) -> None:
        """Count one feedback's packets; decide once 20 or more were expected."""
        self._lost += lost
        self._expected += expected
        if self._expected >= MIN_PACKETS_FOR_LOSS:
            self._fraction = self._lost / self._expected
            self._lost = self._expected = 0
            self._decreased_since_report = False
            self._last_report = now
            if self._first_report is None:
                self._first_report = now
        self._update(now)

    def _update(self, now: float) -> None:
        first = self._first_report
        if self._fraction == 0 and first is not None and now - first < START_PHASE_S:
            started = min(self._delay_limit, self._max)  # trust the delay side while starting up
            if math.isfinite(started) and started > self.bps:
                self.set_bps(started, now)
                return
        self._remember(now)
        last = self._last_report
        fraction = self._fraction
        if last is None or fraction is None or now - last >= LOSS_REPORT_VALID_S:
            self._apply_limits()
            return
        if fraction <= LOW_LOSS:
            self.bps = self._history[0][1] * 1.08 + 1000
        elif fraction > HIGH_LOSS and not self._decreased_since_report:
            since = math.inf if self._last_decrease is None else now - self._last_decrease
            if since >= DECREASE_INTERVAL_S + self.rtt_s:
                self._last_decrease = now
                self._decreased_since_report = True
                floor = min(self.bps, self.floor_bps)  # never raises the estimate
                self.bps = max(self.bps * (1 - 0.5 * fraction), floor)
                self.decreased(now)
        self._apply_limits()

    def _remember(self, now: float) -> None:
        history = self._history
        while history and (
            now - history[0][0] + 0.001 > INCREASE_INTERVAL_S or now < history[0][0]
        ):
            history.popleft()
        while history and history[-1][1] >= self.bps:
            history.pop()
        history.append((now, self.bps))

    def _apply_limits(self) -> None:
        bps = min(self.bps, self._delay_limit, self._max)
        self.bps = max(bps, self._min) if math.isfinite(bps) else self._min
