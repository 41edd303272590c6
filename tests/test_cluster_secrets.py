"""Two real nodes on one Redis but with different cluster secrets cannot talk: each refuses
the other's hops (proxied sockets, audit fetches; audited) and worker RPC (hello)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import API_KEY, API_SECRET, CLUSTER_SECRET, Peer, token
from tests.redis_server import RedisServer
from tests.servers import ServerProcess, room_audit
from tests.test_workers_serve import metrics
from tests.waiting import eventually

pytestmark = pytest.mark.slow

OTHER_SECRET = "d" * 48


def node(tmp_path: Path, name: str, redis: RedisServer, cluster_secret: str) -> ServerProcess:
    env: dict[str, str | None] = {
        "VISITROOM_API_KEY": API_KEY,
        "VISITROOM_API_SECRET": API_SECRET,
        "VISITROOM_CLUSTER_SECRET": cluster_secret,
        "VISITROOM_REDIS_URL": redis.url,
        "VISITROOM_NODE_ID": name,
        "VISITROOM_KNOCK_RATE_LIMIT": "0",
        "VISITROOM_DRAIN_DEADLINE_S": "2",
    }
    return ServerProcess(tmp_path / name, env, "--workers", "1")


def refused_hello(node: ServerProcess) -> Callable[[], bool]:
    return lambda: "unauthorized: bad hello" in node.output()


async def audit(session: aiohttp.ClientSession, node: ServerProcess) -> list[dict[str, Any]]:
    return await room_audit(session, node, "visit-1", token(room="*", identity="ops", admin=True))


async def test_nodes_with_different_cluster_secrets_refuse_each_others_hops(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    a = node(tmp_path, "node-a", redis_server, CLUSTER_SECRET)
    b = node(tmp_path, "node-b", redis_server, OTHER_SECRET)
    try:
        await asyncio.gather(a.start(60), b.start(60))
        async with aiohttp.ClientSession() as session:
            host = Peer(await session.ws_connect(f"{a.url}/v1/rooms/visit-1/ws"))
            await host.send({"type": "hello", "token": token()})
            await host.next("welcome")
            guest = Peer(await session.ws_connect(f"{b.url}/v1/rooms/visit-1/ws"))
            await guest.send({"type": "hello", "name": "Pat"})
            assert (await guest.next("error", timeout=20))["code"] == "unavailable"
            assert not host.of_type("knock"), "node-b could not carry the guest to node-a"

            through_a = await audit(session, a)
            assert {e["node"] for e in through_a} == {"node-a"}, "node-b refused node-a's fetch"
            refused = [e for e in through_a if e["action"] == "ws_upgrade"]
            assert refused and all(
                (e["outcome"], e["reason"]) == ("forbidden", "hop") for e in refused
            )
            through_b = await audit(session, b)
            assert {e["node"] for e in through_b} == {"node-b"}, "node-a refused node-b's fetch"
            assert ("hop", "unauthorized") in [(e["action"], e["outcome"]) for e in through_b]
            for peer in (host, guest):
                await peer.close()
            for one in (a, b):  # each pool found the other's worker but failed its hello
                await eventually(refused_hello(one), 20, "RPC refused")
                assert (await metrics(session, one)).get("remote_workers_up") == 0
    finally:
        a.kill()
        b.kill()
