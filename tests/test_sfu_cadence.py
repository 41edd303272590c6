"""When each subscriber's layers are allocated again (`Cadence`), and what its slots would take
with no limit (`ceiling_bps`, the Prober's desired rate): pure."""

from __future__ import annotations

from sfu.policy.allocation import LayerInfo, SlotDemand, ceiling_bps
from sfu.policy.cadence import Cadence

Q = LayerInfo(0, 320, 180, (60_000, 90_000, 150_000))
H = LayerInfo(1, 640, 360, (200_000, 300_000, 500_000))
F = LayerInfo(2, 1280, 720, (700_000, 1_050_000, 1_700_000))


def test_a_new_subscriber_is_due_at_once_then_about_every_period() -> None:
    cadence: Cadence[str] = Cadence(0.5, seed=1)
    assert cadence.due("bob", 1_000_000, 0.0)
    assert not cadence.due("bob", 1_000_000, 0.2)
    assert not cadence.due("bob", 1_000_000, 0.39)  # at least 0.4 s (-20 %)
    assert cadence.due("bob", 1_000_000, 0.61)  # at most 0.6 s (+20 %)


def test_turns_are_spread_so_subscribers_who_joined_together_do_not_share_ticks() -> None:
    cadence: Cadence[int] = Cadence(0.5, seed=7)
    for n in range(100):
        assert cadence.due(n, 1_000_000, 0.0)
    due_at = [
        next(t / 100 for t in range(40, 61) if cadence.due(n, 1_000_000, t / 100))
        for n in range(100)
    ]
    assert len(set(due_at)) >= 10
    assert all(0.4 <= t <= 0.6 for t in due_at)


def test_a_mark_or_a_big_move_of_the_estimate_makes_it_due_at_once() -> None:
    cadence: Cadence[str] = Cadence(0.5, seed=1)
    cadence.due("bob", 1_000_000, 0.0)
    cadence.mark("bob")  # its slots, stage or tile sizes changed
    assert cadence.due("bob", 1_000_000, 0.05)
    assert not cadence.due("bob", 850_000, 0.1)  # -15 %: waits for its turn
    assert cadence.due("bob", 790_000, 0.15)  # -21 % since its last turn
    assert not cadence.due("bob", 900_000, 0.2)  # +14 %
    assert cadence.due("bob", 1_000_000, 0.25)  # +27 %


def test_a_forgotten_subscriber_starts_afresh() -> None:
    cadence: Cadence[str] = Cadence(0.5, seed=1)
    cadence.due("bob", 1_000_000, 0.0)
    cadence.forget("bob")
    assert len(cadence) == 0
    assert cadence.due("bob", 1_000_000, 0.1)


def test_the_ceiling_is_each_slots_top_step_under_its_cap() -> None:
    camera = (Q, H, F)
    big = SlotDemand("1", True, 1280, 720, camera)
    small = SlotDemand("2", True, 640, 360, camera)
    thumb = SlotDemand("3", False, 1280, 720, camera)
    hidden = SlotDemand("4", True, 1280, 720, camera, hidden=True)
    no_simulcast = SlotDemand("5", True, 640, 360, ())
    assert ceiling_bps([big]) == 1_700_000
    assert ceiling_bps([small]) == 500_000
    assert ceiling_bps([thumb]) == 150_000
    assert ceiling_bps([big, small, thumb, hidden, no_simulcast]) == 2_350_000
    assert ceiling_bps([]) == 0
