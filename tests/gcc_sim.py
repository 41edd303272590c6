"""A small pure bottleneck-link simulator for the bandwidth estimator and the prober.

One subscriber's downlink: a FIFO queue drained at `capacity(t)` bits/s
(drop-tail beyond `max_queue_s` of queued data; `burst_s` > 0: a token
bucket of that many seconds at the rate, as the network lab's tbf with its
20 ms burst, passes a burst that fits it at once), optional random loss and
jitter (extra delay, packets kept in order) on the wire, a one-way delay of
20 ms each way.  The SFU side sends video frames at 30 fps of
min(estimate, demand) bits/s in 1200-byte packets (a frame's packets leave
together, as a forwarding SFU sends them), plus the
padding the Prober asks for on a 10 ms ticker, and key frames
(`key_frame(t)`: extra bytes sent with the frame at `t`, in one burst);
every packet sent while a
probe cluster is in progress carries the cluster's id.  The receiver
reports every 100 ms what arrived (TWCC: each sequence number up to the
highest received, with its arrival time on the receiver's own clock, or
lost), and the report reaches the estimator 20 ms later.

Deterministic for a given seed; no sockets, no clock.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sfu.policy.gcc import PACKET_OVERHEAD_BYTES, BandwidthEstimator, PacketResult
from sfu.policy.probe import Prober

STEP_S = 0.001
FRAME_S = 1 / 30
PAD_TICK_S = 0.01
FEEDBACK_S = 0.1
ONE_WAY_S = 0.02
PACKET_BYTES = 1200
PADDING_PACKET_BYTES = 1000
RECEIVER_CLOCK_OFFSET_S = 5000.0  # the receiver's clock has another origin


@dataclass
class Link:
    capacity: Callable[[float], float]
    loss: float = 0.0
    jitter_s: float = 0.0  # extra delay after the bottleneck, uniform in [0, jitter_s], in order
    max_queue_s: float = 0.5
    seed: int = 1
    burst_s: float = 0.0  # the token bucket's depth in seconds at the rate (0: none)
    free_at: float = 0.0
    last_arrival: float = 0.0
    tokens: float = 0.0  # bytes (with burst_s)
    tokens_at: float = 0.0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def carry(self, t: float, size: int) -> float | None:
        """Arrival time of a packet entering the link at `t`, None if dropped."""
        start = max(t, self.free_at)
        if start - t > self.max_queue_s:
            return None  # drop-tail
        wire = size + PACKET_OVERHEAD_BYTES  # IP, UDP, SRTP tag
        if self.burst_s > 0:
            self.free_at = self._through_bucket(start, wire, max(self.capacity(t), 1.0))
        else:
            self.free_at = start + wire * 8 / max(self.capacity(t), 1.0)
        if self.loss and self.rng.random() < self.loss:
            return None  # lost on the wire after the bottleneck
        arrival = self.free_at + ONE_WAY_S
        if self.jitter_s:
            arrival = max(arrival + self.rng.uniform(0, self.jitter_s), self.last_arrival)
            self.last_arrival = arrival
        return arrival

    def _through_bucket(self, start: float, wire: int, rate_bps: float) -> float:
        """When a packet that may leave at `start` leaves the token bucket."""
        depth = self.burst_s * rate_bps / 8
        self.tokens = min(depth, self.tokens + (start - self.tokens_at) * rate_bps / 8)
        self.tokens_at = start
        if self.tokens >= wire:
            self.tokens -= wire
            return start
        leaves = start + (wire - self.tokens) * 8 / rate_bps
        self.tokens, self.tokens_at = 0.0, leaves
        return leaves


@dataclass
class Run:
    times: list[float] = field(default_factory=list)
    estimates: list[int] = field(default_factory=list)
    sent_bps: list[int] = field(default_factory=list)
    feedback: list[tuple[float, list[PacketResult]]] = field(default_factory=list)

    def estimate_at(self, t: float) -> int:
        """The estimate after the last feedback at or before `t`."""
        value = self.estimates[0]
        for time, estimate in zip(self.times, self.estimates, strict=True):
            if time > t:
                break
            value = estimate
        return value

    def window(self, start: float, end: float) -> list[int]:
        return [e for t, e in zip(self.times, self.estimates, strict=True) if start <= t <= end]


def simulate(
    link: Link,
    *,
    seconds: float,
    demand: Callable[[float], float],
    desired: Callable[[float], float] | None = None,
    estimator: BandwidthEstimator | None = None,
    prober: Prober | None = None,
    key_frame: Callable[[float], int] | None = None,
    held: Callable[[float], bool] | None = None,
) -> Run:
    """Run the sender, the link and the feedback loop for `seconds` of simulated time.

    `demand` is what the media could use (the sender sends min(estimate, demand));
    `desired` (default: demand) is what the allocator asks the prober for;
    `key_frame(t)`: how many bytes larger the frame sent at `t` is (0: none);
    `held(t)`: whether the allocation gives a slot less than it wants (the
    Prober's `want(held=)`; None: always, the Prober's default).
    """
    wanted = desired or demand
    est = estimator or BandwidthEstimator()
    run = Run()
    sent: dict[int, tuple[float, int, int]] = {}  # seq -> (send time, size, probe id)
    arrivals: dict[int, float] = {}
    sequence = 0
    next_reported = 0
    next_frame = 0.0
    next_pad = 0.0
    next_feedback = FEEDBACK_S
    pending: list[tuple[float, list[PacketResult]]] = []
    sent_window: list[tuple[float, int]] = []

    def send(t: float, size: int, probe: int) -> None:
        nonlocal sequence
        sent[sequence] = (t, size, probe)
        arrival = link.carry(t, size)
        if arrival is not None:
            arrivals[sequence] = arrival
        sent_window.append((t, size))
        sequence += 1

    steps = round(seconds / STEP_S)
    for step in range(steps + 1):
        now = step * STEP_S
        media_bps = min(est.estimate_bps, demand(now))
        cluster = prober.next_cluster(now) if prober else None
        probe_id = cluster.id if cluster else -1
        if now >= next_frame - 1e-9:
            next_frame += FRAME_S
            frame_bytes = int(media_bps * FRAME_S / 8)
            if key_frame is not None:
                frame_bytes += key_frame(now)
            while frame_bytes > 0:
                size = min(PACKET_BYTES, max(frame_bytes, 100))
                send(now, size, probe_id)
                frame_bytes -= size
        if prober and now >= next_pad - 1e-9:
            next_pad += PAD_TICK_S
            padding = prober.padding_due(now)
            while padding > 0:
                size = min(PADDING_PACKET_BYTES, max(padding, 100))
                send(now, size, probe_id)
                padding -= size
        if now >= next_feedback - 1e-9:
            next_feedback += FEEDBACK_S
            results, next_reported = _report(sent, arrivals, next_reported, now)
            if results:
                pending.append((now + ONE_WAY_S, results))
        while pending and pending[0][0] <= now + 1e-9:
            at, results = pending.pop(0)
            est.on_feedback(results, at)
            est.on_rtt(2 * ONE_WAY_S + max(link.free_at - at, 0.0), at)
            run.feedback.append((at, results))
            while sent_window and sent_window[0][0] < at - 1.0:
                sent_window.pop(0)
            sending = sum(size for _, size in sent_window) * 8
            if prober:
                prober.want(
                    estimate_bps=est.estimate_bps,
                    desired_bps=int(wanted(at)),
                    sending_bps=int(min(est.estimate_bps, demand(at))),
                    now=at,
                    held=True if held is None else held(at),
                )
            run.times.append(at)
            run.estimates.append(est.estimate_bps)
            run.sent_bps.append(sending)
    return run


def _report(
    sent: dict[int, tuple[float, int, int]], arrivals: dict[int, float], first: int, now: float
) -> tuple[list[PacketResult], int]:
    """The TWCC feedback the receiver sends at `now`: first..highest arrived sequence."""
    highest = -1
    seq = first
    while seq in sent:
        arrival = arrivals.get(seq)
        if arrival is not None and arrival <= now:
            highest = seq
        elif arrival is not None:
            break  # still in flight (FIFO: so is everything after it)
        seq += 1
    results = []
    for seq in range(first, highest + 1):
        send_time, size, probe = sent.pop(seq)
        arrival = arrivals.pop(seq, None)
        receiver = None if arrival is None else arrival + RECEIVER_CLOCK_OFFSET_S
        results.append(PacketResult(seq, send_time, size, receiver, probe))
    return results, max(first, highest + 1)


def constant(value: float) -> Callable[[float], float]:
    return lambda _t: value


def steps(*changes: tuple[float, float]) -> Callable[[float], float]:
    """A piecewise constant function: [(from_time, value), ...] in time order."""

    def value(t: float) -> float:
        current = changes[0][1]
        for start, v in changes:
            if t >= start:
                current = v
        return current

    return value


Feedbacks = list[tuple[float, list[PacketResult]]]


def write_recording(path: Path, header: dict[str, object], feedbacks: Feedbacks) -> None:
    """A header line, then one feedback per line: {"at": t, "packets": [[seq, send, size,
    arrival or null, probe], ...]} (times rounded to the microsecond)."""
    lines = [json.dumps(header)]
    for at, results in feedbacks:
        packets = [
            [p.sequence, round(p.send_time, 6), p.size, _round(p.arrival), p.probe] for p in results
        ]
        lines.append(json.dumps({"at": round(at, 6), "packets": packets}, separators=(",", ":")))
    path.write_text("\n".join(lines) + "\n")


def load_recording(path: Path) -> tuple[dict[str, object], Feedbacks]:
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    feedbacks = []
    for line in lines[1:]:
        entry = json.loads(line)
        packets = [PacketResult(*p) for p in entry["packets"]]
        feedbacks.append((float(entry["at"]), packets))
    return header, feedbacks


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
