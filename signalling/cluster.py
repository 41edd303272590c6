"""Build the coordinator the config asks for, with the node's rooms as its host."""

from __future__ import annotations

import secrets

from cluster.coordinator import Coordinator
from cluster.filestate import FileRoomState
from cluster.local import LocalCoordinator
from common.datadir import private_sqlite
from signalling.config import Config
from signalling.hub import CLOSE_SERVICE_RESTART, Hub
from signalling.media_bridge import MediaBridge
from signalling.resume import ResumeTokens
from signalling.rooms import RoomStore
from waiting_room.clock import Clock
from waiting_room.room import Room

LIVE_STATE_FILE = "live.sqlite3"


class ServedRooms:
    """The rooms this node serves, as the coordinator sees them (`cluster.RoomHost`)."""

    def __init__(
        self, rooms: RoomStore, hub: Hub, media: MediaBridge, tokens: ResumeTokens
    ) -> None:
        self._rooms = rooms
        self._hub = hub
        self._media = media
        self._tokens = tokens

    def live(self, room_id: str) -> Room | None:
        return self._rooms.live(room_id)

    def adopt(self, room: Room) -> None:
        self._rooms.adopt(room)

    def resume_digests(self, room_id: str) -> dict[str, str]:
        return self._tokens.digests(room_id)

    def room_lost(self, room_id: str) -> None:
        """Another node owns this room now: send its clients there (they resume)."""
        room = self._rooms.live(room_id)
        if room is None:
            return
        for person in room.participants:
            self._media.forget(person.id)
            self._hub.close(person.id, CLOSE_SERVICE_RESTART)
        self._rooms.drop(room_id)


def build_coordinator(config: Config, clock: Clock, host: ServedRooms) -> Coordinator:
    """A `RedisCoordinator` with `--redis`, else one machine's `LocalCoordinator`."""
    node_id = config.node_id or "node-" + secrets.token_hex(4)
    if config.redis_url:
        from cluster.distributed import RedisCoordinator
        from cluster.redisbus import RedisBus

        bus = RedisBus(config.redis_url)
        return RedisCoordinator(bus, node_id, config.internal_url, clock, host)
    state = FileRoomState(config.data_dir / LIVE_STATE_FILE, clock, prepare=private_sqlite)
    return LocalCoordinator(state, node_id, host)
