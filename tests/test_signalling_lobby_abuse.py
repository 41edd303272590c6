"""Waiting-room abuse over real WebSockets: the lobby cap, knock limits per identity,
and rejected or removed identities that may not knock again until a host allows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from common.config import RateLimit
from common.keys import AUDIT
from signalling.app import create_app
from tests.conftest import Connect, Peer, admin_token, join_host, knock_guest, make_config, token

Client = TestClient[Any, Any]


def guest_token(identity: str, room: str = "visit-1") -> str:
    return token(room, identity, "guest", name=identity.title())


async def refused_hello(connect: Connect, hello: dict[str, Any], room: str = "visit-1") -> str:
    """The error code a `hello` gets; the socket must then close with 1008."""
    peer = await connect(room, hello)
    error = await peer.next("error")
    assert await peer.wait_closed() == 1008
    return str(error["code"])


async def knocks(connect: Connect, identity: str, room: str = "visit-1") -> tuple[Peer, str]:
    peer = await connect(room, {"token": guest_token(identity, room)})
    welcome = await peer.next("welcome")
    assert welcome["status"] == "waiting"
    return peer, str(welcome["participant_id"])


async def pat_turned_away(connect: Connect) -> tuple[Peer, str]:
    """A host joins, Pat knocks with a guest token and is rejected: (the host, Pat's old id)."""
    host = await join_host(connect)
    guest, gid = await knocks(connect, "pat")
    await host.request({"type": "reject", "participant_id": gid})
    await guest.wait_closed()
    return host, gid


async def audit_rows(client: Client, room: str = "visit-1") -> list[tuple[Any, ...]]:
    entries = await client.app[AUDIT].query(room)
    return [(e["action"], e["outcome"], e["actor"], e["subject"]) for e in entries]


async def open_client(aiohttp_client: Any, tmp_path: Path, **config: Any) -> Client:
    client: Client = await aiohttp_client(create_app(make_config(tmp_path, **config)))
    return client


async def raw_peer(client: Client, hello: dict[str, Any], room: str = "visit-1") -> Peer:
    peer = Peer(await client.ws_connect(f"/v1/rooms/{room}/ws"))
    await peer.send({"type": "hello", **hello})
    return peer


# --- the lobby cap --------------------------------------------------------------------


async def test_a_knock_past_the_lobby_cap_gets_lobby_full_and_is_audited(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await open_client(aiohttp_client, tmp_path, lobby_cap_factor=0.01)  # 200 -> 2
    host = await raw_peer(client, {"token": token()})
    await host.next("lobby")
    guests = [await raw_peer(client, {"name": f"G{n}"}) for n in range(2)]
    for guest in guests:
        await guest.next("welcome")
    late = await raw_peer(client, {"token": guest_token("pat")})
    error = await late.next("error")
    assert error["code"] == "lobby_full" and await late.wait_closed() == 1008
    assert len(host.of_type("knock")) == 2
    assert ("hello", "lobby_full", "pat", None) in await audit_rows(client)
    await guests[0].request({"type": "leave"})
    again = await raw_peer(client, {"token": guest_token("pat")})
    assert (await again.next("welcome"))["status"] == "waiting"
    for peer in (host, *guests, late, again):
        await peer.close()


async def test_a_scheduled_room_takes_its_own_cap_and_reknock_setting_from_rest(
    client: Client, connect: Connect
) -> None:
    start = datetime.now(UTC) - timedelta(minutes=1)
    body = {
        "room_id": "capped",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat(),
        "max_participants": 10,
        "max_waiting": 1,
        "allow_reknock": True,
    }
    headers = {"Authorization": f"Bearer {admin_token()}"}
    created = await (await client.post("/v1/rooms", json=body, headers=headers)).json()
    assert created["max_waiting"] == 1 and created["allow_reknock"] is True
    host = await join_host(connect, "capped")
    _, gid = await knocks(connect, "pat", "capped")
    assert await refused_hello(connect, {"name": "Sam"}, "capped") == "lobby_full"
    await host.request({"type": "reject", "participant_id": gid})
    _, again = await knocks(connect, "pat", "capped")  # this room lets them knock again
    assert again != gid


async def test_rest_refuses_a_bad_lobby_setting(client: Client) -> None:
    start = datetime.now(UTC)
    base = {"starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=1)).isoformat()}
    headers = {"Authorization": f"Bearer {admin_token()}"}
    for extra in ({"max_waiting": 0}, {"max_waiting": "9"}, {"allow_reknock": "yes"}):
        response = await client.post("/v1/rooms", json={**base, **extra}, headers=headers)
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "bad_request"
    response = await client.post("/v1/rooms", json={**base, "max_waiting": 10**6}, headers=headers)
    assert (await response.json())["max_waiting"] == 400  # the factor x the capacity cap


# --- refused knocks ------------------------------------------------------------------


async def test_a_rejected_guest_cannot_knock_again_until_the_host_allows_it(
    connect: Connect, client: Client
) -> None:
    host, gid = await pat_turned_away(connect)
    refusals = await host.next("refusals")
    assert refusals["participants"] == [{"id": gid, "name": "Pat", "reason": "rejected"}]
    assert await refused_hello(connect, {"token": guest_token("pat")}) == "knock_refused"
    assert len(host.of_type("knock")) == 1
    ack = await host.request({"type": "allow_knock", "participant_id": gid})
    assert ack["type"] == "ack"
    assert (await host.next("refusals"))["participants"] == []
    await knocks(connect, "pat")
    rows = await audit_rows(client)
    assert ("hello", "knock_refused", "pat", None) in rows
    assert ("allow_knock", "ok", "dr-smith", "pat") in rows


async def test_a_removed_guest_cannot_knock_again_and_the_host_may_name_the_identity(
    connect: Connect,
) -> None:
    host = await join_host(connect)
    guest, gid = await knocks(connect, "pat")
    await host.request({"type": "admit", "participant_ids": [gid]})
    await guest.next("roster")
    await host.request({"type": "remove", "participant_id": gid})
    assert (await guest.next("left"))["reason"] == "removed"
    assert (await host.next("refusals"))["participants"][0]["reason"] == "removed"
    assert await refused_hello(connect, {"token": guest_token("pat")}) == "knock_refused"
    assert (await host.request({"type": "allow_knock", "identity": "pat"}))["type"] == "ack"
    await knocks(connect, "pat")


async def test_a_host_joining_later_sees_who_is_refused(connect: Connect) -> None:
    _, gid = await pat_turned_away(connect)
    cohost = await join_host(connect, identity="nurse")
    assert (await cohost.next("refusals"))["participants"][0]["id"] == gid


async def test_a_resuming_host_gets_the_refusals_again(connect: Connect) -> None:
    host, gid = await pat_turned_away(connect)
    resume = host.of_type("welcome")[0]["resume_token"]
    await host.close()
    again = await connect("visit-1", {"resume": resume})
    assert (await again.next("refusals"))["participants"][0]["id"] == gid


async def test_allow_knock_is_for_hosts_and_needs_one_known_target(
    connect: Connect, client: Client
) -> None:
    host, gid = await pat_turned_away(connect)
    other, oid = await knock_guest(connect, "Sam")
    await host.request({"type": "admit", "participant_ids": [oid]})
    await other.next("admitted")
    denied = await other.request({"type": "allow_knock", "participant_id": gid})
    assert denied["code"] == "forbidden"
    for bad in ({}, {"participant_id": gid, "identity": "pat"}, {"identity": ""}):
        assert (await host.request({"type": "allow_knock", **bad}))["code"] == "bad_request"
    assert (await host.request({"type": "allow_knock", "identity": "x"}))["code"] == "not_found"
    assert await refused_hello(connect, {"token": guest_token("pat")}) == "knock_refused"
    assert ("allow_knock", "forbidden", oid, None) in await audit_rows(client)


# --- knock rate limits ---------------------------------------------------------------


async def test_anonymous_knocks_from_one_address_do_not_lock_out_a_patient_with_a_token(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await open_client(aiohttp_client, tmp_path, knock_rate_limit=RateLimit(20, 60.0))
    host = await raw_peer(client, {"token": token()})
    await host.next("lobby")
    attackers = [await raw_peer(client, {"name": f"Spam {n}"}) for n in range(21)]
    codes = [(await peer.first()).get("code", "ok") for peer in attackers]
    assert codes == ["ok"] * 20 + ["rate_limited"]
    patient = await raw_peer(client, {"token": guest_token("patient-1")})
    assert (await patient.next("welcome"))["status"] == "waiting"
    for peer in (host, *attackers, patient):
        await peer.close()


async def test_one_identity_is_limited_on_its_own_and_others_still_knock(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await open_client(
        aiohttp_client, tmp_path, knock_identity_rate_limit=RateLimit(3, 60.0)
    )
    peers = []
    for _ in range(4):  # every attempt counts, the refused ones (`conflict`) too
        peers.append(await raw_peer(client, {"token": guest_token("attacker")}))
        await peers[-1].first()
    codes = [peer.messages[0].get("code", "ok") for peer in peers]
    assert codes == ["ok", "conflict", "conflict", "rate_limited"]
    patient = await raw_peer(client, {"token": guest_token("patient-1")})
    assert (await patient.next("welcome"))["status"] == "waiting"
    assert ("hello", "rate_limited", "attacker", None) in await audit_rows(client)
    for peer in (*peers, patient):
        await peer.close()


async def test_refusals_outlast_the_room_emptying_until_the_visit_ends(connect: Connect) -> None:
    host, gid = await pat_turned_away(connect)
    await host.request({"type": "leave"})
    await host.wait_closed()  # the room is empty now and unloaded
    assert await refused_hello(connect, {"token": guest_token("pat")}) == "knock_refused"
    again = await join_host(connect)
    assert (await again.next("refusals"))["participants"][0]["id"] == gid
    await again.request({"type": "end"})
    await again.wait_closed()
    await knocks(connect, "pat")
