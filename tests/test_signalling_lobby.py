"""The waiting room over real WebSockets: knock, hold, reject, admit, remove, end."""

from __future__ import annotations

import asyncio

from signalling.outbound import LEFT_TEXT, REJECTED_TEXT
from tests.conftest import Connect, join_host, knock_guest, token
from waiting_room.breakouts import MAX_BREAKOUT_NAME, MAX_BREAKOUTS, MAX_BROADCAST
from waiting_room.room import MAX_HOLD_MESSAGE, MAX_NAME

DOMAIN_LIMITS = {
    "name": MAX_NAME,
    "hold_message": MAX_HOLD_MESSAGE,
    "broadcast": MAX_BROADCAST,
    "breakouts": MAX_BREAKOUTS,
    "breakout_name": MAX_BREAKOUT_NAME,
}


async def test_a_host_joins_and_gets_welcome_roster_and_an_empty_lobby(connect: Connect) -> None:
    host = await connect("visit-1", {"token": token()})
    welcome = await host.next("welcome")
    assert welcome["role"] == "host" and welcome["status"] == "joined"
    assert welcome["room"] == "visit-1" and welcome["resume_token"]
    roster = await host.next("roster")
    assert roster["participants"] == [
        {"id": welcome["participant_id"], "name": "dr-smith", "role": "host"}
    ]
    assert (await host.next("lobby"))["waiting"] == []


async def test_welcome_tells_the_domain_s_limits_and_the_resume_window(connect: Connect) -> None:
    await join_host(connect)
    guest = await connect("visit-1", {"name": "Pat"})
    welcome = await guest.next("welcome")
    assert welcome["limits"] == DOMAIN_LIMITS
    assert welcome["resume_window_s"] > 0


async def test_a_guest_knocks_and_the_host_sees_it(connect: Connect) -> None:
    host = await join_host(connect)
    guest, gid = await knock_guest(connect, "Pat Doe")
    assert (await guest.next("lobby_status"))["status"] == "waiting"
    knock = await host.next("knock")
    assert knock["participant"] == {"id": gid, "name": "Pat Doe"}
    lobby = await host.request({"type": "lobby"})
    assert lobby["type"] == "ack"
    snapshot = await host.next("lobby", waiting=[])  # the one sent on joining
    assert snapshot["waiting"] == []
    current = await host.next("lobby")
    assert [entry["id"] for entry in current["waiting"]] == [gid]
    assert current["waiting"][0]["status"] == "waiting"


async def test_hold_shows_the_message_and_the_guest_cannot_reply(connect: Connect) -> None:
    host = await join_host(connect)
    guest, gid = await knock_guest(connect, "Pat")
    await guest.next("lobby_status")
    ack = await host.request({"type": "hold", "participant_id": gid, "message": "Ten minutes"})
    assert ack["type"] == "ack"
    status = await guest.next("lobby_status", status="on_hold")
    assert status["message"] == "Ten minutes"
    for attempt in ({"type": "offer", "sdp": "v=0"}, {"type": "pin", "participant_id": None}):
        refused = await guest.request(attempt)
        assert refused["code"] == "not_admitted"
    lobby = await host.next("lobby", waiting=[{**(await _entry(host, gid))}])
    assert lobby["waiting"][0]["message"] == "Ten minutes"


async def _entry(host: object, gid: str) -> dict[str, object]:
    for message in reversed(host.messages):  # type: ignore[attr-defined]
        if message["type"] == "lobby" and message["waiting"]:
            return dict(message["waiting"][0])
    raise AssertionError("no lobby snapshot with the guest")


async def test_reject_sends_exactly_the_protocol_text_and_closes(connect: Connect) -> None:
    host = await join_host(connect)
    guest, gid = await knock_guest(connect, "Pat")
    await host.next("knock")
    assert (await host.request({"type": "reject", "participant_id": gid}))["type"] == "ack"
    rejected = await guest.next("rejected")
    assert rejected["message"] == REJECTED_TEXT
    await guest.wait_closed()
    left = await host.next("lobby_left")
    assert left == {"type": "lobby_left", "participant_id": gid, "reason": "rejected"}


async def test_admit_lets_the_guest_in_with_a_roster(connect: Connect) -> None:
    host = await join_host(connect)
    guest, gid = await knock_guest(connect, "Pat")
    await host.next("knock")
    ack = await host.request({"type": "admit", "participant_ids": [gid]})
    assert ack["admitted"] == [gid]
    await guest.next("admitted")
    roster = await guest.next("roster")
    assert {p["name"] for p in roster["participants"]} == {"dr-smith", "Pat"}
    joined = await host.next("participant_joined")
    assert joined["participant"] == {"id": gid, "name": "Pat", "role": "guest"}
    assert (await host.next("lobby_left"))["reason"] == "admitted"


async def test_admit_all_lets_everyone_in_and_each_sees_the_whole_roster(
    connect: Connect,
) -> None:
    host = await join_host(connect)
    guests = [await knock_guest(connect, f"Guest {i}") for i in range(5)]
    for _ in guests:
        await host.next("knock")
    ack = await host.request({"type": "admit", "all": True})
    assert sorted(ack["admitted"]) == sorted(gid for _, gid in guests)
    for peer, _ in guests:
        await peer.next("admitted")
        roster = await peer.next("roster")
        assert len(roster["participants"]) == 6
        assert not peer.of_type("participant_joined"), "newcomers get one roster, no deltas"


async def test_admit_past_capacity_says_room_full_and_the_guest_keeps_waiting(
    connect: Connect, client: object
) -> None:
    from signalling.keys import ROOMS

    host = await join_host(connect)
    room = client.app[ROOMS].live("visit-1")  # type: ignore[attr-defined]
    room.max_participants = 2
    (g1, id1), (g2, id2) = await knock_guest(connect, "A"), await knock_guest(connect, "B")
    ack = await host.request({"type": "admit", "all": True})
    assert ack["admitted"] == [id1] and ack["room_full"] is True
    await g1.next("admitted")
    await asyncio.sleep(0)
    assert not g2.of_type("admitted")
    assert room.get(id2).is_waiting


async def test_remove_sends_left_to_the_guest_and_participant_left_to_others(
    connect: Connect,
) -> None:
    host = await join_host(connect)
    guest, gid = await knock_guest(connect, "Pat")
    await host.request({"type": "admit", "participant_ids": [gid]})
    await guest.next("roster")
    assert (await host.request({"type": "remove", "participant_id": gid}))["type"] == "ack"
    left = await guest.next("left")
    assert left == {"type": "left", "reason": "removed", "message": LEFT_TEXT}
    await guest.wait_closed()
    gone = await host.next("participant_left")
    assert gone == {"type": "participant_left", "participant_id": gid, "reason": "removed"}


async def test_remove_all_keeps_the_hosts(connect: Connect) -> None:
    host = await join_host(connect)
    cohost = await join_host(connect, identity="nurse")
    guests = [await knock_guest(connect, f"G{i}") for i in range(3)]
    await host.request({"type": "admit", "all": True})
    ack = await host.request({"type": "remove_all"})
    assert sorted(ack["removed"]) == sorted(gid for _, gid in guests)
    for peer, _ in guests:
        assert (await peer.next("left"))["reason"] == "removed"
    await cohost.next("participant_left", reason="removed")
    assert not cohost.closed.is_set()


async def test_end_sends_everyone_left_ended_including_the_lobby(connect: Connect) -> None:
    host = await join_host(connect)
    joined, jid = await knock_guest(connect, "In")
    await host.request({"type": "admit", "participant_ids": [jid]})
    waiting, _ = await knock_guest(connect, "Out")
    await host.request({"type": "end"})
    for peer in (host, joined, waiting):
        left = await peer.next("left")
        assert left["reason"] == "ended" and left["message"] == LEFT_TEXT
        await peer.wait_closed()


async def test_the_room_takes_a_new_session_after_end(connect: Connect) -> None:
    host = await join_host(connect)
    await host.request({"type": "end"})
    await host.wait_closed()
    again = await join_host(connect)
    roster = await again.next("roster")
    assert len(roster["participants"]) == 1


async def test_leave_from_the_lobby_tells_the_host(connect: Connect) -> None:
    host = await join_host(connect)
    guest, gid = await knock_guest(connect, "Pat")
    await guest.send({"type": "leave"})
    assert (await guest.next("left"))["reason"] == "left"
    assert (await host.next("lobby_left")) == {
        "type": "lobby_left",
        "participant_id": gid,
        "reason": "left",
    }


async def test_a_guest_token_knocks_with_the_token_name(connect: Connect) -> None:
    host = await join_host(connect)
    guest = await connect("visit-1", {"token": token(identity="pat", role="guest", name="Pat")})
    welcome = await guest.next("welcome")
    assert welcome["status"] == "waiting" and welcome["role"] == "guest"
    assert (await host.next("knock"))["participant"]["name"] == "Pat"


async def test_msgpack_clients_get_the_same_conversation(connect: Connect) -> None:
    host = await connect("visit-1", {"token": token()}, protocol="visitroom.v1.msgpack")
    assert (await host.next("welcome"))["status"] == "joined"
    _, gid = await knock_guest(connect, "Pat")
    assert (await host.next("knock"))["participant"]["id"] == gid
    ack = await host.request({"type": "admit", "participant_ids": [gid]})
    assert ack["admitted"] == [gid]


async def test_ping_is_acked_for_a_waiting_guest_and_a_host_and_changes_nothing(
    connect: Connect,
) -> None:
    host = await join_host(connect)
    guest, gid = await knock_guest(connect, "Pat")
    assert (await guest.next("lobby_status"))["status"] == "waiting"
    await host.next("knock")
    assert (await guest.request({"type": "ping"}))["type"] == "ack"
    assert (await host.request({"type": "ping"}))["type"] == "ack"
    held = await host.request({"type": "hold", "participant_id": gid, "message": "Soon"})
    assert held["type"] == "ack"
    assert (await guest.next("lobby_status"))["status"] == "on_hold"
    assert (await guest.request({"type": "ping"}))["type"] == "ack"  # on hold, still alive
    lobby = await host.request({"type": "lobby"})
    assert lobby["type"] == "ack"
