"""Half-open connections against a real `visitroom serve` (issue 12): a header deadline,
a cap per address, verified WebSockets off the cap, and the pure `PeerBook` rules.

The partial requests are real sockets that send the start of a request's headers and
never the rest; other client addresses are other loopback addresses (127.0.0.2, ...)."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from common.config import ConfigError, RateLimit
from signalling.app import create_app
from signalling.config import from_env
from signalling.guard import GUARD, GuardedSite, PeerBook, raise_fd_limit
from tests.conftest import API_KEY, API_SECRET, Peer, make_config, token
from tests.servers import ServerProcess, self_signed_cert

pytestmark = pytest.mark.slow

PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "


@contextlib.asynccontextmanager
async def server(tmp_path: Path, **env: str) -> AsyncIterator[ServerProcess]:
    process = ServerProcess(
        tmp_path / "data",
        {
            "VISITROOM_API_KEY": API_KEY,
            "VISITROOM_API_SECRET": API_SECRET,
            "VISITROOM_WORKERS": "0",
            **env,
        },
    )
    await process.start()
    try:
        yield process
    finally:
        for writer in WRITERS:
            writer.close()
        WRITERS.clear()
        await process.stop()


WRITERS: list[asyncio.StreamWriter] = []  # a collected writer would close its socket


async def half_open(port: int, source: str = "127.0.0.1") -> asyncio.StreamReader:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(PARTIAL)
    await writer.drain()
    WRITERS.append(writer)
    return reader


async def ended(reader: asyncio.StreamReader, within_s: float) -> bytes:
    """What the server sent before it ended the connection (EOF or reset)."""
    data = b""
    async with asyncio.timeout(within_s):
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(4096):
                data += chunk
    return data


async def healthz(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as response:
        return response.status


def test_the_book_caps_each_address_and_frees_a_place_on_release() -> None:
    book = PeerBook(2, trusted_proxies=("10.0.0.0/8",))
    assert book.admit("1.2.3.4") and book.admit("1.2.3.4")
    assert not book.admit("1.2.3.4") and book.refused == 1
    assert book.admit("5.6.7.8")
    book.release("1.2.3.4")
    assert book.admit("1.2.3.4")
    assert book.is_proxy("10.1.2.3") and not book.is_proxy("1.2.3.4")
    assert not book.is_proxy("not an address")


def test_an_ipv6_subscriber_is_one_address_per_64() -> None:
    book = PeerBook(2)
    assert book.admit("2001:db8:1:2::10") and book.admit("2001:db8:1:2:ffff::1")
    assert not book.admit("2001:db8:1:2:abcd::7")  # the same /64
    assert book.admit("2001:db8:1:3::10")  # another /64
    assert book.key("::ffff:192.0.2.7") == "192.0.2.7"
    book.release("2001:db8:1:2::10")
    assert book.admit("2001:db8:1:2::99")


async def test_a_connection_that_never_finishes_its_headers_is_closed_in_time(
    tmp_path: Path,
) -> None:
    async with server(tmp_path, VISITROOM_HEADER_TIMEOUT_S="1") as process:
        opened = time.monotonic()
        readers = [await half_open(process.port) for _ in range(20)]
        assert await healthz(process.url) == 200  # complete requests are served meanwhile
        for reader in readers:
            assert await ended(reader, 6.0) == b""  # aborted: no response to half a request
        assert 0.8 < time.monotonic() - opened < 6.0


async def test_one_address_is_capped_while_others_are_served(tmp_path: Path) -> None:
    env = {"VISITROOM_HEADER_TIMEOUT_S": "30", "VISITROOM_MAX_CONNECTIONS_PER_ADDRESS": "10"}
    async with server(tmp_path, **env) as process:
        held = [await half_open(process.port, "127.0.0.2") for _ in range(10)]
        over = await half_open(process.port, "127.0.0.2")
        assert (await ended(over, 3.0)).startswith(b"HTTP/1.1 503")
        assert await healthz(process.url) == 200  # 127.0.0.1 is another address
        assert await half_open(process.port, "127.0.0.3")  # and so is 127.0.0.3
        for reader in held:
            assert not reader.at_eof()


async def test_a_verified_websocket_leaves_room_under_its_addresss_cap(tmp_path: Path) -> None:
    env = {"VISITROOM_HEADER_TIMEOUT_S": "30", "VISITROOM_MAX_CONNECTIONS_PER_ADDRESS": "3"}
    async with server(tmp_path, **env) as process, aiohttp.ClientSession() as session:
        ws_url = f"ws://127.0.0.1:{process.port}/v1/rooms/visit-1/ws"
        hosts = []
        for n in range(3):  # each counts until its hello is verified
            peer = Peer(await session.ws_connect(ws_url, protocols=["visitroom.v1.json"]))
            await peer.send({"type": "hello", "token": token(identity=f"dr-{n}")})
            await peer.next("welcome")
            hosts.append(peer)
        held = [await half_open(process.port) for _ in range(3)]
        over = await half_open(process.port)
        assert (await ended(over, 3.0)).startswith(b"HTTP/1.1 503")
        assert all(not reader.at_eof() for reader in held)
        for peer in hosts:
            await peer.close()


def test_the_open_file_soft_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
    try:
        assert raise_fd_limit() == (hard, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize(("proxies", "second"), [(("127.0.0.1",), "welcome"), ((), "error")])
async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(
    aiohttp_client: Any, tmp_path: Path, proxies: tuple[str, ...], second: str
) -> None:
    config = make_config(tmp_path, knock_rate_limit=RateLimit(1, 60.0), trusted_proxies=proxies)
    client = await aiohttp_client(create_app(config))
    host = Peer(await client.ws_connect("/v1/rooms/visit-1/ws"))
    await host.send({"type": "hello", "token": token()})
    await host.next("welcome")
    replies = []
    for address in ("203.0.113.7", "203.0.113.8"):  # two patients, one knock each
        headers = {"X-Forwarded-For": f"198.51.100.1, {address}"}
        guest = Peer(await client.ws_connect("/v1/rooms/visit-1/ws", headers=headers))
        await guest.send({"type": "hello", "name": f"Pat {address}"})
        replies.append((await guest.first())["type"])
        await guest.close()
    assert replies == ["welcome", second]  # untrusted: both are 127.0.0.1, the second is limited
    await host.close()


async def test_headers_that_trickle_in_before_the_deadline_are_served(tmp_path: Path) -> None:
    async with server(tmp_path, VISITROOM_HEADER_TIMEOUT_S="3") as process:
        reader, writer = await asyncio.open_connection("127.0.0.1", process.port)
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"Connection: close\r\n\r\n"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.3)
        assert (await ended(reader, 5.0)).startswith(b"HTTP/1.1 200")
        writer.close()


async def test_past_the_budget_the_oldest_half_open_connection_makes_room(
    tmp_path: Path,
) -> None:
    app = create_app(make_config(tmp_path))
    app[GUARD].max_pending = 5  # `serve` sets 3/4 of the open-file limit
    runner = web.AppRunner(app)
    await runner.setup()
    site = GuardedSite(runner, app[GUARD], "127.0.0.1", 0)
    await site.start()
    try:
        port = site.port
        readers = [await half_open(port, f"127.0.0.{2 + n}") for n in range(5)]
        newest = await half_open(port, "127.0.0.9")
        assert await ended(readers[0], 3.0) == b""  # the oldest was dropped
        assert await healthz(f"http://127.0.0.1:{port}") == 200  # it takes the next oldest's place
        assert await ended(readers[1], 3.0) == b""
        assert not any(r.at_eof() for r in readers[2:]) and not newest.at_eof()
        assert app[GUARD].stats()["pending_connections_shed"] >= 2
    finally:
        for writer in WRITERS:
            writer.close()
        WRITERS.clear()
        await runner.cleanup()


def test_the_limits_are_read_from_the_environment_and_bad_ones_refused() -> None:
    config = from_env(
        {
            "VISITROOM_HEADER_TIMEOUT_S": "2.5",
            "VISITROOM_MAX_CONNECTIONS_PER_ADDRESS": "50",
            "VISITROOM_SEND_QUEUE_BYTES": "1048576",
            "VISITROOM_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1",
        }
    )
    assert config.header_timeout_s == 2.5 and config.max_unauthenticated_per_address == 50
    assert config.send_queue_bytes == 1 << 20
    assert config.trusted_proxies == ("10.0.0.0/8", "192.0.2.1")
    for name, value in (
        ("VISITROOM_HEADER_TIMEOUT_S", "0"),
        ("VISITROOM_MAX_CONNECTIONS_PER_ADDRESS", "none"),
        ("VISITROOM_SEND_QUEUE_BYTES", "-1"),
        ("VISITROOM_TRUSTED_PROXIES", "proxy.example"),
    ):
        with pytest.raises(ConfigError):
            from_env({name: value})


async def test_a_tls_handshake_that_never_finishes_is_closed_in_time(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    process = ServerProcess(
        tmp_path / "data",
        {"VISITROOM_API_KEY": API_KEY, "VISITROOM_API_SECRET": API_SECRET},
        "--tls-cert", str(cert), "--tls-key", str(key),
    )  # fmt: skip
    process.env.update(VISITROOM_WORKERS="0", VISITROOM_HEADER_TIMEOUT_S="1")
    await process.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", process.port)
        writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # half a ClientHello
        opened = time.monotonic()
        await ended(reader, 8.0)
        assert time.monotonic() - opened < 6.0
        writer.close()
    finally:
        await process.stop()
