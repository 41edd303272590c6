"""A newer connection of the same participant replaces the old one at once: no ghost,
no duplicate, the same id and place; the old socket is told why and closed with 1008."""

from __future__ import annotations

from typing import Any

from common.keys import AUDIT
from tests.conftest import Connect, Peer, join_host, knock_guest, token

REPLACED = {"type": "replaced", "message": "This visit was opened in another window."}


async def closed_as_replaced(old: Peer) -> None:
    assert await old.wait_closed() == 1008
    assert old.messages[-1] == REPLACED


async def test_a_reload_in_the_lobby_keeps_the_place_while_the_old_socket_is_open(
    connect: Connect,
) -> None:
    host = await join_host(connect)
    first, first_id = await knock_guest(connect, "Ann")
    guest, gid = await knock_guest(connect, "Pat")
    await host.next("knock", participant={"id": gid, "name": "Pat"})
    resume = guest.of_type("welcome")[0]["resume_token"]
    again = await connect("visit-1", {"resume": resume})  # the old tab's socket is still open
    welcome = await again.next("welcome")
    assert welcome["participant_id"] == gid and welcome["status"] == "waiting"
    await closed_as_replaced(guest)
    await host.request({"type": "lobby"})
    lobby = host.of_type("lobby")[-1]
    assert [entry["id"] for entry in lobby["waiting"]] == [first_id, gid], "same place in line"
    assert len(host.of_type("knock")) == 2 and not host.of_type("lobby_left")
    await first.close()


async def test_a_reload_in_the_call_keeps_one_entry_for_everyone(connect: Connect) -> None:
    host = await join_host(connect)
    guest, gid = await knock_guest(connect, "Pat")
    await host.request({"type": "admit", "participant_ids": [gid]})
    await guest.next("roster")
    again = await connect("visit-1", {"resume": guest.of_type("welcome")[0]["resume_token"]})
    assert (await again.next("welcome"))["status"] == "joined"
    assert [p["id"] for p in (await again.next("roster"))["participants"]] == [
        host.of_type("welcome")[0]["participant_id"],
        gid,
    ]
    await closed_as_replaced(guest)
    await host.request({"type": "lobby"})
    assert not host.of_type("participant_left") and len(host.of_type("participant_joined")) == 1


async def test_a_second_host_window_takes_the_hosts_place_at_once(connect: Connect) -> None:
    host = await join_host(connect)
    hid = host.of_type("welcome")[0]["participant_id"]
    guest, gid = await knock_guest(connect, "Pat")
    await host.request({"type": "admit", "participant_ids": [gid]})
    waiting, wid = await knock_guest(connect, "Sam")
    second = await connect("visit-1", {"token": token(identity="dr-smith", role="host")})
    welcome = await second.next("welcome")
    assert (welcome["participant_id"], welcome["role"], welcome["status"]) == (
        hid,
        "host",
        "joined",
    )
    assert [p["id"] for p in (await second.next("roster"))["participants"]] == [hid, gid]
    assert [w["id"] for w in (await second.next("lobby"))["waiting"]] == [wid]
    await closed_as_replaced(host)
    ack = await guest.request({"type": "pin", "participant_id": hid})
    assert ack["type"] == "ack", "the host is still in the room under the same id"
    assert not guest.of_type("participant_left") and not guest.of_type("participant_joined")
    assert (await second.request({"type": "admit", "participant_ids": [wid]}))["admitted"] == [wid]
    await waiting.next("admitted")


async def test_the_host_take_over_is_audited(client: Any, connect: Connect) -> None:
    host = await join_host(connect)
    second = await connect("visit-1", {"token": token(identity="dr-smith", role="host")})
    await second.next("welcome")
    await closed_as_replaced(host)
    entries = await client.app[AUDIT].query("visit-1")
    assert ("take_over", "ok", "dr-smith") in {
        (e["action"], e["outcome"], e["actor"]) for e in entries
    }


async def test_a_shared_guest_token_never_takes_someones_place(connect: Connect) -> None:
    host = await join_host(connect)
    shared = token(identity="family-link", role="guest", name="The Does")
    first = await connect("visit-1", {"token": shared})
    gid = (await first.next("welcome"))["participant_id"]
    await host.request({"type": "admit", "participant_ids": [gid]})
    await first.next("admitted")
    second = await connect("visit-1", {"token": shared})
    assert (await second.next("error"))["code"] == "conflict"
    assert await second.wait_closed() == 1008
    assert (await first.request({"type": "pin", "participant_id": None}))["type"] == "ack"
    assert not first.of_type("replaced") and not host.of_type("participant_left")


async def test_a_host_token_never_takes_a_guests_place(connect: Connect) -> None:
    await join_host(connect)
    guest = await connect("visit-1", {"token": token(identity="pat", role="guest")})
    await guest.next("welcome")
    posing = await connect("visit-1", {"token": token(identity="pat", role="host")})
    assert (await posing.next("error"))["code"] == "conflict"
    # A round trip on the guest's socket: anything sent to it before is in by now.
    assert (await guest.request({"type": "leave"}))["type"] == "ack"
    assert not guest.of_type("replaced")
