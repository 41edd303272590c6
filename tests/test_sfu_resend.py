"""The resend budget: resends within a share of the estimate, a key frame instead of a storm."""

from __future__ import annotations

import pytest

from sfu.policy.resend import MIN_BURST_BYTES, ResendBudget, Verdict


def budget(estimate_bps: int, now: float = 0.0) -> ResendBudget:
    b = ResendBudget()
    b.refill(now, estimate_bps)
    return b


def test_a_lone_loss_on_a_slow_link_is_always_answered_at_once() -> None:
    b = budget(50_000)  # a fifth of a second of it is 1.25 kB: under one full packet
    assert b.capacity == MIN_BURST_BYTES
    assert b.plan(1250) is Verdict.RESEND
    assert b.take(1250) and b.take(1250)
    assert not b.take(1)


def test_the_bucket_holds_a_fifth_of_a_second_of_the_estimate_and_refills_at_0_3_of_it() -> None:
    b = budget(1_000_000)  # 125 kB/s: holds 25 kB, refills 37.5 kB/s
    assert b.capacity == 25_000 and b.level == MIN_BURST_BYTES
    b.refill(1.0, 1_000_000)
    assert b.level == 25_000
    assert b.take(25_000) and b.level == 0
    b.refill(1.1, 1_000_000)
    assert b.level == pytest.approx(3_750)
    b.refill(1.1, 1_000_000)  # nothing more accrues at the same time
    assert b.level == pytest.approx(3_750)


def test_time_before_a_new_estimate_accrues_at_the_old_one() -> None:
    b = budget(1_000_000)
    b.take(int(b.level))
    b.refill(0.1, 300_000)  # 0.1 s at 37.5 kB/s, then 11.25 kB/s
    assert b.level == pytest.approx(3_750)
    b.refill(0.2, 300_000)
    assert b.level == pytest.approx(4_875)
    b.refill(0.3, 100_000)  # a lower estimate shrinks what the bucket may hold
    assert b.level == pytest.approx(MIN_BURST_BYTES)


def test_a_nack_the_bucket_cannot_repay_within_a_second_is_a_key_frame() -> None:
    # At 300 kbit/s the bucket holds 7.5 kB and gains 11.25 kB in a second: the lab's
    # 7.5 kB queue overflowing into a resend storm drew 174 packets in 1.8 s.
    b = budget(300_000)
    b.refill(1.0, 300_000)
    assert b.level == 7_500
    assert b.plan(7_500) is Verdict.RESEND
    assert b.plan(7_501) is Verdict.PARTIAL
    assert b.plan(18_750) is Verdict.PARTIAL
    assert b.plan(18_751) is Verdict.KEYFRAME


def test_take_pays_only_what_the_bucket_holds_and_counts_what_it_refused() -> None:
    b = budget(300_000)
    b.refill(1.0, 300_000)
    sent = [b.take(1_200) for _ in range(8)]
    assert sent == [True] * 6 + [False, False]
    assert b.denied == 2 and b.level == pytest.approx(300)


def test_no_estimate_no_budget_beyond_the_two_packets() -> None:
    b = budget(0)
    b.refill(10.0, 0)
    assert b.level == MIN_BURST_BYTES
    assert b.plan(MIN_BURST_BYTES + 1) is Verdict.KEYFRAME


def test_the_rate_resends_took_reads_a_steady_rate_as_itself_and_fades_when_they_stop() -> None:
    b = budget(1_000_000)
    assert b.rate_bps(0.0) == 0
    t = 0.0
    while t < 5.0:  # 1,000 bytes every 0.1 s: 80 kbit/s, well within the bucket
        b.refill(t, 1_000_000)
        assert b.take(1_000)
        t += 0.1
    assert 72_000 <= b.rate_bps(t) <= 88_000  # a sawtooth around 80k
    assert b.rate_bps(t + 1.0) == pytest.approx(b.rate_bps(t) / 2.718, rel=0.01)
    assert b.rate_bps(t + 5.0) < 1_000
    assert b.rate_bps(t) >= 72_000  # reading it changes nothing


def test_what_was_refused_is_not_counted_as_taken() -> None:
    b = budget(100_000)
    level = int(b.level)
    assert b.take(level)
    assert not b.take(1_000)
    assert b.rate_bps(0.0) == level * 8
