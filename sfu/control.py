"""The boundary between the signalling plane and the media plane.

The signalling server decides who may have media and in which group of a
room (the main room or a breakout); the SFU only carries that out.  Every
argument and return value is a plain str/int/float/bool/None/list/dict so
that the same calls can travel as msgpack RPC to SFU worker processes.

What the media plane reports is one of the typed events (`MediaEvent`);
`deliver` hands one to the matching `MediaEvents` method, so a new event
that is not delivered, or one delivered with the wrong fields, is a mypy
error rather than a method name looked up at run time.  Across the worker
RPC they travel tagged (`sfu.workers.api.encode_event`/`decode_event`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NotRequired, Protocol, TypedDict, assert_never

MAIN_GROUP = "main"

# The largest offer SDP the media plane reads (UTF-8 bytes); the signalling
# server refuses a longer `offer` before it gets here.  60 KiB leaves room for
# the envelope in the default 64 KiB WebSocket frame.
MAX_SDP_BYTES = 60 * 1024

# `video_sizes`: the longest slot mid, the largest width or height (device pixels),
# and the most slots one message may name (the SFU also checks the participant's own count).
MAX_MID_LENGTH = 32
MAX_VIDEO_DIMENSION = 8192
MAX_VIDEO_SIZES = 32

# Why MediaEvents.media_closed was called (the media plane ended it by itself).
CONNECT_FAILED = "connect_failed"  # ICE + DTLS did not complete; still admitted
TRANSPORT_FAILED = "transport_failed"  # DTLS closed or ICE consent lost; still admitted
PRECALL_TIMEOUT = "precall_timeout"  # the pre-call test reached its time limit
WORKER_LOST = "worker_lost"  # its SFU worker process died; still admitted, on a live worker


class Slot(TypedDict):
    """One receive slot of a subscriber and who fills it."""

    mid: str
    kind: str  # "audio" or "video"
    participant_id: str | None
    # Optional: which of that participant's tracks fills it, "audio", "camera"
    # or "screen" (a presenter can fill two video slots); absent when empty.
    source: NotRequired[str]


# Who in a subscriber's group sends live media: participant id -> its sources
# ("audio", "camera", "screen"), sorted; a participant sending none is absent.
Publishers = dict[str, list[str]]


class PrecallStats(TypedDict):
    rtt_ms: float | None
    loss: float
    jitter_ms: float | None
    bitrate_kbps: float


class MediaError(Exception):
    """A media request refused; `code` is an error code of docs/protocol.md."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class MediaEvents(Protocol):
    """What the media plane tells the signalling plane (called on its loop)."""

    def slots_changed(
        self, participant_id: str, slots: list[Slot], publishers: Publishers
    ) -> None: ...

    def active_speaker(self, room_id: str, group: str, participant_id: str) -> None: ...

    def media_closed(self, participant_id: str, reason: str) -> None: ...

    def precall_stats(self, participant_id: str, stats: PrecallStats) -> None: ...

    def ice_restart_needed(self, participant_id: str) -> None: ...

    def publish_layers(self, participant_id: str, mid: str, active: list[str]) -> None: ...

    def downlink(self, participant_id: str, estimate_kbps: int) -> None: ...


@dataclass(frozen=True, slots=True)
class SlotsChanged:
    """A subscriber's receive slots were (re)assigned, or who in its group publishes changed."""

    participant_id: str
    slots: list[Slot]
    publishers: Publishers


@dataclass(frozen=True, slots=True)
class ActiveSpeaker:
    """A group's dominant speaker changed."""

    room_id: str
    group: str
    participant_id: str


@dataclass(frozen=True, slots=True)
class MediaClosed:
    """The media plane ended a participant's media by itself (`reason`: see above)."""

    participant_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class PrecallMeasured:
    """Once a second of a pre-call test: what the echo session tells about the network."""

    participant_id: str
    stats: PrecallStats


@dataclass(frozen=True, slots=True)
class IceRestartNeeded:
    """A connected client stopped answering ICE consent checks (RFC 7675): it should restart ICE."""

    participant_id: str


@dataclass(frozen=True, slots=True)
class PublishLayers:
    """Which of a publisher's simulcast encodings (rids) of track `mid` somebody needs."""

    participant_id: str
    mid: str
    active: list[str]


@dataclass(frozen=True, slots=True)
class Downlink:
    """The media plane's estimate of a subscriber's downlink moved (by >= 10 %)."""

    participant_id: str
    estimate_kbps: int


MediaEvent = (
    SlotsChanged
    | ActiveSpeaker
    | MediaClosed
    | PrecallMeasured
    | IceRestartNeeded
    | PublishLayers
    | Downlink
)


def deliver(events: MediaEvents, event: MediaEvent) -> None:
    """Call the `MediaEvents` method for `event`."""
    match event:
        case SlotsChanged():
            events.slots_changed(event.participant_id, event.slots, event.publishers)
        case ActiveSpeaker():
            events.active_speaker(event.room_id, event.group, event.participant_id)
        case MediaClosed():
            events.media_closed(event.participant_id, event.reason)
        case PrecallMeasured():
            events.precall_stats(event.participant_id, event.stats)
        case IceRestartNeeded():
            events.ice_restart_needed(event.participant_id)
        case PublishLayers():
            events.publish_layers(event.participant_id, event.mid, event.active)
        case Downlink():
            events.downlink(event.participant_id, event.estimate_kbps)
        case _:
            assert_never(event)


class MediaControl(Protocol):
    """What the signalling plane asks of the media plane."""

    async def open(self, room_id: str, group: str, participant_id: str) -> None:
        """Allow media for a joined participant; no transport exists before its offer."""

    async def open_precall(self, participant_id: str) -> None:
        """Allow a pre-call echo session: its own media is sent back to it."""

    async def offer(self, participant_id: str, sdp: str) -> str:
        """Negotiate (or renegotiate) and return the SDP answer; raises MediaError."""

    async def candidate(
        self, participant_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """Add a trickled remote ICE candidate; raises MediaError."""

    async def pin(self, participant_id: str, target: str | None) -> None:
        """Keep `target`'s video in one of `participant_id`'s slots (None unpins)."""

    async def video_sizes(self, participant_id: str, sizes: dict[str, list[int]]) -> None:
        """Remember the rendered size of each video receive slot (mid -> [width, height]).

        Sizes are device pixels, 0 = hidden; raises MediaError `bad_request` for more
        entries than the participant has video slots.  Replaces the previous sizes.
        """

    async def move(self, participant_id: str, group: str) -> None:
        """Move a participant's media to another group of the same room."""

    async def close(self, participant_id: str) -> None:
        """Cut all media of a participant at once. Idempotent."""

    async def close_room(self, room_id: str) -> None:
        """Cut the media of every participant of a room. Idempotent."""
