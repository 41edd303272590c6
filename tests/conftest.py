"""Shared fixtures: a real app on loopback, tokens, and WebSocket peers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from common.config import RateLimit
from common.scopes import legacy, render
from common.tokens import Claims, mint
from signalling.app import create_app
from signalling.config import Config
from tests.redis_server import RedisServer

pytest_plugins = [
    "tests.web_support",
    "tests.image_support",
    "tests.native_support",
    "tests.serial",
]

API_KEY = "test-key"
API_SECRET = "s" * 64
CLUSTER_SECRET = "c" * 48  # what nodes of a test cluster share (never an API secret)


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "api_keys": {API_KEY: API_SECRET},
        "knock_rate_limit": RateLimit(0, 1.0),
        "ice_hosts": ("127.0.0.1",),
    }
    values.update(overrides)
    return Config(**values)


def token(
    room: str = "visit-1",
    identity: str = "dr-smith",
    role: str = "host",
    name: str | None = None,
    **extra: Any,
) -> str:
    """A signed token. Without `scope`, it gets explicit scopes matching its other claims
    (rooms:host/rooms:guest, rooms:admin for admin, portal:staff for admin + practice);
    `scope=None` mints a token without a scope claim (a front end's plain token)."""
    if "scope" not in extra:
        facts = Claims(
            identity, identity, room, role, extra.get("admin", False), extra.get("practice")
        )
        extra["scope"] = render(legacy(facts))
    return mint(
        API_KEY, API_SECRET, room=room, identity=identity, name=name or identity, role=role, **extra
    )


def admin_token(room: str = "*", **extra: Any) -> str:
    return token(room=room, identity="admin", role="host", admin=True, **extra)


class Peer:
    """A WebSocket client that reads in the background and waits for message types."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, binary: bool = False) -> None:
        self.ws = ws
        self.binary = binary
        self.messages: list[dict[str, Any]] = []
        self._taken: set[int] = set()
        self._requests = 0
        self._arrived = asyncio.Event()
        self.closed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(msg.data))
            elif msg.type == aiohttp.WSMsgType.BINARY:
                self.messages.append(msgpack.unpackb(msg.data, raw=False))
            self._arrived.set()
        self.closed.set()
        self._arrived.set()

    async def send(self, message: dict[str, Any]) -> None:
        if self.binary:
            await self.ws.send_bytes(msgpack.packb(message))
        else:
            await self.ws.send_str(json.dumps(message))

    async def next(self, kind: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """The first not-yet-taken message of this type (and matching fields)."""
        async with asyncio.timeout(timeout):
            while True:
                for index, message in enumerate(self.messages):
                    if index in self._taken:
                        continue
                    if message.get("type") == kind and all(
                        message.get(k) == v for k, v in match.items()
                    ):
                        self._taken.add(index)
                        return message
                if self.closed.is_set():
                    raise AssertionError(f"closed before {kind}: {self.messages}")
                self._arrived.clear()
                await self._arrived.wait()

    async def first(self, timeout: float = 5.0) -> dict[str, Any]:
        """The first message this peer received, whatever its type."""
        async with asyncio.timeout(timeout):
            while not self.messages:
                if self.closed.is_set():
                    raise AssertionError("closed without a message")
                self._arrived.clear()
                await self._arrived.wait()
        return self.messages[0]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    async def request(self, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send with an id; return the ack or error answering it."""
        self._requests += 1
        rid = f"r{self._requests}"
        await self.send({**message, "id": rid})
        async with asyncio.timeout(timeout):
            while True:
                for m in self.messages:
                    if m.get("re") == rid and m.get("type") in ("ack", "error"):
                        return m
                if self.closed.is_set():
                    raise AssertionError(f"closed before an answer: {self.messages}")
                self._arrived.clear()
                await self._arrived.wait()

    async def request_answer(self, offer: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send an offer with an id; return the `answer` to it (an `error` fails the test)."""
        self._requests += 1
        rid = f"r{self._requests}"
        await self.send({**offer, "id": rid})
        async with asyncio.timeout(timeout):
            while True:
                for m in self.messages:
                    if m.get("re") == rid and m.get("type") == "answer":
                        return m
                    if m.get("re") == rid and m.get("type") == "error":
                        raise AssertionError(f"offer refused: {m}")
                if self.closed.is_set():
                    raise AssertionError(f"closed before an answer: {self.messages}")
                self._arrived.clear()
                await self._arrived.wait()

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        async with asyncio.timeout(timeout):
            await self.closed.wait()
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


Connect = Callable[..., Awaitable[Peer]]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
async def app(config: Config) -> web.Application:
    return create_app(config)


@pytest.fixture
async def client(aiohttp_client: Any, app: web.Application) -> TestClient[Any, Any]:
    result: TestClient[Any, Any] = await aiohttp_client(app)
    return result


@pytest.fixture
async def connect(client: TestClient[Any, Any]) -> AsyncIterator[Connect]:
    peers: list[Peer] = []

    async def open_peer(
        room: str = "visit-1",
        hello: dict[str, Any] | None = None,
        protocol: str = "visitroom.v1.json",
        **ws_kwargs: Any,
    ) -> Peer:
        ws = await client.ws_connect(f"/v1/rooms/{room}/ws", protocols=[protocol], **ws_kwargs)
        peer = Peer(ws, binary=protocol.endswith("msgpack"))
        peers.append(peer)
        if hello is not None:
            await peer.send({"type": "hello", **hello})
        return peer

    yield open_peer
    for peer in peers:
        await peer.close()


@pytest.fixture
def host_token() -> str:
    return token()


async def join_host(connect: Connect, room: str = "visit-1", identity: str = "dr-smith") -> Peer:
    peer = await connect(room, {"token": token(room, identity, "host")})
    await peer.next("welcome")
    return peer


async def knock_guest(connect: Connect, name: str, room: str = "visit-1") -> tuple[Peer, str]:
    peer = await connect(room, {"name": name})
    welcome = await peer.next("welcome")
    return peer, welcome["participant_id"]


async def host_admits_guest(
    session: aiohttp.ClientSession, ws_url: str, name: str = "Pat"
) -> tuple[Peer, Peer, list[dict[str, Any]]]:
    """Over a real server's URL: a host joins, a guest knocks and is let in.

    Returns the host, the guest and the roster the guest received on joining.
    """
    host = Peer(await session.ws_connect(ws_url))
    await host.send({"type": "hello", "token": token()})
    await host.next("welcome")
    guest = Peer(await session.ws_connect(ws_url))
    await guest.send({"type": "hello", "name": name})
    guest_id = (await guest.next("welcome"))["participant_id"]
    await host.request({"type": "admit", "participant_ids": [guest_id]})
    return host, guest, (await guest.next("roster"))["participants"]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    from tests.leaked_clients import install

    install()
