"""Which worker takes a participant: pack a room while there is headroom, then spread."""

from __future__ import annotations

import pytest

from sfu.workers.placement import Budget, Choice, WorkerLoad, has_headroom, place

BUDGET = Budget(max_participants=0, pps=10_000, cpu=0.8, participant_pps=1_000)


def loads(*participants: int, pps: float = 0.0, cpu: float = 0.0) -> list[WorkerLoad]:
    return [WorkerLoad(i, n, pps, cpu) for i, n in enumerate(participants)]


def test_a_room_stays_on_the_worker_that_has_most_of_it_while_it_has_headroom() -> None:
    workers = loads(5, 2, 0)
    assert place(workers, {0: 1, 1: 2}, BUDGET) == Choice(1, over_budget=False)
    assert place(workers, {0: 5, 1: 2}, BUDGET) == Choice(0, over_budget=False)


def test_a_new_room_goes_to_the_least_loaded_worker() -> None:
    assert place(loads(5, 2, 3), {}, BUDGET) == Choice(1, over_budget=False)
    assert place(loads(0, 0), {}, BUDGET) == Choice(0, over_budget=False), "ties: lowest index"


def test_the_participant_cap_spreads_a_room_over_two_workers() -> None:
    capped = Budget(max_participants=2, pps=10_000, cpu=0.8, participant_pps=0)
    placed: dict[int, int] = {}
    for _ in range(4):
        workers = [WorkerLoad(i, placed.get(i, 0)) for i in range(2)]
        choice = place(workers, placed, capped)
        assert choice is not None and not choice.over_budget
        placed[choice.index] = placed.get(choice.index, 0) + 1
    assert placed == {0: 2, 1: 2}


def test_the_estimate_keeps_a_burst_of_joins_from_landing_on_one_worker() -> None:
    # Nothing is measured yet (media starts after the joins): 1,000 pps each is assumed.
    assert has_headroom(WorkerLoad(0, 9), BUDGET)
    assert not has_headroom(WorkerLoad(0, 10), BUDGET)
    assert place(loads(10, 0), {0: 10}, BUDGET) == Choice(1, over_budget=False)


def test_measured_packets_and_cpu_count_against_the_budget() -> None:
    assert not has_headroom(WorkerLoad(0, 1, forwarded_pps=9_500), BUDGET)
    assert not has_headroom(WorkerLoad(0, 1, cpu=0.85), BUDGET)
    busy, idle = WorkerLoad(0, 1, cpu=0.9), WorkerLoad(1, 1, cpu=0.1)
    assert place([busy, idle], {0: 1}, BUDGET) == Choice(1, over_budget=False)


def test_loads_less_than_a_step_apart_count_as_equal_and_the_lowest_index_wins() -> None:
    # Two idle workers whose CPU readings differ by noise: the room starts on worker 0.
    noisy = [WorkerLoad(0, 0, cpu=0.03), WorkerLoad(1, 0, cpu=0.01)]
    assert place(noisy, {}, BUDGET) == Choice(0, over_budget=False)
    clearly = [WorkerLoad(0, 0, cpu=0.3), WorkerLoad(1, 0, cpu=0.01)]
    assert place(clearly, {}, BUDGET) == Choice(1, over_budget=False)


def test_when_every_worker_is_over_budget_the_least_loaded_takes_it_anyway() -> None:
    workers = [WorkerLoad(0, 1, cpu=0.95), WorkerLoad(1, 1, cpu=0.9)]
    assert place(workers, {0: 1}, BUDGET) == Choice(1, over_budget=True)


def test_no_live_worker_means_no_choice() -> None:
    assert place([], {}, BUDGET) is None


@pytest.mark.parametrize(
    "kwargs", [{"max_participants": -1}, {"pps": 0}, {"cpu": 0}, {"participant_pps": -1}]
)
def test_budgets_must_be_positive(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Budget(**kwargs)  # type: ignore[arg-type]
