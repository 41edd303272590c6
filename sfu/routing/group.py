"""One group of a room (the main room or a breakout): who is seen and heard.

Media only flows between members of the same group.  A `Group` follows the
dominant speaker from the members' RFC 6464 audio levels (`sfu.policy.speaker`),
keeps the last-N history of dominant speakers, and fills each member's
receive slots with `sfu.policy.selection.assign_slots`:

* video: the pinned participant, then screen shares, then live cameras by
  most recent dominant speech (last-N), then cameras turned off (no media
  for `LIVE_S`), so a camera that is off gives its slot to one that is on;
* audio: the loudest speakers, then the other audio publishers by recency,
  so that free slots are always filled and a new speaker is heard at once.

A participant's screen share is a video source of its own (its key is the
participant id plus `SCREEN`), so a presenter can fill two slots.  A member
never receives its own media, except a pre-call session which receives
exactly its own.  Switching a video slot is completed by the consumer when
the new source's key frame arrives; the switch asks for one.

When a group spans SFU workers, `remotes` are the publishers of its other
workers as seen through the relay (`sfu.relay.remote`): they fill slots like
members.  One worker is the group's *leader*: it decides the speaker orders
for everybody; the others (`leader` False) still follow the levels, so that
one of them can take over, but fill their slots from the orders the leader
sent (`imposed`), so every subscriber of the group sees the same selection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from sfu.control import Slot
from sfu.policy.selection import assign_slots, diff, last_n_order
from sfu.policy.speaker import DominantSpeaker, LevelLog
from sfu.routing.producer import Producer

if TYPE_CHECKING:
    from sfu.routing.participant import Participant

SCREEN = "\x1fscreen"
MAX_HISTORY = 64
# A track that sent no media for this long is not live (a camera turned off:
# its sender has no track).  Checked on the clock, not per packet.
LIVE_S = 3.0

Orders = tuple[list[str], list[str]]  # (video source keys, audio participant ids)
Publishing = dict[str, list[str]]  # participant id -> its live sources, sorted


class Publisher(Protocol):
    """A member, or a remote publisher: whose tracks can fill slots."""

    @property
    def id(self) -> str: ...

    @property
    def producers(self) -> dict[str, Producer]: ...


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
        self._orders: Orders | None = None
        self._publishing: Publishing | None = None
        self.remotes: dict[str, Publisher] = {}  # publishers on other workers
        self.leader = True  # decides the orders; False: follows `imposed`
        self.imposed: Orders | None = None
        self.size_hint = 0  # members on every worker, when the group spans several

    def __len__(self) -> int:
        return len(self.members)

    @property
    def size(self) -> int:
        """Members of the group on every worker (for the room-size REMB cap)."""
        return max(len(self.members), self.size_hint)

    def publishers(self) -> Iterator[Publisher]:
        """Local members, then the remote publishers that are not also local."""
        yield from self.members.values()
        for pid, remote in self.remotes.items():
            if pid not in self.members:
                yield remote

    def add(self, participant: Participant) -> None:
        self.members[participant.id] = participant
        participant.group = self
        for producer in participant.producers.values():
            producer.level_sink = self.level_sink(participant.id)
        self.dirty = True

    def remove(self, participant: Participant) -> None:
        if self.members.pop(participant.id, None) is not None:
            self._forget_speaker(participant.id)

    def _forget_speaker(self, pid: str) -> None:
        if pid not in self.members and pid not in self.remotes:
            self.speaker.remove(pid)
            self.history = [p for p in self.history if p != pid]
        self.dirty = True

    def add_remote(self, publisher: Publisher) -> None:
        self.remotes[publisher.id] = publisher
        for producer in publisher.producers.values():
            producer.level_sink = self.level_sink(publisher.id)
        self.dirty = True

    def remove_remote(self, pid: str) -> None:
        if self.remotes.pop(pid, None) is not None:
            self._forget_speaker(pid)

    def lead(self, leader: bool) -> None:
        """Whether this worker decides the group's orders (see module doc)."""
        if leader != self.leader:
            self.leader = leader
            self.imposed = None
            self.dirty = True

    def impose(self, orders: Orders) -> None:
        """The orders the group's leader decided (ignored while leading)."""
        if not self.leader:
            self.imposed = orders
            self.dirty = True

    def on_level(self, participant_id: str, level: int, voice: bool, now: float) -> None:
        self.speaker.add_level(participant_id, level, voice, now)

    def level_sink(self, participant_id: str) -> LevelLog:
        """Where `participant_id`'s producers append their audio levels: the
        speaker's log, folded in at the tick (no Python per audio packet)."""
        return self.speaker.log(participant_id)

    def update_speaker(self, now: float) -> str | None:
        """Re-evaluate the dominant speaker; returns it when it changed."""
        speaker = self.speaker.update(now)
        if speaker is None or (speaker not in self.members and speaker not in self.remotes):
            return None
        self.history = [speaker, *(p for p in self.history if p != speaker)][:MAX_HISTORY]
        self.dirty = True
        return speaker

    # selection

    def senders(self) -> list[Publisher]:
        """`publishers` that publish something, in the same order."""
        found: list[Publisher] = [m for m in self.members.values() if m.producers]
        members = self.members
        for pid, remote in self.remotes.items():
            if pid not in members and remote.producers:
                found.append(remote)
        return found

    def orders(self, now: float, senders: list[Publisher] | None = None) -> Orders:
        """(video source keys, audio participant ids), best first (`senders`: as `senders()`)."""
        cameras: list[str] = []
        off: list[str] = []
        screens, audio = [], []
        for member in self.senders() if senders is None else senders:
            pid = member.id
            for producer in member.producers.values():
                if producer.source == "camera":
                    (cameras if now - producer.media_at < LIVE_S else off).append(pid)
                elif producer.source == "screen":
                    screens.append(source_key(pid, "screen"))
                else:
                    audio.append(pid)
        video = screens + last_n_order(self.history, cameras) + last_n_order(self.history, off)
        loudest = [p for p in self.speaker.loudest(len(audio), now) if p in set(audio)]
        own = video, loudest + last_n_order(self.history, [p for p in audio if p not in loudest])
        if self.leader or self.imposed is None:
            return own
        return _prefer(self.imposed[0], own[0]), _prefer(self.imposed[1], own[1])

    @property
    def current_orders(self) -> Orders | None:
        """The orders of the last `changed_orders` call."""
        return self._orders

    def publishing(self, now: float, senders: list[Publisher] | None = None) -> Publishing:
        """Who sends live media, and which sources ("audio", "camera", "screen")."""
        result: Publishing = {}
        for member in self.senders() if senders is None else senders:
            sources = sorted(
                p.source for p in member.producers.values() if now - p.media_at < LIVE_S
            )
            if sources:
                result[member.id] = sources
        return result

    def changed_orders(self, now: float) -> bool:
        """Whether the orders or who publishes moved since the last call (or the group is dirty)."""
        senders = self.senders()  # most members of a large room only subscribe
        orders = self.orders(now, senders)
        publishing = self.publishing(now, senders)
        moved = publishing != self._publishing
        changed = self.dirty or orders != self._orders or moved
        self._orders = orders
        if moved:  # else keep the one every member was sent (compared by identity first)
            self._publishing = publishing
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

    def refill(self, participant: Participant, now: float) -> tuple[list[Slot], Publishing] | None:
        """Apply the assignment to `participant`'s consumers; new slots + publishers if changed."""
        if participant.closed:
            return None
        participant.wake()  # its slots' sources, thumbnails or switches may change
        self._forget_stale(participant)
        # A key frame before the subscriber is connected would be lost, and
        # would hold back (coalescing) the one its connection asks for.
        connected = participant.transport is not None and participant.transport.connected
        for mid, key in diff(participant.slot_keys, self.assign(participant, now)).items():
            consumer = participant.consumers.get(mid)
            if consumer is None:
                continue
            producer = self.producer_for(key, consumer.kind)
            if consumer.switch(producer) and consumer.pending is not None and connected:
                consumer.pending.request_keyframe(now)
            participant.slot_keys[mid] = key if producer is not None else None
        if participant.settings.stage_video_slots and not self.precall:
            self._thumbnails(participant, now, connected)
        slots = participant.slot_list()
        publishing = self._publishing if self._publishing is not None else self.publishing(now)
        same = (
            publishing is participant.publishing_sent or publishing == participant.publishing_sent
        )
        if same and slots == participant.slots_sent:
            return None
        participant.slots_sent = slots
        participant.publishing_sent = publishing
        return slots, publishing

    def _thumbnails(self, participant: Participant, now: float, connected: bool) -> None:
        """The first choices on stage (`participant.stage_mids`), the rest thumbnails.

        A simulcast track's layers are the layer allocator's (`sfu.routing.layerclock`:
        a thumbnail is capped at its lowest layer); a track without simulcast falls
        back to key frames only on a thumbnail.
        """
        video = (self._orders or self.orders(now))[0]
        pinned = [participant.pinned] if participant.pinned in video else []
        choices = [
            k for k in dict.fromkeys([*pinned, *video]) if participant_of(k) != participant.id
        ]
        stage = set(choices[: participant.settings.stage_video_slots])
        on_stage = set()
        for mid, consumer in participant.consumers.items():
            key = participant.slot_keys.get(mid)
            thumbnail = key is not None and key not in stage
            if not thumbnail:
                on_stage.add(mid)
            track = consumer.track
            if track is not None and len(track.layers) > 1:
                consumer.set_thumbnail(False)
            elif consumer.set_thumbnail(thumbnail) and connected and consumer.pending is not None:
                consumer.pending.request_keyframe(now)
        participant.stage_mids = frozenset(on_stage)

    def _forget_stale(self, participant: Participant) -> None:
        # A slot whose source left or was replaced is empty, so that the
        # assignment refills it (possibly with the same participant).  The
        # slot's target is a track; which of its layers plays is the consumer's.
        for mid, key in participant.slot_keys.items():
            consumer = participant.consumers.get(mid)
            if key is not None and (
                consumer is None
                or consumer.track is None
                or consumer.track is not self.producer_for(key, consumer.kind)
            ):
                participant.slot_keys[mid] = None

    def producer_for(self, key: str | None, kind: str) -> Producer | None:
        pid = participant_of(key)
        if pid is None or key is None:
            return None
        member: Publisher | None = self.members.get(pid) or self.remotes.get(pid)
        if member is None:
            return None
        wanted = "audio" if kind == "audio" else ("screen" if key.endswith(SCREEN) else "camera")
        return _find(member.producers.values(), wanted)


def _prefer(leader: list[str], own: list[str]) -> list[str]:
    """`own` in the leader's order; what the leader did not list yet keeps its place after."""
    present = set(own)
    listed = set(leader)
    return [k for k in leader if k in present] + [k for k in own if k not in listed]


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
