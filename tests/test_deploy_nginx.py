"""The reverse-proxy deployment as operators run it: nginx (Debian package) with
deploy/nginx/visitroom.conf terminating TLS in front of one node and of two
nodes with Redis; WebSocket upgrades, HSTS, the HTTP redirect, X-Forwarded-For
believed only from the proxy, and a real browser visit through https://."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import API_KEY, API_SECRET, CLUSTER_SECRET, Peer, token
from tests.nginx import PROXY_ADDRESS, Nginx
from tests.redis_server import RedisServer
from tests.servers import ServerProcess
from tests.test_web_media import own_id, wait_received
from tests.web_support import (
    CHROMIUM,
    ParentSite,
    WebServer,
    host_joins,
    in_thread,
    launch,
)
from tests.web_support import knock as browser_knock

pytestmark = pytest.mark.slow


def node_env(front: str, **extra: str) -> dict[str, str | None]:
    return {
        "VISITROOM_API_KEY": API_KEY,
        "VISITROOM_API_SECRET": API_SECRET,
        "VISITROOM_PUBLIC_BASE_URL": front,
        "VISITROOM_TRUSTED_PROXIES": PROXY_ADDRESS,
        "VISITROOM_REDIS_URL": None,
        **extra,
    }


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Nginx]]:
    """One node behind nginx, shared by the module's tests (each uses its own room)."""
    tmp = tmp_path_factory.mktemp("one-node")
    # no media here: the SFU in-process spares starting and stopping worker processes
    server = ServerProcess(tmp / "node", {"VISITROOM_WORKERS": "0"})
    nginx = Nginx(tmp, [server.port])
    # anonymous knocks: 2 a minute per address and room, to see which address counts
    env = node_env(nginx.url, VISITROOM_KNOCK_RATE_LIMIT="2/60")
    server.env.update({k: v for k, v in env.items() if v is not None})
    server.env.pop("VISITROOM_REDIS_URL", None)
    nginx.start()
    try:
        in_thread(server.start)
        yield server, nginx
    finally:
        server.kill()
        nginx.stop()


async def knock(session: aiohttp.ClientSession, url: str, room: str, **headers: str) -> str:
    """A guest's knock over `url`: its welcome's status, or the error's code."""
    async with session.ws_connect(f"{url}/v1/rooms/{room}/ws", ssl=False, headers=headers) as ws:
        peer = Peer(ws)
        await peer.send({"type": "hello", "name": "Pat"})
        answer = await peer.first(timeout=10)
        return str(answer.get("status") if answer["type"] == "welcome" else answer["code"])


async def test_tls_hsts_redirect_and_websockets_through_nginx(
    one_node: tuple[ServerProcess, Nginx],
) -> None:
    _, nginx = one_node
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{nginx.url}/healthz", ssl=False) as response:
            assert response.status == 200
            assert "max-age=" in response.headers["Strict-Transport-Security"]
        plain = f"http://127.0.0.1:{nginx.http_port}/r/visit-1"
        async with session.get(plain, allow_redirects=False) as response:
            assert response.status == 301
            assert response.headers["Location"].startswith("https://")

        host = Peer(await session.ws_connect(f"{nginx.url}/v1/rooms/visit-1/ws", ssl=False))
        await host.send({"type": "hello", "token": token()})
        assert (await host.next("welcome"))["status"] == "joined"
        guest = Peer(await session.ws_connect(f"{nginx.url}/v1/rooms/visit-1/ws", ssl=False))
        await guest.send({"type": "hello", "name": "Pat"})
        guest_id = (await guest.next("welcome"))["participant_id"]
        await host.request({"type": "admit", "participant_ids": [guest_id]})
        roster = (await guest.next("roster"))["participants"]
        assert guest_id in {p["id"] for p in roster}
        for peer in (guest, host):  # closed here: the node outlives the test
            await peer.close()


async def test_forwarded_for_is_believed_from_the_proxy_only(
    one_node: tuple[ServerProcess, Nginx],
) -> None:
    server, nginx = one_node
    room = "visit-xff"  # a room of its own: the other test's knocks count in visit-1
    async with aiohttp.ClientSession() as session:
        host = Peer(await session.ws_connect(f"{nginx.url}/v1/rooms/{room}/ws", ssl=False))
        await host.send({"type": "hello", "token": token(room)})
        await host.next("welcome")
        # Two knocks straight to the node use up 127.0.0.1's anonymous knocks...
        direct = f"http://127.0.0.1:{server.port}"
        spoof = {"X-Forwarded-For": "203.0.113.7"}  # not from a trusted proxy: ignored
        assert await knock(session, direct, room, **spoof) == "waiting"
        assert await knock(session, direct, room) == "waiting"
        assert await knock(session, direct, room) == "rate_limited"
        # ...and through nginx (which connects from 127.0.0.5) the same browser address
        # is still out of knocks, whatever it writes in its own X-Forwarded-For.
        assert await knock(session, nginx.url, room, **spoof) == "rate_limited"
        assert await knock(session, nginx.url, room) == "rate_limited"
        await host.close()


@dataclass
class ProxiedSite(WebServer):
    """The helpers of web_support, aimed at nginx instead of one node."""

    front: str = ""

    @property
    def url(self) -> str:
        return self.front


@contextlib.contextmanager
def two_nodes(
    tmp: Path, redis: RedisServer
) -> Iterator[tuple[ServerProcess, ServerProcess, Nginx]]:
    a, b = (ServerProcess(tmp / name, {}) for name in ("node-a", "node-b"))
    nginx = Nginx(tmp, [a.port, b.port])
    for name, node in (("node-a", a), ("node-b", b)):
        env = node_env(
            nginx.url,
            VISITROOM_REDIS_URL=redis.url,
            VISITROOM_CLUSTER_SECRET=CLUSTER_SECRET,
            VISITROOM_NODE_ID=name,
            VISITROOM_KNOCK_RATE_LIMIT="0",
        )
        node.env.update({k: v for k, v in env.items() if v is not None})
    nginx.start()

    async def start_both() -> None:  # side by side: each waits mostly on its own workers
        await asyncio.gather(a.start(), b.start())

    try:
        in_thread(start_both)
        yield a, b, nginx
    finally:
        a.kill()
        b.kill()
        nginx.stop()


@pytest.mark.browser
def test_a_browser_visit_through_https_in_front_of_two_nodes(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    parent = ParentSite()
    parent.start()
    with two_nodes(tmp_path, redis_server) as (a, _, nginx), sync_playwright() as pw:
        site = ProxiedSite(a, parent, front=nginx.url)
        context = launch(pw, tmp_path / "profile", CHROMIUM, "--ignore-certificate-errors")
        try:
            room = site.schedule()
            host, guest = context.new_page(), context.new_page()
            host_joins(host, site, room)
            browser_knock(guest, site, room, "Pat Proxied")
            host.get_by_test_id("btn-knock-let-in").click()
            expect(guest.get_by_test_id("screen-room")).to_be_visible()
            guest.get_by_test_id("btn-stats").click()
            wait_received(guest, own_id(host), "video", "framesDecoded", 10)
            assert host.url.startswith(nginx.url) and guest.url.startswith(nginx.url)
        finally:
            context.close()
            parent.stop()
