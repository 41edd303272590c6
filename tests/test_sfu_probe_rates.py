"""A probe cluster's rates (`gcc_rates.ProbeRates`) read through a shaper's bucket.

The cluster's packets go through a simulated token bucket filter (a tbf as the
network lab's: rate, a bucket of `burst` bytes, a FIFO queue behind it), which
lets its bucket's worth pass at line speed and the rest at its rate.
"""

from __future__ import annotations

import random
import statistics

import pytest

from sfu.policy.gcc_rates import ProbeRates, ProbeResult

LINK_BPS = 300_000
BUCKET_BYTES = 2000
PROPAGATION_S = 0.02
MEDIA_SIZE = 1200
PADDING_SIZE = 255 + 38  # the most padding per packet, with its headers
TICK_S = 0.005  # the sender's ticker: padding goes in bursts


def cluster_packets(send_bps: float, seconds: float = 0.1) -> list[tuple[float, int]]:
    """(send time, size) of a cluster sent at `send_bps` in all: media at 300 kbit/s
    (one 1200-byte packet every 32 ms) and padding for the rest, in a burst every 5 ms."""
    media_gap = MEDIA_SIZE * 8 / 300_000
    padding_bps = send_bps - 300_000
    packets = []
    due = 0.0
    for tick in range(round(seconds / TICK_S)):
        now = 10.0 + tick * TICK_S
        due += padding_bps * TICK_S / 8
        index = 0
        while due >= PADDING_SIZE:
            packets.append((now + index * 1e-5, PADDING_SIZE))
            due -= PADDING_SIZE
            index += 1
    packets.extend(
        (10.0 + k * media_gap + 0.0013, MEDIA_SIZE) for k in range(int(seconds / media_gap) + 1)
    )
    return sorted(packets)


def through_bucket(
    packets: list[tuple[float, int]], link_bps: float, tokens: float
) -> list[tuple[float, float, int]]:
    """(send, arrival, size) after a tbf at `link_bps` whose bucket holds `tokens` bytes
    at the first send (at most `BUCKET_BYTES`)."""
    rate = link_bps / 8
    clock = packets[0][0]
    out = []
    for send, size in packets:
        start = max(send, clock)
        tokens = min(BUCKET_BYTES, tokens + (start - clock) * rate)
        clock = start
        if tokens < size:  # wait for the bucket to refill
            clock += (size - tokens) / rate
            tokens = size
        tokens -= size
        out.append((send, clock + PROPAGATION_S, size))
    return out


def measure(packets: list[tuple[float, float, int]]) -> ProbeResult | None:
    rates = ProbeRates()
    for sequence, (send, arrival, size) in enumerate(sorted(packets, key=lambda p: p[1])):
        rates.add(0, sequence, send, arrival, size, now=11.0)
    return rates.complete(len(packets))


@pytest.mark.parametrize(
    ("send_bps", "tokens"),
    [(450_000, 2000), (450_000, 1000), (450_000, 0), (500_000, 2000), (600_000, 2000)],
)
def test_a_probe_through_a_shaper_s_burst_reads_the_link(send_bps: float, tokens: float) -> None:
    """A cluster through a 2000-byte bucket at 300 kbit/s: its first bytes pass at line
    speed, the rest at 300 kbit/s.  It reads the link within 10 % (the whole cluster's
    arrival rate reads 350-400 kbit/s when the bucket holds something)."""
    result = measure(through_bucket(cluster_packets(send_bps), LINK_BPS, tokens))
    assert result is not None
    assert result.saturated
    assert result.bps / 0.95 == pytest.approx(LINK_BPS, rel=0.1)


@pytest.mark.parametrize("tokens", [1000, 2000])
def test_a_probe_through_a_shaper_s_burst_with_jittered_arrivals(tokens: float) -> None:
    """The same with each arrival up to 1.5 ms late (receivers stamp in batches), 20
    draws: every one saturated, never over 20 % above the link, the median within 10 %
    (the whole cluster's rate reads 17 % over the link with a full bucket)."""
    readings = []
    for seed in range(20):
        rng = random.Random(seed)
        packets = through_bucket(cluster_packets(450_000), LINK_BPS, tokens)
        jittered = [(s, arrival + rng.uniform(0, 0.0015), size) for s, arrival, size in packets]
        result = measure(jittered)
        assert result is not None
        assert result.saturated
        readings.append(result.bps / 0.95)
    assert max(readings) < 1.2 * LINK_BPS
    assert statistics.median(readings) == pytest.approx(LINK_BPS, rel=0.1)


@pytest.mark.parametrize("seed", range(8))
def test_a_probe_that_fits_the_link_reads_its_send_rate(seed: int) -> None:
    """A cluster at 450 kbit/s on a 1 Mbit/s link (its bucket full or empty, arrivals
    up to 1.5 ms late) got through: it reads its send rate, not saturated."""
    rng = random.Random(seed)
    tokens = rng.choice([0, BUCKET_BYTES])
    packets = through_bucket(cluster_packets(450_000), 1_000_000, tokens)
    jittered = [(send, arrival + rng.uniform(0, 0.0015), size) for send, arrival, size in packets]
    result = measure(jittered)
    assert result is not None
    assert not result.saturated
    assert result.bps == pytest.approx(450_000, rel=0.1)


def test_a_few_late_stamps_at_the_end_are_not_a_queue() -> None:
    """The last two arrivals stamped 8 ms late (a receiver's stall) on a link the
    cluster fits: not read as a queued tail (too few packets), so not saturated."""
    packets = through_bucket(cluster_packets(450_000), 1_000_000, BUCKET_BYTES)
    late = packets[:-2] + [(send, arrival + 0.008, size) for send, arrival, size in packets[-2:]]
    result = measure(late)
    assert result is not None
    assert not result.saturated
