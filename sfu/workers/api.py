"""The messages between the pool and its SFU workers, and their parameter types.

Both sides check every message against these tables before acting on it
(`params_ok`), so a malformed message is refused or dropped and counted,
never half-applied.  Plain msgpack types only; `None` is written as
``type(None)``.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sfu.control import (
    ActiveSpeaker,
    Downlink,
    IceRestartNeeded,
    MediaClosed,
    MediaEvent,
    PrecallMeasured,
    PublishLayers,
    SlotsChanged,
)

_OPT_STR = (str, type(None))
_OPT_INT = (int, type(None))

# Pool -> worker requests (answered), besides "init" (one map).
REQUESTS: dict[str, tuple[Any, ...]] = {
    "open": (str, str, str),
    "open_precall": (str,),
    "offer": (str, str),
    "candidate": (str, str, _OPT_STR, _OPT_INT),
    "pin": (str, _OPT_STR),
    "video_sizes": (str, dict),
    "move": (str, str),
    "close": (str,),
    "close_room": (str,),
    "ping": (),
    "stop": (),
}

# Pool -> worker notifications: routing of the relay and group roles.
NOTIFICATIONS: dict[str, tuple[Any, ...]] = {
    "peers": (list,),  # [[origin, host, port], ...] of every live worker
    "relay_out": (int, list),  # local stream, destination origins
    "remote_add": (int, int, str, str, str, dict),  # origin, stream, room, group, pid, desc
    "remote_remove": (int, int),  # origin, stream
    "group_role": (str, str, bool, bool, int),  # room, group, leader, shared, size
    "impose": (str, str, list, list),  # room, group, video order, audio order
}

# Worker -> pool notifications.
WORKER_NOTIFICATIONS: dict[str, tuple[Any, ...]] = {
    "event": (str, list),  # a MediaEvent: its tag and fields (encode_event)
    "streams": (str, list),  # participant, descriptions of its published streams
    "group_order": (str, str, list, list),  # room, group, video order, audio order
    "load": (dict,),  # packets/s, CPU, memory, stats()
}

# The MediaEvents a worker may report: tag -> (event type, field types).
EVENTS: dict[str, tuple[type[MediaEvent], tuple[Any, ...]]] = {
    "slots_changed": (SlotsChanged, (str, list, dict)),
    "active_speaker": (ActiveSpeaker, (str, str, str)),
    "media_closed": (MediaClosed, (str, str)),
    "precall_stats": (PrecallMeasured, (str, dict)),
    "ice_restart_needed": (IceRestartNeeded, (str,)),
    "publish_layers": (PublishLayers, (str, str, list)),
    "downlink": (Downlink, (str, int)),
}
_TAGS: dict[type[MediaEvent], str] = {kind: tag for tag, (kind, _) in EVENTS.items()}


def encode_event(event: MediaEvent) -> tuple[str, list[Any]]:
    """An event as the ``event`` notification's parameters: its tag and its fields in order."""
    return _TAGS[type(event)], [getattr(event, f.name) for f in fields(event)]


def decode_event(tag: str, values: list[Any]) -> MediaEvent | None:
    """The event `encode_event` wrote, or None if `tag` or the field types are wrong."""
    entry = EVENTS.get(tag)
    if entry is None or not params_ok(values, entry[1]):
        return None
    return entry[0](*values)


def params_ok(params: list[Any], spec: tuple[Any, ...]) -> bool:
    """Whether `params` match the types of `spec` (a bool is not an int here)."""
    if len(params) != len(spec):
        return False
    for value, kind in zip(params, spec, strict=True):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            return False
        if not isinstance(value, kinds):
            return False
    return True
