"""Typed media events: each one crosses the worker RPC as msgpack and comes back the same."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from sfu.control import (
    ActiveSpeaker,
    Downlink,
    IceRestartNeeded,
    MediaClosed,
    MediaEvent,
    PrecallMeasured,
    PrecallStats,
    PublishLayers,
    Slot,
    SlotsChanged,
    deliver,
)
from sfu.workers import rpc
from sfu.workers.api import EVENTS, WORKER_NOTIFICATIONS, decode_event, encode_event, params_ok
from sfu.workers.rpc import FrameDecoder, Notification
from tests.sfu_live import RecordingEvents

BOB_SLOTS: list[Slot] = [
    {"mid": "0", "kind": "audio", "participant_id": "alice", "source": "audio"},
    {"mid": "1", "kind": "video", "participant_id": None},
]
DAVE_STATS: PrecallStats = {"rtt_ms": None, "loss": 0.25, "jitter_ms": 3.5, "bitrate_kbps": 812.0}
SAMPLES: list[MediaEvent] = [
    SlotsChanged("bob", BOB_SLOTS, {"alice": ["audio", "camera"]}),
    SlotsChanged("carol", [], {}),
    ActiveSpeaker("room-1", "main", "alice"),
    MediaClosed("alice", "transport_failed"),
    PrecallMeasured("dave", DAVE_STATS),
    IceRestartNeeded("erin"),
    PublishLayers("frank", "1", ["q", "h"]),
    PublishLayers("frank", "3", []),
    Downlink("gina", 480),
]


def over_the_wire(event: MediaEvent) -> Notification:
    """The ``event`` notification a worker writes, as the pool's decoder reads it."""
    tag, values = encode_event(event)
    messages = FrameDecoder().feed(rpc.notify_frame("event", [tag, values]))
    assert len(messages) == 1
    message = messages[0]
    assert isinstance(message, Notification)
    return message


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_each_event_comes_back_from_msgpack_as_the_same_event(event: MediaEvent) -> None:
    message = over_the_wire(event)
    assert message.method == "event"
    assert params_ok(message.params, WORKER_NOTIFICATIONS["event"])
    decoded = decode_event(message.params[0], message.params[1])
    assert type(decoded) is type(event)
    assert decoded == event


def test_every_event_type_has_a_tag_and_a_sample() -> None:
    kinds = set(get_args(MediaEvent))
    assert {kind for kind, _ in EVENTS.values()} == kinds
    assert {type(event) for event in SAMPLES} == kinds


@pytest.mark.parametrize(
    ("tag", "values"),
    [
        ("slot_changed", ["bob", []]),  # no such event
        ("getattr", ["bob"]),
        ("slots_changed", ["bob"]),  # a field missing
        ("slots_changed", ["bob", [], {}, "extra"]),
        ("slots_changed", ["bob", {}, {}]),  # slots are a list
        ("slots_changed", ["bob", [], []]),  # publishers are a map
        ("active_speaker", ["room-1", "main", None]),
        ("active_speaker", ["room-1", True, "alice"]),
        ("media_closed", [7, "transport_failed"]),
        ("precall_stats", ["dave", [1, 2]]),
        ("ice_restart_needed", [7]),
        ("ice_restart_needed", []),
        ("publish_layers", ["frank", "1", "q"]),  # active is a list
        ("publish_layers", ["frank", None, ["q"]]),
        ("downlink", ["gina", 480.5]),
        ("downlink", ["gina", True]),
    ],
)
def test_a_malformed_event_is_refused(tag: str, values: list[Any]) -> None:
    assert decode_event(tag, values) is None


def test_deliver_calls_the_matching_media_events_method() -> None:
    events = RecordingEvents()
    for event in SAMPLES:
        deliver(events, event)
    assert events.slot_history == [("bob", BOB_SLOTS), ("carol", [])]
    assert events.publishers == {"bob": {"alice": ["audio", "camera"]}, "carol": {}}
    assert events.speakers == [("room-1", "main", "alice")]
    assert events.closed == [("alice", "transport_failed")]
    assert events.precall == [("dave", DAVE_STATS)]
    assert events.restarts_needed == ["erin"]
    assert events.layers == [("frank", "1", ["q", "h"]), ("frank", "3", [])]
    assert events.downlinks == [("gina", 480)]
