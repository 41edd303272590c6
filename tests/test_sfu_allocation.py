"""Layer allocation across one subscriber's slots, and what publishers must send: pure."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.policy.allocation import (
    UPGRADE_MARGIN,
    LayerAllocator,
    LayerChoice,
    LayerInfo,
    LayerNeeds,
    SlotDemand,
    allocate,
    cap_of,
    ladder,
)

FUZZ = settings(max_examples=300, deadline=None)

# What Chromium sends for a 1280x720 camera in L1T3 (cumulative bits/s per TID).
Q = LayerInfo(0, 320, 180, (60_000, 90_000, 150_000))
H = LayerInfo(1, 640, 360, (200_000, 300_000, 500_000))
F = LayerInfo(2, 1280, 720, (700_000, 1_050_000, 1_700_000))
CAMERA = (Q, H, F)


def stage(mid: str = "1", width: int = 1280, height: int = 720, hidden: bool = False) -> SlotDemand:
    return SlotDemand(mid, True, width, height, CAMERA, hidden)


def thumb(mid: str, width: int = 320, height: int = 180) -> SlotDemand:
    return SlotDemand(mid, False, width, height, CAMERA)


def cost(slots: list[SlotDemand], choices: dict[str, LayerChoice]) -> int:
    total = 0
    for slot in slots:
        choice = choices[slot.mid]
        if choice.spatial is not None and slot.layers:
            total += slot.layers[choice.spatial].bitrates[choice.temporal]
    return total


def test_plenty_of_bandwidth_gives_the_stage_the_top_layer_and_thumbnails_the_lowest() -> None:
    slots = [thumb("2"), stage("1"), thumb("3")]
    assert allocate(slots, 10_000_000) == {
        "1": LayerChoice(2, 2),
        "2": LayerChoice(0, 2),
        "3": LayerChoice(0, 2),
    }


def test_a_small_stage_tile_never_gets_a_layer_bigger_than_it_shows() -> None:
    assert allocate([stage(width=600, height=338)], 10_000_000)["1"] == LayerChoice(1, 2)
    assert allocate([stage(width=700, height=394)], 10_000_000)["1"] == LayerChoice(1, 2)
    assert allocate([stage(width=720, height=405)], 10_000_000)["1"] == LayerChoice(2, 2)
    assert allocate([stage(width=300, height=169)], 10_000_000)["1"] == LayerChoice(0, 2)
    assert allocate([stage(width=2560, height=1440)], 10_000_000)["1"] == LayerChoice(2, 2)


def test_an_unknown_rendered_size_lets_the_stage_have_the_top_layer() -> None:
    assert cap_of(stage(width=0, height=0)) == 2


def test_layer_sizes_not_seen_yet_are_derived_from_a_known_one() -> None:
    layers = (LayerInfo(0, 0, 0, Q.bitrates), H, LayerInfo(2, 0, 0, F.bitrates))
    slot = SlotDemand("1", True, 1000, 560, layers)
    assert cap_of(slot) == 2
    assert cap_of(SlotDemand("1", True, 300, 170, layers)) == 0


def test_a_hidden_slot_gets_no_video_and_costs_nothing() -> None:
    slots = [stage(hidden=True), thumb("2")]
    choices = allocate(slots, 200_000)
    assert choices["1"] == LayerChoice(None, 0)
    assert choices["2"] == LayerChoice(0, 2)


def test_a_publisher_without_simulcast_is_forwarded_whole() -> None:
    slot = SlotDemand("1", True, 640, 360, ())
    assert allocate([slot], 0) == {"1": LayerChoice(0, 2)}


def test_a_publisher_without_simulcast_is_thinned_in_time_but_never_paused_by_the_budget() -> None:
    single = SlotDemand("1", True, 640, 360, (LayerInfo(0, 640, 360, (1_500_000,)),))
    l1t3 = SlotDemand("2", True, 640, 360, (LayerInfo(0, 640, 360, H.bitrates),))
    assert allocate([single], 100_000) == {"1": LayerChoice(0, 0)}  # all it sends
    assert allocate([l1t3], 100_000) == {"2": LayerChoice(0, 0)}  # its TID 0 only
    assert allocate([l1t3], 350_000) == {"2": LayerChoice(0, 1)}
    # Its cost comes first: a simulcast slot next to it is left what remains.
    choices = allocate([single, stage("3")], 1_600_000)
    assert choices == {"1": LayerChoice(0, 0), "3": LayerChoice(0, 0)}


def test_a_tight_budget_drops_frame_rate_before_resolution() -> None:
    steps = [s.choice for s in ladder(stage())]
    assert steps[:4] == [LayerChoice(0, 0), LayerChoice(0, 1), LayerChoice(0, 2), LayerChoice(1, 1)]
    # on f, 1.2 Mbit/s: f at TID 0-1 (1.05 M) fits, f whole (1.7 M) does not
    assert allocate([stage()], 1_200_000, {"1": LayerChoice(2, 2)})["1"] == LayerChoice(2, 1)
    assert allocate([stage()], 650_000, {"1": LayerChoice(2, 2)})["1"] == LayerChoice(1, 2)


def test_a_higher_spatial_layer_is_taken_only_when_it_fits_whole() -> None:
    """Its TIDs thin it on the way down, not a cheap way up: the lab's 400 kbit/s viewer
    went from q at 30 fps to h at 7.5 fps and back, a key frame and a freeze each time."""
    on_q = {"1": LayerChoice(0, 2)}
    assert allocate([stage()], 400_000, on_q)["1"] == LayerChoice(0, 2)  # h TID 0-1 would fit
    whole_h = 500_000 + int(500_000 * UPGRADE_MARGIN)
    assert allocate([stage()], whole_h, on_q)["1"] == LayerChoice(1, 2)
    assert allocate([stage()], whole_h - 1, on_q)["1"] == LayerChoice(0, 2)
    assert allocate([stage()], 1_200_000)["1"] == LayerChoice(1, 2)  # a new slot too
    # once on h, thinning it and coming back up within it is as before
    assert allocate([stage()], 400_000, {"1": LayerChoice(1, 2)})["1"] == LayerChoice(1, 1)


def test_the_first_stage_slot_keeps_its_lowest_step_whatever_the_budget() -> None:
    choices = allocate([thumb("2"), stage("1"), stage("3")], 20_000)
    assert choices == {"1": LayerChoice(0, 0), "2": LayerChoice(None, 0), "3": LayerChoice(None, 0)}
    assert allocate([thumb("2")], 0) == {"2": LayerChoice(0, 0)}


def test_only_when_even_the_lowest_tid_does_not_fit_is_a_slot_paused() -> None:
    assert allocate([stage()], 70_000)["1"] == LayerChoice(0, 0)
    assert allocate([stage(), stage("2")], 120_000)["2"] == LayerChoice(None, 0)


def test_the_stage_is_served_before_thumbnails_but_thumbnails_keep_their_lowest_step() -> None:
    slots = [thumb("2"), thumb("3"), stage("1")]
    choices = allocate(slots, 800_000)
    assert choices["1"] == LayerChoice(1, 2)  # 800k - 2 * 60k = 680k: h whole, not f
    assert choices["2"].temporal > 0 and choices["3"].temporal > 0  # the rest: thumbnails


def test_the_stage_gets_the_lowest_step_first_when_not_all_fit() -> None:
    slots = [thumb("2"), stage("1")]
    choices = allocate(slots, 100_000)
    assert choices == {"1": LayerChoice(0, 0), "2": LayerChoice(None, 0)}


def test_an_upgrade_needs_a_margin_above_the_next_steps_bitrate() -> None:
    before = {"1": LayerChoice(2, 1)}
    just_enough = 1_700_000  # f whole exactly
    assert allocate([stage()], just_enough, before)["1"] == LayerChoice(2, 1)
    with_margin = int(1_700_000 * (1 + UPGRADE_MARGIN)) + 1
    assert allocate([stage()], with_margin, before)["1"] == LayerChoice(2, 2)


def test_the_current_choice_is_kept_without_a_margin() -> None:
    before = {"1": LayerChoice(2, 1)}
    assert allocate([stage()], 1_050_000, before)["1"] == LayerChoice(2, 1)
    assert allocate([stage()], 1_049_999, before)["1"] == LayerChoice(1, 2)


def test_a_higher_layer_is_thinned_to_half_its_frame_rate_not_to_a_quarter() -> None:
    """The network lab's 1 Mbit/s viewer: the first estimate after the cap (~770 kbit/s
    for video) afforded f at TID 0, 1280x720 at 7.5 fps, on a link that cannot carry f's
    key frames; the next layer whole is the better picture and fits the link."""
    on_f = {"1": LayerChoice(2, 2)}
    assert allocate([stage()], 770_000, on_f)["1"] == LayerChoice(1, 2)
    assert allocate([stage()], 1_100_000, on_f)["1"] == LayerChoice(2, 1)  # 15 fps: kept
    assert allocate([stage()], 320_000, {"1": LayerChoice(1, 2)})["1"] == LayerChoice(1, 1)
    assert allocate([stage()], 250_000, {"1": LayerChoice(1, 2)})["1"] == LayerChoice(0, 2)
    # The lowest layer is the floor: thinned all the way.
    assert allocate([stage()], 65_000, {"1": LayerChoice(0, 2)})["1"] == LayerChoice(0, 0)
    # Two temporal layers: TID 0 is half the frame rate, so it stays a step.
    two = (LayerInfo(0, 320, 180, (75_000, 150_000)), LayerInfo(1, 640, 360, (250_000, 500_000)))
    steps = [s.choice for s in ladder(SlotDemand("1", True, 640, 360, two))]
    assert steps == [LayerChoice(0, 0), LayerChoice(0, 1), LayerChoice(1, 0), LayerChoice(1, 1)]


def test_a_layer_not_flowing_is_costed_at_a_nominal_bitrate_so_it_can_be_asked_for() -> None:
    paused_f = LayerInfo(2, 1280, 720, (0, 0, 0))
    slot = SlotDemand("1", True, 1280, 720, (Q, H, paused_f))
    assert allocate([slot], 3_000_000)["1"] == LayerChoice(2, 2)
    assert allocate([slot], 600_000)["1"] == LayerChoice(1, 2)


def test_the_allocator_downgrades_at_once_and_upgrades_only_after_a_while() -> None:
    allocator = LayerAllocator(upgrade_after_s=1.5)
    assert allocator.update([stage()], 3_000_000, 0.0)["1"] == LayerChoice(2, 2)
    assert allocator.update([stage()], 400_000, 1.0)["1"] == LayerChoice(1, 1)
    assert allocator.update([stage()], 3_000_000, 2.0)["1"] == LayerChoice(1, 1)
    assert allocator.update([stage()], 3_000_000, 3.0)["1"] == LayerChoice(1, 1)
    assert allocator.update([stage()], 3_000_000, 3.5)["1"] == LayerChoice(2, 2)


def test_an_upgrade_that_stops_being_possible_restarts_its_wait() -> None:
    allocator = LayerAllocator(upgrade_after_s=1.5)
    allocator.update([stage()], 400_000, 0.0)
    allocator.update([stage()], 3_000_000, 1.0)
    allocator.update([stage()], 400_000, 2.0)
    assert allocator.update([stage()], 3_000_000, 2.6)["1"] == LayerChoice(0, 2)
    assert allocator.update([stage()], 3_000_000, 4.2)["1"] == LayerChoice(2, 2)


def test_an_upgrade_goes_only_as_high_as_has_been_possible_for_the_whole_wait() -> None:
    # The network lab's 300 kbit/s viewer: held at q's TID 1 with q's TID 2 possible,
    # then in the tick its wait ended h's emptying meter made h look cheap; it was
    # stepped up to h, which did not fit the link, and froze 4.8 s.
    allocator = LayerAllocator(upgrade_after_s=1.5)
    assert allocator.update([stage()], 120_000, 0.0)["1"] == LayerChoice(0, 1)
    for now in (0.1, 0.5, 1.0, 1.4):
        assert allocator.update([stage()], 200_000, now)["1"] == LayerChoice(0, 1)
    cheap_h = LayerInfo(1, 640, 360, (60_000, 90_000, 150_000))
    looks_cheap = SlotDemand("1", True, 1280, 720, (Q, cheap_h, F))
    assert allocate([looks_cheap], 200_000, {"1": LayerChoice(0, 1)})["1"] == LayerChoice(1, 2)
    # q's TID 2 has waited its 1.5 s; h only just became possible: q's TID 2.
    assert allocator.update([looks_cheap], 200_000, 1.6)["1"] == LayerChoice(0, 2)
    assert allocator.waiting  # h waits its own time
    assert allocator.update([stage()], 200_000, 1.8)["1"] == LayerChoice(0, 2)
    assert not allocator.waiting  # h is no longer possible: forgotten
    assert allocator.update([stage()], 200_000, 3.5)["1"] == LayerChoice(0, 2)


def test_a_higher_upgrade_possible_for_the_whole_wait_is_taken_at_once() -> None:
    allocator = LayerAllocator(upgrade_after_s=1.5)
    allocator.update([stage()], 120_000, 0.0)
    allocator.update([stage()], 200_000, 0.5)  # q's TID 2 possible
    allocator.update([stage()], 3_000_000, 1.0)  # f possible
    assert allocator.update([stage()], 3_000_000, 2.0)["1"] == LayerChoice(0, 2)
    assert allocator.update([stage()], 3_000_000, 2.5)["1"] == LayerChoice(2, 2)
    # A dip to what a lower upgrade needs keeps that one's wait, not the higher one's.
    allocator.update([stage()], 120_000, 3.0)
    allocator.update([stage()], 3_000_000, 3.1)
    allocator.update([stage()], 700_000, 3.5)  # h possible since 3.1, f no longer
    assert allocator.update([stage()], 3_000_000, 4.7)["1"] == LayerChoice(1, 2)
    assert allocator.update([stage()], 3_000_000, 6.1)["1"] == LayerChoice(1, 2)
    assert allocator.update([stage()], 3_000_000, 6.2)["1"] == LayerChoice(2, 2)


def test_a_slot_that_goes_away_is_forgotten() -> None:
    allocator = LayerAllocator()
    allocator.update([stage(), thumb("2")], 3_000_000, 0.0)
    assert set(allocator.update([stage()], 3_000_000, 1.0)) == {"1"}
    assert set(allocator.choices) == {"1"}


layer_bitrates = st.lists(st.integers(1, 400_000), min_size=1, max_size=3).map(
    lambda xs: tuple(sorted(xs))
)


@st.composite
def layer_sets(draw: st.DrawFn) -> tuple[LayerInfo, ...]:
    count = draw(st.integers(0, 3))
    layers = []
    floor = 0
    for index in range(count):
        rates = tuple(floor + r for r in draw(layer_bitrates))
        floor = rates[-1]
        width = draw(st.sampled_from([0, 320 << index]))
        layers.append(LayerInfo(index, width, width * 9 // 16, rates))
    return tuple(layers)


@st.composite
def slot_lists(draw: st.DrawFn) -> list[SlotDemand]:
    count = draw(st.integers(1, 9))
    return [
        SlotDemand(
            str(n),
            draw(st.booleans()),
            draw(st.integers(0, 2000)),
            draw(st.integers(0, 1200)),
            draw(layer_sets()),
            draw(st.booleans()) and n % 4 == 3,
        )
        for n in range(count)
    ]


def steps_cost(slot: SlotDemand, choice: LayerChoice) -> int:
    if choice.spatial is None or not slot.layers:
        return 0
    return slot.layers[choice.spatial].bitrates[choice.temporal]


@FUZZ
@given(slot_lists(), st.integers(0, 3_000_000))
def test_choices_never_exceed_the_budget_nor_the_cap(slots: list[SlotDemand], budget: int) -> None:
    choices = allocate(slots, budget)
    assert set(choices) == {s.mid for s in slots}
    # A one-layer (no simulcast) slot and the first one are never paused: their lowest
    # step may pass the budget.
    shown = [s for s in sorted(slots, key=lambda s: not s.stage) if s.layers and not s.hidden]
    forced = sum(
        s.layers[0].bitrates[0] for n, s in enumerate(shown) if n == 0 or len(s.layers) == 1
    )
    assert sum(steps_cost(s, choices[s.mid]) for s in slots) <= budget + forced
    for slot in slots:
        choice = choices[slot.mid]
        if slot.layers and choice.spatial is not None:
            assert choice.spatial <= cap_of(slot)
            assert not slot.hidden
            if not slot.stage:
                assert choice.spatial == 0


@FUZZ
@given(slot_lists(), st.integers(0, 3_000_000))
def test_nobody_is_paused_when_every_lowest_step_fits(slots: list[SlotDemand], budget: int) -> None:
    lowest = sum(int(s.layers[0].bitrates[0] * (1 + UPGRADE_MARGIN)) + 1 for s in slots if s.layers)
    choices = allocate(slots, budget)
    if lowest <= budget:
        for slot in slots:
            assert choices[slot.mid].spatial is not None or slot.hidden


@FUZZ
@given(slot_lists(), st.integers(0, 3_000_000))
def test_a_thumbnail_climbs_only_once_no_stage_slot_can(
    slots: list[SlotDemand], budget: int
) -> None:
    choices = allocate(slots, budget)
    left = budget - sum(steps_cost(s, choices[s.mid]) for s in slots)
    climbed = [s for s in slots if not s.stage and s.layers and choices[s.mid].temporal > 0]
    if not climbed:
        return
    for slot in slots:
        if slot.stage and slot.layers and not slot.hidden:
            steps = ladder(slot)
            choice = choices[slot.mid]
            at = [st_.choice for st_ in steps].index(choice) if choice.spatial is not None else -1
            current = steps[at].bps if at >= 0 else 0
            if at + 1 < len(steps):  # it could not take its next step even at the end
                need = steps[at + 1].bps  # everything is an upgrade here
                spatial = steps[at + 1].choice.spatial
                if spatial and (at < 0 or steps[at].choice.spatial != spatial):
                    need = max(s_.bps for s_ in steps if s_.choice.spatial == spatial)  # whole
                assert need - current + int(need * UPGRADE_MARGIN) > left


@FUZZ
@given(slot_lists(), st.integers(0, 3_000_000))
def test_the_same_budget_again_keeps_every_choice(slots: list[SlotDemand], budget: int) -> None:
    first = allocate(slots, budget)
    assert allocate(slots, budget, first) == first


def test_each_needed_layer_is_held_five_seconds_after_its_last_need() -> None:
    needs: LayerNeeds[tuple[str, str]] = LayerNeeds(hold_s=5.0)
    track = ("alice", "1")
    assert needs.update({track: [2, 0]}, 0.0) == {track: frozenset({0, 1, 2})}
    assert needs.update({track: [0]}, 1.0) == {}
    assert needs.update({track: [0]}, 4.9) == {}
    assert needs.update({track: [0]}, 5.0) == {track: frozenset({0})}


def test_every_layer_up_to_the_highest_chosen_is_needed() -> None:
    needs: LayerNeeds[str] = LayerNeeds(hold_s=5.0)
    assert needs.update({"t": [2]}, 0.0) == {"t": frozenset({0, 1, 2})}
    assert needs.update({"t": [1, None]}, 1.0) == {}
    assert needs.update({"t": [1, None]}, 5.0) == {"t": frozenset({0, 1})}


def test_the_lowest_layer_stays_on_while_anybody_subscribes_even_paused() -> None:
    needs: LayerNeeds[str] = LayerNeeds(hold_s=5.0)
    assert needs.update({"t": [None, None]}, 0.0) == {"t": frozenset({0})}
    assert needs.update({"t": [None]}, 60.0) == {}
    assert needs.needed("t") == frozenset({0})


def test_a_track_nobody_subscribes_to_any_more_is_paused_after_the_hold() -> None:
    needs: LayerNeeds[str] = LayerNeeds(hold_s=5.0)
    needs.update({"t": [1]}, 0.0)
    assert needs.update({}, 3.0) == {}
    assert needs.update({}, 5.0) == {"t": frozenset()}
    assert needs.update({}, 10.0) == {}
    assert needs.update({"t": [0]}, 11.0) == {"t": frozenset({0})}


def test_a_forgotten_track_reports_nothing() -> None:
    needs: LayerNeeds[str] = LayerNeeds()
    needs.update({"t": [2]}, 0.0)
    needs.forget("t")
    assert needs.update({}, 100.0) == {}
    assert needs.needed("t") == frozenset()
