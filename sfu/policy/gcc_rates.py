"""Rates measured from transport-wide feedback: acknowledged bitrate and probe results.

- `AckedBitrate` (libwebrtc's acknowledged_bitrate_estimator.cc +
  bitrate_estimator.cc): the rate at which the receiver got our packets,
  from their sizes and the receiver's arrival times, in windows of 150 ms
  (500 ms for the first sample), smoothed by a small Bayesian filter that
  trusts a sample less the further it is from the current estimate.
  That filter is slow to follow a big jump (say, from a thumbnail to a
  stage layer right after a probe), so it also keeps the plain rate over
  the last 500 ms (`recent_bps`), which is what a decrease uses: when the
  link is overused, what got through lately is the link's capacity.
- `ProbeRates` (probe_bitrate_estimator.cc): for each probe cluster, the
  rate at which it was sent and the rate at which it arrived.  A cluster is
  measured once, when it is complete: feedback has reported a packet sent
  after it (a higher sequence number: the transport tags every packet sent
  while the cluster lasts, so its packets are contiguous).  It counts if at
  least 5 of its packets arrived and at most 20 % were lost, both spans
  are between 0 and 1 s, and it did not arrive more than twice as fast as
  it was sent (that would be a measuring error).  The result is the lower
  of the two rates, or 0.95 x the arrival rate when the link clearly
  saturated (arrival < 0.9 x send).  The send rate leaves out the last
  burst (packets within 1 ms of the last send time), not just the last
  packet: a ticker-driven sender sends its padding in bursts.  Whether it
  saturated is part of the result (`ProbeResult`): only a saturated
  cluster measured the link; one that got through whole says only that
  the link carries at least its rate, and less than that when its
  bottleneck is a shaper with a token bucket: a bucket passes a burst that
  fits it at line speed, nothing queues, and a cluster whose excess over
  the link fits the bucket arrives as fast as it was sent (the network
  lab's 300 kbit/s tbf, a 2000-byte bucket: a 100 ms cluster at 366
  kbit/s read 390 "got through", and the estimate stayed 30 % over the
  link for 4 s).  So each result also says what the cluster shows of a
  link behind such a shaper (`ProbeResult.shown`): the least link rate
  that delivers its bytes in its arrival span through a full bucket of the
  larger of 2000 bytes and 20 ms at that rate (the lab's tbf burst):
  `link_at_least`.  The estimator takes that instead of the plain rate for
  a cluster that got through once a saturated cluster showed a narrow
  link lately (gcc.py), and the Prober sizes its clusters at small
  estimates so that it is well above the estimate (probe.py).
- `BusyRate`: the rate at which the link delivered while it was busy, from
  the latest packets that queued behind the one before them: sent before
  that one got through (its one-way delay more than 1 ms over the least
  seen in 10 s), or sent back to back with it (within 1 ms) and spread by
  the link (arriving more than 1 ms further apart than sent); the arrival
  gap is then the link's time to carry the later one.  Runs of such
  packets, not any pair that arrived a little further apart than it was
  sent: a packet sent 20 ms after the one before, on an idle link, arrives
  some ms "late" by the receiver's stamps alone (Chromium stamps in
  batches, 250 us ticks, stalls), and its gap counted idle time: real
  Chromium feedback on loopback read 30-312 kbit/s, and the network lab's
  room viewer 176-315 kbit/s on its 1 Mbit/s link.  An app-limited sender's acknowledged rate counts
  its idle time too, so after a key frame or a probe overuses a link the
  sender does not fill, a decrease from it lands far under the link (0.85 x
  540 kbit/s on a 1 Mbit/s link); the busy rate is the link's.  Only the
  latest busy packets count (walking back from the newest, over 500 ms at
  most): right after a cap drops they are the new link's, not the old one's.

Sizes are bytes, times seconds (receiver's clock for arrivals), rates bits/s.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import sub
from types import ModuleType
from typing import NamedTuple

__all__ = ["AckedBitrate", "BusyRate", "ProbeRates", "ProbeResult", "link_at_least"]

INITIAL_WINDOW_S = 0.5
WINDOW_S = 0.15
UNCERTAINTY_SCALE = 10.0
VARIANCE_GROWTH = 5.0  # kbit/s squared added per sample: the rate may change
RECENT_S = 0.5
RECENT_MIN_SPAN_S = 0.1
# AckedBitrate's per-packet loop: `_windows` or its C twin (`sfu.native._gcc.acked_windows`)
_Windows = Callable[
    [Sequence[float], Sequence[int], int, float, float, int, float | None, float],
    tuple[float, float, int, float | None, float, int],
]


class AckedBitrate:
    """Acknowledged (received) bitrate, or None before the first full window."""

    def __init__(self, native: ModuleType | None = None) -> None:
        """`native`: sfu.native.load("_gcc"), whose C loop then counts the packets."""
        self._kbps: float | None = None
        self._variance = 50.0
        self._sum_bytes = 0
        self._window_s = 0.0
        self._last_arrival: float | None = None
        self._chunks: deque[tuple[float, float, int]] = deque()  # (first, last arrival, bytes)
        self._windows: _Windows = _windows if native is None else native.acked_windows

    @property
    def bps(self) -> float | None:
        return None if self._kbps is None else self._kbps * 1000

    @property
    def recent_bps(self) -> float | None:
        """Bits/s received over about the last 500 ms (whole feedbacks), None at first."""
        chunks = self._chunks
        if self._kbps is None or not chunks:
            return None
        span = max(chunks[-1][1] - chunks[0][0], RECENT_MIN_SPAN_S)
        return 8 * sum(chunk[2] for chunk in chunks) / span

    def add_all(self, arrivals: Sequence[float], sizes: Sequence[int], extra: int) -> None:
        """Count one feedback's received packets (arrival time, size), in arrival order;
        each packet counts its size + `extra` bytes."""
        if not arrivals:
            return
        before = self._last_arrival
        start = arrivals[0] if before is None else before  # the very first: no gap
        last, self._window_s, self._sum_bytes, self._kbps, self._variance, restart_at = (
            self._windows(
                arrivals,
                sizes,
                extra,
                start,
                self._window_s,
                self._sum_bytes,
                self._kbps,
                self._variance,
            )
        )
        self._last_arrival = last
        if restart_at >= 0:  # time went backwards: the recent chunks are of another clock
            self._chunks.clear()
        start_at = max(restart_at, 0)  # where this feedback's chunk starts
        chunk_bytes = sum(sizes[start_at:]) + extra * (len(sizes) - start_at)
        self._remember_chunk(arrivals[start_at], last, chunk_bytes)

    def _remember_chunk(self, first: float, last: float, size: int) -> None:
        chunks = self._chunks
        chunks.append((first, last, size))
        while chunks and chunks[0][0] < last - RECENT_S:
            chunks.popleft()


def _windows(
    arrivals: Sequence[float],
    sizes: Sequence[int],
    extra: int,
    last: float,
    window_s: float,
    total: int,
    kbps: float | None,
    variance: float,
) -> tuple[float, float, int, float | None, float, int]:
    """The per-packet loop of `AckedBitrate.add_all` (its C twin: `_gcc.acked_windows`):
    from the state (last arrival, time and bytes in the current window, the filter's
    kbps and variance), each complete window's rate through the filter.  Returns the
    new state and where the arrival times last went backwards (`_last_restart`; -1
    when they did not)."""
    window = INITIAL_WINDOW_S if kbps is None else WINDOW_S
    restarted = False
    for arrival, size in zip(arrivals, sizes):  # noqa: B905 (same length)
        gap = arrival - last
        if gap < 0:  # time went backwards: start over
            window_s = 0.0
            total = 0
            restarted = True
        else:
            window_s += gap
            if gap > window:  # nothing received for a whole window
                total = 0
                window_s %= window
        last = arrival
        if window_s >= window:
            kbps, variance = _filtered(kbps, variance, 8 * total / window / 1000)
            window_s -= window
            total = 0
            window = WINDOW_S
        total += size + extra
    return last, window_s, total, kbps, variance, _last_restart(arrivals) if restarted else -1


def _filtered(kbps: float | None, variance: float, sample: float) -> tuple[float, float]:
    """The Bayesian filter's (kbps, variance) after one window's rate (kbit/s)."""
    if kbps is None:
        return sample, variance
    uncertainty = UNCERTAINTY_SCALE * abs(kbps - sample) / max(kbps, 1e-3)
    sample_var = uncertainty * uncertainty
    predicted_var = variance + VARIANCE_GROWTH
    total = sample_var + predicted_var
    return (sample_var * kbps + predicted_var * sample) / total, sample_var * predicted_var / total


def _last_restart(arrivals: Sequence[float]) -> int:
    """Where the arrival times last went backwards (0: only the first, from before)."""
    for index in range(len(arrivals) - 1, 0, -1):
        if arrivals[index] - arrivals[index - 1] < 0:
            return index
    return 0  # (the first went back from the previous feedback's last)


BUSY_WINDOW_S = 0.5
BUSY_BASE_WINDOW_S = 10.0  # the path's least one-way delay: the least seen over this long
BUSY_BACK_TO_BACK_S = 0.001  # sent within this of each other: back to back
BUSY_MARGIN_S = 0.001
BUSY_MIN_PAIRS = 4
BUSY_MIN_SPAN_S = 0.06


class BusyRate:
    """The link's delivery rate while it was busy (see the module doc)."""

    def __init__(self) -> None:
        # one entry per feedback: its received packets' (arrivals, send times, sizes),
        # in arrival order; only referenced here, walked only when a decrease asks
        self._feedbacks: deque[tuple[Sequence[float], Sequence[float], Sequence[int]]] = deque()
        # (newest arrival, least one-way delay) of the feedbacks over BUSY_BASE_WINDOW_S,
        # the delays ascending: the first is the least
        self._delays: deque[tuple[float, float]] = deque()

    def add(
        self, arrivals: Sequence[float], send_times: Sequence[float], sizes: Sequence[int]
    ) -> None:
        """One feedback's received packets (at least one), in arrival order."""
        feedbacks = self._feedbacks
        delays = self._delays
        if feedbacks and arrivals[0] < feedbacks[-1][0][-1]:
            feedbacks.clear()  # the receiver's clock went back (or reordering across feedbacks)
            delays.clear()
        feedbacks.append((arrivals, send_times, sizes))
        newest = arrivals[-1]
        while feedbacks[0][0][-1] < newest - BUSY_WINDOW_S:
            feedbacks.popleft()
        least = min(map(sub, arrivals, send_times))
        while delays and delays[-1][1] >= least:
            delays.pop()
        delays.append((newest, least))
        while delays[0][0] < newest - BUSY_BASE_WINDOW_S:
            delays.popleft()

    def bps(self, extra: int) -> float | None:
        """Bits/s over the latest busy packets (each counts its size + `extra` bytes),
        None when fewer than 4 of them spanning 60 ms arrived in the last 500 ms."""
        if not self._feedbacks:
            return None
        newest = self._feedbacks[-1][0][-1]
        oldest = newest - BUSY_WINDOW_S
        queued_after = self._delays[0][1] + BUSY_MARGIN_S  # one-way delay beyond the least
        bits = span = 0.0
        pairs = 0
        later: tuple[float, float, int] | None = None
        for arrivals, send_times, sizes in reversed(self._feedbacks):
            for index in range(len(arrivals) - 1, -1, -1):
                arrival, send = arrivals[index], send_times[index]
                if arrival < oldest:
                    return None
                if later is not None:
                    gap = later[0] - arrival
                    sent_gap = later[1] - send
                    if arrival - later[1] > queued_after or (
                        sent_gap <= BUSY_BACK_TO_BACK_S and gap > sent_gap + BUSY_MARGIN_S
                    ):
                        bits += 8 * (later[2] + extra)
                        span += gap
                        pairs += 1
                        if pairs >= BUSY_MIN_PAIRS and span >= BUSY_MIN_SPAN_S:
                            return bits / span
                later = (arrival, send, sizes[index])
        return None


MIN_PROBE_PACKETS = 5
MIN_RECEIVED_RATIO = 0.8
MAX_PROBE_SPAN_S = 1.0
MAX_VALID_RATIO = 2.0
SATURATED_RATIO = 0.9
SATURATED_UTILIZATION = 0.95
CLUSTER_HISTORY_S = 2.0
SAME_BURST_S = 0.001
# A plausible bottleneck bucket: the larger of this many bytes and this long at the rate
BUCKET_BYTES = 2000
BUCKET_S = 0.02


class ProbeResult(NamedTuple):
    bps: float
    saturated: bool  # it arrived clearly slower than it was sent: it measured the link
    send_bps: float = 0.0  # the rate it was sent at (for the layer trace)
    arrival_bps: float = 0.0  # the rate it arrived at
    shown: float = 0.0  # the least link that carries it through a shaper (`link_at_least`)


def link_at_least(bits: float, span_s: float) -> float:
    """The least link rate (bits/s) that delivers `bits` within `span_s` through a
    full token bucket of max(BUCKET_BYTES, BUCKET_S at that rate): what a cluster
    that got through whole shows of the link (see the module doc).  The rate L
    solves L * span + max(8 * BUCKET_BYTES, BUCKET_S * L) = bits; both sides of
    the max give an upper bound of L, and L is the lower one."""
    if span_s <= 0:
        return 0.0
    return max(min((bits - 8 * BUCKET_BYTES) / span_s, bits / (span_s + BUCKET_S)), 0.0)


@dataclass
class _Cluster:
    first_send: float = float("inf")
    last_send: float = float("-inf")
    first_arrival: float = float("inf")
    last_arrival: float = float("-inf")
    received: int = 0
    lost: int = 0
    total_bytes: int = 0
    first_arrival_size: int = 0
    highest_sequence: int = -1
    last_burst_bytes: int = 0  # bytes sent within 1 ms of the last send time
    last_seen: float = 0.0


class ProbeRates:
    """Per-cluster probe measurements; `add` returns a rate when the cluster is usable."""

    def __init__(self) -> None:
        self._clusters: dict[int, _Cluster] = {}

    def add_lost(self, cluster_id: int, sequence: int, now: float) -> None:
        cluster = self._cluster(cluster_id, now)
        cluster.lost += 1
        cluster.highest_sequence = max(cluster.highest_sequence, sequence)

    def add(
        self, cluster_id: int, sequence: int, send: float, arrival: float, size: int, now: float
    ) -> None:
        """Add a received probe packet."""
        c = self._cluster(cluster_id, now)
        c.highest_sequence = max(c.highest_sequence, sequence)
        c.received += 1
        c.total_bytes += size
        c.first_send = min(c.first_send, send)
        if send > c.last_send + SAME_BURST_S:
            c.last_burst_bytes = size
            c.last_send = send
        elif send >= c.last_send - SAME_BURST_S:
            c.last_burst_bytes += size
            c.last_send = max(c.last_send, send)
        if arrival < c.first_arrival:
            c.first_arrival = arrival
            c.first_arrival_size = size
        c.last_arrival = max(c.last_arrival, arrival)

    def complete(self, highest_sequence: int) -> ProbeResult | None:
        """Measure the clusters that `highest_sequence` (reported) shows complete.

        Returns the result of the latest usable one, None if there is none.
        """
        if not self._clusters:
            return None  # (usually: no probe lately)
        done = [i for i, c in self._clusters.items() if c.highest_sequence < highest_sequence]
        rate = None
        for cluster_id in sorted(done):
            measured = _rate(self._clusters.pop(cluster_id))
            if measured is not None:
                rate = measured
        return rate

    def _cluster(self, cluster_id: int, now: float) -> _Cluster:
        cluster = self._clusters.get(cluster_id)
        if cluster is None:
            for old_id in [
                i for i, c in self._clusters.items() if now - c.last_seen > CLUSTER_HISTORY_S
            ]:
                del self._clusters[old_id]
            cluster = self._clusters[cluster_id] = _Cluster()
        cluster.last_seen = now
        return cluster


def _rate(c: _Cluster) -> ProbeResult | None:
    if c.received < MIN_PROBE_PACKETS or c.received < MIN_RECEIVED_RATIO * (c.received + c.lost):
        return None
    send_span = c.last_send - c.first_send
    arrival_span = c.last_arrival - c.first_arrival
    if not (0 < send_span <= MAX_PROBE_SPAN_S and 0 < arrival_span <= MAX_PROBE_SPAN_S):
        return None
    # Bytes sent between the first and the last send instant (see the module doc).
    send_bps = 8 * (c.total_bytes - c.last_burst_bytes) / send_span
    arrival_bps = 8 * (c.total_bytes - c.first_arrival_size) / arrival_span
    if send_bps <= 0 or arrival_bps > MAX_VALID_RATIO * send_bps:
        return None
    shown = link_at_least(8 * (c.total_bytes - c.first_arrival_size), arrival_span)
    if arrival_bps < SATURATED_RATIO * send_bps:
        return ProbeResult(SATURATED_UTILIZATION * arrival_bps, True, send_bps, arrival_bps, shown)
    return ProbeResult(min(send_bps, arrival_bps), False, send_bps, arrival_bps, shown)
