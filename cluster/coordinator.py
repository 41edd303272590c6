"""What the signalling service needs from the cluster: one Protocol, two implementations.

`LocalCoordinator` (cluster/local.py, the embedded default): one machine,
every room served here, each change written to a file in the data directory
before clients hear of it, so a restart brings the rooms back.
`RedisCoordinator` (cluster/distributed.py, `--redis`): a room is served by
the node holding its lease; other nodes proxy its clients there; the owner
writes each change to the bus before clients hear of it; a node that finds a
room without a live owner takes it over from the bus.

Both keep one contract: `commit(change, announce)` stores the change, then
calls `announce` (which tells clients), per room in the order commands ran.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from cluster.registry import NodeInfo
from cluster.roomstate import Change
from waiting_room.events import Event
from waiting_room.room import Room

ALIVE_EVERY_S = 1.0


class RouteKind(enum.Enum):
    LOCAL = "local"
    REMOTE = "remote"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Route:
    kind: RouteKind
    node: NodeInfo | None = None


LOCAL = Route(RouteKind.LOCAL)
UNAVAILABLE = Route(RouteKind.UNAVAILABLE)


class RoomHost(Protocol):
    """What a coordinator asks of the node's live rooms (given to its constructor)."""

    def live(self, room_id: str) -> Room | None:
        """The room if it is served here now."""

    def adopt(self, room: Room) -> None:
        """Serve a room restored from storage or taken over from another node."""

    def room_lost(self, room_id: str) -> None:
        """Another node owns this room now: let its clients go (they resume there)."""

    def resume_digests(self, room_id: str) -> dict[str, str]:
        """The room's live resume tokens (digest -> participant id), to write back."""


class Coordinator(Protocol):
    """Room routing and durable room state, for one machine or a cluster."""

    node_id: str
    multi_node: bool  # rooms may be served by other nodes (their audit rows live there)

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    @property
    def accepting(self) -> bool:
        """New participants are taken only when storage is reachable and not draining."""

    @property
    def healthy(self) -> bool:
        """The shared storage (the bus) answers."""

    @property
    def draining(self) -> bool: ...

    async def start_draining(self) -> None: ...

    # --- routing

    async def route(self, room_id: str) -> Route: ...

    def suspect(self, node_id: str) -> None:
        """A node that does not answer is taken for dead until its lease runs out."""

    def owns(self, room_id: str) -> bool:
        """This node holds the room (acts on notices about it)."""

    async def owner_elsewhere(self, room_id: str) -> bool:
        """Another node serves the room (raises BusUnavailable)."""

    async def nodes(self) -> list[NodeInfo]: ...

    # --- scheduled room records shared between nodes

    async def record(self, room_id: str) -> bytes | None: ...

    async def shared_records(self) -> list[bytes]: ...

    async def share_record(self, room_id: str, packed: bytes) -> None: ...

    async def peek(self, room_id: str) -> Room | None:
        """A read-only copy of a room another node owns (for REST counts)."""

    # --- persisting changes

    def prepare(self, room: Room, events: Iterable[Event]) -> Change | None:
        """Serialise what changed now, before anything else can change the room."""

    async def commit(self, change: Change | None, announce: Callable[[], None]) -> None:
        """Write the change, then announce it; per room, in the order commands ran."""

    async def forget_room(self, room_id: str) -> None: ...

    async def hand_over(self, room: Room) -> bool:
        """Draining: leave the room for another node. False: nobody can take it."""

    # --- resume tokens

    async def remember_resume(self, room_id: str, digest: str, participant_id: str) -> None: ...

    async def forget_resume(self, room_id: str, *digests: str) -> None: ...

    async def find_resume(self, room_id: str, digest: str) -> str | None: ...

    # --- notices between nodes

    async def notify(self, kind: str, **fields: Any) -> None:
        """Tell every node (the owner of a room acts on it); raises BusUnavailable."""

    async def next_notice(self) -> dict[str, Any]:
        """Wait for the next notice from another node (one machine: never)."""


def pack_record(fields: dict[str, object]) -> bytes:
    packed: bytes = msgpack.packb(fields)
    return packed
