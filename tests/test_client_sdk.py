"""The Python server SDK (visitroom.client) against a real server over real HTTP: minted
tokens, REST calls, retries where they are safe, and webhook signatures."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from common.scopes import ScopeError
from tests.conftest import API_KEY, API_SECRET, Connect
from tests.servers import free_port
from visitroom.client import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ApiError,
    SignatureError,
    TokenMinter,
    Unavailable,
    VisitroomClient,
    sign_webhook,
    verify_webhook,
)

MINTER = TokenMinter(API_KEY, API_SECRET)


def base_url(client: TestClient[Any, Any]) -> str:
    return str(client.make_url("")).rstrip("/")


@pytest.fixture
async def api(client: TestClient[Any, Any]) -> AsyncIterator[VisitroomClient]:
    async with VisitroomClient(base_url(client), lambda: MINTER.admin("ehr")) as sdk:
        yield sdk


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, API_SECRET, algorithms=["HS256"])
    return decoded


def test_minted_tokens_carry_exactly_the_asked_scopes() -> None:
    admin = claims(MINTER.admin("ehr", practice="lakeside"))
    assert (admin["scope"], admin["admin"], admin["room"], admin["practice"]) == (
        "rooms:admin", True, "*", "lakeside",
    )  # fmt: skip
    assert admin["exp"] - admin["iat"] == 300
    guest = claims(MINTER.mint(identity="pt-1", scopes="rooms:guest", room="v1", name="Pat"))
    assert (guest["role"], guest["scope"], guest["name"], "admin" in guest) == (
        "guest", "rooms:guest", "Pat", False,
    )  # fmt: skip
    host = claims(MINTER.mint(identity="dr", scopes=["rooms:host", "rooms:admin"]))
    assert (host["role"], host["scope"]) == ("host", "rooms:admin rooms:host")
    assert jwt.get_unverified_header(MINTER.admin("x"))["kid"] == API_KEY
    assert API_SECRET not in repr(MINTER)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"scopes": "rooms:owner", "room": "v1"}, "unknown scope 'rooms:owner'"),
        ({"scopes": "rooms:guest", "room": "v1", "role": "host"}, "needs the rooms:host"),
        ({"scopes": "portal:staff"}, "needs a practice"),
        ({"scopes": "rooms:guest"}, "every room"),
        ({"scopes": ""}, "empty"),
    ],
)
def test_a_token_that_makes_no_sense_is_refused(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        MINTER.mint(identity="x", **kwargs)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenMinter(API_KEY, "short")
    assert issubclass(ScopeError, ValueError)


async def test_the_sdk_drives_the_rooms_api_of_a_real_server(api: VisitroomClient) -> None:
    start = datetime.now(UTC) + timedelta(minutes=5)
    room = await api.create_room(start, start + timedelta(minutes=20), room_id="visit-5")
    assert room["room_id"] == "visit-5" and room["join_url"].endswith("/r/visit-5")
    assert [r["room_id"] for r in (await api.list_rooms())["rooms"]] == ["visit-5"]
    assert (await api.get_room("visit-5"))["status"] == "open"
    assert (await api.join_window("visit-5"))["opens_at"] is not None
    with pytest.raises(ApiError) as taken:
        await api.create_room(start, start + timedelta(minutes=20), room_id="visit-5")
    assert (taken.value.status, taken.value.code) == (409, "conflict")
    assert "POST /v1/rooms: 409 conflict" in str(taken.value)
    with pytest.raises(ApiError) as lacking:
        await api.host_token("visit-5")  # the admin token lacks rooms:host
    assert (lacking.value.status, lacking.value.code) == (403, "forbidden")
    assert (await api.end_room("visit-5"))["ended"] is True
    actions = [e["action"] for e in await api.room_audit("visit-5")]
    assert actions[0] == "room_create" and "end" in actions
    with pytest.raises(ValueError, match="timezone"):
        await api.create_room(datetime.now(), datetime.now())


async def test_a_minted_host_and_guest_token_join_a_real_room(
    client: TestClient[Any, Any], connect: Connect
) -> None:
    host = await connect(
        "visit-2", {"token": MINTER.mint(identity="dr", scopes="rooms:host", room="visit-2")}
    )
    assert (await host.next("welcome"))["status"] == "joined"
    guest_token = MINTER.mint(identity="pt-9", scopes="rooms:guest", room="visit-2", name="Pat")
    guest = await connect("visit-2", {"token": guest_token})
    assert (await guest.next("welcome"))["status"] == "waiting"
    assert (await host.next("knock"))["participant"]["name"] == "Pat"
    async with VisitroomClient(base_url(client), "not-a-token") as bad:
        with pytest.raises(ApiError) as refused:
            await bad.get_room("visit-2")
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def flaky(
    aiohttp_server: Any, failures: int, answer: Handler
) -> tuple[TestServer, list[str]]:
    """A real server whose first `failures` answers are `answer`, then 200 {"ok": true}."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request.method)
        if len(seen) <= failures:
            return await answer(request)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server: TestServer = await aiohttp_server(app)
    return server, seen


async def unavailable(request: web.Request) -> web.StreamResponse:
    body = {"error": {"code": "unavailable", "message": "try again shortly"}}
    return web.json_response(body, status=503, headers={"Retry-After": "0"})


async def slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(2.0)
    return web.json_response({"late": True})


async def test_idempotent_calls_are_retried_on_5xx_and_a_post_is_not(aiohttp_server: Any) -> None:
    server, seen = await flaky(aiohttp_server, 2, unavailable)
    async with VisitroomClient(str(server.make_url("")), "t", backoff_s=0.01) as sdk:
        assert await sdk.request("GET", "/v1/rooms/x") == {"ok": True}
        assert seen == ["GET", "GET", "GET"]
        seen.clear()
        with pytest.raises(ApiError) as failed:
            await sdk.request("POST", "/v1/rooms", json={})
    assert (failed.value.status, failed.value.code, seen) == (503, "unavailable", ["POST"])


async def test_retries_stop_after_the_allowed_attempts(aiohttp_server: Any) -> None:
    server, seen = await flaky(aiohttp_server, 99, unavailable)
    async with VisitroomClient(str(server.make_url("")), "t", retries=2, backoff_s=0.01) as sdk:
        with pytest.raises(ApiError, match="503 unavailable: try again shortly"):
            await sdk.request("DELETE", "/v1/rooms/x")
    assert seen == ["DELETE"] * 3


async def test_a_timeout_is_retried_for_a_get_only(aiohttp_server: Any) -> None:
    server, seen = await flaky(aiohttp_server, 1, slow)
    url = str(server.make_url(""))
    async with VisitroomClient(url, "t", backoff_s=0.01, timeout_s=0.5) as sdk:
        assert await sdk.request("GET", "/v1/rooms") == {"ok": True}
    assert seen == ["GET", "GET"]
    server2, seen2 = await flaky(aiohttp_server, 1, slow)
    async with VisitroomClient(str(server2.make_url("")), "t", timeout_s=0.5) as sdk:
        with pytest.raises(Unavailable, match="POST /v1/rooms: TimeoutError"):
            await sdk.request("POST", "/v1/rooms", json={})
    assert seen2 == ["POST"]


async def test_a_server_that_cannot_be_reached_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    async with VisitroomClient(url, "t", retries=2, backoff_s=0.01) as sdk:
        with pytest.raises(Unavailable, match="GET /v1/rooms: cannot connect"):
            await sdk.list_rooms()
    assert time.monotonic() - started < 5.0


SECRET = "w" * 40
BODY = json.dumps({"id": "ev_1", "event": "participant_knocked", "room_id": "v1"}).encode()


def signed(body: bytes = BODY, at: float | None = None, secret: str = SECRET) -> dict[str, str]:
    sent = time.time() if at is None else at
    return {SIGNATURE_HEADER: sign_webhook(secret, body), TIMESTAMP_HEADER: str(int(sent))}


def test_a_signed_delivery_verifies_and_gives_the_event() -> None:
    event = verify_webhook(SECRET, BODY, signed())
    assert event["event"] == "participant_knocked"
    assert (
        signed()[SIGNATURE_HEADER].startswith("sha256=") and len(signed()[SIGNATURE_HEADER]) == 71
    )


# Headers are made when the test runs, not when it is collected: a timestamp taken at
# collection is minutes old by the time a parallel run (pytest-xdist) gets to the test.
@pytest.mark.parametrize(
    ("body", "headers", "problem"),
    [
        (BODY + b" ", lambda: signed(), "does not match the body"),
        (BODY, lambda: signed(secret="x" * 40), "does not match the body"),
        (BODY, lambda: signed(at=time.time() - 301), "more than 300 s away"),
        (BODY, lambda: signed(at=time.time() + 400), "more than 300 s away"),
        (BODY, lambda: {TIMESTAMP_HEADER: str(int(time.time()))}, "no X-Visitroom-Signature"),
        (BODY, lambda: {**signed(), SIGNATURE_HEADER: "md5=00"}, "no X-Visitroom-Signature"),
        (BODY, lambda: {SIGNATURE_HEADER: signed()[SIGNATURE_HEADER]}, "no X-Visitroom-Timestamp"),
        (b"[1]", lambda: signed(b"[1]"), "not a JSON object"),
    ],
)
def test_a_bad_delivery_is_refused_with_a_reason(
    body: bytes, headers: Callable[[], dict[str, str]], problem: str
) -> None:
    with pytest.raises(SignatureError, match=problem):
        verify_webhook(SECRET, body, headers())
