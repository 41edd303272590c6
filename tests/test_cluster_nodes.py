"""Two `visitroom serve` nodes and a real redis-server: routing, takeover, outages, drain."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import API_KEY, API_SECRET, CLUSTER_SECRET, Peer, token
from tests.redis_server import RedisServer
from tests.servers import ServerProcess
from tests.waiting import eventually

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    redis: RedisServer
    a: ServerProcess
    b: ServerProcess
    session: aiohttp.ClientSession

    async def peer(self, node: ServerProcess, hello: dict[str, Any], room: str = "visit-1") -> Peer:
        ws = await self.session.ws_connect(f"{node.url}/v1/rooms/{room}/ws")
        peer = Peer(ws)
        await peer.send({"type": "hello", **hello})
        return peer

    async def ready(self, node: ServerProcess) -> int:
        async with self.session.get(f"{node.url}/readyz") as response:
            return response.status

    async def healthy(self, node: ServerProcess) -> int:
        async with self.session.get(f"{node.url}/healthz") as response:
            return response.status


def node(tmp_path: Path, name: str, redis: RedisServer) -> ServerProcess:
    env: dict[str, str | None] = {
        "VISITROOM_API_KEY": API_KEY,
        "VISITROOM_API_SECRET": API_SECRET,
        "VISITROOM_CLUSTER_SECRET": CLUSTER_SECRET,
        "VISITROOM_REDIS_URL": redis.url,
        "VISITROOM_NODE_ID": name,
        "VISITROOM_KNOCK_RATE_LIMIT": "0",
        "VISITROOM_DRAIN_DEADLINE_S": "5",
    }
    # one SFU worker: the pool and its Redis directory run as in production, with half
    # the processes to start and stop (no test here sends media)
    return ServerProcess(tmp_path / name, env, "--workers", "1")


@pytest.fixture
async def cluster(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Cluster]:
    a, b = node(tmp_path, "node-a", redis_server), node(tmp_path, "node-b", redis_server)
    await asyncio.gather(a.start(), b.start())
    async with aiohttp.ClientSession() as session:
        yield Cluster(redis_server, a, b, session)
    a.kill()
    b.kill()


async def test_clients_of_one_room_meet_whichever_node_they_reach(cluster: Cluster) -> None:
    host = await cluster.peer(cluster.a, {"token": token()})
    await host.next("welcome")
    guest = await cluster.peer(cluster.b, {"name": "Pat"})
    gid = (await guest.next("welcome"))["participant_id"]
    assert (await host.next("knock"))["participant"]["id"] == gid
    ack = await host.request({"type": "admit", "participant_ids": [gid]})
    assert ack["admitted"] == [gid]
    await guest.next("admitted")
    assert len((await guest.next("roster"))["participants"]) == 2
    await guest.send({"type": "leave"})
    assert await guest.wait_closed() == 1000


async def test_a_dead_nodes_rooms_are_taken_over_with_lobby_and_roster(cluster: Cluster) -> None:
    host = await cluster.peer(cluster.a, {"token": token()})
    await host.next("welcome")
    joined = await cluster.peer(cluster.a, {"name": "In"})
    jid = (await joined.next("welcome"))["participant_id"]
    await host.request({"type": "admit", "participant_ids": [jid]})
    waiting = await cluster.peer(cluster.a, {"name": "Out"})
    wid = (await waiting.next("welcome"))["participant_id"]
    await host.request({"type": "hold", "participant_id": wid, "message": "Back in 5"})
    await waiting.next("lobby_status", status="on_hold")
    tokens = {p: p.of_type("welcome")[0]["resume_token"] for p in (host, joined, waiting)}
    cluster.a.kill()
    for peer in (host, joined, waiting):
        await peer.wait_closed()
    again = {p: await cluster.peer(cluster.b, {"resume": t}) for p, t in tokens.items()}
    assert (await again[host].next("welcome", timeout=15))["role"] == "host"
    lobby = await again[host].next("lobby")
    assert [(w["id"], w["status"], w["message"]) for w in lobby["waiting"]] == [
        (wid, "on_hold", "Back in 5")
    ]
    roster = await again[host].next("roster")
    assert {p["id"] for p in roster["participants"]} == {
        host.of_type("welcome")[0]["participant_id"],
        jid,
    }
    status = await again[waiting].next("lobby_status", timeout=15)
    assert status == {"type": "lobby_status", "status": "on_hold", "message": "Back in 5"}
    assert (await again[joined].next("welcome", timeout=15))["status"] == "joined"
    assert not again[waiting].of_type("admitted"), "nobody is admitted by a takeover"


async def test_redis_away_for_15_s_keeps_calls_going_refuses_joins_and_recovers(
    cluster: Cluster,
) -> None:
    host = await cluster.peer(cluster.a, {"token": token()})
    await host.next("welcome")
    guest = await cluster.peer(cluster.a, {"name": "Pat"})
    gid = (await guest.next("welcome"))["participant_id"]
    resume = guest.of_type("welcome")[0]["resume_token"]
    outage_started = asyncio.get_running_loop().time()
    cluster.redis.stop()

    async def not_ready() -> bool:
        return await cluster.ready(cluster.a) == 503

    await eventually(not_ready, 5, "readyz fails while redis is away")
    assert await cluster.healthy(cluster.a) == 200
    assert (await host.request({"type": "admit", "participant_ids": [gid]}))["admitted"] == [gid]
    await guest.next("admitted")
    late = await cluster.peer(cluster.a, {"name": "Late"})
    assert (await late.next("error"))["code"] == "unavailable"
    # The outage itself lasts 15 s: a scenario parameter, not a wait for a condition.
    await asyncio.sleep(max(0.0, outage_started + 15 - asyncio.get_running_loop().time()))
    assert (await host.request({"type": "lobby"}))["type"] == "ack", "calls continue"
    cluster.redis.start()  # an empty Redis: the owner writes its rooms back

    async def ready() -> bool:
        return await cluster.ready(cluster.a) == 200

    await eventually(ready, 10, "readyz recovers without a restart")
    later = await cluster.peer(cluster.b, {"name": "Later"})
    later_id = (await later.next("welcome"))["participant_id"]
    knock = await host.next("knock", participant={"id": later_id, "name": "Later"})
    assert knock["participant"]["name"] == "Later"
    cluster.a.kill()  # the state written back after the outage allows a takeover
    await guest.wait_closed()
    again = await cluster.peer(cluster.b, {"resume": resume})
    welcome = await again.next("welcome", timeout=15)
    assert (welcome["participant_id"], welcome["status"]) == (gid, "joined")


async def test_sigterm_drains_a_node_and_its_clients_resume_on_another(cluster: Cluster) -> None:
    host = await cluster.peer(cluster.a, {"token": token()})
    await host.next("welcome")
    guest = await cluster.peer(cluster.a, {"name": "Pat"})
    await guest.next("welcome")
    resume = host.of_type("welcome")[0]["resume_token"]
    stopping = asyncio.ensure_future(cluster.a.stop(signal.SIGTERM, 30))
    assert await host.wait_closed(10) == 1012
    again = await cluster.peer(cluster.b, {"resume": resume})
    assert (await again.next("welcome", timeout=15))["role"] == "host"
    assert len((await again.next("lobby"))["waiting"]) == 1
    assert await stopping == 0


def test_hop_signatures_bind_node_path_client_and_time() -> None:
    from cluster.hop import sign, verify
    from cluster.kdf import derive

    key, other = derive(CLUSTER_SECRET, "hop"), derive("x" * 48, "hop")
    header = sign(key, "node-a", "/v1/rooms/x/ws", "10.0.0.1", now=1000)
    assert verify(key, header, "/v1/rooms/x/ws", "10.0.0.1", now=1010)
    assert not verify(key, header, "/v1/rooms/y/ws", "10.0.0.1", now=1010)
    assert not verify(key, header, "/v1/rooms/x/ws", "10.0.0.2", now=1010)
    assert not verify(other, header, "/v1/rooms/x/ws", "10.0.0.1", now=1010)
    assert not verify(key, header, "/v1/rooms/x/ws", "10.0.0.1", now=1100)


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {token(room='*', identity='ops', admin=True)}"}


async def test_rest_on_any_node_sees_and_ends_a_room_owned_by_another(cluster: Cluster) -> None:
    host = await cluster.peer(cluster.a, {"token": token()})
    await host.next("welcome")
    guest = await cluster.peer(cluster.a, {"name": "Pat"})
    await guest.next("welcome")
    url = f"{cluster.b.url}/v1/rooms/visit-1"
    async with cluster.session.get(url, headers=admin_headers()) as response:
        room = await response.json()
    assert (room["joined"], room["waiting"]) == (1, 1)
    cluster.redis.stop()  # pub/sub must come back by itself after Redis does
    cluster.redis.start()

    async def ready() -> bool:
        return await cluster.ready(cluster.a) == 200 and await cluster.ready(cluster.b) == 200

    await eventually(ready, 20, "both nodes ready again")

    async def ended() -> bool:
        # 404 until the owner has written the room back into the emptied Redis
        async with cluster.session.delete(url, headers=admin_headers()) as response:
            assert response.status in (200, 202, 404)
        return bool(host.of_type("left"))

    await eventually(ended, 20, "the owner ended the room on a notice from the other node")
    assert (await guest.next("left"))["reason"] == "ended"
    entries: list[dict[str, Any]] = []

    async def merged() -> bool:
        # node-a's rows come through node-b once node-a is back in the registry
        async with cluster.session.get(f"{url}/audit", headers=admin_headers()) as response:
            entries[:] = (await response.json())["entries"]
        return bool(entries)

    await eventually(merged, 10, "node-a's rows through node-b")
    assert {e["node"] for e in entries} == {"node-a"}
    assert ("end", "ops") in [(e["action"], e["actor"]) for e in entries]


async def test_a_room_s_practice_holds_on_every_node(cluster: Cluster) -> None:
    def practice_token(practice: str) -> dict[str, str]:
        tok = token("*", f"admin-{practice}", "host", admin=True, practice=practice,
                    scope="rooms:admin rooms:host")  # fmt: skip
        return {"Authorization": f"Bearer {tok}"}

    start = datetime.now(UTC)
    body = {"room_id": "p1-visit", "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(minutes=30)).isoformat()}  # fmt: skip
    async with cluster.session.post(
        f"{cluster.a.url}/v1/rooms", json=body, headers=practice_token("p1")
    ) as response:
        assert response.status == 201
    url = f"{cluster.b.url}/v1/rooms/p1-visit"
    async with cluster.session.get(url, headers=practice_token("p2")) as response:
        assert response.status == 403
    async with cluster.session.get(url, headers=practice_token("p1")) as response:
        assert response.status == 200
    p2 = practice_token("p2")["Authorization"].removeprefix("Bearer ")
    other = await cluster.peer(cluster.b, {"token": p2}, room="p1-visit")
    assert (await other.next("error"))["code"] == "forbidden"
    p1 = practice_token("p1")["Authorization"].removeprefix("Bearer ")
    own = await cluster.peer(cluster.b, {"token": p1}, room="p1-visit")
    assert (await own.next("welcome"))["role"] == "host"
