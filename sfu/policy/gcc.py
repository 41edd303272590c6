"""Send-side bandwidth estimation for one subscriber, in the manner of Google Congestion Control.

The SFU numbers every packet it sends to a subscriber (transport-cc); the
subscriber's browser reports when each one arrived (TWCC feedback, every
50-100 ms).  The transport turns each feedback into `PacketResult`s and
calls `BandwidthEstimator.on_feedback` (or `on_feedback_arrays` with the
same fields as parallel sequences); the estimate says how many bits per
second the layer allocation may spend on that subscriber.  It runs per
feedback, never per forwarded packet, but every forwarded packet is reported
once, so the per-packet work is kept to C-level builtins and tight loops
(see `_split` and gcc_delay.DelayDetector.add_all), and runs compiled when
sfu.native's `_gcc` is built (sfu/native/_gcc.c: `_split`, `_arrival_order`,
gcc_rates' `_windows` and the DelayDetector, each with the same outputs as
its Python twin); the tests hold both to the exact outputs of the plain
implementation (tests/gcc_golden.py).

Three estimates, combined as in libwebrtc's goog_cc (v1 loss controller):

- delay-based (gcc_delay.py, gcc_aimd.py): send-time groups, the trendline
  of their inter-group delay variation, an adaptive-threshold overuse
  detector and AIMD rate control driven by the acknowledged bitrate;
- probes (gcc_rates.py): a complete, consistent probe cluster measures the
  link directly and sets both estimates (how the estimate can grow past
  what the SFU forwards: see probe.py).  A cluster that got through whole
  (not saturated) only shows the link carries at least its rate: it
  raises the estimate, never lowers it; one that saturated measured the
  link and sets the estimate either way (how an application-limited
  subscriber's stale estimate comes down: the Prober's re-check).  Within
  10 s after a saturated cluster, one that got through counts only for
  what it shows of a link behind a shaper's token bucket
  (`_probe_reading`, gcc_rates.link_at_least): a narrow link's bucket
  passes a short cluster at line speed.  A cluster that saturated the
  link while the delay detector overuses (often the queue it built itself)
  does not set the estimate, but the delay-based decrease stops at what it
  measured: the network lab's 300 kbit/s viewer, whose probes arrived at
  280-336 kbit/s, was cut to 236-242 kbit/s (0.85 x) after each;
- loss-based (below): over each 20+ packets, more than 10 % lost cuts the
  rate by half the loss fraction (at most once per 300 ms + RTT), less
  than 2 % lets it grow 8 % a second, in between it holds.  Only packets
  sent after the last decrease (delay- or loss-based) count: the losses of
  a queue overflow that a decrease already answered must not cut again.
  And a loss decrease stops at 0.85 x the acknowledged bitrate: an SFU
  cannot always slow down at once (a publisher without simulcast, a layer
  switch waiting for its key frame), and while it cannot, the losses go
  on; the link still delivers what the receiver acknowledges, so the
  estimate must not fall to nothing below it.  Nor below 0.85 x the
  link's busy rate (`BusyRate`, asked only when a loss decrease is due):
  an app-limited viewer acknowledges far less than a narrowed link
  delivers while its queue overflows (the lab's 500 kbit/s cap: a viewer
  on 320x180 fell to 0.85 x ~165 kbit/s).
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
from collections.abc import Callable, Iterable, Sequence
from itertools import compress, islice, repeat
from operator import is_not, itemgetter, le, not_
from typing import Any, NamedTuple, cast

from sfu.native import load
from sfu.policy.gcc_aimd import BETA, AimdRateControl
from sfu.policy.gcc_delay import OVERUSING, new_detector
from sfu.policy.gcc_rates import AckedBitrate, BusyRate, ProbeRates, ProbeResult

__all__ = ["BandwidthEstimator", "PacketResult", "ProbeRecord"]


class PacketResult(NamedTuple):
    sequence: int  # unwrapped transport-wide sequence number
    send_time: float  # our monotonic send time
    size: int  # bytes on the wire (RTP incl. header; SRTP tag may be ignored)
    arrival: float | None  # receiver's clock (from the feedback), None = reported lost
    probe: int = -1  # probe cluster id, -1 = not a probe


PacketTuple = tuple[int, float, int, float | None, int]  # a PacketResult's fields


class ProbeRecord(NamedTuple):
    """One probe result as the estimator took it (`BandwidthEstimator.probe_results`)."""

    at: float  # our clock, when measured
    send_bps: float
    arrival_bps: float
    shown: float  # what it shows of a link behind a shaper (gcc_rates.link_at_least)
    saturated: bool
    estimate_bps: int  # the estimate right after it


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
APP_LIMITED_OF_LINK = 0.85  # acknowledged under this x the link's busy rate: app-limited
APP_LIMITED_BETA = 0.95  # a delay-based decrease of an app-limited sender (`_beta`)
PROBE_RECORDS = 4  # probe results kept for the layer trace
SHAPER_MEMORY_S = 10.0  # a saturated probe this recent: read the next ones through a shaper


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
        native = load("_gcc")  # the per-packet loops in C, else their Python twins
        self._native = native
        self._delay = new_detector(native)
        self._aimd = AimdRateControl(start, self._min, self._max)
        self._acked = AckedBitrate(native)
        self._busy = BusyRate()
        self._probes = ProbeRates()
        self._loss = LossController(start, self._min, self._max)
        self._loss.floor = self._loss_floor
        self._last_feedback: float | None = None
        self._without_arrivals = 0
        self._last_probe: tuple[float, float] | None = None  # (bps, when measured)
        self._last_saturated: float | None = None  # when a probe last saturated the link
        # the latest probe results (for the layer trace, sfu.routing.trace): (when, sent at,
        # arrived at, what it showed through a shaper, saturated, the estimate after), bits/s
        self.probe_results: deque[ProbeRecord] = deque(maxlen=PROBE_RECORDS)
        self._overuse_beta: float | None = None  # the current overuse's backoff (`_beta`)
        self._overuse_from: float | None = None  # the estimate when the current overuse began
        self._split: SplitFunction = _split if native is None else native.split_feedback
        self._arrival_order: OrderFunction = (
            _arrival_order if native is None else native.arrival_order
        )

    @property
    def estimate_bps(self) -> int:
        """The combined (delay + loss) estimate, bits per second."""
        return int(min(max(self._loss.bps, self._min), self._max))

    @property
    def state(self) -> str:
        """The delay detector's state: "normal", "overusing" or "underusing"."""
        return self._delay.state

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
        if results and math.isfinite(now):
            sequences, send_times, sizes, arrivals, probes = zip(*results, strict=True)
            self._on_columns(sequences, send_times, sizes, arrivals, probes, now)

    def on_feedback_arrays(
        self,
        sequences: Sequence[int],
        send_times: Sequence[float],
        sizes: Sequence[int],
        arrivals: Sequence[float | None],
        probes: Sequence[int],
        now: float,
    ) -> None:
        """`on_feedback` from parallel sequences, one entry per packet (the fields of
        `PacketResult`), for a caller that has them so: no object per packet."""
        count = len(sequences)
        if not count == len(send_times) == len(sizes) == len(arrivals) == len(probes):
            raise ValueError("on_feedback_arrays needs sequences of the same length")
        if count and math.isfinite(now):
            self._on_columns(sequences, send_times, sizes, arrivals, probes, now)

    def _on_columns(
        self,
        sequences: Sequence[int],
        send_times: Sequence[float],
        sizes: Sequence[int],
        arrivals: Sequence[float | None],
        probes: Sequence[int],
        now: float,
    ) -> None:
        """One feedback (one packet per index): sort out the sane packets (`_split`,
        or its C twin), then update the estimates; any insane packet takes the
        per-packet path."""
        split = self._split(sequences, send_times, sizes, arrivals, probes, self._loss.counts_from)
        if split is None:
            self._on_packets(zip(sequences, send_times, sizes, arrivals, probes, strict=True), now)
            return
        lost, counted, lost_probes, sequences, send_times, sizes, got, probe_ids = split[:8]
        for probe, sequence in lost_probes:
            self._probes.add_lost(probe, sequence, now)
        if got:
            self._without_arrivals = 0
            in_order, in_sequence = split[8:]
            self._on_arrivals(
                sequences, send_times, sizes, got, probe_ids, in_order, now, in_sequence
            )
            self._on_loss(lost, counted, now)
        else:
            self._on_nothing_received(lost, now)
            self._on_loss(lost, 0, now)

    def _on_packets(self, packets: Iterable[PacketTuple], now: float) -> None:
        """`_on_columns` one packet at a time, dropping insane ones (hostile feedback)."""
        since = self._loss.counts_from
        received: list[PacketTuple] = []
        lost = counted = 0
        for packet in packets:
            sequence, send, size, arrival, probe = packet
            if not (-MAX_TIME_S < send < MAX_TIME_S and 0 < size <= MAX_PACKET_BYTES):
                continue  # NaN, inf, absurd
            if arrival is None:
                if send >= since:
                    lost += 1
                if probe >= 0:
                    self._probes.add_lost(probe, sequence, now)
            elif -MAX_TIME_S < arrival < MAX_TIME_S:
                received.append(packet)
                if send >= since:
                    counted += 1
        if received:
            sequences, send_times, sizes, arrivals, probes = zip(*received, strict=True)
            self._without_arrivals = 0
            got = cast("tuple[float, ...]", arrivals)
            in_order, in_sequence = _ascending(got), _ascending(sequences)
            self._on_arrivals(sequences, send_times, sizes, got, probes, in_order, now, in_sequence)
        else:
            self._on_nothing_received(lost, now)
        self._on_loss(lost, counted, now)

    def _on_nothing_received(self, lost: int, now: float) -> None:
        if lost:
            self._without_arrivals += 1
            if self._without_arrivals >= MAX_FEEDBACKS_WITHOUT_ARRIVALS:
                self._without_arrivals = 0  # feedback keeps saying nothing arrived: halve
                self._aimd.set_estimate(self._aimd.bps / 2, now)
                self._loss.set_delay_limit(self._aimd.bps)

    def _on_loss(self, lost: int, counted: int, now: float) -> None:
        self._loss.on_packets(lost, lost + counted, now)

    def _loss_floor(self) -> float:
        """Where a loss decrease stops (see the module doc): 0.85 x what gets through,
        the acknowledged rate or the link's busy rate (0 before the first window)."""
        acked = self._acked.bps
        if acked is None:
            return 0.0
        busy = self._busy.bps(PACKET_OVERHEAD_BYTES) or 0.0
        return LOSS_FLOOR_OF_ACKED * max(acked, busy)

    def _on_arrivals(
        self,
        sequences: Sequence[int],
        send_times: Sequence[float],
        sizes: Sequence[int],
        arrivals: Sequence[float],
        probes: Sequence[int] | None,
        in_order: bool,
        now: float,
        in_sequence: bool,
    ) -> None:
        """The received packets (at least one), in any order (`in_order`: arrivals
        ascending, `in_sequence`: sequences ascending); `probes` None: none is a probe."""
        if in_order and in_sequence:
            highest = sequences[-1]
        else:  # into (arrival, sequence) order
            columns = (arrivals, sequences, send_times, sizes, probes)
            ordered = self._arrival_order(*columns, in_sequence)
            if ordered is None:  # (the C leaves sequence numbers beyond 64 bits to Python)
                ordered = _arrival_order(*columns, in_sequence)
            arrivals, sequences, send_times, sizes, probes = ordered
            highest = max(sequences)
        last = self._last_feedback
        if last is None or not 0 <= now - last <= STREAM_TIMEOUT_S:
            self._delay = new_detector(self._native)
        self._last_feedback = now
        self._acked.add_all(arrivals, sizes, PACKET_OVERHEAD_BYTES)
        self._busy.add(arrivals, send_times, sizes)
        if probes is not None:
            packets = zip(sequences, send_times, sizes, arrivals, probes, strict=True)
            for sequence, send, size, arrival, probe in packets:
                if probe >= 0:
                    size += PACKET_OVERHEAD_BYTES
                    self._probes.add(probe, sequence, send, arrival, size, now)
        self._delay.add_all(send_times, arrivals, now)
        result = self._probes.complete(highest)
        self._update_delay_based(result, now)
        if result is not None:
            self.probe_results.append(
                ProbeRecord(
                    now,
                    result.send_bps,
                    result.arrival_bps,
                    result.shown,
                    result.saturated,
                    self.estimate_bps,
                )
            )

    def _update_delay_based(self, probe: ProbeResult | None, now: float) -> None:
        acked = self._acked.bps
        aimd = self._aimd
        probe_bps = None
        if probe is not None:
            reading = self._probe_reading(probe, now)
            self._last_probe = (reading, now)
            if probe.saturated or reading >= aimd.bps:
                probe_bps = reading  # (one that got through whole never lowers it)
        if self._delay.state != OVERUSING:
            self._overuse_beta = None
            self._overuse_from = None
        if self._delay.state == OVERUSING:
            if self._overuse_from is None:
                self._overuse_from = aimd.bps  # the estimate when this overuse began
            # A saturated probe measured the link (0.95 x its arrival rate): this
            # overuse's cuts stop there (a cluster spans feedbacks: its queue may have
            # cut before it ended).
            measured = probe_bps if probe is not None and probe.saturated else None
            if acked is not None and aimd.time_to_reduce_further(now, acked):
                before = aimd.bps
                if self._overuse_beta is None:  # decided once per overuse (see `_beta`)
                    self._overuse_beta = self._beta(acked)
                aimd.update(OVERUSING, self._throughput(acked, now), now, self._overuse_beta)
                if aimd.bps < before:
                    self._loss.decreased(now)
            elif acked is None and measured is None and aimd.time_to_reduce_further(now, math.inf):
                aimd.set_estimate(aimd.bps / 2, now)  # overuse before any measured rate
            if measured is not None and aimd.bps < min(self._overuse_from, measured):
                aimd.set_estimate(min(self._overuse_from, measured), now)
                self._loss.set_delay_limit(aimd.bps)
                self._loss.set_bps(aimd.bps, now)
                return
        elif probe_bps is not None:
            if acked is not None:  # a probe may lower the estimate, but not far below what arrives
                probe_bps = max(probe_bps, min(aimd.bps, PROBE_DROP_FRACTION * acked))
            aimd.set_estimate(probe_bps, now)
            self._loss.set_delay_limit(aimd.bps)
            self._loss.set_bps(aimd.bps, now)
            return
        else:
            aimd.update(self._delay.state, acked, now)
        self._loss.set_delay_limit(aimd.bps)

    def _probe_reading(self, probe: ProbeResult, now: float) -> float:
        """What a probe result says of the link: its rate, or for one that got through
        whole within `SHAPER_MEMORY_S` after a saturated one, what it shows of a link
        behind a shaper's token bucket (gcc_rates.link_at_least): a narrow link's
        bucket passes a short cluster at line speed (the network lab's 300 kbit/s
        viewer read 390 kbit/s "got through").  Before any saturated cluster (a
        call's first search, a link that has only grown) the plain rate stands."""
        if probe.saturated:
            self._last_saturated = now
            return probe.bps
        last = self._last_saturated
        if last is not None and 0 <= now - last <= SHAPER_MEMORY_S:
            return min(probe.bps, probe.shown)
        return probe.bps

    def _beta(self, acked: float) -> float:
        """How far a delay-based decrease backs off from the throughput: 0.85 x, as GCC,
        when the sender fills the link (the queue it built must drain); 0.95 x when it
        gets through under 0.85 x the link's busy rate (`BusyRate`): an app-limited
        sender's overuse comes from a burst (a key frame, a probe), whose queue drains
        by itself once it is over, and a deeper cut only throws the estimate under the
        link (the network lab's room of 10: a viewer that takes 400-650 kbit/s of its
        1 Mbit/s link was cut to 0.85 x its estimate at each key frame).  Decided when
        an overuse starts and kept while it lasts: the burst itself lifts the
        acknowledged rate while its queue drains."""
        link = self._busy.bps(PACKET_OVERHEAD_BYTES) or 0.0
        return APP_LIMITED_BETA if acked < APP_LIMITED_OF_LINK * link else BETA

    def _throughput(self, acked: float, now: float) -> float:
        """What a decrease starts from: the link's rate as best measured lately.

        The filtered acknowledged rate lags a jump (a new layer, a probe), so
        the plain rate of the last 500 ms and a probe measured within the
        last second count too: the overuse of a probe that saturated the
        link must not throw the estimate back below what the probe measured.
        And so does the rate of the latest packets that queued (`BusyRate`):
        when a key frame or a probe overuses a link an app-limited sender
        does not fill, what it got through on average is not the link's rate.
        """
        busy = self._busy.bps(PACKET_OVERHEAD_BYTES) or 0.0
        throughput = max(acked, self._acked.recent_bps or 0.0, busy)
        if self._last_probe is not None and now - self._last_probe[1] <= PROBE_FRESH_S:
            throughput = max(throughput, self._last_probe[0])
        return throughput


_ARRIVAL = itemgetter(0)
_ARRIVAL_SEQUENCE = itemgetter(0, 1)
_Drop = Callable[[Sequence[Any]], list[Any]]
_NONE_LOST: tuple[list[int], _Drop] = ([], list)


# One feedback's sane packets sorted out (`_split`, or its C twin `_gcc.split_feedback`):
# (lost that count, received that count, (probe, sequence) of each lost probe packet,
# the received packets' sequences, send times, sizes, arrivals and probe ids (None: no
# probe in the feedback), whether their arrivals and their sequences are ascending)
Split = tuple[
    int,
    int,
    list[tuple[int, int]],
    Sequence[int],
    Sequence[float],
    Sequence[int],
    Sequence[float],
    Sequence[int] | None,
    bool,
    bool,
]
SplitFunction = Callable[
    [Sequence[int], Sequence[float], Sequence[int], Sequence[float | None], Sequence[int], float],
    Split | None,
]


def _split(
    sequences: Sequence[int],
    send_times: Sequence[float],
    sizes: Sequence[int],
    arrivals: Sequence[float | None],
    probes: Sequence[int],
    since: float,
) -> Split | None:
    """One feedback's packets (at least one) split into received and lost, None when
    one is insane (NaN, absurd time or size: the caller takes the per-packet path).
    Only packets sent at or after `since` (the last decrease) count for the loss side.

    This runs for every packet the SFU sends to a transport-cc subscriber, so the
    usual feedback (sane, in order) is checked and split with C-level builtins,
    without a Python step per packet (its C twin: sfu/native/_gcc.c split_feedback).
    """
    lost = arrivals.count(None)
    lost_at, drop = _lost(arrivals, lost) if lost else _NONE_LOST
    got = cast("Sequence[float]", drop(arrivals) if lost else arrivals)
    in_order = _ascending(got)  # (usually) then the ends are the extremes: no min/max
    sends_in_order = _ascending(send_times)
    if not (
        _sane_times(got, in_order)
        and _sane_times(send_times, sends_in_order)
        and min(sizes) > 0
        and max(sizes) <= MAX_PACKET_BYTES
    ):
        return None
    first_send = send_times[0] if sends_in_order else min(send_times)
    all_count = first_send >= since  # all sent since the last decrease (usual)
    probing = max(probes) >= 0
    lost_probes: list[tuple[int, int]] = []
    if lost:
        if probing or not all_count:
            lost = 0
            for index in lost_at:
                if send_times[index] >= since:
                    lost += 1
                if probes[index] >= 0:
                    lost_probes.append((probes[index], sequences[index]))
        sequences = drop(sequences)
        send_times = drop(send_times)
        sizes = drop(sizes)
        if probing:
            probes = drop(probes)
    counted = len(got) if all_count else sum(1 for t in send_times if t >= since)
    in_sequence = _ascending(sequences)
    probe_ids = probes if probing else None
    return (
        lost,
        counted,
        lost_probes,
        sequences,
        send_times,
        sizes,
        got,
        probe_ids,
        in_order,
        in_sequence,
    )


# The received packets' columns in (arrival, sequence) order: (arrivals, sequences,
# send times, sizes, probe ids or None); `_arrival_order` or its C twin
# `_gcc.arrival_order`, which returns None for sequence numbers beyond 64 bits.
Ordered = tuple[
    Sequence[float], Sequence[int], Sequence[float], Sequence[int], Sequence[int] | None
]
OrderFunction = Callable[
    [Sequence[float], Sequence[int], Sequence[float], Sequence[int], Sequence[int] | None, bool],
    Ordered | None,
]


def _arrival_order(
    arrivals: Sequence[float],
    sequences: Sequence[int],
    send_times: Sequence[float],
    sizes: Sequence[int],
    probes: Sequence[int] | None,
    in_sequence: bool,
) -> Ordered:
    """The received packets' columns sorted by arrival, then sequence (by arrival
    alone when the sequences are ascending), stable: as they came for equal keys."""
    key = _ARRIVAL if in_sequence else _ARRIVAL_SEQUENCE
    if probes is None:
        rows = zip(arrivals, sequences, send_times, sizes, strict=True)
        arrivals, sequences, send_times, sizes = zip(*sorted(rows, key=key), strict=True)
    else:
        rows5 = zip(arrivals, sequences, send_times, sizes, probes, strict=True)
        sorted5 = sorted(rows5, key=key)
        arrivals, sequences, send_times, sizes, probes = zip(*sorted5, strict=True)
    return arrivals, sequences, send_times, sizes, probes


def _lost(arrivals: Sequence[float | None], count: int) -> tuple[list[int], _Drop]:
    """Where the `count` lost packets (None) are, and how to take them out of a column:
    a few are found and deleted one by one (C-level search, copy and move), many
    (one in four or more: a congested link) through a mask."""
    if count * 4 < len(arrivals):
        positions: list[int] = []
        index = -1
        for _ in range(count):
            index = arrivals.index(None, index + 1)
            positions.append(index)

        def delete(values: Sequence[Any]) -> list[Any]:
            kept = list(values)
            for index in reversed(positions):
                del kept[index]
            return kept

        return positions, delete
    received = list(map(is_not, arrivals, repeat(None)))
    positions = list(compress(range(len(arrivals)), map(not_, received)))
    return positions, lambda values: list(compress(values, received))


def _sane_times(times: Sequence[float], ascending: bool) -> bool:
    """No NaN, no infinity, no absurd time, with C-level builtins only: ascending
    times have no NaN (it compares false) and their ends are their extremes; else a
    sum is NaN or infinite if any term is, and then min and max are meaningful."""
    if not times:
        return True
    if ascending:
        return times[0] > -MAX_TIME_S and times[-1] < MAX_TIME_S
    return math.isfinite(sum(times)) and min(times) > -MAX_TIME_S and max(times) < MAX_TIME_S


def _ascending(values: Sequence[float]) -> bool:
    return all(map(le, values, islice(values, 1, None)))


LOW_LOSS = 0.02
HIGH_LOSS = 0.10
MIN_PACKETS_FOR_LOSS = 20
INCREASE_INTERVAL_S = 1.0
DECREASE_INTERVAL_S = 0.3
START_PHASE_S = 2.0
LOSS_REPORT_VALID_S = 6.0


def _no_floor() -> float:
    return 0.0


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
        self.floor: Callable[[], float] = _no_floor  # a loss decrease stops there (asked then)

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
                floor = min(self.bps, self.floor())  # never raises the estimate
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
