"""Workers of other nodes (``--redis``): how a pool finds them and talks to them.

Every node's pool publishes its ready workers in the cluster registry about
once a second (`WorkerDirectory`: the bus keys ``vr:worker:{node}:{index}``
with a 3 s expiry, see `cluster.workers`): node, origin id, the TCP address
of its RPC and the address of its relay socket.  A pool connects to every
worker of the other nodes it finds there (`RemoteWorker`): TCP, then a
``hello`` proving the shared secret (`sfu.workers.rpcauth`) whose answer must prove
it too and name the origin id the registry gave.  From then on it is a
worker like the pool's own (same RPC, same heartbeat), except that the pool
never restarts it: its own node does, and it comes back in the registry
under a new origin id.  It is lost when the connection closes, the
heartbeat fails, or its entry leaves the registry.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from sfu.workers.rpc import RemoteError
from sfu.workers.rpcauth import answer_ok, hello
from sfu.workers.supervisor import WorkerLink, WorkerOwner

Address = tuple[str, int]


class WorkerDirectory(Protocol):
    """The cluster registry of SFU workers (implemented over the bus in `cluster.workers`)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, entries: list[dict[str, Any]]) -> None:
        """This node's ready workers (each entry expires unless published again)."""

    async def entries(self) -> list[dict[str, Any]]:
        """Every node's published workers."""


@dataclass(frozen=True)
class WorkerEntry:
    node: str
    index: int
    origin: int
    rpc: Address
    relay: Address

    @classmethod
    def parse(cls, data: dict[str, Any]) -> WorkerEntry | None:
        try:
            return cls(
                node=str(data["node"]),
                index=int(data["index"]),
                origin=int(data["origin"]),
                rpc=(str(data["rpc"][0]), int(data["rpc"][1])),
                relay=(str(data["relay"][0]), int(data["relay"][1])),
            )
        except (KeyError, TypeError, ValueError, IndexError):
            return None

    def pack(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "index": self.index,
            "origin": self.origin,
            "rpc": list(self.rpc),
            "relay": list(self.relay),
        }


class RemoteWorker(WorkerLink):
    """A worker of another node, over authenticated TCP (see module doc)."""

    def __init__(
        self,
        index: int,
        entry: WorkerEntry,
        owner: WorkerOwner,
        *,
        heartbeat_s: float = 0.5,
        timeout_s: float = 2.0,
    ) -> None:
        super().__init__(index, entry.origin, owner, heartbeat_s=heartbeat_s, timeout_s=timeout_s)
        self.entry = entry
        self.node = entry.node
        self.relay = entry.relay

    async def start(self, secret: str, node_id: str, within_s: float) -> None:
        """Connect and authenticate both ways; raises ConnectionError if that fails."""
        loop = asyncio.get_running_loop()
        params = hello(secret, node_id)
        try:
            async with asyncio.timeout(within_s):
                await loop.create_connection(lambda: self.conn, *self.entry.rpc)
                reply = await self.conn.request("hello", *params)
        except (OSError, TimeoutError, ConnectionError, RemoteError) as exc:
            self.lose(f"could not connect: {exc or 'timeout'}")
            raise ConnectionError(f"worker {self.entry} unreachable: {exc}") from None
        origin = reply.get("origin") if isinstance(reply, dict) else None
        if origin != self.origin or not answer_ok(secret, self.origin, params[2], reply.get("mac")):
            self.lose("the worker did not prove the shared secret")
            raise ConnectionError(f"worker {self.entry} failed authentication")
        self._ready()
