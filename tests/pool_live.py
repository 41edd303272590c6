"""A WorkerPool with real worker processes on 127.0.0.1, and clients that re-offer.

`running_pool` starts the pool in the test's loop (the worker processes are
real `python -m sfu.workers.worker` processes) with a `RecordingEvents`.
`Reoffering` is what every client of a pool must be: when its media is
closed (a lost worker), it offers again with a fresh transport, as the SDK
does on `media_closed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from sfu.settings import MediaSettings
from sfu.workers.fleet import PoolSettings
from sfu.workers.placement import Budget
from sfu.workers.pool import WorkerPool
from sfu.workers.supervisor import WorkerHandle
from tests.sfu_live import RecordingEvents
from tests.synthetic_peer import SyntheticPeer


class PoolEvents(RecordingEvents):
    """RecordingEvents that also calls back on media_closed (clients re-offer)."""

    def __init__(self) -> None:
        super().__init__()
        self.closed_at: dict[str, float] = {}
        self.on_closed: dict[str, Callable[[str], None]] = {}

    def media_closed(self, participant_id: str, reason: str) -> None:
        super().media_closed(participant_id, reason)
        self.closed_at[participant_id] = time.monotonic()
        callback = self.on_closed.get(participant_id)
        if callback is not None:
            callback(reason)


@contextlib.asynccontextmanager
async def running_pool(
    workers: int = 2, max_participants: int = 1, **overrides: Any
) -> AsyncIterator[tuple[WorkerPool, PoolEvents]]:
    media = {"ice_hosts": ("127.0.0.1",), "selection_interval_s": 0.05, **overrides}
    settings = PoolSettings(
        workers=workers,
        # CPU out of the way: which worker takes whom is decided by the pool's own
        # counts, not by how busy the machine running the tests is.
        budget=Budget(max_participants=max_participants, cpu=100.0),
        report_interval_s=0.25,
        restart_backoff_s=(0.1, 1.0),
    )
    events = PoolEvents()
    pool = WorkerPool(MediaSettings(**media), settings, events)
    await pool.start()
    try:
        yield pool, events
    finally:
        await pool.stop()


def handle(pool: WorkerPool, index: int) -> WorkerHandle:
    found = pool.workers[index]
    assert isinstance(found, WorkerHandle)
    return found


class Reoffering:
    """One participant's client: offers, and offers again with a new peer when media closes."""

    def __init__(self, pool: WorkerPool, events: PoolEvents, pid: str, **peer: Any) -> None:
        self.pool = pool
        self.pid = pid
        self.peer_args = peer
        self.peer = SyntheticPeer(**peer)
        self.peers = [self.peer]
        self.reoffered = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        events.on_closed[pid] = self._closed

    async def join(self, room: str = "r", group: str = "main") -> Reoffering:
        await self.pool.open(room, group, self.pid)
        await self.peer.connect(await self.pool.offer(self.pid, await self.peer.offer()))
        return self

    def _closed(self, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(self._reoffer())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reoffer(self) -> None:
        self.peer.close()
        self.peer = SyntheticPeer(**self.peer_args)
        self.peers.append(self.peer)
        await self.peer.connect(await self.pool.offer(self.pid, await self.peer.offer()))
        self.reoffered.set()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for peer in self.peers:
            peer.close()
            await peer.transport.wait_closed()
