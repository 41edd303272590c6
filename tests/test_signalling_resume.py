"""A dropped socket keeps its place for the resume window; `hello` with `resume` restores it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from common.keys import AUDIT
from signalling.app import create_app
from tests.conftest import Connect, Peer, join_host, knock_guest, make_config


async def test_a_waiting_guest_resumes_without_a_new_knock(connect: Connect) -> None:
    host = await join_host(connect)
    guest, gid = await knock_guest(connect, "Pat")
    resume = guest.of_type("welcome")[0]["resume_token"]
    await host.next("knock")
    await guest.close()
    again = await connect("visit-1", {"resume": resume})
    welcome = await again.next("welcome")
    assert welcome["participant_id"] == gid and welcome["status"] == "waiting"
    assert (await again.next("lobby_status"))["status"] == "waiting"
    await host.request({"type": "lobby"})
    assert len(host.of_type("knock")) == 1
    ack = await host.request({"type": "admit", "participant_ids": [gid]})
    assert ack["admitted"] == [gid]
    await again.next("admitted")


async def test_a_joined_guest_resumes_into_the_room(connect: Connect) -> None:
    host = await join_host(connect)
    guest, gid = await knock_guest(connect, "Pat")
    await host.request({"type": "admit", "participant_ids": [gid]})
    resume = guest.of_type("welcome")[0]["resume_token"]
    await guest.next("roster")
    await guest.close()
    again = await connect("visit-1", {"resume": resume})
    welcome = await again.next("welcome")
    assert welcome["status"] == "joined" and welcome["participant_id"] == gid
    assert len((await again.next("roster"))["participants"]) == 2
    assert not host.of_type("participant_left")


async def test_a_host_resumes_with_its_role_and_nobody_is_auto_admitted(connect: Connect) -> None:
    host = await join_host(connect)
    guest, gid = await knock_guest(connect, "Pat")
    await host.next("knock")
    resume = host.of_type("welcome")[0]["resume_token"]
    await host.close()
    again = await connect("visit-1", {"resume": resume})
    assert (await again.next("welcome"))["role"] == "host"
    lobby = await again.next("lobby")
    assert [entry["id"] for entry in lobby["waiting"]] == [gid]
    assert not guest.of_type("admitted")


async def test_resuming_on_a_new_socket_closes_the_old_one(connect: Connect) -> None:
    guest_host = await join_host(connect)
    resume = guest_host.of_type("welcome")[0]["resume_token"]
    again = await connect("visit-1", {"resume": resume})
    await again.next("welcome")
    await guest_host.wait_closed()
    assert (await again.request({"type": "lobby"}))["type"] == "ack"


async def test_a_removed_participant_cannot_come_back_through_resume(connect: Connect) -> None:
    host = await join_host(connect)
    guest, gid = await knock_guest(connect, "Pat")
    await host.request({"type": "admit", "participant_ids": [gid]})
    resume = guest.of_type("welcome")[0]["resume_token"]
    await host.request({"type": "remove", "participant_id": gid})
    await guest.wait_closed()
    again = await connect("visit-1", {"resume": resume})
    assert (await again.next("error"))["code"] == "unauthorized"
    await again.wait_closed()


@pytest.mark.parametrize("token", ["", "x" * 43, "y" * 200])
async def test_unknown_resume_tokens_are_unauthorized(connect: Connect, token: str) -> None:
    peer = await connect("visit-1", {"resume": token})
    assert (await peer.next("error"))["code"] == "unauthorized"


async def test_after_the_window_the_participant_leaves_as_disconnected(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path, resume_window_s=0.3)))

    async def open_peer(hello: dict[str, Any]) -> Peer:
        peer = Peer(await client.ws_connect("/v1/rooms/visit-1/ws"))
        await peer.send({"type": "hello", **hello})
        return peer

    from tests.conftest import token

    host = await open_peer({"token": token()})
    await host.next("welcome")
    joined = await open_peer({"name": "In"})
    jid = (await joined.next("welcome"))["participant_id"]
    await host.request({"type": "admit", "participant_ids": [jid]})
    waiting = await open_peer({"name": "Out"})
    wid = (await waiting.next("welcome"))["participant_id"]
    await joined.close()
    await waiting.close()
    gone = await host.next("participant_left", participant_id=jid)
    assert gone["reason"] == "disconnected"
    assert (await host.next("lobby_left", participant_id=wid))["reason"] == "left"
    entries = await client.app[AUDIT].query("visit-1")
    assert {(e["action"], e["subject"], e["outcome"]) for e in entries} >= {
        ("leave", jid, "disconnected"),
        ("leave", wid, "disconnected"),
    }
    await host.close()
