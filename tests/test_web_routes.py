"""The web client's routes: pages, static files and their security headers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from signalling.app import create_app
from signalling.config import Config
from signalling.web import WEB_ROOT
from tests.conftest import make_config

PARENT = "https://clinic.example.org"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path, allowed_origins=(PARENT,))


def csp(response: Any) -> dict[str, str]:
    policy: dict[str, str] = {}
    for part in response.headers["Content-Security-Policy"].split(";"):
        name, _, value = part.strip().partition(" ")
        policy[name] = value
    return policy


@pytest.mark.parametrize("path", ["/r/visit-1", "/host/visit-1", "/dashboard"])
async def test_pages_carry_a_strict_policy(client: Any, path: str) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == "text/html"
    policy = csp(response)
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    host = f"{client.server.host}:{client.server.port}"
    assert policy["connect-src"] == f"'self' ws://{host} ws://127.0.0.1:8080"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    permissions = response.headers["Permissions-Policy"]
    for feature in ("camera", "microphone", "display-capture"):
        assert f"{feature}=(self)" in permissions


async def test_the_embed_page_may_be_framed_by_allowed_origins_only(client: Any) -> None:
    response = await client.get(f"/embed/visit-1?parent_origin={PARENT}")
    assert response.status == 200
    assert csp(response)["frame-ancestors"] == f"'self' {PARENT}"
    assert "X-Frame-Options" not in response.headers


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "*", "null", f"{PARENT}.evil.example", PARENT + "/"]
)
async def test_the_embed_page_refuses_a_parent_origin_it_does_not_know(
    client: Any, origin: str
) -> None:
    response = await client.get("/embed/visit-1", params={"parent_origin": origin})
    assert response.status == 400
    assert "allowed origins" in await response.text()


@pytest.mark.parametrize("path", ["/r/..%2f..%2fetc", "/host/-bad", "/embed/" + "x" * 65])
async def test_a_bad_room_id_is_not_found(client: Any, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404


async def test_static_files_have_their_types_and_nothing_else_is_served(client: Any) -> None:
    js = await client.get("/sdk/visitroom.js")
    assert js.status == 200 and js.content_type == "text/javascript"
    assert js.headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert (await client.get("/css/visitroom.css")).content_type == "text/css"
    assert (await client.get("/img/icon.svg")).content_type == "image/svg+xml"
    etag = js.headers["ETag"]
    again = await client.get("/sdk/visitroom.js", headers={"If-None-Match": etag})
    assert again.status == 304
    for path in (
        "/app/guest.html",
        "/app/..%2f..%2fsignalling%2fweb.py",
        "/sdk/missing.js",
        "/web/sdk/visitroom.js",
        "/app/.hidden.js",
    ):
        assert (await client.get(path)).status == 404, path


async def test_the_sdk_may_be_imported_by_an_allowed_origin(client: Any) -> None:
    for module in ("visitroom", "core", "media", "precall"):
        allowed = await client.get(f"/sdk/{module}.js", headers={"Origin": PARENT})
        assert allowed.headers["Access-Control-Allow-Origin"] == PARENT
    stranger = await client.get("/sdk/visitroom.js", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in stranger.headers
    app_file = await client.get("/app/room.js", headers={"Origin": PARENT})
    assert "Access-Control-Allow-Origin" not in app_file.headers


async def test_behind_tls_the_socket_origin_is_wss(tmp_path: Path, aiohttp_client: Any) -> None:
    config = make_config(tmp_path, public_base_url="https://visits.example.org")
    client = await aiohttp_client(create_app(config))
    policy = csp(await client.get("/r/visit-1"))
    assert "wss://visits.example.org" in policy["connect-src"].split()
    assert not any(s.startswith("ws://") for s in policy["connect-src"].split())


def test_every_page_and_module_it_loads_exists() -> None:
    """Pages load only same-origin files that exist, with no inline script or style."""
    for page in sorted(WEB_ROOT.glob("*.html")):
        html = page.read_text()
        assert "<script>" not in html and "style=" not in html and "<style" not in html
        for ref in re.findall(r'(?:src|href)="([^"#]+)"', html):
            assert ref.startswith("/"), f"{page.name} loads {ref} from elsewhere"
            assert (WEB_ROOT / ref.lstrip("/")).is_file(), f"{page.name}: missing {ref}"
    for module in sorted((WEB_ROOT / "app").glob("*.js")):
        for ref in re.findall(r'from "(\.[^"]+)"', module.read_text()):
            assert (module.parent / ref).resolve().is_file(), f"{module.name}: missing {ref}"


def test_no_script_ever_parses_text_as_html() -> None:
    """Names and messages from other people are text: no HTML sinks anywhere."""
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(")
    for script in sorted(WEB_ROOT.rglob("*.js")):
        found = sinks.findall(script.read_text())
        assert not found, f"{script.relative_to(WEB_ROOT)} uses {found}"


def test_every_test_id_is_documented() -> None:
    """docs/sdk.md lists the stable data-testid of every control and screen."""
    docs = (WEB_ROOT.parent / "docs" / "sdk.md").read_text()
    ids: set[str] = set()
    for script in WEB_ROOT.glob("app/*.js"):
        ids |= set(re.findall(r'testid: "([a-z0-9-]+)"', script.read_text()))
        ids |= set(re.findall(r'panelButton\("[a-z]+", "([a-z0-9-]+)"', script.read_text()))
    for page in WEB_ROOT.glob("*.html"):
        ids |= set(re.findall(r'data-testid="([a-z0-9-]+)"', page.read_text()))
    assert len(ids) > 100
    missing = sorted(i for i in ids if f"`{i}`" not in docs)
    assert missing == []
