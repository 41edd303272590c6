"""The re-check of an app-limited estimate, only where an estimate could change something.

The Prober's re-check (sfu/policy/probe.py) is 0.1 s of padding at up to 4 x
the media, every 3 s, to every application-limited subscriber: in a gallery
nearly everybody.  Never where every slot has one step only (`one_step`,
`LayerControl.fixed`, `want(fixed=)`); else for subscribers whose allocation
holds a slot below what it wants (`allocation.held_below`,
`LayerControl.held`, `want(held=)`) and for an estimate far above the media
all along (a warm-up probe's measure that nothing sent since has checked).
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.policy.allocation import (
    LayerChoice,
    LayerInfo,
    SlotDemand,
    allocate,
    held_below,
    ladder,
    one_step,
)
from sfu.policy.probe import RECHECK_INTERVAL_S, ProbeCluster, Prober
from tests.sfu_live import Pump, eventually, join, running_media
from tests.synthetic_peer import SyntheticPeer
from tests.test_sfu_layering import FakeSlot, FakeSubscriber, Run, camera, single, viewer

Q = LayerInfo(0, 320, 180, (60_000, 90_000, 150_000))
H = LayerInfo(1, 640, 360, (200_000, 300_000, 500_000))
F = LayerInfo(2, 1280, 720, (700_000, 1_050_000, 1_700_000))
ONE_LAYER = (LayerInfo(0, 640, 360, (300_000,)),)  # a camera without simulcast or TIDs


def clusters(
    prober: Prober,
    seconds: float,
    *,
    estimate: int,
    sending: int | list[tuple[float, int]],
    held: bool,
    desired: int,
    fixed: bool = False,
) -> list[ProbeCluster]:
    """Drive `want` every 100 ms as the SFU clock does; every cluster that started."""
    seen: list[ProbeCluster] = []
    for k in range(round(seconds * 10)):
        now = k / 10
        media = sending if isinstance(sending, int) else _at(sending, now)
        prober.want(
            estimate_bps=estimate,
            desired_bps=desired,
            sending_bps=media,
            now=now,
            held=held,
            fixed=fixed,
        )
        cluster = prober.next_cluster(now)
        if cluster is not None and (not seen or seen[-1].id != cluster.id):
            seen.append(cluster)
    return seen


def _at(schedule: list[tuple[float, int]], now: float) -> int:
    return [value for start, value in schedule if start <= now + 1e-9][-1]


# A gallery viewer: 4 one-layer cameras at 300 kbit/s and its voices (1.2 Mbit/s), an
# estimate at 1.5 x that (the delay-based increase's cap over the acknowledged rate),
# a probe goal the estimate covers.
GALLERY_ESTIMATE = 1_800_000


def gallery(seconds: float, *, held: bool) -> list[ProbeCluster]:
    return clusters(
        Prober(), seconds, estimate=GALLERY_ESTIMATE, sending=1_200_000, held=held,
        desired=1_600_000,
    )  # fmt: skip


def test_a_gallery_viewer_that_gets_all_it_wants_is_not_rechecked() -> None:
    """Today's rule re-checked it every 3 s (a cluster at 1.8 Mbit/s, a third of it
    padding): 7 clusters in 25 s for nothing its estimate could change."""
    assert gallery(25.0, held=False) == []


def test_a_viewer_of_one_step_slots_is_never_rechecked_however_far_above_its_estimate() -> None:
    """room200's gallery as measured: one-layer cameras, an estimate of 4.4 Mbit/s from
    the warm-up's probes over 1.35 Mbit/s of media (3.3 x): no estimate changes what
    it gets. Today's rule re-checked it every 3 s at 4 x the media (5.8 % of the
    packets the server sent were padding)."""
    found = clusters(
        Prober(), 25.0, estimate=4_400_000, sending=1_350_000, held=False, desired=1_800_000,
        fixed=True,
    )  # fmt: skip
    assert found == []
    # The same numbers with a layer to choose (not fixed): the far-above clause applies.
    assert clusters(
        Prober(), 3.5, estimate=4_400_000, sending=1_350_000, held=False, desired=1_800_000
    )


def test_a_viewer_held_below_what_it_wants_is_still_rechecked_every_3_s() -> None:
    found = gallery(25.0, held=True)
    assert len(found) >= 6, found
    assert all(c.target_bps == GALLERY_ESTIMATE for c in found)
    starts = [c.start for c in found]
    assert all(b - a >= RECHECK_INTERVAL_S for a, b in itertools.pairwise(starts))


def test_an_estimate_far_above_the_media_is_rechecked_even_when_nothing_is_held() -> None:
    """The network lab's stale case as the simulator has it: the 1280x720 layer gone,
    the viewer on 640x360 (its top step: nothing held), a warm-up estimate of 2.3 Mbit/s
    over 540 kbit/s of media: re-checked at 3 s, at 4 x the media."""
    found = clusters(
        Prober(), 3.5, estimate=2_300_000, sending=540_000, held=False, desired=700_000
    )
    assert [c.target_bps for c in found] == [4 * 540_000]


def test_a_brief_dip_in_the_media_does_not_make_the_estimate_far_above() -> None:
    """Far above means all along since the last cluster, not in one 100 ms window (a
    frame late, a speaker switching): a dip starts the 3 s over."""
    dips = [(0.0, 1_200_000), (2.0, 500_000), (2.2, 1_200_000), (9.0, 500_000), (9.1, 1_200_000)]
    found = clusters(
        Prober(), 12.0, estimate=1_800_000, sending=dips, held=False, desired=1_600_000
    )
    assert found == []
    late = clusters(
        Prober(), 6.0, estimate=1_800_000, sending=[(0.0, 1_200_000), (2.0, 500_000)],
        held=False, desired=1_600_000,
    )  # fmt: skip
    assert [round(c.start, 1) for c in late] == [5.0]  # 3 s far above from 2.0


def test_held_below_is_false_for_one_layer_cameras_and_slots_at_their_top_step() -> None:
    gallery = [SlotDemand(str(n), True, 320, 180, ONE_LAYER) for n in range(4)]
    assert not held_below(gallery, allocate(gallery, 0))  # whatever the budget
    thumbs = [SlotDemand("1", False, 320, 180, (Q, H, F))]
    assert not held_below(thumbs, {"1": LayerChoice(0, 2)})
    hidden = [SlotDemand("1", True, 0, 0, (Q, H, F), hidden=True)]
    assert not held_below(hidden, allocate(hidden, 0))
    big = [SlotDemand("1", True, 1280, 720, (Q, H, F))]
    assert not held_below(big, {"1": LayerChoice(2, 2)})


def test_held_below_is_true_for_a_lower_layer_a_lower_tid_or_a_paused_slot() -> None:
    big = [SlotDemand("1", True, 1280, 720, (Q, H, F))]
    assert held_below(big, {"1": LayerChoice(1, 2)})
    assert held_below(big, {"1": LayerChoice(2, 1)})
    assert held_below(big, {"1": LayerChoice(None, 0)})
    paused_top = [SlotDemand("1", True, 1280, 720, (Q, H, LayerInfo(2, 1280, 720, (0,))))]
    assert held_below(paused_top, {"1": LayerChoice(1, 2)})  # the top layer stopped
    two = [SlotDemand("1", True, 320, 180, (Q, H, F)), SlotDemand("2", True, 1280, 720, (Q, H, F))]
    assert held_below(two, {"1": LayerChoice(0, 2), "2": LayerChoice(0, 2)})


RATES = st.lists(st.integers(1, 3_000_000), min_size=1, max_size=3).map(lambda r: tuple(sorted(r)))
SLOT = st.builds(
    lambda mid, stage, w, h, layers, r: SlotDemand(
        mid, stage, w, h, tuple(LayerInfo(n, 320 << n, 180 << n, r) for n in range(layers))
    ),
    st.sampled_from("abcd"),
    st.booleans(),
    st.integers(0, 2000),
    st.integers(0, 1200),
    st.integers(1, 3),
    RATES,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(SLOT, min_size=1, max_size=4, unique_by=lambda s: s.mid))
def test_with_an_unlimited_budget_nothing_is_held_and_with_none_only_one_step_slots_are_not(
    slots: list[SlotDemand],
) -> None:
    """held_below is "a bigger estimate would give more": false when the budget covers
    everything; on a zero budget true unless every slot is on the one step it has."""
    assert not held_below(slots, allocate(slots, 10**12))
    starved = allocate(slots, 0)
    paused = any(c.spatial is None for c in starved.values())
    climbable = any(len(ladder(s)) > 1 for s in slots)
    assert held_below(slots, starved) == (paused or climbable)
    assert one_step(slots) == all(len(ladder(s)) <= 1 for s in slots if not s.hidden)


def test_the_layer_clock_says_which_subscribers_are_held() -> None:
    """A gallery of one-layer cameras: not held on any budget; a stage viewer of a
    simulcast camera on a link too slow for 1280x720: held; on a fast one: not."""
    one = [single(camera(f"p{n}", mid=str(n), simulcast=False)) for n in range(4)]
    for track in one:
        track.rates = (300_000,)  # no TIDs, as the bench's synthetic VP8
    gallery = FakeSubscriber(
        "gal", {str(n): FakeSlot("video", t) for n, t in enumerate(one)}, {}, None
    )
    slow = viewer(camera("alice"), 800_000)
    fast = viewer(camera("alice"), 5_000_000)
    fast.id = "fast"
    run = Run()
    run.tick([gallery, slow, fast], 0.0, fallback=200_000)
    assert run.control.held == {"gal": False, "bob": True, "fast": False}
    assert run.control.fixed == {"gal": True, "bob": False, "fast": False}
    run.control.forget("bob")
    assert "bob" not in run.control.held


async def test_on_a_live_sfu_a_viewer_of_one_layer_cameras_is_not_held_so_not_rechecked() -> None:
    """The flag flows from the allocation on the SFU clock to the Prober: a transport-cc
    viewer of two cameras without simulcast gets everything they send, so its Prober is
    told nothing is held (before: every app-limited viewer was re-checked)."""
    async with running_media() as (media, _):
        pumps = []
        for name in ("alice", "dave"):
            peer = await join(media, name, SyntheticPeer(audio=True, video=True))
            pumps.append(Pump(peer).start())
        await join(media, "bob", SyntheticPeer(video_slots=2, transport_cc=True))
        bob = media.participants["bob"]
        try:
            await eventually(
                lambda: sum(1 for c in bob.consumers.values() if c.track) == 2, what="2 slots"
            )
            assert bob.prober is not None and bob.estimator is not None  # transport-cc
            await eventually(lambda: bob.layers_held is False, what="bob not held")
            assert media.layers.control.held["bob"] is False
            assert bob.layers_fixed  # one step per slot: never re-checked
        finally:
            for pump in pumps:
                await pump.stop()
