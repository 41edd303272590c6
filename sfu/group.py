"""One group of a room (the main room or a breakout): who is seen and heard.

Media only flows between members of the same group.  A `Group` follows the
dominant speaker from the members' RFC 6464 audio levels (`sfu.speaker`),
keeps the last-N history of dominant speakers, and fills each member's
receive slots with `sfu.selection.assign_slots`:

* video: the pinned participant, then screen shares, then cameras by most
  recent dominant speech (last-N), then the other cameras;
* audio: the loudest speakers, then the other audio publishers by recency,
  so that free slots are always filled and a new speaker is heard at once.

A participant's screen share is a video source of its own (its key is the
participant id plus `SCREEN`), so a presenter can fill two slots.  A member
never receives its own media, except a pre-call session which receives
exactly its own.  Switching a video slot is completed by the consumer when
the new source's key frame arrives; the switch asks for one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .control import Slot
from .producer import Producer
from .selection import assign_slots, diff, last_n_order
from .speaker import DominantSpeaker

if TYPE_CHECKING:
    from .participant import Participant

SCREEN = "\x1fscreen"
MAX_HISTORY = 64


def source_key(participant_id: str, source: str) -> str:
    return participant_id + SCREEN if source == "screen" else participant_id


def participant_of(key: str | None) -> str | None:
    return None if key is None else key.split(SCREEN, 1)[0]


def source_of(key: str, kind: str) -> str:
    """ "audio", "camera" or "screen" for a slot's source key."""
    if kind == "audio":
        return "audio"
    return "screen" if key.endswith(SCREEN) else "camera"


class Group:
    """Members of one (room, group) and their slot assignment (see module doc)."""

    def __init__(self, room_id: str, name: str, *, precall: bool = False) -> None:
        self.room_id = room_id
        self.name = name
        self.precall = precall
        self.members: dict[str, Participant] = {}
        # Producers pass voice=True for senders that never set the RFC 6464
        # voice flag (see Producer._read_level), so the flag can be trusted.
        self.speaker = DominantSpeaker()
        self.history: list[str] = []  # dominant speakers, most recent first
        self.dirty = True
        self._orders: tuple[list[str], list[str]] | None = None

    def __len__(self) -> int:
        return len(self.members)

    def add(self, participant: Participant) -> None:
        self.members[participant.id] = participant
        participant.group = self
        for producer in participant.producers.values():
            producer.level_sink = self.on_level
        self.dirty = True

    def remove(self, participant: Participant) -> None:
        if self.members.pop(participant.id, None) is not None:
            self.speaker.remove(participant.id)
            self.history = [pid for pid in self.history if pid != participant.id]
            self.dirty = True

    def on_level(self, participant_id: str, level: int, voice: bool, now: float) -> None:
        self.speaker.add_level(participant_id, level, voice, now)

    def update_speaker(self, now: float) -> str | None:
        """Re-evaluate the dominant speaker; returns it when it changed."""
        speaker = self.speaker.update(now)
        if speaker is None or speaker not in self.members:
            return None
        self.history = [speaker, *(p for p in self.history if p != speaker)][:MAX_HISTORY]
        self.dirty = True
        return speaker

    # selection

    def orders(self, now: float) -> tuple[list[str], list[str]]:
        """(video source keys, audio participant ids), best first."""
        cameras, screens, audio = [], [], []
        for pid, member in self.members.items():
            for producer in member.producers.values():
                if producer.source == "camera":
                    cameras.append(pid)
                elif producer.source == "screen":
                    screens.append(source_key(pid, "screen"))
                else:
                    audio.append(pid)
        video = screens + last_n_order(self.history, cameras)
        loudest = [p for p in self.speaker.loudest(len(audio), now) if p in set(audio)]
        return video, loudest + last_n_order(self.history, [p for p in audio if p not in loudest])

    def changed_orders(self, now: float) -> bool:
        """Whether the orders moved since the last call (or the group is dirty)."""
        orders = self.orders(now)
        changed = self.dirty or orders != self._orders
        self._orders = orders
        self.dirty = False
        return changed

    def assign(self, participant: Participant, now: float) -> dict[str, str | None]:
        if self.precall:
            return _echo(participant)
        video, audio = self._orders if self._orders is not None else self.orders(now)
        own_screen = source_key(participant.id, "screen")
        return assign_slots(
            participant.receive_slots(),
            subscriber=participant.id,
            current=participant.slot_keys,
            video_order=[key for key in video if key != own_screen],
            audio_order=audio,
            pinned=participant.pinned,
        )

    def refill(self, participant: Participant, now: float) -> list[Slot] | None:
        """Apply the assignment to `participant`'s consumers; new slot list if it changed."""
        if participant.closed:
            return None
        self._forget_stale(participant)
        for mid, key in diff(participant.slot_keys, self.assign(participant, now)).items():
            consumer = participant.consumers.get(mid)
            if consumer is None:
                continue
            producer = self.producer_for(key, consumer.kind)
            if consumer.switch(producer) and producer is not None:
                producer.request_keyframe(now)
            participant.slot_keys[mid] = key if producer is not None else None
        slots = participant.slot_list()
        if slots == participant.slots_sent:
            return None
        participant.slots_sent = slots
        return slots

    def _forget_stale(self, participant: Participant) -> None:
        # A slot whose source left or was replaced is empty, so that the
        # assignment refills it (possibly with the same participant).
        for mid, key in participant.slot_keys.items():
            consumer = participant.consumers.get(mid)
            if key is not None and (
                consumer is None
                or consumer.target is None
                or consumer.target is not self.producer_for(key, consumer.kind)
            ):
                participant.slot_keys[mid] = None

    def producer_for(self, key: str | None, kind: str) -> Producer | None:
        pid = participant_of(key)
        member = self.members.get(pid) if pid is not None else None
        if member is None or key is None:
            return None
        wanted = "audio" if kind == "audio" else ("screen" if key.endswith(SCREEN) else "camera")
        return _find(member.producers.values(), wanted)


def _find(producers: Iterable[Producer], source: str) -> Producer | None:
    for producer in producers:
        if producer.source == source:
            return producer
    return None


def _echo(participant: Participant) -> dict[str, str | None]:
    """A pre-call session sees and hears itself: camera, then screen; audio."""
    video = [
        source_key(participant.id, p.source)
        for p in participant.producers.values()
        if p.kind == "video"
    ]
    audio = [participant.id for p in participant.producers.values() if p.kind == "audio"]
    result: dict[str, str | None] = {}
    for mid, kind in participant.receive_slots():
        pool = video if kind == "video" else audio
        result[mid] = pool.pop(0) if pool else None
    return result
