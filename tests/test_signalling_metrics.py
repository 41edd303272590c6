"""/metrics is not public: a bearer token on the main port, or a loopback-only port of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from common.config import ConfigError
from common.keys import AUDIT
from signalling.app import create_app
from signalling.config import from_env
from signalling.keys import METRICS_ADDRESS
from signalling.metrics import bearer_ok
from tests.conftest import API_KEY, API_SECRET, make_config

METRICS_TOKEN = "metrics-" + "q" * 40


async def test_metrics_are_refused_unless_configured_and_the_refusal_is_audited(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path)))
    response = await client.get("/metrics")
    assert response.status == 403
    assert "visitroom_rooms" not in await response.text()
    response = await client.get("/metrics", headers={"Authorization": "Bearer "})
    assert response.status == 403
    entries = await client.app[AUDIT].query(None)
    assert [(e["action"], e["outcome"], e["reason"]) for e in entries] == [
        ("metrics", "unauthorized", "not_enabled")
    ] * 2


async def test_metrics_need_the_configured_bearer_token(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path, metrics_token=METRICS_TOKEN)))
    for header in ("", "Bearer wrong", f"Basic {METRICS_TOKEN}", f"Bearer {METRICS_TOKEN}x"):
        response = await client.get("/metrics", headers={"Authorization": header})
        assert response.status == 401, header
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status == 200
    assert "visitroom_rooms 0.0" in await response.text()
    entries = await client.app[AUDIT].query(None)
    assert {(e["action"], e["reason"]) for e in entries} == {("metrics", "bad_token")}
    assert METRICS_TOKEN not in str(entries)


async def test_the_metrics_port_serves_loopback_only_without_a_token(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path, metrics_port=0)))
    host, port = client.app[METRICS_ADDRESS]
    assert host == "127.0.0.1"
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        assert "visitroom_ws_connections" in await response.text()
    assert (await client.get("/metrics")).status == 403, "still closed on the public port"


def test_the_bearer_comparison() -> None:
    assert bearer_ok(f"Bearer {METRICS_TOKEN}", METRICS_TOKEN)
    assert bearer_ok(f"bearer {METRICS_TOKEN}", METRICS_TOKEN)
    assert not bearer_ok(f"Bearer {METRICS_TOKEN}", None)
    assert not bearer_ok("Bearer ", METRICS_TOKEN)


def test_metrics_settings_from_the_environment() -> None:
    keys = {"VISITROOM_API_KEY": API_KEY, "VISITROOM_API_SECRET": API_SECRET}
    config = from_env(keys)
    assert (config.metrics_token, config.metrics_port) == (None, None)
    config = from_env(
        {**keys, "VISITROOM_METRICS_TOKEN": METRICS_TOKEN, "VISITROOM_METRICS_PORT": "9464"}
    )
    assert (config.metrics_token, config.metrics_port) == (METRICS_TOKEN, 9464)
    assert METRICS_TOKEN not in repr(config)
    for bad in ({"VISITROOM_METRICS_TOKEN": "short"}, {"VISITROOM_METRICS_PORT": "http"}):
        with pytest.raises(ConfigError):
            from_env({**keys, **bad})
