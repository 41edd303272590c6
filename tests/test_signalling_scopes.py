"""Least privilege between rooms and the portal: scopes and practices on every REST route and
on the WebSocket join; every cross-scope attempt is refused and audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from common.keys import AUDIT
from signalling.keys import ROOMS
from tests.conftest import API_SECRET, Connect, admin_token, token

Client = TestClient[Any, Any]

FRONT_DESK = token("*", "frontdesk-1", "host", admin=True, practice="p1")  # portal:staff
PORTAL_TOKENS = {
    "front desk": FRONT_DESK,
    "front desk, no scope claim": token(
        "*", "frontdesk-1", "host", admin=True, practice="p1", scope=None
    ),
    "support, old scope": token("*", "frontdesk-1", "host", admin=True, scope="support"),
    "support": token("*", "frontdesk-1", "host", admin=True, scope="portal:support"),
}
P1_ADMIN = token("*", "admin-p1", "host", admin=True, practice="p1", scope="rooms:admin rooms:host")
P2_ADMIN = token("*", "admin-p2", "host", admin=True, practice="p2", scope="rooms:admin rooms:host")


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def visit(room_id: str, **extra: Any) -> dict[str, Any]:
    start = datetime.now(UTC)
    return {
        "room_id": room_id,
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=30)).isoformat(),
        **extra,
    }


ROUTES = [
    ("POST", "/v1/rooms", visit("visit-9")),
    ("GET", "/v1/rooms", None),
    ("GET", "/v1/rooms/visit-1", None),
    ("DELETE", "/v1/rooms/visit-1", None),
    ("GET", "/v1/rooms/visit-1/audit", None),
    ("POST", "/v1/rooms/visit-1/host-token", None),
]


async def schedule(client: Client, room_id: str, tok: str, **extra: Any) -> dict[str, Any]:
    response = await client.post("/v1/rooms", json=visit(room_id, **extra), headers=auth(tok))
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


async def refusals(app: web.Application, actor: str, action: str) -> list[dict[str, Any]]:
    entries = await app[AUDIT].query(None)
    return [e for e in entries if e["actor"] == actor and e["action"] == action]


async def call(client: Client, method: str, path: str, tok: str, body: Any = None) -> Any:
    return await client.request(method, path, json=body, headers=auth(tok))


@pytest.mark.parametrize("kind", sorted(PORTAL_TOKENS))
async def test_a_portal_token_is_refused_on_every_rooms_route_and_audited(
    client: Client, app: web.Application, kind: str
) -> None:
    await schedule(client, "visit-1", admin_token())
    for method, path, body in ROUTES:
        response = await call(client, method, path, PORTAL_TOKENS[kind], body)
        assert response.status == 403, (method, path)
        assert (await response.json())["error"]["code"] == "forbidden"
    refused = await refusals(app, "frontdesk-1", "api")
    assert [(e["outcome"], e["needs"]) for e in refused] == [("forbidden", "rooms:admin")] * 6
    still = await call(client, "GET", "/v1/rooms/visit-1", admin_token())
    assert still.status == 200 and app[ROOMS].record("visit-9") is None


@pytest.mark.parametrize("kind", sorted(PORTAL_TOKENS))
@pytest.mark.parametrize("role", ["host", "guest"])
async def test_a_portal_token_cannot_join_a_room_and_the_refusal_is_audited(
    connect: Connect, app: web.Application, kind: str, role: str
) -> None:
    claims = jwt.decode(PORTAL_TOKENS[kind], API_SECRET, algorithms=["HS256"])
    tok = token("*", "frontdesk-1", role, admin=True, practice=claims.get("practice"),
                scope=claims.get("scope"))  # fmt: skip
    peer = await connect("visit-1", {"token": tok})
    error = await peer.next("error")
    assert error["code"] == "forbidden" and "lacks" in error["message"]
    assert await peer.wait_closed() == 1008
    assert app[ROOMS].live("visit-1") is None  # nothing was opened
    refused = await refusals(app, "frontdesk-1", "hello")
    assert [(e["room_id"], e["outcome"], e["reason"]) for e in refused] == [
        ("visit-1", "forbidden", "scope")
    ]


@pytest.mark.parametrize(
    "tok",
    [
        token("*", "admin-g", "guest", admin=True),  # rooms:admin rooms:guest
        token("*", "admin-g", "guest", admin=True, scope=None),  # a plain admin guest, no scope
        token("*", "admin-g", "host", admin=True, scope="rooms:admin"),
    ],
)
async def test_an_admin_token_without_rooms_host_cannot_mint_host_tokens(
    client: Client, app: web.Application, tok: str
) -> None:
    await schedule(client, "visit-1", admin_token())
    response = await call(client, "POST", "/v1/rooms/visit-1/host-token", tok)
    assert response.status == 403
    assert "rooms:host" in (await response.json())["error"]["message"]
    refused = await refusals(app, "admin-g", "api")
    assert [(e["room_id"], e["outcome"], e["needs"]) for e in refused] == [
        ("visit-1", "forbidden", "rooms:host")
    ]
    assert (await call(client, "GET", "/v1/rooms", tok)).status == 200  # still a rooms admin


async def test_a_minted_host_token_carries_only_rooms_host_and_the_minters_practice(
    client: Client, connect: Connect
) -> None:
    await schedule(client, "p1-visit", P1_ADMIN)
    response = await call(client, "POST", "/v1/rooms/p1-visit/host-token", P1_ADMIN)
    minted = (await response.json())["token"]
    claims = jwt.decode(minted, API_SECRET, algorithms=["HS256"])
    assert (claims["scope"], claims["practice"], claims["room"]) == ("rooms:host", "p1", "p1-visit")
    assert "admin" not in claims
    assert (await call(client, "GET", "/v1/rooms", minted)).status == 401  # not an admin token
    peer = await connect("p1-visit", {"token": minted})
    assert (await peer.next("welcome"))["role"] == "host"


async def test_a_practice_schedules_and_lists_only_its_own_rooms(client: Client) -> None:
    assert (await schedule(client, "p1-visit", P1_ADMIN))["practice"] == "p1"
    await schedule(client, "p2-visit", P2_ADMIN)
    assert (await schedule(client, "ops-visit", admin_token(), practice="p2"))["practice"] == "p2"
    assert (await schedule(client, "old-visit", admin_token()))["practice"] is None

    async def listed(tok: str) -> list[str]:
        body = await (await call(client, "GET", "/v1/rooms", tok)).json()
        return sorted(room["room_id"] for room in body["rooms"])

    assert await listed(P1_ADMIN) == ["p1-visit"]
    assert await listed(P2_ADMIN) == ["ops-visit", "p2-visit"]
    assert await listed(admin_token()) == ["old-visit", "ops-visit", "p1-visit", "p2-visit"]


async def test_another_practice_s_room_is_refused_on_every_route_and_audited(
    client: Client, app: web.Application
) -> None:
    await schedule(client, "p1-visit", P1_ADMIN)
    for method, suffix in [("GET", ""), ("DELETE", ""), ("GET", "/audit"), ("POST", "/host-token")]:
        response = await call(client, method, f"/v1/rooms/p1-visit{suffix}", P2_ADMIN)
        assert response.status == 403, (method, suffix)
        assert (await response.json())["error"]["code"] == "forbidden"
    response = await call(client, "POST", "/v1/rooms", P2_ADMIN, visit("x", practice="p1"))
    assert response.status == 403 and app[ROOMS].record("x") is None
    refused = await refusals(app, "admin-p2", "api")
    assert [(e["outcome"], e["reason"]) for e in refused] == [("forbidden", "practice")] * 5
    assert {e["room_id"] for e in refused} == {"p1-visit", "x"}
    assert (await call(client, "GET", "/v1/rooms/p1-visit", P1_ADMIN)).status == 200


async def test_a_practice_token_hosts_only_its_own_rooms_over_the_websocket(
    client: Client, connect: Connect, app: web.Application
) -> None:
    await schedule(client, "p1-visit", P1_ADMIN)
    other = await connect("p1-visit", {"token": P2_ADMIN})
    assert (await other.next("error"))["code"] == "forbidden"
    assert await other.wait_closed() == 1008
    refused = await refusals(app, "admin-p2", "hello")
    assert [(e["room_id"], e["outcome"], e["reason"]) for e in refused] == [
        ("p1-visit", "forbidden", "practice")
    ]
    own = await connect("p1-visit", {"token": P1_ADMIN})
    assert (await own.next("welcome"))["role"] == "host"


async def test_a_practice_token_opens_an_ad_hoc_room_only_when_it_names_it(
    connect: Connect, app: web.Application
) -> None:
    wildcard = await connect("adhoc-1", {"token": P1_ADMIN})
    assert (await wildcard.next("error"))["code"] == "forbidden"
    assert app[ROOMS].live("adhoc-1") is None
    named = token("adhoc-1", "dr-p1", "host", practice="p1")
    peer = await connect("adhoc-1", {"token": named})
    assert (await peer.next("welcome"))["status"] == "joined"


async def test_a_token_with_an_unknown_scope_is_refused_as_unauthorized_and_audited(
    client: Client, connect: Connect, app: web.Application
) -> None:
    odd = token("*", "odd-1", "host", admin=True, scope="rooms:admin rooms:owner")
    response = await call(client, "GET", "/v1/rooms", odd)
    assert response.status == 401 and "rooms:owner" in (await response.json())["error"]["message"]
    peer = await connect("visit-1", {"token": odd})
    assert (await peer.next("error"))["code"] == "unauthorized"
    outcomes = [(e["action"], e["outcome"]) for e in await app[AUDIT].query(None)]
    assert outcomes == [("api", "unauthorized"), ("hello", "unauthorized")]


async def test_protocol_tokens_without_a_scope_claim_keep_working(
    client: Client, connect: Connect
) -> None:
    operator = token("*", "ops", "host", admin=True, scope=None)
    await schedule(client, "visit-1", operator)
    assert (await call(client, "GET", "/v1/rooms", operator)).status == 200
    host = await connect("visit-1", {"token": token("visit-1", "dr-a", "host", scope=None)})
    assert (await host.next("welcome"))["status"] == "joined"
    guest = await connect("visit-1", {"token": token("visit-1", "pat", "guest", scope=None)})
    assert (await guest.next("welcome"))["status"] == "waiting"
    response = await call(client, "POST", "/v1/rooms/visit-1/host-token", operator)
    assert response.status == 201


async def test_the_dashboard_list_says_which_practice_and_scopes_the_caller_has(
    client: Client,
) -> None:
    body = await (await call(client, "GET", "/v1/rooms", P1_ADMIN)).json()
    assert (body["practice"], body["scopes"]) == ("p1", ["rooms:admin", "rooms:host"])
