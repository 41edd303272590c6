"""`video_sizes`, `publish_layers` and `downlink` through a pool of real SFU worker processes."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from sfu.control import Downlink, MediaError, PublishLayers
from sfu.workers import rpc
from sfu.workers.api import decode_event, encode_event
from sfu.workers.session import Router, Session
from tests.pool_live import Reoffering, handle, running_pool
from tests.test_sfu_rpc import Handler
from tests.waiting import eventually

pytestmark = pytest.mark.slow


async def test_video_sizes_reach_the_worker_which_checks_them_against_the_slots() -> None:
    async with running_pool(workers=1, max_participants=4) as (pool, events):
        alice = Reoffering(pool, events, "alice", audio=True, video=True, video_slots=2)
        try:
            await pool.open("r", "main", "alice")
            await pool.video_sizes("alice", {str(n): [64, 36] for n in range(8)})  # the cap
            with pytest.raises(MediaError) as refused:
                await pool.video_sizes("alice", {str(n): [64, 36] for n in range(9)})
            assert refused.value.code == "bad_request"
            await alice.join()
            await pool.video_sizes("alice", {"2": [1280, 720], "3": [0, 0]})
            with pytest.raises(MediaError) as refused:
                await pool.video_sizes("alice", {"2": [1, 1], "3": [1, 1], "4": [1, 1]})
            assert refused.value.code == "bad_request"
            with pytest.raises(MediaError) as refused:
                await pool.video_sizes("bob", {})
            assert refused.value.code == "not_admitted"
        finally:
            await alice.close()


async def test_layer_and_downlink_events_of_a_worker_reach_the_events_of_the_pool() -> None:
    async with running_pool(workers=2, max_participants=1) as (pool, events):
        members = [Reoffering(pool, events, pid, audio=True) for pid in ("alice", "bob")]
        try:
            for member in members:
                await member.join()
            alice_worker = pool.seats["alice"].worker
            assert alice_worker is not None
            own, other = handle(pool, alice_worker), handle(pool, 1 - alice_worker)
            for link, event in (
                (own, PublishLayers("alice", "1", ["q"])),
                (own, Downlink("alice", 900)),
                (other, PublishLayers("alice", "1", [])),  # stale: not alice's worker
                (own, PublishLayers("carol", "1", [])),  # nobody
            ):
                pool.worker_notification(link, "event", list(encode_event(event)))
            assert events.layers == [("alice", "1", ["q"])]
            assert events.downlinks == [("alice", 900)]
            pool.worker_notification(own, "event", ["downlink", ["alice", "fast"]])
            assert events.downlinks == [("alice", 900)]
        finally:
            for member in members:
                await member.close()


class Owner:
    """The worker side of a session: nothing is asked of it here."""

    async def request(self, session: Session, method: str, params: list[Any]) -> Any:
        raise AssertionError(method)

    def notification(self, session: Session, method: str, params: list[Any]) -> None:
        raise AssertionError(method)

    def session_lost(self, session: Session) -> None:
        pass


async def test_a_worker_routes_layer_and_downlink_events_to_the_pool_that_opened_them() -> None:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    session = Session(Owner(), "pool", trusted=True)
    pool_side = Handler()
    pool_conn = rpc.RpcConnection(pool_side, "pool")
    await loop.create_unix_connection(lambda: session.conn, sock=a)
    await loop.create_unix_connection(lambda: pool_conn, sock=b)
    router = Router()
    router.owners["alice"] = session
    try:
        router.publish_layers("alice", "1", ["q", "h"])
        router.downlink("alice", 640)
        router.downlink("bob", 100)  # opened by no session: dropped
        router.publish_layers("alice", "1", [])  # on the same stream, after bob's
        await eventually(lambda: len(pool_side.notes) >= 3, 5, "the events at the pool")
        events = [decode_event(*params) for method, params in pool_side.notes if method == "event"]
        assert events == [
            PublishLayers("alice", "1", ["q", "h"]),
            Downlink("alice", 640),
            PublishLayers("alice", "1", []),
        ]
    finally:
        session.close()
        pool_conn.close()
