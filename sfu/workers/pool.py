"""`WorkerPool`: the media plane as N SFU worker processes, behind `MediaControl`.

The signalling process keeps one `WorkerPool`.  It places each participant
on a worker (`sfu.workers.placement`), forwards the participant's `MediaControl`
calls to it as RPC (`sfu.workers.rpc`, one socketpair per worker), keeps the relay
routes of rooms that span workers (`sfu.relay.routes`) and forwards the workers'
`MediaEvents`.  `stats()` sums what the workers reported (about once a
second) and adds the pool's own figures.

Ordering: `open`, `open_precall`, `move`, `close` and `close_room` decide
and write every frame they need before their first suspension, and one
worker carries out its frames in order, so they take effect in call order
as with `LocalMedia`.

Failure: a worker is lost when its process exits, its RPC connection
closes or its heartbeat goes unanswered for `heartbeat_timeout_s`
(`sfu.workers.supervisor`).  At once, its participants are opened on live workers
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
(`sfu.workers.remote`), and places a participant on one of them when none of
its own has headroom.  Relay peers on other machines are marked secure, so
their datagrams are sealed with SRTP (`sfu.relay.crypto`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sfu.control import (
    MAIN_GROUP,
    PRECALL_TIMEOUT,
    WORKER_LOST,
    ActiveSpeaker,
    MediaClosed,
    MediaError,
    MediaEvent,
    MediaEvents,
    deliver,
)
from sfu.relay.routes import Command, GroupKey, RelayOut, RemoteAdd, RemoteRemove, Role, RouteBook
from sfu.settings import MediaSettings
from sfu.workers.api import WORKER_NOTIFICATIONS, decode_event, params_ok
from sfu.workers.fleet import Fleet, PoolSettings
from sfu.workers.placement import Choice, WorkerLoad, place
from sfu.workers.poolstats import PoolStats
from sfu.workers.remote import WorkerDirectory
from sfu.workers.rpc import RemoteError
from sfu.workers.supervisor import WorkerLink

__all__ = ["PoolSettings", "Seat", "WorkerPool"]

logger = logging.getLogger(__name__)


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
        self.settings = settings
        self.pool = pool
        self.events = events
        self.stats_book = PoolStats(pool.workers)
        self.fleet = Fleet(
            settings, pool, self, self.stats_book, secret=secret, directory=directory
        )
        self.seats: dict[str, Seat] = {}
        self.routes = RouteBook()
        self.orders: dict[GroupKey, tuple[list[str], list[str]]] = {}
        self._ready = asyncio.Event()
        self._calls: set[asyncio.Future[Any]] = set()

    @property
    def workers(self) -> list[WorkerLink | None]:
        return self.fleet.workers

    def live(self) -> list[WorkerLink]:
        return self.fleet.live()

    async def start(self) -> None:
        """Start the workers; fails only if none comes up (the others keep retrying)."""
        await self.fleet.start()

    async def stop(self) -> None:
        await self.fleet.stop()
        await asyncio.gather(*self._calls, return_exceptions=True)

    # the fleet's news (FleetOwner)

    def worker_joined(self, link: WorkerLink) -> None:
        """Everyone learns its relay address; seats waiting for a worker go."""
        self.fleet.send_peers()
        self._ready.set()
        for pid, seat in list(self.seats.items()):
            if seat.worker is None:
                self._watch(self._seat(pid, seat))

    def worker_gone(self, link: WorkerLink) -> None:
        """Failover: its participants are opened on live workers and told to offer again."""
        if not self.live():
            self._ready.clear()
        victims = [pid for pid, seat in self.seats.items() if seat.worker == link.index]
        for pid in victims:
            seat = self.seats[pid]
            seat.worker = None
            self._watch(self._seat(pid, seat))
        self.fleet.send_peers()
        for pid in victims:
            self._emit(MediaClosed(pid, WORKER_LOST))

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
            self._watch(self._drop(participant_id))
            seat = None
        if seat is None:
            seat = self.seats[participant_id] = Seat(room_id, group, precall=False)
            await self._settle(self._seat(participant_id, seat))
            return
        await self._settle(self._regroup(participant_id, seat, group, "open"))

    async def open_precall(self, participant_id: str) -> None:
        self._watch(self._drop(participant_id))
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

    async def video_sizes(self, participant_id: str, sizes: dict[str, list[int]]) -> None:
        seat = self._admitted(participant_id)
        if seat.worker is not None:
            await self._answer(self._request(seat.worker, "video_sizes", participant_id, sizes))

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
        try:
            await future
        except ConnectionError:
            return
        except RemoteError as exc:
            raise MediaError(exc.code, exc.message) from None

    async def _answer(self, future: asyncio.Future[Any]) -> Any:
        """The result of a call whose caller needs it; a lost worker is `unavailable`."""
        try:
            return await future
        except RemoteError as exc:
            raise MediaError(exc.code, exc.message) from None
        except ConnectionError:
            raise MediaError("unavailable", "the media server was lost; offer again") from None

    # routes

    def _apply(self, commands: list[Command]) -> None:
        for command in commands:
            match command:
                case RelayOut(worker, stream, to):
                    origins = [self.fleet.origin(w) for w in to]
                    self._notify(worker, "relay_out", stream, [o for o in origins if o])
                case RemoteAdd(worker, origin, stream, room, group, pid, description):
                    self._notify(
                        worker,
                        "remote_add",
                        self.fleet.origin(origin),
                        stream,
                        room,
                        group,
                        pid,
                        description,
                    )
                case RemoteRemove(worker, origin, stream):
                    self._notify(worker, "remote_remove", self.fleet.origin(origin), stream)
                case Role(worker, room, group, leader, shared, size):
                    self._notify(worker, "group_role", room, group, leader, shared, size)
                    orders = self.orders.get((room, group))
                    if not leader and shared and orders is not None:
                        self._notify(worker, "impose", room, group, *orders)
        for key in [k for k in self.orders if k not in self.routes.plans]:
            del self.orders[key]

    # from the workers

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

    def _event(self, handle: WorkerLink, tag: str, values: list[Any]) -> None:
        event = decode_event(tag, values)
        if event is None:
            self.stats_book.bad_messages += 1
            return
        if isinstance(event, ActiveSpeaker):
            if self.routes.leader_of((event.room_id, event.group)) == handle.index:
                self._emit(event)
            return
        seat = self.seats.get(event.participant_id)
        if seat is None or seat.worker != handle.index:
            return  # stale: the participant left or is on another worker now
        if isinstance(event, MediaClosed) and event.reason == PRECALL_TIMEOUT:
            del self.seats[event.participant_id]
        self._emit(event)

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

    def _emit(self, event: MediaEvent) -> None:
        try:
            deliver(self.events, event)
        except Exception:
            logger.exception("MediaEvents failed on %s", type(event).__name__)

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
