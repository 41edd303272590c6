"""`WorkerPool`: the media plane as N SFU worker processes, behind `MediaControl`.

The signalling process keeps one `WorkerPool`.  It places each participant
on a worker (`sfu.placement`), forwards the participant's `MediaControl`
calls to it as RPC (`sfu.rpc`, one socketpair per worker), keeps the relay
routes of rooms that span workers (`sfu.routes`) and forwards the workers'
`MediaEvents`.  `stats()` sums what the workers reported (about once a
second) and adds the pool's own figures.

Ordering: `open`, `open_precall`, `move`, `close` and `close_room` decide
and write every frame they need before their first suspension, and one
worker carries out its frames in order, so they take effect in call order
as with `LocalMedia`.

Failure: a worker is lost when its process exits, its RPC connection
closes or its heartbeat goes unanswered for `heartbeat_timeout_s`
(`sfu.supervisor`).  At once, its participants are opened on live workers
(pins included), the relay routes and group leaders are replanned, and each
gets `media_closed(..., "worker_lost")`, so its client offers again without
leaving the room; the slot is restarted with a backoff and rejoins the pool
when its new process is up.  With no live worker, participants wait
unplaced and an offer waits up to `offer_wait_s` for one.

Events are taken only from the worker a participant is on now, and a
group's `active_speaker` only from its leader, so nothing stale or
duplicated reaches the signalling plane.

Cluster (``--redis``, a `WorkerDirectory`): the pool publishes its workers
in the registry, connects to the other nodes' workers it finds there
(`sfu.remoteworker`), and places a participant on one of them when none of
its own has headroom.  Relay peers on other machines are marked secure, so
their datagrams are sealed with SRTP (`sfu.relaycrypto`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .control import MAIN_GROUP, PRECALL_TIMEOUT, WORKER_LOST, MediaError, MediaEvents
from .placement import Budget, Choice, WorkerLoad, place
from .poolstats import PoolStats
from .remoteworker import RemoteWorker, WorkerDirectory, WorkerEntry
from .routes import Command, GroupKey, RelayOut, RemoteAdd, RemoteRemove, Role, RouteBook
from .rpc import RemoteError
from .settings import MediaSettings
from .supervisor import WorkerHandle, WorkerLink
from .workerapi import EVENTS, WORKER_NOTIFICATIONS, params_ok

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolSettings:
    workers: int = 2
    budget: Budget = field(default_factory=Budget)
    relay_host: str = "127.0.0.1"
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


@dataclass
class Seat:
    """Where one participant's media is, and what must follow it to another worker."""

    room: str
    group: str
    precall: bool
    worker: int | None = None
    pinned: str | None = None
    pin_set: bool = False


class WorkerPool:
    """`MediaControl` over worker processes (see module doc)."""

    def __init__(
        self,
        settings: MediaSettings,
        pool: PoolSettings,
        events: MediaEvents,
        *,
        secret: str | None = None,
        directory: WorkerDirectory | None = None,
    ) -> None:
        if directory is not None and not secret:
            raise ValueError("a cluster of workers needs the shared secret")
        self.settings = settings
        self.pool = pool
        self.events = events
        self.secret = secret
        self.directory = directory
        self.remote: dict[tuple[str, int], RemoteWorker] = {}
        self.workers: list[WorkerLink | None] = [None] * pool.workers
        self.seats: dict[str, Seat] = {}
        self.routes = RouteBook()
        self.orders: dict[GroupKey, tuple[list[str], list[str]]] = {}
        self.stats_book = PoolStats(pool.workers)
        self._origins: set[int] = set()
        self._ready = asyncio.Event()
        self._restarts: dict[int, asyncio.Task[None]] = {}
        self._calls: set[asyncio.Future[Any]] = set()
        self._stopping = False
        self._discovery: asyncio.Task[None] | None = None

    # lifecycle

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
        self._stopping = True
        tasks = [*self._restarts.values(), *filter(None, [self._discovery])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        handles = [h for h in self.workers if h is not None]
        await asyncio.gather(*(h.stop() for h in handles), return_exceptions=True)
        await asyncio.gather(*self._calls, return_exceptions=True)
        if self.directory is not None:
            await self.directory.close()

    def live(self) -> list[WorkerLink]:
        return [h for h in self.workers if h is not None and h.ready]

    async def _spawn(self, index: int) -> None:
        handle = WorkerHandle(
            index,
            self._new_origin(),
            self,
            heartbeat_s=self.pool.heartbeat_s,
            timeout_s=self.pool.heartbeat_timeout_s,
        )
        self.workers[index] = handle
        init: dict[str, Any] = {
            "settings": self.settings.to_dict(),
            "origin": handle.origin,
            "relay_host": self.pool.relay_host,
            "report_interval": self.pool.report_interval_s,
        }
        if self.secret is not None:
            init["secret"] = self.secret
        if self.directory is not None:
            init["rpc_listen"] = [self.pool.relay_host, 0]
        await handle.start(init, self.pool.start_timeout_s)
        if self._stopping or self.workers[index] is not handle or not handle.ready:
            return
        logger.info("SFU worker %d is up (pid %s, relay %s)", index, handle.pid, handle.relay)
        self._joined()

    def _new_origin(self) -> int:
        """A worker incarnation's id: random, so that no other node's can collide with it."""
        taken = self._origins | {h.origin for h in self.workers if h is not None}
        origin = secrets.randbits(31) | 1
        while origin in taken:
            origin = secrets.randbits(31) | 1
        self._origins.add(origin)
        return origin

    def _joined(self) -> None:
        """A worker became ready: everyone learns its relay address, waiting seats go."""
        self._send_peers()
        self._ready.set()
        for pid, seat in list(self.seats.items()):
            if seat.worker is None:
                self._watch(self._seat(pid, seat))

    def _schedule_restart(self, index: int, attempt: int) -> None:
        if self._stopping or index in self._restarts or index >= self.pool.workers:
            return  # another node restarts its own workers
        first, longest = self.pool.restart_backoff_s
        delay = min(longest, first * 2**attempt)
        task = asyncio.get_running_loop().create_task(self._restart(index, attempt, delay))
        self._restarts[index] = task

    async def _restart(self, index: int, attempt: int, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self._spawn(index)
            self.stats_book.restarted(index)
        except (ConnectionError, OSError) as exc:
            logger.error("SFU worker %d did not restart: %s", index, exc)
            self._restarts.pop(index, None)
            self._schedule_restart(index, attempt + 1)
            return
        self._restarts.pop(index, None)

    # failure (WorkerOwner)

    def worker_lost(self, handle: WorkerLink, reason: str) -> None:
        if not handle.lose(reason) or self.workers[handle.index] is not handle:
            return
        self.stats_book.lost(handle)
        logger.warning("SFU worker %d lost: %s", handle.index, reason)
        if self._stopping:
            return
        if not self.live():
            self._ready.clear()
        if isinstance(handle, RemoteWorker):
            self.remote.pop((handle.node, handle.entry.index), None)
        victims = [pid for pid, seat in self.seats.items() if seat.worker == handle.index]
        for pid in victims:
            seat = self.seats[pid]
            seat.worker = None
            self._watch(self._seat(pid, seat))
        self._send_peers()
        for pid in victims:
            self._emit("media_closed", pid, WORKER_LOST)
        self._schedule_restart(handle.index, 0)

    # placement

    def _choose(self, room: str | None) -> int | None:
        """This node's workers first; another node's when none of ours has headroom."""
        counts = Counter(s.worker for s in self.seats.values() if s.worker is not None)
        in_room = Counter(
            s.worker
            for s in self.seats.values()
            if room is not None and s.room == room and not s.precall and s.worker is not None
        )
        live = self.live()
        own = self._place([h for h in live if not h.node], counts, in_room)
        if own is None or own.over_budget:
            other = self._place([h for h in live if h.node], counts, in_room)
            if other is not None and (own is None or not other.over_budget):
                own = other
        if own is None:
            return None
        if own.over_budget:
            self.stats_book.over_budget += 1
        return own.index

    def _place(
        self, links: list[WorkerLink], counts: Counter[int], in_room: Counter[int]
    ) -> Choice | None:
        loads = [
            WorkerLoad(
                h.index,
                max(counts[h.index], int(h.load.get("stats", {}).get("participants", 0))),
                float(h.load.get("forwarded_pps", 0.0)),
                float(h.load.get("cpu", 0.0)),
            )
            for h in links
        ]
        return place(loads, in_room, self.pool.budget)

    def _seat(self, pid: str, seat: Seat) -> asyncio.Future[Any] | None:
        """Put a seat on a worker (if any is live): open it there and replan its group."""
        seat.worker = self._choose(None if seat.precall else seat.room)
        future = None
        if seat.worker is not None:
            if seat.precall:
                future = self._request(seat.worker, "open_precall", pid)
            else:
                future = self._request(seat.worker, "open", seat.room, seat.group, pid)
            if seat.pin_set:
                self._watch(self._request(seat.worker, "pin", pid, seat.pinned))
        if not seat.precall:
            self._apply(self.routes.place(pid, seat.room, seat.group, seat.worker))
        return future

    # MediaControl

    async def open(self, room_id: str, group: str, participant_id: str) -> None:
        group = group or MAIN_GROUP
        seat = self.seats.get(participant_id)
        if seat is not None and (seat.room != room_id or seat.precall):
            self._drop(participant_id)
            seat = None
        if seat is None:
            seat = self.seats[participant_id] = Seat(room_id, group, precall=False)
            await self._settle(self._seat(participant_id, seat))
            return
        await self._settle(self._regroup(participant_id, seat, group, "open"))

    async def open_precall(self, participant_id: str) -> None:
        self._drop(participant_id)
        seat = self.seats[participant_id] = Seat(participant_id, participant_id, precall=True)
        await self._settle(self._seat(participant_id, seat))

    async def move(self, participant_id: str, group: str) -> None:
        seat = self._admitted(participant_id)
        if seat.precall:
            raise MediaError("bad_request", "a pre-call session cannot be moved")
        await self._settle(self._regroup(participant_id, seat, group or MAIN_GROUP, "move"))

    def _regroup(self, pid: str, seat: Seat, group: str, method: str) -> asyncio.Future[Any] | None:
        if seat.group != group:
            seat.pinned, seat.pin_set = None, False
        seat.group = group
        future = None
        if seat.worker is not None:
            if method == "open":
                future = self._request(seat.worker, "open", seat.room, group, pid)
            else:
                future = self._request(seat.worker, "move", pid, group)
        self._apply(self.routes.place(pid, seat.room, group, seat.worker))
        return future

    async def close(self, participant_id: str) -> None:
        await self._settle(self._drop(participant_id))

    def _drop(self, pid: str) -> asyncio.Future[Any] | None:
        seat = self.seats.pop(pid, None)
        if seat is None:
            return None
        future = self._request(seat.worker, "close", pid) if seat.worker is not None else None
        self._apply(self.routes.remove(pid))
        return future

    async def close_room(self, room_id: str) -> None:
        pids = [p for p, s in self.seats.items() if s.room == room_id and not s.precall]
        workers = sorted({w for p in pids if (w := self.seats[p].worker) is not None})
        for pid in pids:
            del self.seats[pid]
        futures = [self._request(w, "close_room", room_id) for w in workers]
        for pid in pids:
            self._apply(self.routes.remove(pid))
        for future in futures:
            await self._settle(future)

    async def offer(self, participant_id: str, sdp: str) -> str:
        seat = self._admitted(participant_id)
        if seat.worker is None:
            await self._wait_for_worker(participant_id, seat)
        assert seat.worker is not None
        return str(await self._answer(self._request(seat.worker, "offer", participant_id, sdp)))

    async def candidate(
        self, participant_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        seat = self._admitted(participant_id)
        if seat.worker is not None:
            future = self._request(
                seat.worker, "candidate", participant_id, candidate, sdp_mid, sdp_mline_index
            )
            await self._answer(future)

    async def pin(self, participant_id: str, target: str | None) -> None:
        seat = self._admitted(participant_id)
        seat.pinned, seat.pin_set = target, True
        if seat.worker is not None:
            await self._answer(self._request(seat.worker, "pin", participant_id, target))

    def _admitted(self, pid: str) -> Seat:
        seat = self.seats.get(pid)
        if seat is None:
            raise MediaError("not_admitted", "this participant has no media session")
        return seat

    async def _wait_for_worker(self, pid: str, seat: Seat) -> None:
        try:
            async with asyncio.timeout(self.pool.offer_wait_s):
                while seat.worker is None:
                    await self._ready.wait()
                    if self.seats.get(pid) is not seat:
                        raise MediaError("not_admitted", "the media session was closed")
                    if seat.worker is None:
                        self._watch(self._seat(pid, seat))
                        if seat.worker is None:
                            await asyncio.sleep(0.05)  # every live worker went away again
        except TimeoutError:
            raise MediaError("unavailable", "no media server is available; try again") from None

    # calls to workers

    def _request(self, index: int, method: str, *params: Any) -> asyncio.Future[Any]:
        handle = self.workers[index]
        if handle is None or not handle.ready:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_exception(ConnectionError(f"worker{index} is not available"))
            return future
        return handle.request(method, *params)

    def _notify(self, index: int, method: str, *params: Any) -> None:
        handle = self.workers[index]
        if handle is not None and handle.ready:
            handle.notify(method, *params)

    def _watch(self, future: asyncio.Future[Any] | None) -> None:
        """A call nobody awaits: keep it until it ends and log a refusal."""
        if future is not None:
            self._calls.add(future)
            future.add_done_callback(self._watched)

    def _watched(self, future: asyncio.Future[Any]) -> None:
        self._calls.discard(future)
        if future.cancelled():
            return
        error = future.exception()
        if isinstance(error, RemoteError):
            logger.warning("a worker refused a call: %s", error)
        elif error is not None and not isinstance(error, ConnectionError):
            logger.error("a background call failed", exc_info=error)

    async def _settle(self, future: asyncio.Future[Any] | None) -> None:
        """Await a state change; a lost worker is not an error (failover redid it)."""
        if future is None:
            return
        with contextlib.suppress(ConnectionError):
            await self._answer(future)

    async def _answer(self, future: asyncio.Future[Any]) -> Any:
        try:
            return await future
        except RemoteError as exc:
            raise MediaError(exc.code, exc.message) from None
        except ConnectionError:
            raise ConnectionError("the media worker was lost") from None

    # routes

    def _apply(self, commands: list[Command]) -> None:
        for command in commands:
            match command:
                case RelayOut(worker, stream, to):
                    origins = [self._origin(w) for w in to]
                    self._notify(worker, "relay_out", stream, [o for o in origins if o])
                case RemoteAdd(worker, origin, stream, room, group, pid, description):
                    self._notify(
                        worker,
                        "remote_add",
                        self._origin(origin),
                        stream,
                        room,
                        group,
                        pid,
                        description,
                    )
                case RemoteRemove(worker, origin, stream):
                    self._notify(worker, "remote_remove", self._origin(origin), stream)
                case Role(worker, room, group, leader, shared, size):
                    self._notify(worker, "group_role", room, group, leader, shared, size)
                    orders = self.orders.get((room, group))
                    if not leader and shared and orders is not None:
                        self._notify(worker, "impose", room, group, *orders)
        for key in [k for k in self.orders if k not in self.routes.plans]:
            del self.orders[key]

    def _origin(self, index: int) -> int:
        handle = self.workers[index]
        return handle.origin if handle is not None else 0

    def _send_peers(self) -> None:
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
                self._watch(asyncio.ensure_future(self._connect(link)))

    async def _connect(self, link: RemoteWorker) -> None:
        assert self.secret is not None
        try:
            await link.start(self.secret, self.pool.node_id, self.pool.start_timeout_s)
        except ConnectionError as exc:
            logger.warning("SFU worker %s of node %s: %s", link.entry.index, link.node, exc)
            self.remote.pop((link.node, link.entry.index), None)
            return
        if not self._stopping and link.ready:
            logger.info("SFU worker %d of node %s joined the pool", link.entry.index, link.node)
            self._joined()

    # from the workers (WorkerOwner)

    def worker_notification(self, handle: WorkerLink, method: str, params: list[Any]) -> None:
        spec = WORKER_NOTIFICATIONS.get(method)
        if spec is None or not params_ok(params, spec):
            self.stats_book.bad_messages += 1
            return
        if method == "load":
            handle.load = params[0]
        elif method == "event":
            self._event(handle, params[0], params[1])
        elif method == "streams":
            self._streams(handle, params[0], params[1])
        else:
            self._group_order(handle, *params)

    def _event(self, handle: WorkerLink, name: str, args: list[Any]) -> None:
        spec = EVENTS.get(name)
        if spec is None or not params_ok(args, spec):
            self.stats_book.bad_messages += 1
            return
        if name == "active_speaker":
            if self.routes.leader_of((args[0], args[1])) == handle.index:
                self._emit(name, *args)
            return
        seat = self.seats.get(args[0])
        if seat is None or seat.worker != handle.index:
            return  # stale: the participant left or is on another worker now
        if name == "media_closed" and args[1] == PRECALL_TIMEOUT:
            del self.seats[args[0]]
        self._emit(name, *args)

    def _streams(self, handle: WorkerLink, pid: str, items: list[Any]) -> None:
        seat = self.seats.get(pid)
        if seat is None or seat.precall or seat.worker != handle.index:
            return
        streams = {
            item["stream"]: {k: v for k, v in item.items() if k != "stream"}
            for item in items
            if isinstance(item, dict) and isinstance(item.get("stream"), int)
        }
        self._apply(self.routes.set_streams(pid, handle.index, streams))

    def _group_order(
        self, handle: WorkerLink, room: str, group: str, video: list[Any], audio: list[Any]
    ) -> None:
        key = (room, group)
        if self.routes.leader_of(key) != handle.index:
            return  # a former leader that has not heard yet
        self.orders[key] = (video, audio)
        for index in sorted(self.routes.serving(key) - {handle.index}):
            self._notify(index, "impose", room, group, video, audio)

    def _emit(self, name: str, *args: Any) -> None:
        try:
            getattr(self.events, name)(*args)
        except Exception:
            logger.exception("MediaEvents.%s failed", name)

    # observability

    def stats(self) -> dict[str, float]:
        """The workers' last reports summed, per-worker load, and the pool's own figures."""
        counts: Counter[int] = Counter(
            s.worker for s in self.seats.values() if s.worker is not None
        )
        result = self.stats_book.collect(self.workers[: self.pool.workers], counts)
        remote = [h for h in self.workers[self.pool.workers :] if h is not None and h.ready]
        result["remote_workers_up"] = len(remote)
        result["remote_participants"] = sum(counts[h.index] for h in remote)
        result["participants"] = len(self.seats)
        result["participants_unplaced"] = sum(1 for s in self.seats.values() if s.worker is None)
        result["relay_groups"] = sum(1 for p in self.routes.plans.values() if len(p.serving) > 1)
        return result
