"""Full gc collections kept short: the survivors of one are frozen (sfu.gcfreeze)."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from sfu.gcfreeze import FREEZER, GcFreezer
from tests.sfu_live import running_media


class Node:
    """A container object that can sit in a reference cycle (and be weakly referenced)."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def freezer() -> Iterator[GcFreezer]:
    f = GcFreezer()
    f.start()
    try:
        yield f
    finally:
        while f.users:
            f.stop()


def test_the_survivors_of_a_full_collection_are_frozen_at_its_end(
    freezer: GcFreezer,
) -> None:
    kept = [[i] for i in range(20_000)]  # a server's long-lived state
    before = gc.get_freeze_count()
    freezer.tick(participants=10)
    gc.collect()
    assert freezer.full_collections >= 1
    assert gc.get_freeze_count() - before >= len(kept)
    # The next full collection walks only what came since, not the 20,000 lists.
    assert len(gc.get_objects(generation=2)) < len(kept) // 4
    assert freezer.frozen_for == 10


def test_nothing_is_frozen_without_a_full_collection_and_all_is_thawed_at_stop() -> None:
    f = GcFreezer()
    f.start()  # freezes what exists at the start
    started = gc.get_freeze_count()
    kept = [[i] for i in range(5_000)]
    f.tick(participants=3)
    assert gc.get_freeze_count() == started  # no full collection yet: nothing new frozen
    gc.collect(generation=1)
    assert gc.get_freeze_count() == started  # nor after a younger one
    f.stop()
    assert gc.get_freeze_count() == 0
    assert not any(getattr(cb, "__self__", None) is f for cb in gc.callbacks)
    del kept


def test_a_room_that_shrank_by_half_is_thawed_and_its_cycles_are_collected(
    freezer: GcFreezer,
) -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a  # a participant's objects: a cycle
    gone = weakref.ref(a)
    freezer.tick(participants=10)
    gc.collect()
    del a, b
    gc.collect()
    assert gone() is not None  # frozen: a cycle among frozen objects is not collected
    for _ in range(4):
        freezer.left()
    freezer.tick(participants=6)
    assert gone() is not None and gc.get_freeze_count() > 0  # 4 of 10 left: still frozen
    collections = freezer.full_collections
    freezer.left()
    freezer.tick(participants=5)  # half of the 10 at the freeze left: thawed and collected
    assert freezer.thaws == 1 and freezer.full_collections == collections + 1
    assert gone() is None
    assert gc.get_freeze_count() > 0 and freezer.frozen_for == 5  # the survivors, again


def test_a_server_of_steady_size_that_turns_its_people_over_is_thawed(
    freezer: GcFreezer,
) -> None:
    """A clinic's day: the count stays at 10 while visits end and new ones start."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    freezer.tick(participants=10)
    gc.collect()
    del a, b
    for _ in range(5):  # five leave, five others join: still 10
        freezer.left()
        freezer.tick(participants=10)
    assert freezer.thaws == 1
    assert gone() is None  # the leavers' cycles were freed although the count never fell


def test_a_full_collection_after_a_freeze_takes_a_fraction_of_one_before(
    freezer: GcFreezer,
) -> None:
    kept = [{"i": i, "l": [i]} for i in range(200_000)]
    started = time.perf_counter()
    gc.collect()
    whole = time.perf_counter() - started
    started = time.perf_counter()
    gc.collect()
    after = time.perf_counter() - started
    # 400,000 containers: tens of ms; well under a ms once frozen (slack for a loaded machine).
    assert after < whole / 3, (whole, after)
    del kept


async def test_a_running_sfu_freezes_at_the_end_of_a_full_collection_and_thaws_when_stopped() -> (
    None
):
    assert FREEZER.users == 0
    async with running_media() as _:
        assert FREEZER.users == 1
        kept = [[i] for i in range(20_000)]
        before = gc.get_freeze_count()
        gc.collect()
        assert gc.get_freeze_count() - before >= len(kept)
    assert FREEZER.users == 0 and gc.get_freeze_count() == 0


async def test_gc_freeze_off_freezes_nothing() -> None:
    async with running_media(gc_freeze=False) as _:
        gc.collect()
        assert FREEZER.users == 0 and gc.get_freeze_count() == 0


def test_people_who_came_and_went_between_two_full_collections_are_collected(
    freezer: GcFreezer,
) -> None:
    """No full collection while they were there: their cycles were never frozen, but
    they wait in the old generation; half of the most people gone collects them."""
    gc.disable()  # no full collection of CPython's own in this test
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        for count in (5, 10, 10):
            freezer.tick(participants=count)
        del a, b
        for _ in range(4):
            freezer.left()
        freezer.tick(participants=6)
        assert freezer.thaws == 0 and gone() is not None  # 4 of 10 left
        freezer.left()
        freezer.tick(participants=5)
        assert freezer.thaws == 1 and gone() is None
        assert freezer.frozen_for == 5
    finally:
        gc.enable()
