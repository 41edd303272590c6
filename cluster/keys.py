"""Every key and channel name visitroom uses on the bus, in one place."""

from __future__ import annotations

PREFIX = "vr:"
NODE_PREFIX = PREFIX + "node:"
NODE = NODE_PREFIX + "{node_id}"  # msgpack NodeInfo, expires unless heartbeated
ROOM_OWNER = PREFIX + "room:{room_id}:owner"  # the owning node id: a lease
ROOM_META = PREFIX + "room:{room_id}:meta"  # msgpack: schedule, capacity, session, breakouts
ROOM_PEOPLE = PREFIX + "room:{room_id}:people"  # hash: participant id -> msgpack participant
ROOM_RESUME = PREFIX + "room:{room_id}:resume"  # hash: resume digest -> participant id
ROOM_RECORD = PREFIX + "roomrec:{room_id}"  # msgpack RoomRecord (scheduled visits)
ROOM_RECORD_PREFIX = PREFIX + "roomrec:"
EVENTS = PREFIX + "events"  # pub/sub: cluster notices (msgpack)
WORKER_PREFIX = PREFIX + "worker:"
WORKER = WORKER_PREFIX + "{node_id}:{index}"  # msgpack SFU worker entry, expires unless renewed


def node(node_id: str) -> str:
    return NODE.format(node_id=node_id)


def room_owner(room_id: str) -> str:
    return ROOM_OWNER.format(room_id=room_id)


def room_meta(room_id: str) -> str:
    return ROOM_META.format(room_id=room_id)


def room_people(room_id: str) -> str:
    return ROOM_PEOPLE.format(room_id=room_id)


def room_resume(room_id: str) -> str:
    return ROOM_RESUME.format(room_id=room_id)


def room_record(room_id: str) -> str:
    return ROOM_RECORD.format(room_id=room_id)


def worker(node_id: str, index: int) -> str:
    return WORKER.format(node_id=node_id, index=index)
