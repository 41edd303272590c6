"""bench/media_clients.py against a running server: a closed client leaves at once.

A participant whose WebSocket just drops keeps its place, and its media
session, for the resume window; a bench that closed its clients that way
measured each run with the previous run's participants still on the server
(bench/compare_janus.py runs back to back; Janus destroys its room at once).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from media_clients import Client, Server, connect_all  # noqa: E402

pytestmark = pytest.mark.slow


async def participants(server: Server, http: aiohttp.ClientSession) -> float:
    return (await server.counters(http))["participants"]


async def test_a_closed_client_is_gone_at_once_not_after_the_resume_window() -> None:
    server = Server(None, env={"VISITROOM_RESUME_WINDOW_S": "60"})
    try:
        async with aiohttp.ClientSession() as http:
            await server.wait_healthy(http)
            await server.create_room(http, "leave", 4)
            clients = [Client("pub", audio=True), Client("sub", audio_slots=1)]
            await connect_all(server, http, "leave", clients)
            assert await participants(server, http) == 2
            for client in clients:
                await client.close()
            deadline = time.monotonic() + 10  # well inside the 60 s window
            while await participants(server, http) > 0:
                assert time.monotonic() < deadline, "the closed clients are still on the server"
                await asyncio.sleep(0.05)
    finally:
        server.stop()
