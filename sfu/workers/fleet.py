"""The workers a pool can use: its own processes, and in a cluster the other nodes'.

`Fleet` keeps the list of `WorkerLink`s (indexes are stable: this node's
worker slots first, then every remote worker incarnation met, in order),
starts this node's worker processes and restarts them with a backoff
(0.2 s doubling to 10 s), and with a `WorkerDirectory` publishes them in the
registry and connects to the other nodes' workers found there.  It tells
its owner (the pool) when a worker joins, when one is gone (exactly once
per incarnation, with the reason), and passes the workers' notifications
on.  Who is placed where is the pool's business, not the fleet's.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol

from sfu.control import MediaError
from sfu.settings import MediaSettings
from sfu.workers.placement import Budget
from sfu.workers.poolstats import PoolStats
from sfu.workers.remote import RemoteWorker, WorkerDirectory, WorkerEntry
from sfu.workers.supervisor import WorkerHandle, WorkerLink

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolSettings:
    workers: int = 2
    budget: Budget = field(default_factory=Budget)
    relay_host: str = "127.0.0.1"  # relay (and, in a cluster, RPC) address of the workers
    heartbeat_s: float = 0.5
    heartbeat_timeout_s: float = 2.0
    report_interval_s: float = 1.0
    start_timeout_s: float = 30.0
    offer_wait_s: float = 8.0
    restart_backoff_s: tuple[float, float] = (0.2, 10.0)  # first, longest
    node_id: str = ""  # this node, in a cluster
    discover_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("a worker pool needs at least one worker")


class FleetOwner(Protocol):
    def worker_joined(self, link: WorkerLink) -> None: ...

    def worker_gone(self, link: WorkerLink) -> None: ...

    def worker_notification(self, link: WorkerLink, method: str, params: list[Any]) -> None: ...


class Fleet:
    """This node's worker processes and the other nodes' workers (see module doc)."""

    def __init__(
        self,
        settings: MediaSettings,
        pool: PoolSettings,
        owner: FleetOwner,
        stats: PoolStats,
        *,
        secret: str | None = None,
        directory: WorkerDirectory | None = None,
    ) -> None:
        if directory is not None and not secret:
            raise ValueError("a cluster of workers needs the shared secret")
        self.settings = settings
        self.pool = pool
        self.owner = owner
        self.stats = stats
        self.secret = secret
        self.directory = directory
        self.workers: list[WorkerLink | None] = [None] * pool.workers
        self.remote: dict[tuple[str, int], RemoteWorker] = {}
        self.stopping = False
        self._origins: set[int] = set()
        self._restarts: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._discovery: asyncio.Task[None] | None = None

    def live(self) -> list[WorkerLink]:
        return [h for h in self.workers if h is not None and h.ready]

    def origin(self, index: int) -> int:
        handle = self.workers[index]
        return handle.origin if handle is not None else 0

    async def start(self) -> None:
        """Start every worker; fails only if none comes up (the others keep retrying)."""
        results = await asyncio.gather(
            *(self._spawn(i) for i in range(self.pool.workers)), return_exceptions=True
        )
        for index, result in enumerate(results):
            if isinstance(result, BaseException):
                logger.error("SFU worker %d did not start: %s", index, result)
                self._schedule_restart(index, 0)
        if not self.live():
            await self.stop()
            raise MediaError("unavailable", "no SFU worker process could start")
        if self.directory is not None:
            await self.directory.start()
            self._discovery = asyncio.get_running_loop().create_task(self._discover())

    async def stop(self) -> None:
        self.stopping = True
        tasks = [*self._restarts.values(), *self._tasks, *filter(None, [self._discovery])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        handles = [h for h in self.workers if h is not None]
        await asyncio.gather(*(h.stop() for h in handles), return_exceptions=True)
        if self.directory is not None:
            await self.directory.close()

    # this node's processes

    async def _spawn(self, index: int) -> None:
        handle = WorkerHandle(
            index,
            self._new_origin(),
            self,
            heartbeat_s=self.pool.heartbeat_s,
            timeout_s=self.pool.heartbeat_timeout_s,
        )
        self.workers[index] = handle
        await handle.start(self._init(handle), self.pool.start_timeout_s)
        if self.stopping or self.workers[index] is not handle or not handle.ready:
            return
        logger.info("SFU worker %d is up (pid %s, relay %s)", index, handle.pid, handle.relay)
        self.owner.worker_joined(handle)

    def _init(self, handle: WorkerHandle) -> dict[str, Any]:
        init: dict[str, Any] = {
            "settings": self.settings.for_worker(handle.index).to_dict(),
            "origin": handle.origin,
            "relay_host": self.pool.relay_host,
            "report_interval": self.pool.report_interval_s,
        }
        if self.secret is not None:
            init["secret"] = self.secret
        if self.directory is not None:
            init["rpc_listen"] = [self.pool.relay_host, 0]
        return init

    def _new_origin(self) -> int:
        """A worker incarnation's id: random, so that no other node's can collide with it."""
        taken = self._origins | {h.origin for h in self.workers if h is not None}
        origin = secrets.randbits(31) | 1
        while origin in taken:
            origin = secrets.randbits(31) | 1
        self._origins.add(origin)
        return origin

    def _schedule_restart(self, index: int, attempt: int) -> None:
        if self.stopping or index in self._restarts or index >= self.pool.workers:
            return  # another node restarts its own workers
        first, longest = self.pool.restart_backoff_s
        delay = min(longest, first * 2**attempt)
        task = asyncio.get_running_loop().create_task(self._restart(index, attempt, delay))
        self._restarts[index] = task

    async def _restart(self, index: int, attempt: int, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self._spawn(index)
            self.stats.restarted(index)
        except (ConnectionError, OSError) as exc:
            logger.error("SFU worker %d did not restart: %s", index, exc)
            self._restarts.pop(index, None)
            self._schedule_restart(index, attempt + 1)
            return
        self._restarts.pop(index, None)

    # WorkerOwner: what the links report

    def worker_lost(self, handle: WorkerLink, reason: str) -> None:
        if not handle.lose(reason) or self.workers[handle.index] is not handle:
            return
        self.stats.lost(handle)
        where = f" of node {handle.node}" if handle.node else ""
        logger.warning("SFU worker %d%s lost: %s", handle.index, where, reason)
        if self.stopping:
            return
        if isinstance(handle, RemoteWorker):
            self.remote.pop((handle.node, handle.entry.index), None)
        self.owner.worker_gone(handle)
        self._schedule_restart(handle.index, 0)

    def worker_notification(self, handle: WorkerLink, method: str, params: list[Any]) -> None:
        self.owner.worker_notification(handle, method, params)

    def send_peers(self) -> None:
        """Every live worker learns every other's relay address; other machines' are secure."""
        live = [h for h in self.live() if h.relay is not None]
        for handle in live:
            mine = handle.node or self.pool.node_id
            peers = [
                [h.origin, h.relay[0], h.relay[1], (h.node or self.pool.node_id) != mine]
                for h in live
                if h.relay is not None
            ]
            handle.notify("peers", peers)

    # the other nodes' workers (a cluster)

    async def _discover(self) -> None:
        assert self.directory is not None
        while True:
            try:
                await self.directory.publish(self._entries())
                found = [WorkerEntry.parse(e) for e in await self.directory.entries()]
                self._follow(
                    {(e.node, e.index): e for e in found if e and e.node != self.pool.node_id}
                )
            except Exception as exc:  # the registry is away: keep what we have
                logger.debug("worker discovery skipped: %s", exc)
            await asyncio.sleep(self.pool.discover_interval_s)

    def _entries(self) -> list[dict[str, Any]]:
        return [
            WorkerEntry(self.pool.node_id, h.index, h.origin, h.rpc, h.relay).pack()
            for h in self.workers[: self.pool.workers]
            if isinstance(h, WorkerHandle) and h.ready and h.rpc and h.relay
        ]

    def _follow(self, entries: dict[tuple[str, int], WorkerEntry]) -> None:
        for key, link in list(self.remote.items()):
            entry = entries.get(key)
            if entry is None or entry.origin != link.origin:
                self.worker_lost(link, "left the worker registry")
        for key, entry in entries.items():
            if key not in self.remote:
                link = RemoteWorker(
                    len(self.workers),
                    entry,
                    self,
                    heartbeat_s=self.pool.heartbeat_s,
                    timeout_s=self.pool.heartbeat_timeout_s,
                )
                self.workers.append(link)
                self.remote[key] = link
                task = asyncio.get_running_loop().create_task(self._connect(link))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _connect(self, link: RemoteWorker) -> None:
        assert self.secret is not None
        try:
            await link.start(self.secret, self.pool.node_id, self.pool.start_timeout_s)
        except ConnectionError as exc:
            logger.warning("SFU worker %s of node %s: %s", link.entry.index, link.node, exc)
            self.remote.pop((link.node, link.entry.index), None)
            return
        if not self.stopping and link.ready:
            logger.info("SFU worker %d of node %s joined the pool", link.entry.index, link.node)
            self.owner.worker_joined(link)
