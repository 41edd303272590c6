"""Receiver statistics and NACK generation from a publisher's packets."""

from __future__ import annotations

from sfu.packet.streamstats import MAX_GAP, NackGenerator, ReceiveStats


def test_fraction_lost_covers_the_interval_since_the_last_report() -> None:
    stats = ReceiveStats(90000)
    for seq in [*range(100, 110), *range(115, 120)]:
        stats.add(seq, seq * 3000, 1000, seq / 30)
    first = stats.report(5.0)
    assert first.highest_sequence == 119
    assert first.cumulative_lost == 5
    assert first.fraction_lost == (5 << 8) // 20
    for seq in range(120, 140):
        stats.add(seq, seq * 3000, 1000, seq / 30)
    assert stats.report(6.0).fraction_lost == 0
    assert stats.report(6.0).cumulative_lost == 5


def test_jitter_is_zero_for_perfect_pacing_and_grows_with_variation() -> None:
    steady = ReceiveStats(90000)
    for n in range(50):
        steady.add(n, n * 3000, 1000, n / 30)
    assert steady.report(2.0).jitter == 0
    shaky = ReceiveStats(90000)
    for n in range(50):
        shaky.add(n, n * 3000, 1000, n / 30 + (0.01 if n % 2 else 0))
    assert 400 < shaky.report(2.0).jitter < 1000  # ~10 ms in 90 kHz units


def test_lsr_and_dlsr_follow_the_last_sender_report() -> None:
    stats = ReceiveStats(48000)
    stats.add(1, 0, 100, 0.0)
    stats.sender_report(0x12345678, 10.0)
    report = stats.report(10.5)
    assert report.lsr == 0x12345678
    assert report.dlsr == 32768


def test_a_gap_is_nacked_at_once_and_retried_a_few_times() -> None:
    nack = NackGenerator(retry_interval=0.1, max_tries=3, max_age=1.0)
    assert nack.add(10, 0.0) == []
    assert nack.add(14, 0.0) == [11, 12, 13]
    assert nack.add(12, 0.01) == []  # recovered
    assert nack.due(0.05) == []
    assert nack.due(0.11) == [11, 13]
    assert nack.due(0.22) == [11, 13]
    assert nack.due(0.33) == []  # asked three times: given up
    assert nack.missing == []


def test_old_missing_packets_are_forgotten() -> None:
    nack = NackGenerator(retry_interval=0.1, max_tries=10, max_age=0.5)
    nack.add(1, 0.0)
    nack.add(3, 0.0)
    assert nack.due(0.6) == []
    assert nack.missing == []


def test_a_huge_jump_is_a_restart_not_loss() -> None:
    nack = NackGenerator()
    nack.add(1, 0.0)
    assert nack.add(1 + MAX_GAP + 10, 0.0) == []
    assert nack.missing == []
