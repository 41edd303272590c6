"""`ShardMedia`: the media plane of one SFU worker process, with the relay.

A `LocalMedia` that also takes part in rooms spanning workers:

* it gives each published track a stream id and tells the pool what it
  publishes (`PoolLink.streams`) whenever that may have changed;
* it copies a local track to other workers when the pool routes it there
  (`relay_out`), through a `RelayTap` on the producer;
* it adds the other workers' tracks the pool routes here (`remote_add`,
  `remote_remove`) to the right group as `RemotePublisher`s;
* it follows the pool's word on which worker leads each group
  (`group_role`), and as a leader of a shared group publishes the group's
  speaker orders after each clock tick where they changed, or as a follower
  fills slots from the orders the leader sent (`impose`).

Everything here is synchronous and runs on the worker's loop; a bad
description from the pool is logged and skipped, never raised into the
RPC connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from sfu.control import MediaEvents
from sfu.local import LocalMedia
from sfu.packet.counters import Counters
from sfu.relay.endpoint import Address, RelayEndpoint, RelayTap
from sfu.relay.remote import DescriptionError, RemotePublisher, RemoteStream, describe
from sfu.routing.group import Group, Orders
from sfu.routing.layering import Track
from sfu.routing.participant import Participant
from sfu.routing.producer import Producer
from sfu.settings import MediaSettings

logger = logging.getLogger(__name__)


class PoolLink(Protocol):
    """What a worker tells the pool besides MediaEvents."""

    def streams(self, participant_id: str, streams: list[dict[str, Any]]) -> None: ...

    def group_order(self, room_id: str, group: str, video: list[str], audio: list[str]) -> None: ...


class ShardMedia(LocalMedia):
    """One worker's SFU (see module doc)."""

    def __init__(
        self,
        settings: MediaSettings,
        events: MediaEvents,
        endpoint: RelayEndpoint,
        link: PoolLink,
    ) -> None:
        super().__init__(settings, events)
        self.endpoint = endpoint
        self.link = link
        self.relay_counters = Counters()  # NACKs the remote producers send upstream
        self._next_stream = 0
        self._published: dict[str, dict[int, Producer]] = {}  # pid -> stream -> producer
        self._described: dict[str, list[dict[str, Any]]] = {}
        self._targets: dict[int, list[int]] = {}  # local stream -> destination origins
        self._taps: dict[int, RelayTap] = {}
        self._remotes: dict[tuple[int, int], tuple[Group, str]] = {}  # -> (group, pid)
        self._shared: set[tuple[str, str]] = set()
        self._sent_orders: dict[tuple[str, str], Orders] = {}

    async def stop(self) -> None:
        for key in list(self._remotes):
            self.remote_remove(*key)
        await super().stop()
        self.endpoint.close()

    # what this worker publishes

    def published(self, participant: Participant) -> None:
        pid = participant.id
        mine = self._published.setdefault(pid, {})
        # Every layer of a simulcast track is a stream of its own.
        current = [] if participant.closed else list(participant.all_producers())
        for stream, producer in list(mine.items()):
            if not any(producer is p for p in current):
                self._unpublish(pid, stream)
        known = list(mine.values())
        for producer in current:
            if not any(producer is p for p in known):
                self._next_stream += 1
                mine[self._next_stream] = producer
                self.endpoint.streams[self._next_stream] = producer
                self._attach(self._next_stream)
        if participant.closed:
            self._published.pop(pid, None)
            self._described.pop(pid, None)
            return
        described = [{**describe(p), "stream": s} for s, p in sorted(mine.items())]
        if described != self._described.get(pid):
            self._described[pid] = described
            self.link.streams(pid, described)

    def _unpublish(self, pid: str, stream: int) -> None:
        producer = self._published[pid].pop(stream)
        self.endpoint.streams.pop(stream, None)
        self._taps.pop(stream, None)
        producer.relay = None

    def relay_out(self, stream: int, origins: list[int]) -> None:
        """Send local `stream` to these workers (none: stop relaying it)."""
        if origins:
            self._targets[stream] = list(origins)
        else:
            self._targets.pop(stream, None)
        self._attach(stream)

    def set_peers(self, peers: dict[int, Address], secure: set[int] | None = None) -> None:
        self.endpoint.set_peers(peers, secure)
        for stream in list(self._taps):
            self._attach(stream)

    def _attach(self, stream: int) -> None:
        producer = self.endpoint.streams.get(stream)
        origins = self._targets.get(stream)
        if producer is None or not origins:
            self._taps.pop(stream, None)
            if producer is not None:
                producer.relay = None
            return
        tap = self._taps.get(stream)
        if tap is None:
            tap = self._taps[stream] = RelayTap(self.endpoint, stream)
        peers, secure = self.endpoint.peers, self.endpoint.secure
        tap.targets = [(peers[o], secure.get(o)) for o in origins if o in peers]
        producer.relay = tap

    # what other workers publish here

    def remote_add(
        self, origin: int, stream: int, room_id: str, name: str, pid: str, desc: dict[str, Any]
    ) -> None:
        key = (origin, stream)
        placed = self._remotes.get(key)
        if placed is not None:
            group, owner = placed
            if (group.room_id, group.name, owner) == (room_id, name, pid):
                self._update_remote(group, pid, key, desc)
                return
            self.remote_remove(origin, stream)
        group = self._group(room_id, name, False)
        try:
            remote = RemoteStream(
                self.endpoint, origin, stream, pid, desc, self.settings, self.relay_counters
            )
        except DescriptionError as exc:
            logger.warning("remote stream %s refused: %s", key, exc)
            self._forget_group(group)
            return
        publisher = group.remotes.get(pid)
        if not isinstance(publisher, RemotePublisher):
            publisher = RemotePublisher(pid)
        publisher.add(remote)
        group.add_remote(publisher)
        self._remotes[key] = (group, pid)
        self.endpoint.sources[key] = remote
        self.refill(group)

    def _update_remote(self, group: Group, pid: str, key: tuple[int, int], desc: Any) -> None:
        publisher = group.remotes.get(pid)
        if isinstance(publisher, RemotePublisher) and key in publisher.streams:
            try:
                publisher.streams[key].update(desc)
            except DescriptionError as exc:
                logger.warning("remote stream %s update refused: %s", key, exc)

    def remote_remove(self, origin: int, stream: int) -> None:
        key = (origin, stream)
        placed = self._remotes.pop(key, None)
        self.endpoint.sources.pop(key, None)
        if placed is None:
            return
        group, pid = placed
        publisher = group.remotes.get(pid)
        if isinstance(publisher, RemotePublisher):
            publisher.remove(key)
            if not publisher.streams:
                group.remove_remote(pid)
        self.refill(group)
        self._forget_group(group)

    # who decides the orders of a shared group

    def group_role(self, room_id: str, name: str, leader: bool, shared: bool, size: int) -> None:
        group = self.groups.get((room_id, name))
        if group is None:
            return
        key = (room_id, name)
        if leader and not group.leader:
            self._sent_orders.pop(key, None)  # a new leader announces at once
        group.lead(leader)
        group.size_hint = size
        if shared:
            self._shared.add(key)
        else:
            self._shared.discard(key)

    def impose(self, room_id: str, name: str, video: list[str], audio: list[str]) -> None:
        group = self.groups.get((room_id, name))
        if group is not None:
            group.impose((list(video), list(audio)))

    def relayed(self, now: float) -> Iterable[tuple[Track, Iterable[int]]]:
        """Local simulcast tracks relayed out, with the layers some other worker wants."""
        tracks: dict[int, Producer] = {}
        for stream, tap in self._taps.items():
            producer = self.endpoint.streams.get(stream)
            if producer is not None and tap.targets:
                tracks[id(producer.track)] = producer.track
        return [
            (track, [layer.spatial for layer in track.layers if _wanted(layer)])
            for track in tracks.values()
        ]

    def after_tick_steps(self, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
        yield from super().after_tick_steps(clock)
        now = clock()
        for (origin, stream), sink in list(self.endpoint.sources.items()):
            wanted = sink.demand(now) if isinstance(sink, RemoteStream) else None
            if wanted is not None:
                self.endpoint.send_demand(origin, stream, wanted)
        for key in list(self._shared):
            group = self.groups.get(key)
            if group is None:
                self._shared.discard(key)
                continue
            orders = group.current_orders
            if group.leader and orders is not None and orders != self._sent_orders.get(key):
                self._sent_orders[key] = orders
                self.link.group_order(key[0], key[1], orders[0], orders[1])

    # observability

    def stats(self) -> dict[str, float]:
        result = super().stats()
        result.update(self.endpoint.counters.values)
        result["relay_nacks_sent"] = self.relay_counters.nacks_sent
        result["relay_streams_out"] = sum(len(t.targets) for t in self._taps.values())
        result["relay_streams_in"] = len(self._remotes)
        result["relay_secure_peers"] = len(self.endpoint.secure)
        result["shared_groups"] = len(self._shared)
        return result


def _wanted(layer: Producer) -> bool:
    tap = layer.relay
    return isinstance(tap, RelayTap) and tap.wanted()
