"""The retransmission budget of a subscriber (sfu/policy/rtxbudget.py)."""

from __future__ import annotations

from sfu.policy.rtxbudget import RetransmitBudget


def test_a_flood_of_nacks_on_a_slow_link_is_resent_at_a_share_of_its_estimate() -> None:
    budget = RetransmitBudget()
    # 250 kbit/s: half of it is ~13 packets of 1200 bytes a second, 6 at once
    sent = sum(budget.take(250_000, 1.0) for _ in range(100))
    assert sent == 6
    assert not budget.take(250_000, 1.0)
    assert sum(budget.take(250_000, 1.0 + 0.08 * i) for i in range(1, 14)) == 13  # ~13 a second


def test_a_fast_link_keeps_room_for_the_loss_of_a_full_layer() -> None:
    # 5 % of a 2.5 Mbit/s layer (~250 packets a second) is ~13 packets a second to resend
    budget = RetransmitBudget()
    assert all(budget.take(2_500_000, 2.0 + i / 13) for i in range(200))


def test_without_an_estimate_nothing_is_held_back() -> None:
    budget = RetransmitBudget()
    assert all(budget.take(None, 0.0) for _ in range(1000))
