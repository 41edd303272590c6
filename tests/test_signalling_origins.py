"""WebSocket upgrades: `Origin` and `Host` are checked against the configured public URL and
allow-list, never against each other (DNS rebinding), and every refusal is audited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from common.keys import AUDIT
from signalling.app import create_app
from signalling.keys import ROOMS
from signalling.origins import OriginPolicy, origin_of
from tests.conftest import make_config, token

PUBLIC = "https://visits.clinic.test"
PORTAL = "https://portal.clinic.test"


def policy(own_url: str = "http://0.0.0.0:8080") -> OriginPolicy:
    return OriginPolicy.build(PUBLIC, (PORTAL,), own_url)


def test_origins_are_compared_without_default_ports_or_case() -> None:
    assert origin_of("HTTPS://Visits.Clinic.test:443/path") == PUBLIC
    assert origin_of("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert origin_of("http://[::1]:80") == "http://[::1]"


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        (None, "anything.example"),  # not a browser: the token decides
        (PUBLIC, "visits.clinic.test"),
        (PUBLIC, "visits.clinic.test:443"),
        (PORTAL, "visits.clinic.test"),
        (PUBLIC, "127.0.0.1:8080"),  # a proxy that sets its upstream as Host
        ("http://127.0.0.1:8080", "127.0.0.1:8080"),  # a page served from this address
        ("http://[::1]:8080", "[::1]:8080"),
        ("http://localhost:8080", "localhost:8080"),
        (PUBLIC, "node-a.internal:9000"),
    ],
)
def test_allowed_upgrades(origin: str | None, host: str) -> None:
    assert policy("http://node-a.internal:9000").refusal(origin, host) is None


@pytest.mark.parametrize(
    ("origin", "host", "reason"),
    [
        ("http://evil.example", "evil.example", "host"),  # DNS rebinding
        ("http://evil.example:8080", "evil.example:8080", "host"),
        (PUBLIC, "evil.example", "host"),
        (PUBLIC, "", "host"),
        (PUBLIC, "visits.clinic.test:8443", "host"),
        ("http://evil.example", "visits.clinic.test", "origin"),
        ("http://visits.clinic.test", "visits.clinic.test", "origin"),  # scheme matters
        ("http://127.0.0.1:9999", "127.0.0.1:8080", "origin"),
        ("null", "127.0.0.1:8080", "origin"),
    ],
)
def test_refused_upgrades(origin: str, host: str, reason: str) -> None:
    assert policy().refusal(origin, host) == reason


async def forged(client: TestClient[Any, Any], path: str, headers: dict[str, str]) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect(path, headers=headers)
    return caught.value.status


async def test_a_rebound_host_and_origin_are_refused_at_the_upgrade_and_audited(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path)))
    rebound = {
        "Host": f"evil.example:{client.port}",
        "Origin": f"http://evil.example:{client.port}",
    }
    assert await forged(client, "/v1/rooms/visit-1/ws", rebound) == 403
    assert await forged(client, "/v1/precall/ws", rebound) == 403
    assert client.app[ROOMS].live("visit-1") is None, "no room state"
    assert not client.app[ROOMS].live_rooms()
    entries = await client.app[AUDIT].query(None)
    assert [(e["action"], e["outcome"], e["room_id"], e["reason"]) for e in entries] == [
        ("ws_upgrade", "forbidden", "visit-1", "host"),
        ("precall_upgrade", "forbidden", None, "host"),
    ]
    assert entries[0]["origin"] == rebound["Origin"] and entries[0]["host"] == rebound["Host"]


async def test_a_foreign_origin_with_the_public_host_is_refused_and_audited(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = make_config(tmp_path, public_base_url=PUBLIC)
    client = await aiohttp_client(create_app(config))
    headers = {"Host": "visits.clinic.test", "Origin": "https://evil.example"}
    assert await forged(client, "/v1/rooms/visit-1/ws", headers) == 403
    entries = await client.app[AUDIT].query("visit-1")
    assert [(e["action"], e["reason"]) for e in entries] == [("ws_upgrade", "origin")]
    assert client.app[ROOMS].live("visit-1") is None


async def test_the_public_url_and_allowed_origins_open_a_room(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = make_config(tmp_path, public_base_url=PUBLIC, allowed_origins=(PORTAL,))
    client = await aiohttp_client(create_app(config))
    for origin in (PUBLIC, PORTAL):
        headers = {"Host": "visits.clinic.test", "Origin": origin}
        ws = await client.ws_connect("/v1/rooms/visit-1/ws", headers=headers)
        await ws.send_json({"type": "hello", "token": token()})
        assert (await ws.receive_json())["type"] == "welcome"
        await ws.close()
    assert all(e["outcome"] != "forbidden" for e in await client.app[AUDIT].query(None))
