"""Many guests without a browser, for pages that must cope with a busy room.

`Crowd` knocks plain WebSocket guests (no media) into a room of a running
server, on an event loop of its own thread, so sync Playwright tests can fill
a lobby with a dozen knocks next to the real browser pages. Each guest keeps
reading its socket until the crowd closes.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import aiohttp


class Crowd:
    """Guests on plain WebSockets; `knock` waits until every one is in the lobby."""

    def __init__(self, server_url: str) -> None:
        self._ws_base = server_url.replace("http://", "ws://")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._session: aiohttp.ClientSession | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._sockets: list[aiohttp.ClientWebSocketResponse] = []

    def knock(self, room_id: str, names: list[str]) -> None:
        self._run(self._knock_all(room_id, names))

    def close(self) -> None:
        self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    async def _knock_all(self, room_id: str, names: list[str]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        for name in names:  # one at a time: knock order is the lobby's order
            await self._knock(room_id, name)

    async def _knock(self, room_id: str, name: str) -> None:
        assert self._session is not None
        ws = await self._session.ws_connect(
            f"{self._ws_base}/v1/rooms/{room_id}/ws", protocols=("visitroom.v1.json",)
        )
        await ws.send_str(json.dumps({"type": "hello", "name": name}))
        async with asyncio.timeout(10):
            while True:
                message = await ws.receive()
                assert message.type == aiohttp.WSMsgType.TEXT, message
                data = json.loads(message.data)
                if data.get("type") == "welcome":
                    assert data["status"] == "waiting", data
                    break
                assert data.get("type") != "error", data
        self._sockets.append(ws)
        self._readers.append(asyncio.create_task(self._drain(ws)))

    @staticmethod
    async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for _ in ws:
            pass

    async def _close(self) -> None:
        for ws in self._sockets:
            await ws.close()
        for reader in self._readers:
            reader.cancel()
        if self._session is not None:
            await self._session.close()
