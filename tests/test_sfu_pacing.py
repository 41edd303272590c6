"""The pacing rule for a switch's key frame (sfu.policy.pacing): pure."""

from __future__ import annotations

from sfu.policy.pacing import MAX_HOLD_S, MIN_DEPTH_BYTES, OVERHEAD_BYTES, Pacer


def drive(
    pacer: Pacer[int], arrivals: list[tuple[float, int, int]], until: float
) -> list[tuple[float, int]]:
    """Offer (time, item, size) as they come and drain every 1 ms; (when sent, item)."""
    sent: list[tuple[float, int]] = []
    pending = sorted(arrivals)
    t = 0.0
    while t <= until:
        while pending and pending[0][0] <= t:
            _, item, size = pending.pop(0)
            if pacer.offer(item, size, t):
                sent.append((t, item))
        sent.extend((t, item) for item in pacer.due(t))
        t = round(t + 0.001, 6)
    return sent


def test_a_burst_larger_than_the_bucket_leaves_at_the_rate_in_order_and_whole() -> None:
    # A 24 kB key frame (20 packets of 1200 bytes) arriving at once, paced at 800 kbit/s.
    pacer: Pacer[int] = Pacer(800_000, 0.0)
    burst = [(0.0, n, 1200) for n in range(20)]
    sent = drive(pacer, burst, until=1.0)
    assert [item for _, item in sent] == list(range(20))  # in order, nothing lost
    assert sent[0][0] == 0.0  # the first packet goes at once
    span = sent[-1][0] - sent[0][0]
    wire = 19 * (1200 + OVERHEAD_BYTES) * 8 / 800_000  # what the rate needs for the rest
    assert wire * 0.95 <= span <= wire * 1.1
    # No 100 ms carries more than the rate's 100 ms (plus one packet): the link's queue drains.
    for t0, _ in sent:
        within = sum(1200 + OVERHEAD_BYTES for t, _ in sent if t0 <= t < t0 + 0.1)
        assert within <= 800_000 / 8 * 0.1 + 1300
    assert pacer.waiting == 0 and pacer.waiting_bytes == 0


def test_what_comes_behind_the_burst_waits_behind_it() -> None:
    pacer: Pacer[int] = Pacer(1_000_000, 0.0)
    arrivals = [(0.0, n, 1200) for n in range(10)] + [(0.02, 100, 300), (0.03, 101, 1200)]
    sent = drive(pacer, arrivals, until=1.0)
    assert [item for _, item in sent] == [*range(10), 100, 101]


def test_a_stream_within_the_rate_is_not_held_and_the_pacer_goes_idle() -> None:
    pacer: Pacer[int] = Pacer(1_000_000, 0.0)
    # 400 kbit/s of 1000-byte packets: one every 20 ms.
    arrivals = [(i * 0.02, i, 1000) for i in range(20)]
    sent = drive(pacer, arrivals, until=0.5)
    assert all(t == arrivals[item][0] for t, item in sent)
    assert pacer.idle(0.5)


def test_nothing_waits_longer_than_the_hold_bound() -> None:
    # 100 kbit/s against a 30 kB burst: the rate alone would hold it 2.4 s.
    pacer: Pacer[int] = Pacer(100_000, 0.0)
    sent = drive(pacer, [(0.0, n, 1200) for n in range(25)], until=1.0)
    assert [item for _, item in sent] == list(range(25))
    assert max(t for t, _ in sent) <= MAX_HOLD_S + 0.002


def test_the_next_release_is_when_the_bucket_has_paid_for_the_head() -> None:
    pacer: Pacer[int] = Pacer(800_000, 0.0)
    assert pacer.next_at(0.0) is None
    assert pacer.offer(1, 1200, 0.0)
    assert not pacer.offer(2, 1200, 0.0)
    at = pacer.next_at(0.0)
    assert at is not None
    assert abs(at - (1200 + OVERHEAD_BYTES) * 8 / 800_000) < 1e-9
    assert pacer.due(at - 0.001) == []
    assert pacer.due(at) == [2]


def test_a_lower_rate_slows_what_waits_and_the_bucket_never_holds_less_than_two_packets() -> None:
    pacer: Pacer[int] = Pacer(100_000, 0.0)
    assert pacer.offer(1, 1200, 0.0)
    assert not pacer.offer(2, 1200, 0.0)
    pacer.set_rate(50_000, 0.0)
    at = pacer.next_at(0.0)
    assert at is not None and abs(at - (1200 + OVERHEAD_BYTES) * 8 / 50_000) < 1e-9
    assert not pacer.idle(10.0)  # the second packet still waits (until `due`)
    assert pacer.due(10.0) == [2]
    assert pacer.idle(10.0 + MIN_DEPTH_BYTES * 8 / 50_000)
