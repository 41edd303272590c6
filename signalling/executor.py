"""Carry out what the room decided: store the change, then answer, then act.

The contract: the coordinator stores each change before anyone hears of it
(the sender's reply, other clients' messages, media calls, audit rows,
webhook events).
"""

from __future__ import annotations

from collections.abc import Callable

from cluster.coordinator import Coordinator
from common.audit import AuditEntry, AuditLog
from signalling import effects as fx
from signalling.hub import Hub
from signalling.media_bridge import MediaBridge
from signalling.resume import ResumeTokens
from signalling.rooms import RoomStore
from signalling.webhook_events import Hook, HookSink, room_events
from waiting_room.clock import Clock
from waiting_room.events import Audited, Event, Left, Rejected
from waiting_room.room import Room
from waiting_room.visit import note


class Executor:
    def __init__(
        self,
        cluster: Coordinator,
        rooms: RoomStore,
        hub: Hub,
        media: MediaBridge,
        tokens: ResumeTokens,
        audit: AuditLog,
        clock: Clock,
        hooks: HookSink,
    ) -> None:
        self._cluster = cluster
        self._rooms = rooms
        self._hub = hub
        self._media = media
        self._tokens = tokens
        self._audit = audit
        self._clock = clock
        self._hooks = hooks

    async def carry_out(
        self, room: Room, events: list[Event], prelude: Callable[[], None] | None = None
    ) -> None:
        """Plan now (the room may change while we wait), store, then `prelude` and the
        effects; then forget who left, and unload the room once it is empty."""
        effects = fx.plan(room, events)
        hooks = self._note_visit(room, events)  # before `prepare`: the visit is stored too
        change = self._cluster.prepare(room, events)
        gone = [e.participant.id for e in events if isinstance(e, Left | Rejected)]

        def announce() -> None:
            if prelude is not None:
                prelude()
            for effect in effects:
                self._apply(room, effect)
            self._hooks.emit(hooks)  # in commit order, so in order per room

        await self._cluster.commit(change, announce)
        digests = [d for d in (self._forget(pid) for pid in gone) if d is not None]
        await self._cluster.forget_resume(room.id, *digests)
        if room.is_empty and self._rooms.live(room.id) is room:
            self._rooms.unload_if_idle(room.id)
            await self._cluster.forget_room(room.id)

    def _note_visit(self, room: Room, events: list[Event]) -> list[Hook]:
        """The visit's start, end and counts, and the webhook events of this change."""
        room.visit, changes = note(
            room.visit, events, self._clock(), lambda: room.joined_count, room.is_empty
        )
        return room_events(room.id, events, changes)

    def _apply(self, room: Room, effect: fx.Effect) -> None:
        match effect:
            case fx.Send(to, message):
                self._hub.deliver(to, message)
            case fx.CloseSocket(pid):
                self._hub.close(pid)
            case fx.MediaOpen(room_id, group, pid):
                self._media.open(room_id, group, pid)
            case fx.MediaClose(pid):
                self._media.close(pid)
            case fx.MediaCloseRoom(room_id):
                self._media.close_room(room_id, (p.id for p in room.participants))
            case fx.MediaMove(pid, group):
                self._media.move(pid, group)
            case Audited(action, outcome, actor, subject, details):
                self._audit.record(
                    AuditEntry(action, outcome, room.id, actor, subject, details, self._clock())
                )

    def _forget(self, pid: str) -> str | None:
        self._media.forget(pid)
        return self._tokens.forget(pid)
