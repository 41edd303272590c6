"""The allocator on the clock, over stand-ins of producers and consumers: which layers each
slot is set to, which key frames are asked for, and what publishers and subscribers are told."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pytest

from sfu.control import Downlink, MediaEvent, PublishLayers
from sfu.policy.resend import ResendBudget
from sfu.routing.layering import Estimator, LayerControl

RATES = {
    0: (60_000, 90_000, 150_000),
    1: (200_000, 300_000, 500_000),
    2: (700_000, 1_050_000, 1_700_000),
}
SIZES = {0: (320, 180), 1: (640, 360), 2: (1280, 720)}


@dataclass(eq=False)
class FakeLayer:
    rid: str | None
    spatial: int
    frame_size: tuple[int, int] | None
    rates: tuple[int, ...]
    on: bool = True
    keyframes: list[float] = field(default_factory=list)

    def temporal_bitrates(self, now: float) -> tuple[int, ...]:
        return self.rates

    def active(self, now: float) -> bool:
        return self.on

    def request_keyframe(self, now: float) -> bool:
        self.keyframes.append(now)
        return True


@dataclass(eq=False)
class FakeTrack(FakeLayer):
    owner: str = ""
    mid: str = ""
    layers: tuple[FakeLayer, ...] = ()


def camera(owner: str, mid: str = "1", simulcast: bool = True) -> FakeTrack:
    if not simulcast:
        return FakeTrack(None, 0, (640, 360), RATES[1], owner=owner, mid=mid)
    upper = [FakeLayer(rid, n, SIZES[n], RATES[n]) for n, rid in ((1, "h"), (2, "f"))]
    track = FakeTrack("q", 0, SIZES[0], RATES[0], owner=owner, mid=mid)
    track.layers = (track, *upper)
    return track


def single(track: FakeTrack) -> FakeTrack:
    track.layers = (track,)
    return track


@dataclass
class FakeSlot:
    kind: str
    source: FakeTrack | None
    calls: list[tuple[int | None, int]] = field(default_factory=list)
    cuts: list[bool] = field(default_factory=list)

    @property
    def track(self) -> FakeTrack | None:
        return self.source

    def set_layers(
        self, spatial: int | None, temporal: int, now: float | None = None, *, cut: bool = False
    ) -> FakeLayer | None:
        changed = not self.calls or self.calls[-1][0] != spatial
        self.calls.append((spatial, temporal))
        self.cuts.append(cut)
        if self.source is None or spatial is None or not changed:
            return None
        return self.source.layers[spatial]


@dataclass
class FakeEstimator:
    estimate_bps: int


@dataclass
class FakeSubscriber:
    id: str
    consumers: Mapping[str, FakeSlot]
    video_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    estimator: Estimator | None = None
    remb_estimate: int | None = None
    estimate_fresh: bool = True
    resend_budget: ResendBudget = field(default_factory=ResendBudget)


def everyone_on_stage(mid: str) -> bool:
    return True


class Run:
    def __init__(self) -> None:
        self.events: list[MediaEvent] = []
        self.control = LayerControl(self.events.append)

    def tick(
        self,
        subscribers: list[FakeSubscriber],
        now: float,
        *,
        fallback: int = 2_000_000,
        audio: int = 40_000,
        stage: Callable[[str], bool] = everyone_on_stage,
        relayed: tuple[tuple[FakeTrack, tuple[int, ...]], ...] = (),
    ) -> list[MediaEvent]:
        before = len(self.events)
        self.control.tick([(s, fallback, audio, stage) for s in subscribers], relayed, now)
        return self.events[before:]


def viewer(
    track: FakeTrack, bps: int, size: tuple[int, int] | None = (1280, 720)
) -> FakeSubscriber:
    sizes = {"5": size} if size is not None else {}
    return FakeSubscriber("bob", {"5": FakeSlot("video", track)}, sizes, FakeEstimator(bps))


def test_a_big_tile_on_a_fast_link_gets_the_top_layer_and_the_publisher_sends_all_three() -> None:
    track = camera("alice")
    bob = viewer(track, 3_000_000)
    run = Run()
    events = run.tick([bob], 0.0)
    assert bob.consumers["5"].calls == [(2, 2)]
    assert track.layers[2].keyframes == [0.0]  # the switch waits for its key frame
    # A new track keeps every layer (as the publisher sends them: nothing to say).
    assert not [e for e in events if isinstance(e, PublishLayers)]
    assert Downlink("bob", 3000) in events
    assert not [e for e in run.tick([bob], 6.0) if isinstance(e, PublishLayers)]


def test_a_thumbnail_gets_the_lowest_layer_and_only_that_one_is_published() -> None:
    track = camera("alice")
    bob = viewer(track, 3_000_000, (320, 180))
    run = Run()
    events = run.tick([bob], 0.0, stage=lambda mid: False)
    assert bob.consumers["5"].calls == [(0, 2)]
    assert not [e for e in events if isinstance(e, PublishLayers)]  # a new track: all, held
    events = run.tick([bob], 5.0, stage=lambda mid: False)
    assert [e for e in events if isinstance(e, PublishLayers)] == [
        PublishLayers("alice", "1", ["q"])
    ]


def test_a_drop_in_bandwidth_lowers_the_layer_at_once_and_the_top_one_stops_5_s_later() -> None:
    track = camera("alice")
    bob = viewer(track, 3_000_000)
    run = Run()
    run.tick([bob], 0.0)
    bob.estimator = FakeEstimator(500_000)
    events = run.tick([bob], 1.0)
    assert bob.consumers["5"].calls[-1] == (1, 1)  # 460k for video: h at TID 0-1
    assert bob.consumers["5"].cuts == [False, True]  # for bandwidth: f stops at once
    assert track.layers[1].keyframes == [1.0]
    assert Downlink("bob", 500) in events
    assert not [e for e in events if isinstance(e, PublishLayers)]
    assert not [e for e in run.tick([bob], 4.9) if isinstance(e, PublishLayers)]
    assert PublishLayers("alice", "1", ["q", "h"]) in run.tick([bob], 5.0)  # f last needed at 0


def resend_steadily(budget: ResendBudget, bps: int, start: float, end: float) -> None:
    """Resends of 1,000-byte packets at `bps` from `start` to `end` (estimate 300 kbit/s)."""
    step = 8_000 / bps
    t = start
    while t < end:
        budget.refill(t, 300_000)
        assert budget.take(1_000)
        t += step


@pytest.mark.parametrize("fresh", [True, False])
def test_what_the_resends_take_is_left_out_of_the_layers_budget(fresh: bool) -> None:
    # The lab's 300 kbit/s viewer after its step down to q (docs/benchmarks.md, branch
    # cap300): an estimate of 240 kbit/s, 40 kbit/s of audio, q at 150 kbit/s with all its
    # TIDs, and 80 kbit/s of resends of what the full link dropped (read as ~66k after 2 s).
    # Counting the resends too, q at 30 fps does not fit: TID 1 (90k), so the queue drains.
    track = camera("alice")
    bob = viewer(track, 240_000, (320, 180))
    run = Run()
    run.tick([bob], 0.0)
    assert bob.consumers["5"].calls == [(0, 2)]  # 200k for video: q at 30 fps
    bob.estimate_fresh = fresh
    resend_steadily(bob.resend_budget, 80_000, 0.0, 2.0)
    run.tick([bob], 2.0)
    assert bob.consumers["5"].calls[-1] == (0, 1)
    # The resends over, the budget is whole again: q's top TID comes back (an upgrade,
    # after its 1.5 s wait), on a stale estimate too (what the resends took comes back
    # without a new measure, sfu.policy.allocation).
    for now in (4.0, 6.0, 8.0, 10.0):
        run.tick([bob], now)
    assert bob.consumers["5"].calls[-1] == (0, 2)


def test_a_smaller_tile_lowers_the_layer_without_cutting_the_old_one() -> None:
    track = camera("alice")
    bob = viewer(track, 3_000_000)
    run = Run()
    run.tick([bob], 0.0)
    bob.video_sizes["5"] = (640, 360)
    run.tick([bob], 1.0)
    bob.video_sizes["5"] = (320, 180)
    bob.estimator = FakeEstimator(100_000)  # both at once: h is out of reach by size
    run.tick([bob], 2.0)
    assert bob.consumers["5"].calls == [(2, 2), (1, 2), (0, 0)]
    assert bob.consumers["5"].cuts == [False, False, False]


def test_a_hidden_slot_gets_no_video_but_the_lowest_layer_stays_published() -> None:
    track = camera("alice")
    bob = viewer(track, 3_000_000, (0, 0))
    run = Run()
    events = run.tick([bob], 0.0)
    assert bob.consumers["5"].calls == [(None, 0)]
    assert not [e for e in events if isinstance(e, PublishLayers)]
    assert PublishLayers("alice", "1", ["q"]) in run.tick([bob], 5.0)


def test_a_track_nobody_subscribes_to_any_more_keeps_its_lowest_layer() -> None:
    track = camera("alice")
    bob = viewer(track, 3_000_000, (320, 180))
    run = Run()
    run.tick([bob], 0.0)
    assert PublishLayers("alice", "1", ["q"]) in run.tick([bob], 5.0)
    bob.consumers["5"].source = None  # alice left bob's slot; nobody else subscribes
    assert not [e for e in run.tick([bob], 20.0) if isinstance(e, PublishLayers)]


def test_a_track_relayed_to_other_workers_keeps_the_layers_they_need() -> None:
    track = camera("alice")
    run = Run()
    assert not run.tick([], 0.0, relayed=((track, (0, 1, 2)),))
    run.tick([], 1.0, relayed=((track, (0, 1)),))
    assert PublishLayers("alice", "1", ["q", "h"]) in run.tick([], 6.0, relayed=((track, (0, 1)),))


def test_without_an_estimator_the_rembs_and_the_room_table_bound_the_budget() -> None:
    track = camera("alice")
    bob = viewer(track, 0)
    bob.estimator, bob.remb_estimate = None, 600_000
    run = Run()
    run.tick([bob], 0.0, fallback=2_000_000)
    assert bob.consumers["5"].calls[-1] == (1, 2)  # 560k: h whole
    bob.remb_estimate = None
    run = Run()
    run.tick([bob], 0.0, fallback=400_000)
    assert bob.consumers["5"].calls[-1] == (0, 2)  # q whole: h would fit only thinned


def test_a_publisher_without_simulcast_is_thinned_in_time_and_never_told_anything() -> None:
    track = single(camera("alice", simulcast=False))
    bob = viewer(track, 300_000, (640, 360))
    run = Run()
    events = run.tick([bob], 0.0)
    assert bob.consumers["5"].calls == [(0, 0)]  # 260k: TID 0-1 (300k) does not fit, TID 0 does
    assert not [e for e in events if isinstance(e, PublishLayers)]


def test_audio_slots_and_empty_slots_are_left_alone() -> None:
    track = camera("alice")
    bob = FakeSubscriber(
        "bob",
        {"2": FakeSlot("audio", track), "6": FakeSlot("video", None)},
        {},
        FakeEstimator(1_000_000),
    )
    Run().tick([bob], 0.0)
    assert bob.consumers["2"].calls == [] and bob.consumers["6"].calls == []


def steady_viewers(track: FakeTrack, count: int) -> list[FakeSubscriber]:
    return [
        FakeSubscriber(f"v{n}", {"5": FakeSlot("video", track)}, {"5": (1280, 720)}, None)
        for n in range(count)
    ]


def test_subscribers_whose_inputs_did_not_move_are_not_allocated_again() -> None:
    track = camera("alice")
    viewers = steady_viewers(track, 20)
    run = Run()
    for now in (0.0, 0.5, 1.0, 1.5):
        run.tick(viewers, now)
    # The first round chose (2, 2), the second found nothing to change, then steady.
    assert all(v.consumers["5"].calls == [(2, 2), (2, 2)] for v in viewers)
    assert run.control.skipped == 2 * 20


def test_a_layer_that_pauses_is_noticed_at_the_next_round() -> None:
    track = camera("alice")
    viewers = steady_viewers(track, 3)
    run = Run()
    for now in (0.0, 0.5, 1.0):
        run.tick(viewers, now)
    assert all(len(v.consumers["5"].calls) == 2 for v in viewers)  # steady
    track.layers[2].on = False  # f paused by the publisher
    run.tick(viewers, 1.5)
    assert all(len(v.consumers["5"].calls) == 3 for v in viewers)  # allocated again


def test_a_rate_or_budget_that_moved_beyond_the_slack_is_allocated_again() -> None:
    track = camera("alice")
    viewers = steady_viewers(track, 1)
    run = Run()
    for now in (0.0, 0.5, 1.0):
        run.tick(viewers, now, fallback=2_000_000)
    calls = viewers[0].consumers["5"].calls
    run.tick(viewers, 1.2, fallback=2_050_000)  # 2.5 %: noise
    assert len(calls) == 2
    track.layers[2].rates = (700_000, 1_050_000, 1_900_000)  # 12 %: a change
    run.tick(viewers, 1.4, fallback=2_050_000)
    assert len(calls) == 3
    run.tick(viewers, 1.6, fallback=1_500_000)  # the budget fell: f does not fit whole
    assert calls[-1] == (2, 1)


def test_a_steady_subscriber_is_allocated_again_after_the_recheck_period() -> None:
    track = camera("alice")
    viewers = steady_viewers(track, 1)
    run = Run()
    for now in (0.0, 0.5, 1.0, 2.0, 2.4, 2.6):
        run.tick(viewers, now)
    assert len(viewers[0].consumers["5"].calls) == 3  # 0.0, 0.5, and 2.5 s after 0.5


def one_rate(owner: str, bps: int) -> FakeTrack:
    """A publisher without simulcast and without TIDs (the compare_janus fan-outs' publisher)."""
    return single(FakeTrack(None, 0, (640, 360), (bps,), owner=owner, mid="1"))


def test_a_one_rate_track_whose_rate_swings_is_not_allocated_again_but_its_ceiling_follows() -> (
    None
):
    track = one_rate("alice", 1_500_000)
    viewers = steady_viewers(track, 20)
    run = Run()
    for n, now in enumerate((0.0, 0.5, 1.0, 1.5)):
        track.rates = ((1_000_000, 1_500_000, 1_000_000, 2_000_000)[n],)  # swings
        run.tick(viewers, now, fallback=300_000 + 200_000 * n)  # the budget moves too
    # The first round chose, the second found nothing to change, then no allocator at all.
    assert all(v.consumers["5"].calls == [(0, 0), (0, 0)] for v in viewers)
    assert run.control.refreshed == 2 * 20
    assert all(run.control.desired_bps[v.id] == 2_000_000 for v in viewers)  # the last rate


def test_a_one_rate_track_that_stops_flowing_is_allocated_again() -> None:
    track = one_rate("alice", 1_500_000)
    viewers = steady_viewers(track, 1)
    run = Run()
    for now in (0.0, 0.5):
        run.tick(viewers, now)
    track.rates = (0,)
    run.tick(viewers, 1.0)
    assert run.control.refreshed == 0 and len(viewers[0].consumers["5"].calls) == 3


def test_a_single_layer_with_temporal_layers_is_allocated_again_when_its_rates_move() -> None:
    track = single(camera("alice", simulcast=False))  # one layer, three TIDs
    viewers = steady_viewers(track, 1)
    run = Run()
    for now in (0.0, 0.5):
        run.tick(viewers, now, fallback=400_000)
    track.rates = tuple(int(r * 1.5) for r in track.rates)  # TID 1 may no longer fit
    run.tick(viewers, 1.0, fallback=400_000)
    assert run.control.refreshed == 0 and len(viewers[0].consumers["5"].calls) == 3


def test_a_one_rate_slot_next_to_a_simulcast_one_is_allocated_again_when_its_rate_moves() -> None:
    fixed, simulcast = one_rate("alice", 500_000), camera("carol", mid="2")
    for layer in simulcast.layers:  # one rate per layer: simulcast without TIDs
        layer.rates = layer.rates[-1:]
    bob = FakeSubscriber(
        "bob",
        {"5": FakeSlot("video", fixed), "6": FakeSlot("video", simulcast)},
        {"5": (640, 360), "6": (1280, 720)},
        None,
    )
    run = Run()
    for now in (0.0, 0.5):
        run.tick([bob], now, fallback=2_000_000)
    fixed.rates = (900_000,)  # what is left for carol's layers shrank
    run.tick([bob], 1.0, fallback=2_000_000)
    assert run.control.refreshed == 0 and len(bob.consumers["6"].calls) == 3
