"""The SFU clock's pass over its participants lets the event loop turn between slices."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

from sfu.control import MediaEvent
from sfu.routing.group import Group
from sfu.routing.participant import Participant
from sfu.routing.precall import PrecallMeter
from sfu.routing.ticker import TICK_SLICE, Ticker
from sfu.settings import MediaSettings


class Clocked:
    """A `Ticked` media plane of real participants that records the loop's turns per tick."""

    def __init__(self, people: int) -> None:
        self.settings = MediaSettings()
        group = Group("r", "main")
        self.participants = {
            f"p{i}": Participant(
                f"p{i}", "r", group, precall=False, settings=self.settings,
                on_transport_lost=lambda participant, reason: None,
            )
            for i in range(people)
        }  # fmt: skip
        self._groups = {("r", "main"): group}
        self.meters: dict[str, PrecallMeter] = {}
        self.turns = 0  # loop turns counted by `spin`
        self.at_start: list[int] = []  # `turns` when a tick began, and when it ended
        self.at_end: list[int] = []
        self.at_steps: list[int] = []  # `turns` at each slice of the layer allocation
        self.ticked = asyncio.Event()

    @property
    def groups(self) -> dict[tuple[str, str], Group]:
        self.at_start.append(self.turns)  # the first thing a tick reads
        return self._groups

    @groups.setter
    def groups(self, value: dict[tuple[str, str], Group]) -> None:
        self._groups = value

    def spin(self) -> None:
        self.turns += 1
        asyncio.get_running_loop().call_soon(self.spin)

    def notify(self, event: MediaEvent) -> None:
        pass

    def refill(self, group: Group) -> None:
        pass

    def after_tick(self, now: float) -> None:
        raise AssertionError("the clock runs the layer allocation in slices (after_tick_steps)")

    def after_tick_steps(self) -> Iterator[None]:
        for _ in range(4):  # as LayerClock.steps over 4 slices of due subscribers
            self.at_steps.append(self.turns)
            yield
        self.at_end.append(self.turns)
        self.ticked.set()

    def remb_cap(self, participant: Participant) -> int:
        return 0

    def end_precall(self, pid: str) -> None:
        pass


async def one_tick(media: Clocked) -> None:
    """Run the clock over `media` until one tick is through, the loop spinning meanwhile."""
    ticker = Ticker(media, 0.01)
    asyncio.get_running_loop().call_soon(media.spin)
    ticker.start()
    try:
        await asyncio.wait_for(media.ticked.wait(), 10)
    finally:
        await ticker.stop()


async def test_the_loop_turns_between_slices_of_a_tick_over_many_participants() -> None:
    media = Clocked(people=4 * TICK_SLICE)
    await one_tick(media)
    # One callback for the whole pass would show no turn between start and end.
    assert media.at_end[0] - media.at_start[0] >= 3


async def test_the_loop_turns_between_slices_of_the_layer_allocation() -> None:
    """The layer allocation was one callback of 5-21 ms at 400 subscribers (after_tick):
    now the clock lets the loop turn after the participants' pass and between slices."""
    media = Clocked(people=10)
    await one_tick(media)
    steps = [media.at_start[0], *media.at_steps[:4], media.at_end[0]]
    assert all(b > a for a, b in itertools.pairwise(steps)), steps
