"""A WebSocket client that never reads: its outbound queue is capped in bytes (issue 12).

The host socket is a bare socket with a 4 KiB receive buffer that reads
nothing; the server delivers ~64 KB lobby-sized frames to it through the
real hub, as a busy lobby would."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from signalling.config import Config
from signalling.hub import CLOSE_GRACE_S, CLOSE_TRY_AGAIN, Connection, Hub
from signalling.keys import HUB
from tests.conftest import Connect, join_host, make_config, token
from tests.raw_clients import RawWebSocket
from tests.sfu_live import eventually

CAP = 1 << 20
BIG = {"type": "lobby", "waiting": [{"id": f"g{i}", "name": "x" * 200} for i in range(300)]}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path, send_queue_bytes=CAP)


async def silent_host(client: TestClient[Any, Any], hub: Hub) -> tuple[RawWebSocket, Connection]:
    host, port = str(client.server.host), int(client.server.port or 0)
    raw = await asyncio.to_thread(RawWebSocket, host, port, "/v1/rooms/visit-1/ws")
    await asyncio.to_thread(raw.send_json, {"type": "hello", "token": token()})
    await eventually(lambda: any(c.participant_id for c in hub.connections()), 5, "the hello")
    return raw, hub.connections()[0]


async def flood(hub: Hub, conn: Connection, frames: int = 400) -> None:
    """Lobby-sized frames, paced: a client that reads keeps up, one that doesn't fills up."""
    assert conn.participant_id is not None
    for _ in range(frames):
        hub.deliver([conn.participant_id], BIG)
        if conn.closing:
            return
        await asyncio.sleep(0.01)


async def test_a_host_that_never_reads_is_closed_at_the_byte_cap_with_1013(
    app: web.Application, client: TestClient[Any, Any]
) -> None:
    raw, conn = await silent_host(client, app[HUB])
    try:
        await flood(app[HUB], conn)  # 400 frames: far below the 1,024-frame cap
        assert conn.closing
        assert conn.queued_bytes <= len(str(BIG)) + 1024  # its queue was dropped
        frames, code = await asyncio.to_thread(raw.read_until_close)  # it catches up at last
        assert code == CLOSE_TRY_AGAIN and frames > 0
    finally:
        raw.close()


async def test_a_host_that_never_reads_even_the_close_is_cut_off(
    app: web.Application, client: TestClient[Any, Any]
) -> None:
    raw, conn = await silent_host(client, app[HUB])
    try:
        await flood(app[HUB], conn)
        assert conn.closing
        pid = conn.participant_id
        assert pid is not None
        await eventually(lambda: app[HUB].get(pid) is None, CLOSE_GRACE_S + 5, "the abort")
        await asyncio.wait_for(asyncio.to_thread(raw.read_to_end), 15)  # EOF or reset
    finally:
        raw.close()


async def test_a_host_that_reads_gets_the_same_traffic_without_being_closed(
    app: web.Application, connect: Connect
) -> None:
    peer = await join_host(connect)
    conn = app[HUB].connections()[0]
    await flood(app[HUB], conn, frames=200)
    assert not conn.closing
    await eventually(lambda: len(peer.of_type("lobby")) >= 200, 10, "every frame read")
