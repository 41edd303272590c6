"""Breakout messages over real WebSockets (docs/protocol.md, Breakouts)."""

from __future__ import annotations

from typing import Any

from common.keys import AUDIT
from tests.conftest import Connect, Peer, join_host, knock_guest


async def _room_of_three(connect: Connect) -> tuple[Peer, list[tuple[Peer, str]]]:
    host = await join_host(connect)
    guests = [await knock_guest(connect, name) for name in ("Ann", "Ben", "Cid")]
    await host.request({"type": "admit", "all": True})
    for peer, _ in guests:
        await peer.next("roster")
    return host, guests


async def test_opening_breakouts_tells_hosts_and_moves_members_with_their_own_roster(
    connect: Connect,
) -> None:
    host, [(ann, a), (_ben, b), (cid, c)] = await _room_of_three(connect)
    ack = await host.request(
        {
            "type": "breakout_open",
            "rooms": [{"name": "Family", "participant_ids": [a, b]}, {"name": "Interpreter"}],
            "duration_s": 600,
        }
    )
    assert [r["name"] for r in ack["rooms"]] == ["Family", "Interpreter"]
    view = await host.next("breakouts")
    assert view["rooms"][0]["participant_ids"] == [a, b] and view["ends_at"]
    assert c in view["main_participant_ids"]
    moved = await ann.next("breakout")
    assert moved["room"]["name"] == "Family" and moved["ends_at"] == view["ends_at"]
    roster = await ann.next("roster", participants=[*_people(ann, [a, b])])
    assert {p["id"] for p in roster["participants"]} == {a, b}
    assert (await cid.next("participant_left", participant_id=a))["reason"] == "left"


def _people(peer: Peer, ids: list[str]) -> list[dict[str, Any]]:
    """The roster entries for `ids` as this peer saw them in its first roster."""
    first = peer.of_type("roster")[0]["participants"]
    return [p for pid in ids for p in first if p["id"] == pid]


async def test_a_host_visits_a_breakout_and_broadcasts_to_all(connect: Connect) -> None:
    host, [(ann, _a), (ben, _b), (_, _c)] = await _room_of_three(connect)
    await host.request(
        {"type": "breakout_open", "rooms": [{"name": "A"}, {"name": "B"}], "auto": True}
    )
    view = await host.next("breakouts")
    first = view["rooms"][0]["id"]
    me = host.of_type("welcome")[0]["participant_id"]
    assert (await host.request({"type": "breakout_move", "participant_id": me, "to": first}))[
        "type"
    ] == "ack"
    assert (await host.next("breakout"))["room"]["id"] == first
    await host.request({"type": "breakout_broadcast", "text": "Two minutes"})
    for peer in (ann, ben):
        assert (await peer.next("broadcast"))["text"] == "Two minutes"


async def test_help_requests_reach_hosts_with_the_breakout(connect: Connect) -> None:
    host, [(ann, a), _, _] = await _room_of_three(connect)
    await host.request({"type": "breakout_open", "rooms": [{"name": "A", "participant_ids": [a]}]})
    await ann.next("breakout")
    assert (await ann.request({"type": "help_request"}))["type"] == "ack"
    help_ = await host.next("help_requested")
    assert help_ == {"type": "help_requested", "participant_id": a, "breakout_id": "b1"}


async def test_closing_brings_everyone_back_to_the_main_room(connect: Connect) -> None:
    host, guests = await _room_of_three(connect)
    await host.request({"type": "breakout_open", "rooms": [{"name": "A"}], "auto": True})
    await host.request({"type": "breakout_close"})
    for peer, _ in guests:
        await peer.next("breakout", room=None)
        roster = await peer.next("roster", participants=peer.of_type("roster")[0]["participants"])
        assert len(roster["participants"]) == 4


async def test_guests_cannot_use_breakout_controls_and_it_is_audited(
    connect: Connect, client: Any
) -> None:
    _, [(ann, a), _, _] = await _room_of_three(connect)
    for command in (
        {"type": "breakout_open", "rooms": [{"name": "X"}]},
        {"type": "breakout_broadcast", "text": "hi"},
        {"type": "breakout_close"},
    ):
        assert (await ann.request(command))["code"] == "forbidden"
    entries = await client.app[AUDIT].query("visit-1")
    assert ("breakout_open", a, "forbidden") in [
        (e["action"], e["actor"], e["outcome"]) for e in entries
    ]


async def test_every_open_move_close_and_broadcast_is_audited_without_text(
    connect: Connect, client: Any
) -> None:
    host, [(_, a), _, _] = await _room_of_three(connect)
    await host.request({"type": "breakout_open", "rooms": [{"name": "A"}, {"name": "B"}]})
    await host.request({"type": "breakout_move", "participant_id": a, "to": "b2"})
    await host.request({"type": "breakout_broadcast", "text": "Secret plan"})
    await host.request({"type": "breakout_close", "countdown_s": 0})
    entries = await client.app[AUDIT].query("visit-1")
    actions = [e["action"] for e in entries]
    for action in ("breakout_open", "breakout_move", "breakout_broadcast", "breakout_close"):
        assert action in actions
    assert "Secret" not in str(entries)
