"""The dashboard's REST routes: list visits in a range, and mint a host token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from tests.conftest import API_SECRET, Connect, admin_token, token
from waiting_room.schedule import CLOSES_AFTER_S, OPENS_BEFORE_S


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def schedule(client: Any, room_id: str, start: datetime, minutes: int = 30) -> None:
    body = {
        "room_id": room_id,
        "starts_at": iso(start),
        "ends_at": iso(start + timedelta(minutes=minutes)),
    }
    response = await client.post("/v1/rooms", json=body, headers=auth(admin_token()))
    assert response.status == 201


async def test_rooms_overlapping_the_range_in_start_order(client: Any) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    await schedule(client, "later", now + timedelta(days=2))
    await schedule(client, "now", now - timedelta(minutes=10))
    await schedule(client, "yesterday", now - timedelta(days=1, hours=2))
    await schedule(client, "far", now + timedelta(days=60))
    params = {"from": iso(now - timedelta(hours=1)), "to": iso(now + timedelta(days=3))}
    response = await client.get("/v1/rooms", params=params, headers=auth(admin_token()))
    assert response.status == 200
    body = await response.json()
    assert [r["room_id"] for r in body["rooms"]] == ["now", "later"]
    first = body["rooms"][0]
    assert first["status"] == "open" and first["waiting"] == 0 and first["joined"] == 0
    assert first["join_url"].endswith("/r/now")
    assert first["starts_at"] == iso(now - timedelta(minutes=10)).replace("Z", ".000Z")


async def test_each_listed_visit_carries_its_join_window_from_the_domain(client: Any) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    await schedule(client, "windowed", start, minutes=30)
    body = await (await client.get("/v1/rooms", headers=auth(admin_token()))).json()
    visit = next(r for r in body["rooms"] if r["room_id"] == "windowed")
    opens = start - timedelta(seconds=OPENS_BEFORE_S)
    closes = start + timedelta(minutes=30, seconds=CLOSES_AFTER_S)
    assert visit["opens_at"] == iso(opens).replace("Z", ".000Z")
    assert visit["closes_at"] == iso(closes).replace("Z", ".000Z")


async def test_the_list_counts_who_is_waiting_and_joined(client: Any, connect: Connect) -> None:
    now = datetime.now(UTC)
    await schedule(client, "busy", now)
    host = await connect("busy", {"token": token("busy", "dr-a", "host")})
    await host.next("welcome")
    guest = await connect("busy", {"name": "Pat"})
    await guest.next("welcome")
    await host.next("knock")
    body = await (await client.get("/v1/rooms", headers=auth(admin_token()))).json()
    busy = next(r for r in body["rooms"] if r["room_id"] == "busy")
    assert (busy["waiting"], busy["joined"]) == (1, 1)


async def test_an_admin_of_one_room_sees_only_that_room(client: Any) -> None:
    now = datetime.now(UTC)
    await schedule(client, "mine", now)
    await schedule(client, "theirs", now)
    response = await client.get("/v1/rooms", headers=auth(admin_token(room="mine")))
    assert [r["room_id"] for r in (await response.json())["rooms"]] == ["mine"]


@pytest.mark.parametrize(
    "tok", [None, "garbage", token("visit-1", "dr-a", "host")], ids=["none", "bad", "not-admin"]
)
async def test_listing_needs_an_admin_token(client: Any, tok: str | None) -> None:
    response = await client.get("/v1/rooms", headers=auth(tok) if tok else {})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "params",
    [
        {"from": "yesterday"},
        {"from": "2026-11-23T10:00:00"},
        {"from": "2026-11-23T10:00:00Z", "to": "2026-11-22T10:00:00Z"},
        {"from": "2026-01-01T00:00:00Z", "to": "2028-01-01T00:00:00Z"},
    ],
)
async def test_a_bad_range_is_a_bad_request(client: Any, params: dict[str, str]) -> None:
    response = await client.get("/v1/rooms", params=params, headers=auth(admin_token()))
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_request"


async def test_a_host_token_joins_its_room_as_the_admin(client: Any, connect: Connect) -> None:
    await schedule(client, "visit-7", datetime.now(UTC))
    admin = token(room="*", identity="dr-jones", role="host", name="Dr Jones", admin=True)
    response = await client.post("/v1/rooms/visit-7/host-token", headers=auth(admin))
    assert response.status == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    claims = jwt.decode(body["token"], API_SECRET, algorithms=["HS256"])
    assert claims["room"] == "visit-7" and claims["role"] == "host" and "admin" not in claims
    assert claims["sub"] == "dr-jones" and claims["name"] == "Dr Jones"
    assert 0 < claims["exp"] - datetime.now(UTC).timestamp() <= 600
    peer = await connect("visit-7", {"token": body["token"]})
    welcome = await peer.next("welcome")
    assert welcome["role"] == "host" and welcome["status"] == "joined"
    other = await connect("visit-8", {"token": body["token"]})
    assert (await other.next("error"))["code"] == "unauthorized"


async def test_a_host_token_is_audited(client: Any) -> None:
    await schedule(client, "visit-a", datetime.now(UTC))
    await client.post("/v1/rooms/visit-a/host-token", headers=auth(admin_token()))
    response = await client.get("/v1/rooms/visit-a/audit", headers=auth(admin_token()))
    actions = [(e["action"], e["actor"]) for e in (await response.json())["entries"]]
    assert ("host_token", "admin") in actions


async def test_host_tokens_only_for_admins_of_existing_rooms(client: Any) -> None:
    await schedule(client, "visit-b", datetime.now(UTC))
    path = "/v1/rooms/visit-b/host-token"
    assert (await client.post(path)).status == 401
    assert (await client.post(path, headers=auth(token("visit-b", "g", "host")))).status == 401
    other_admin = admin_token(room="visit-c")
    assert (await client.post(path, headers=auth(other_admin))).status == 401
    missing = await client.post("/v1/rooms/nope/host-token", headers=auth(admin_token()))
    assert missing.status == 404
