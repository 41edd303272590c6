"""The layer allocation in slices (LayerControl.begin/add/finish, LayerClock.steps).

One round at 400 subscribers held the event loop 5-21 ms (docs/benchmarks.md,
"Event-loop stalls at 400 subscribers"); in slices it chooses and publishes
exactly what one whole round does, and the loop may turn between slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sfu.control import MediaEvent, PublishLayers
from sfu.routing.group import Group
from sfu.routing.layerclock import LAYER_SLICE, LayerClock
from sfu.routing.layering import LayerControl
from sfu.routing.participant import Participant
from sfu.settings import MediaSettings
from sfu.transport.webrtc import WebRtcTransport
from tests.test_sfu_layering import (
    FakeEstimator,
    FakeSlot,
    FakeSubscriber,
    FakeTrack,
    camera,
    everyone_on_stage,
)

SIZES = ((1280, 720), (640, 360), (320, 180), (0, 0))
ESTIMATES = (150_000, 600_000, 1_200_000, 4_000_000)


def room(viewers: int) -> tuple[list[FakeTrack], list[FakeSubscriber]]:
    """Three simulcast cameras and `viewers` subscribers of all three, sizes and links mixed."""
    tracks = [camera(f"pub{n}", mid=str(n)) for n in range(3)]
    subscribers = [
        FakeSubscriber(
            f"v{n}",
            {str(k): FakeSlot("video", t) for k, t in enumerate(tracks)},
            {str(k): SIZES[(n + k) % len(SIZES)] for k in range(3)},
            FakeEstimator(ESTIMATES[n % len(ESTIMATES)]),
        )
        for n in range(viewers)
    ]
    return tracks, subscribers


def choices(subscribers: list[FakeSubscriber]) -> list[list[tuple[int | None, int]]]:
    return [[c for slot in s.consumers.values() for c in slot.calls] for s in subscribers]


def test_a_round_in_slices_chooses_and_publishes_what_one_whole_round_does() -> None:
    whole_events: list[MediaEvent] = []
    sliced_events: list[MediaEvent] = []
    _, whole = room(3 * LAYER_SLICE + 7)
    _, sliced = room(3 * LAYER_SLICE + 7)
    one, parts = LayerControl(whole_events.append), LayerControl(sliced_events.append)
    for now in (0.0, 0.5, 2.0, 8.0):  # the new tracks, then steady, then the hold's end
        for n, s in enumerate(whole):  # the links move: the choices change between rounds
            cast(FakeEstimator, s.estimator).estimate_bps = ESTIMATES[int(n + now) % 4]
        for n, s in enumerate(sliced):
            cast(FakeEstimator, s.estimator).estimate_bps = ESTIMATES[int(n + now) % 4]
        one.tick([(s, 2_000_000, 40_000, everyone_on_stage) for s in whole], (), now)
        parts.begin()
        for start in range(0, len(sliced), LAYER_SLICE):
            batch = sliced[start : start + LAYER_SLICE]
            parts.add([(s, 2_000_000, 40_000, everyone_on_stage) for s in batch], now)
        parts.finish((), now)
    assert choices(sliced) == choices(whole)
    assert sliced_events == whole_events
    assert any(isinstance(e, PublishLayers) for e in whole_events)
    assert parts.held == one.held and parts.desired_bps == one.desired_bps


def test_a_track_forgotten_between_slices_is_not_published_again() -> None:
    """Its publisher left during the round's pause: nothing is said about it any more."""
    events: list[MediaEvent] = []
    control = LayerControl(events.append)
    tracks, viewers = room(2)
    control.begin()
    control.add([(viewers[0], 2_000_000, 0, everyone_on_stage)], 0.0)
    control.forget_track("pub0", "0")
    viewers[1].consumers["0"].source = None  # its slot emptied as the publisher left
    control.add([(viewers[1], 2_000_000, 0, everyone_on_stage)], 0.0)
    control.finish((), 0.0)
    assert control.needs.needed(("pub0", "0")) == frozenset()
    assert [e for e in events if isinstance(e, PublishLayers) and e.participant_id == "pub0"] == []
    assert tracks[1].owner == "pub1"  # the others are published as usual
    assert control.needs.needed(("pub1", "1")) == frozenset({0, 1, 2})


@dataclass
class Connected:
    """What the layer clock reads of a transport (a real one needs ICE and DTLS)."""

    connected: bool = True


def people(count: int) -> list[Participant]:
    group = Group("r", "main")
    result = []
    for n in range(count):
        p = Participant(
            f"p{n}", "r", group, precall=False, settings=MediaSettings(),
            on_transport_lost=lambda participant, reason: None,
        )  # fmt: skip
        p.transport = cast(WebRtcTransport, Connected())
        result.append(p)
    return result


def test_the_layer_clock_yields_between_slices_and_skips_who_closed_meanwhile() -> None:
    participants = people(3 * LAYER_SLICE + 1)
    clock = LayerClock(lambda event: None, {p.id: p for p in participants})
    relayed_at: list[float] = []

    def relayed(now: float) -> tuple[()]:
        relayed_at.append(now)
        return ()

    times = iter(float(t) for t in range(100))
    steps = clock.steps(participants, relayed, lambda: next(times))
    next(steps)  # the first slice ran
    assert clock.rounds == LAYER_SLICE
    participants[-1].closed = True  # it left while the loop turned
    pauses = 1 + sum(1 for _ in steps)
    assert pauses == 3  # 4 slices: the loop may turn 3 times
    assert clock.rounds == 3 * LAYER_SLICE  # all due, but the one that closed
    assert len(relayed_at) == 1  # the relay's demand read once, at the end
