"""Which SFU worker takes a participant: pack a room while a worker has headroom.

Pure and deterministic.  Each worker's load is what it reported about a
second ago (forwarded packets/s, CPU share) and the pool's own, exact count
of the participants placed on it.  A participant's cost is not known before
its media flows (clients join first and send later), so a worker's packet
rate is estimated as the larger of the measured rate and its participant
count times `participant_pps`; that keeps a burst of joins from all landing
on one worker before its first report shows the load.

A worker has headroom for one more participant when it is under the
participant cap (if any), its estimated rate plus one participant is within
the packet budget, and its CPU share is under the CPU budget.  Then:

1. among workers with headroom that already serve the room, the one with the
   most of its participants (ties: the lowest index): a room stays on as few
   workers as possible, so fewer streams need relaying;
2. else the worker with headroom and the lowest load (the largest of its
   budget shares, in bands of `LOAD_STEP`: loads in the same band count as
   equal and the lowest index wins, so the noise of CPU readings does not
   decide where a room starts);
3. else (everyone is over budget) the least loaded worker: the participant
   is placed anyway, and the pool counts it as over budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

LOAD_STEP = 0.05  # 5% of a budget


@dataclass(frozen=True)
class Budget:
    """What one worker may take (configurable; see docs/operations.md)."""

    max_participants: int = 0  # 0: no cap
    pps: float = 40_000.0  # forwarded packets per second
    cpu: float = 0.85  # share of one core
    participant_pps: float = 250.0  # assumed per participant until measured

    def __post_init__(self) -> None:
        if self.max_participants < 0 or self.pps <= 0 or self.cpu <= 0:
            raise ValueError("worker budgets must be positive (max_participants >= 0)")
        if self.participant_pps < 0:
            raise ValueError("participant_pps must not be negative")


@dataclass(frozen=True)
class WorkerLoad:
    index: int
    participants: int
    forwarded_pps: float = 0.0
    cpu: float = 0.0


@dataclass(frozen=True)
class Choice:
    index: int
    over_budget: bool


def estimated_pps(load: WorkerLoad, budget: Budget) -> float:
    return max(load.forwarded_pps, load.participants * budget.participant_pps)


def has_headroom(load: WorkerLoad, budget: Budget) -> bool:
    if budget.max_participants and load.participants >= budget.max_participants:
        return False
    if estimated_pps(load, budget) + budget.participant_pps > budget.pps:
        return False
    return load.cpu < budget.cpu


def load_score(load: WorkerLoad, budget: Budget) -> float:
    """The largest share of a budget this worker uses (1.0: full)."""
    shares = [estimated_pps(load, budget) / budget.pps, load.cpu / budget.cpu]
    if budget.max_participants:
        shares.append(load.participants / budget.max_participants)
    return max(shares)


def place(
    workers: Sequence[WorkerLoad], room_counts: Mapping[int, int], budget: Budget
) -> Choice | None:
    """The worker for one more participant of a room (see module doc); None: no worker."""
    if not workers:
        return None
    roomy = [w for w in workers if has_headroom(w, budget)]
    serving = [w for w in roomy if room_counts.get(w.index, 0) > 0]
    if serving:
        best = max(serving, key=lambda w: (room_counts[w.index], -w.index))
        return Choice(best.index, over_budget=False)
    candidates = roomy or list(workers)
    best = min(candidates, key=lambda w: (int(load_score(w, budget) / LOAD_STEP), w.index))
    return Choice(best.index, over_budget=not roomy)
