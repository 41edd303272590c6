"""Build the cluster coordinator from the config and wire it to the room service."""

from __future__ import annotations

import secrets

from cluster.bus import Bus, LocalBus
from cluster.coordinator import Coordinator
from cluster.filestate import FileRoomState
from common.datadir import private_sqlite
from signalling.config import Config
from signalling.rooms import RoomStore
from signalling.service import RoomService
from waiting_room.clock import Clock

LIVE_STATE_FILE = "live.sqlite3"


def build_coordinator(config: Config, clock: Clock) -> Coordinator:
    node_id = config.node_id or "node-" + secrets.token_hex(4)
    if config.redis_url:
        from cluster.redisbus import RedisBus

        bus: Bus = RedisBus(config.redis_url)
        return Coordinator(bus, node_id, config.internal_url, clock, multi_node=True)
    state = FileRoomState(config.data_dir / LIVE_STATE_FILE, clock, prepare=private_sqlite)
    return Coordinator(LocalBus(), node_id, config.internal_url, clock, False, state)


def wire_cluster(cluster: Coordinator, rooms: RoomStore, service: RoomService) -> None:
    cluster.live = rooms.live
    cluster.adopt = rooms.adopt
    cluster.on_room_lost = service.room_lost
    cluster.resume_digests = service.resume_digests
    cluster.on_notice("end_room", service.end_room_notice)
