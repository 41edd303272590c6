"""A worker's side of its control connections: one `Session` per pool, a `Router` for events.

A worker is driven by its own node's pool over a socketpair (trusted from
the start) and, in a cluster, by the pools of other nodes over TCP (trusted
after a ``hello`` that proves the shared secret, see `sfu.workers.rpcauth`).  Each
participant belongs to the session that opened it and each group to the
session that gave it its role, so the `Router` sends every event, stream
list and speaker order to the pool that placed that participant or leads
that group; load reports go to every trusted session.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from sfu.control import (
    ActiveSpeaker,
    Downlink,
    IceRestartNeeded,
    MediaClosed,
    MediaEvent,
    PrecallMeasured,
    PrecallStats,
    Publishers,
    PublishLayers,
    Slot,
    SlotsChanged,
)
from sfu.workers.api import encode_event
from sfu.workers.rpc import RemoteError, RpcConnection

Address = tuple[str, int]
GroupKey = tuple[str, str]


class SessionOwner(Protocol):
    async def request(self, session: Session, method: str, params: list[Any]) -> Any: ...

    def notification(self, session: Session, method: str, params: list[Any]) -> None: ...

    def session_lost(self, session: Session) -> None: ...


class Session:
    """One pool's RPC connection to this worker."""

    def __init__(self, worker: SessionOwner, name: str, *, trusted: bool) -> None:
        self.worker = worker
        self.conn = RpcConnection(self, name)
        self.trusted = trusted
        self.local = trusted  # the own node's socketpair
        self.node = ""
        self.peers: dict[int, Address] = {}
        self.secure: set[int] = set()

    async def handle_request(self, method: str, params: list[Any]) -> Any:
        if not self.trusted and method != "hello":
            self._close_soon()
            raise RemoteError("unauthorized", "the first message must be a valid hello")
        try:
            return await self.worker.request(self, method, params)
        except RemoteError:
            if not self.trusted:
                self._close_soon()  # after the refusal is written
            raise

    def _close_soon(self) -> None:
        asyncio.get_running_loop().call_soon(self.close)

    def handle_notification(self, method: str, params: list[Any]) -> None:
        if self.trusted:
            self.worker.notification(self, method, params)
        else:
            self.close()

    def connection_lost(self) -> None:
        self.worker.session_lost(self)

    def expire(self) -> None:
        """No valid hello in time."""
        if not self.trusted:
            self.close()

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.close()
            self.worker.session_lost(self)


class Router:
    """`MediaEvents` and `PoolLink` of a worker: each message to the session it belongs to."""

    def __init__(self) -> None:
        self.owners: dict[str, Session] = {}  # participant -> the session that opened it
        self.group_owners: dict[GroupKey, Session] = {}  # group -> the session of its role

    def _send(self, session: Session | None, method: str, *params: Any) -> None:
        if session is not None:
            session.conn.notify(method, *params)

    def _event(self, session: Session | None, event: MediaEvent) -> None:
        self._send(session, "event", *encode_event(event))

    def slots_changed(self, participant_id: str, slots: list[Slot], publishers: Publishers) -> None:
        event = SlotsChanged(participant_id, slots, publishers)
        self._event(self.owners.get(participant_id), event)

    def active_speaker(self, room_id: str, group: str, participant_id: str) -> None:
        owner = self.group_owners.get((room_id, group)) or self.owners.get(participant_id)
        self._event(owner, ActiveSpeaker(room_id, group, participant_id))

    def media_closed(self, participant_id: str, reason: str) -> None:
        self._event(self.owners.get(participant_id), MediaClosed(participant_id, reason))

    def precall_stats(self, participant_id: str, stats: PrecallStats) -> None:
        owner = self.owners.get(participant_id)
        self._event(owner, PrecallMeasured(participant_id, stats))

    def ice_restart_needed(self, participant_id: str) -> None:
        self._event(self.owners.get(participant_id), IceRestartNeeded(participant_id))

    def publish_layers(self, participant_id: str, mid: str, active: list[str]) -> None:
        self._event(self.owners.get(participant_id), PublishLayers(participant_id, mid, active))

    def downlink(self, participant_id: str, estimate_kbps: int) -> None:
        self._event(self.owners.get(participant_id), Downlink(participant_id, estimate_kbps))

    def streams(self, participant_id: str, streams: list[dict[str, Any]]) -> None:
        self._send(self.owners.get(participant_id), "streams", participant_id, streams)

    def group_order(self, room_id: str, group: str, video: list[str], audio: list[str]) -> None:
        owner = self.group_owners.get((room_id, group))
        self._send(owner, "group_order", room_id, group, video, audio)

    def forget(self, session: Session) -> list[str]:
        """Drop what `session` owned; the participants it had opened."""
        gone = [pid for pid, owner in self.owners.items() if owner is session]
        for pid in gone:
            del self.owners[pid]
        for key in [k for k, owner in self.group_owners.items() if owner is session]:
            del self.group_owners[key]
        return gone
