"""Webhooks from real `visitroom serve` processes: a restart (SIGTERM or kill -9) in the
middle loses no event, and two nodes on one Redis deliver each event once."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import API_KEY, API_SECRET, CLUSTER_SECRET, Peer, token
from tests.redis_server import RedisServer
from tests.servers import ServerProcess, run_cli
from tests.waiting import eventually
from tests.webhook_receiver import SECRET, Receiver

pytestmark = pytest.mark.slow

ROOM = "visit-1"


def hook_env(receiver: Receiver) -> dict[str, str | None]:
    return {
        "VISITROOM_API_KEY": API_KEY,
        "VISITROOM_API_SECRET": API_SECRET,
        "VISITROOM_KNOCK_RATE_LIMIT": "0",
        "VISITROOM_WEBHOOK_URLS": receiver.url,
        "VISITROOM_WEBHOOK_SECRET": SECRET,
        "VISITROOM_WEBHOOK_TIMEOUT_S": "1",
        "VISITROOM_WEBHOOK_RETRY_BASE_S": "0.05",
        "VISITROOM_WEBHOOK_RETRY_MAX_S": "0.3",
    }


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = Receiver()
    await hooks.start()
    yield hooks
    await hooks.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def peer(session: aiohttp.ClientSession, node: ServerProcess, hello: dict[str, Any]) -> Peer:
    joined = Peer(await session.ws_connect(f"{node.url}/v1/rooms/{ROOM}/ws"))
    await joined.send({"type": "hello", **hello})
    return joined


async def admitted_visit(
    session: aiohttp.ClientSession, host_node: ServerProcess, guest_node: ServerProcess
) -> tuple[Peer, Peer, str]:
    host = await peer(session, host_node, {"token": token()})
    await host.next("welcome", timeout=10)
    guest = await peer(session, guest_node, {"name": "Pat"})
    gid = (await guest.next("welcome", timeout=10))["participant_id"]
    await host.next("knock", timeout=10)
    await host.request({"type": "admit", "participant_ids": [gid]}, timeout=10)
    await guest.next("admitted", timeout=10)
    return host, guest, gid


BEFORE = ["room_started", "participant_joined", "participant_knocked",
          "participant_admitted", "participant_joined"]  # fmt: skip
ENDED = ["participant_left", "participant_left", "room_ended"]


async def outbox_pending(server: ServerProcess) -> int:
    listed = await asyncio.to_thread(
        run_cli, "webhooks", "list", "--state", "pending", "--data-dir", str(server.data_dir)
    )
    return listed.stdout.count(" pending ")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
async def test_a_restart_in_the_middle_loses_no_event(
    tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession, stop: int
) -> None:
    await receiver.stop()  # nobody listens: every event waits in the outbox
    # one node, no media: the SFU in-process spares starting and stopping workers
    server = ServerProcess(tmp_path / "data", hook_env(receiver), "--workers", "0")
    await server.start(60)
    try:
        host, _, gid = await admitted_visit(session, server, server)
        resume = host.of_type("welcome")[0]["resume_token"]

        async def all_stored() -> bool:
            return await outbox_pending(server) == len(BEFORE)

        await eventually(all_stored, 20, "the five events are in the outbox")
        if stop == signal.SIGKILL:
            server.kill()
        else:
            assert await server.stop(stop) == 0
        await host.wait_closed()
        await receiver.start()
        await server.start(60)
        again = await peer(session, server, {"resume": resume})
        await again.next("welcome", timeout=10)
        await again.request({"type": "end"}, timeout=10)
        events = await receiver.wait_for(len(BEFORE) + len(ENDED), timeout=30)
        assert [e["event"] for e in events] == BEFORE + ENDED
        left = {e["participant_id"]: e["data"]["reason"] for e in events[5:7]}
        assert left == {gid: "ended", host.of_type("welcome")[0]["participant_id"]: "ended"}
        assert events[-1]["data"]["reason"] == "ended" and events[-1]["data"]["joined"] == 2
        assert receiver.bad_signatures == 0
    finally:
        server.kill()


@pytest.fixture
async def nodes(
    tmp_path: Path, redis_server: RedisServer, receiver: Receiver
) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    def node(name: str) -> ServerProcess:
        env = {
            **hook_env(receiver),
            "VISITROOM_CLUSTER_SECRET": CLUSTER_SECRET,
            "VISITROOM_REDIS_URL": redis_server.url,
            "VISITROOM_NODE_ID": name,
            "VISITROOM_DRAIN_DEADLINE_S": "5",
        }
        # one SFU worker: the pool and its Redis directory as in production, fewer processes
        return ServerProcess(tmp_path / name, env, "--workers", "1")

    a, b = node("node-a"), node("node-b")
    await asyncio.gather(a.start(60), b.start(60))
    yield a, b
    a.kill()
    b.kill()


async def sent_by(node: ServerProcess) -> str:
    listed = await asyncio.to_thread(
        run_cli, "webhooks", "list", "--state", "sent", "--data-dir", str(node.data_dir)
    )
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


async def test_two_nodes_deliver_each_event_once_from_the_node_serving_the_room(
    nodes: tuple[ServerProcess, ServerProcess],
    receiver: Receiver,
    session: aiohttp.ClientSession,
) -> None:
    a, b = nodes
    host, guest, _ = await admitted_visit(session, a, b)  # the guest comes in through b
    events = await receiver.wait_for(len(BEFORE), timeout=20)
    assert [e["event"] for e in events] == BEFORE
    before_ids = {e["id"] for e in events}
    on_a = await sent_by(a)
    assert all(i in on_a for i in before_ids) and "no sent deliveries" in await sent_by(b)
    tokens = [p.of_type("welcome")[0]["resume_token"] for p in (host, guest)]
    a.kill()  # b takes the room over from Redis, with the visit's start time
    await host.wait_closed()
    again = await peer(session, b, {"resume": tokens[0]})
    await again.next("welcome", timeout=15)
    await again.request({"type": "end"}, timeout=10)
    events = await receiver.wait_for(len(BEFORE) + len(ENDED), timeout=20)
    assert [e["event"] for e in events] == BEFORE + ENDED
    assert events[-1]["data"]["joined"] == 2, "b knows the visit a started"
    assert len(receiver.attempts) == len(events), "no event was sent twice"
    on_b = await sent_by(b)
    assert all(e["id"] in on_b and e["id"] not in on_a for e in events[len(BEFORE) :])
    assert receiver.bad_signatures == 0
