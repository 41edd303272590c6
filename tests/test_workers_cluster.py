"""Two `visitroom serve --workers 1` nodes and a real redis-server: a node's pool places a
participant on the other node's worker (authenticated TCP RPC), media crosses machines over
the SRTP relay, and losing that worker brings the participant back on a live one."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgpack
import pytest
import redis.asyncio as redis

from sfu.workers import rpc
from sfu.workers.rpcauth import hello
from tests.conftest import API_KEY, API_SECRET, CLUSTER_SECRET, host_admits_guest
from tests.redis_server import RedisServer
from tests.servers import ServerProcess
from tests.sfu_live import Pump
from tests.test_workers_serve import MediaClient, metrics, worker_process
from tests.waiting import eventually

pytestmark = pytest.mark.slow


def node(tmp_path: Path, name: str, redis_server: RedisServer) -> ServerProcess:
    env: dict[str, str | None] = {
        "VISITROOM_API_KEY": API_KEY,
        "VISITROOM_API_SECRET": API_SECRET,
        "VISITROOM_CLUSTER_SECRET": CLUSTER_SECRET,
        "VISITROOM_REDIS_URL": redis_server.url,
        "VISITROOM_NODE_ID": name,
        "VISITROOM_KNOCK_RATE_LIMIT": "0",
        "VISITROOM_WORKER_MAX_PARTICIPANTS": "1",
        "VISITROOM_DRAIN_DEADLINE_S": "2",
    }
    return ServerProcess(tmp_path / name, env, "--workers", "1")


@pytest.fixture
async def nodes(
    tmp_path: Path, redis_server: RedisServer
) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    a, b = node(tmp_path, "node-a", redis_server), node(tmp_path, "node-b", redis_server)
    await asyncio.gather(a.start(30), b.start(30))
    yield a, b
    a.kill()
    b.kill()


async def rpc_address(redis_server: RedisServer, node_id: str) -> tuple[str, int]:
    client = redis.Redis.from_url(redis_server.url)
    try:
        entry = msgpack.unpackb(await client.get(f"vr:worker:{node_id}:0"))
    finally:
        await client.aclose()
    return entry["rpc"][0], entry["rpc"][1]


def exchange(address: tuple[str, int], frame: bytes) -> tuple[list[rpc.Message], bool]:
    """Send one frame, read what comes back until the worker closes (or 2 s)."""
    decoder = rpc.FrameDecoder()
    with socket.create_connection(address, timeout=2) as sock:
        sock.sendall(frame)
        messages, closed = [], False
        try:
            while chunk := sock.recv(65536):
                messages += decoder.feed(chunk)
            closed = True
        except TimeoutError:
            pass
    return messages, closed


async def test_a_participant_on_the_other_nodes_worker_gets_media_across_machines(
    nodes: tuple[ServerProcess, ServerProcess], redis_server: RedisServer
) -> None:
    a, b = nodes
    async with aiohttp.ClientSession() as session:

        async def discovered() -> bool:
            return (await metrics(session, a)).get("remote_workers_up") == 1

        await eventually(discovered, 10, "node A's pool found node B's worker")
        host, guest, _ = await host_admits_guest(session, f"{a.url}/v1/rooms/visit-1/ws")
        values = await metrics(session, a)
        assert values["worker0_participants"] == 1 and values["remote_participants"] == 1
        viewer = MediaClient(host, audio_slots=1, video_slots=1)
        sender = MediaClient(guest, audio=True, video=True)
        pumps: list[Pump] = []
        try:
            await viewer.offer()
            await sender.offer()
            pumps.append(Pump(sender.peer).start())
            await eventually(lambda: viewer.peer.transport.received > 60, 10, "media from B to A")

            async def sealed() -> bool:
                there, here = await metrics(session, b), await metrics(session, a)
                return (
                    there.get("relay_rtp_out", 0) > 50
                    and there.get("relay_secure_peers") == 1
                    and here.get("relay_secure_peers") == 1
                    and here.get("relay_rtp_in", 0) > 50
                    and here.get("relay_srtp_errors") == 0
                )

            await eventually(sealed, 5, "the relay between the nodes is SRTP and flows")

            address = await rpc_address(redis_server, "node-b")
            forged = hello("not-the-secret" * 4, "mallory")
            replies, closed = await asyncio.to_thread(
                exchange, address, rpc.request_frame(1, "hello", forged)
            )
            assert closed and replies == [rpc.Response(1, ("unauthorized", "bad hello"), None)]
            replies, closed = await asyncio.to_thread(
                exchange, address, rpc.request_frame(2, "close_room", ["visit-1"])
            )
            assert closed, "nothing before a valid hello"
            assert [r.error[0] for r in replies if isinstance(r, rpc.Response) and r.error] == [
                "unauthorized"
            ]
            assert viewer.peer.transport.received > 0

            worker_process(b, "worker0").kill()  # the guest's worker, on node B
            killed = time.monotonic()
            await eventually(lambda: bool(guest.of_type("media_closed")), 3, "the guest is told")
            assert guest.of_type("media_closed")[0]["reason"] == "worker_lost"
            await eventually(lambda: sender.reoffers == 1, 5, "the guest offered again")
            pumps.append(Pump(sender.peer).start())
            got = viewer.peer.transport.received
            await eventually(
                lambda: viewer.peer.transport.received > got + 60,
                killed + 5 - time.monotonic(),
                "media back on node A's worker",
            )
            assert not host.of_type("media_closed") and len(host.of_type("knock")) == 1
        finally:
            for pump in pumps:
                await pump.stop()
            await viewer.close()
            await sender.close()
            await host.close()
            await guest.close()
