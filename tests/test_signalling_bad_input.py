"""Bad input gets a clear error, changes nothing and never kills the connection loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest

from common.config import RateLimit
from signalling.app import create_app
from tests.conftest import Connect, Peer, join_host, knock_guest, make_config, token


async def test_invalid_json_is_a_bad_request_and_the_socket_stays_open(connect: Connect) -> None:
    host = await join_host(connect)
    for frame in ("{not json", "[1, 2]", '"text"', '{"type": 1}', "{}", '{"a": NaN}'):
        await host.ws.send_str(frame)
        error = await host.next("error")
        assert error["code"] == "bad_request", frame
    assert (await host.request({"type": "lobby"}))["type"] == "ack"


async def test_duplicate_json_keys_are_refused(connect: Connect) -> None:
    host = await join_host(connect)
    await host.ws.send_str('{"type": "lobby", "type": "end"}')
    assert (await host.next("error"))["code"] == "bad_request"
    assert not host.of_type("left"), "the duplicate `end` must not have run"


async def test_unknown_types_and_bad_fields_get_bad_request_and_change_nothing(
    connect: Connect,
) -> None:
    host = await join_host(connect)
    guest, gid = await knock_guest(connect, "Pat")
    cases: list[dict[str, Any]] = [
        {"type": "teleport"},
        {"type": "admit"},
        {"type": "admit", "participant_ids": "everyone"},
        {"type": "admit", "participant_ids": [1, 2]},
        {"type": "admit", "all": "yes"},
        {"type": "hold", "participant_id": gid},
        {"type": "hold", "participant_id": gid, "message": 42},
        {"type": "reject"},
        {"type": "remove", "participant_id": ["x"]},
        {"type": "candidate", "candidate": "c", "sdpMLineIndex": "zero"},
        {"type": "lobby", "id": {"nested": True}},
    ]
    for case in cases:
        answer = await host.request(case) if "id" not in case else await _send(host, case)
        assert answer["code"] == "bad_request", case
    assert (await host.request({"type": "lobby"}))["type"] == "ack"
    assert not guest.of_type("admitted") and not guest.of_type("rejected")


async def _send(peer: Peer, message: dict[str, Any]) -> dict[str, Any]:
    await peer.send(message)
    return await peer.next("error")


async def test_role_and_sender_fields_in_a_body_are_ignored(connect: Connect) -> None:
    host = await join_host(connect)
    guest, _ = await knock_guest(connect, "Pat")
    await host.next("knock")
    await guest.ws.send_str(json.dumps({"type": "admit", "all": True, "role": "host"}))
    assert (await guest.next("error"))["code"] == "forbidden"


async def test_invalid_msgpack_and_deep_nesting_are_bad_requests(connect: Connect) -> None:
    host = await connect("visit-1", {"token": token()}, protocol="visitroom.v1.msgpack")
    await host.next("welcome")
    deep: Any = "x"
    for _ in range(10_000):
        deep = [deep]
    frames = [
        b"\xc1",  # never used
        b"\x93\x01\x02",  # truncated array
        msgpack.packb([1, 2]),
        b"\xdf\xff\xff\xff\xff",  # a map claiming 2**32 entries
        b"\x91" * 10_000 + b"\x01",  # nested 10,000 deep
        msgpack.packb({"type": "lobby"}) + b"\x01",
        msgpack.packb({1: 2}),
    ]
    for frame in frames:
        await host.ws.send_bytes(frame)
        assert (await host.next("error"))["code"] == "bad_request", frame[:8]
    assert (await host.request({"type": "lobby"}))["type"] == "ack"


async def test_a_text_frame_on_the_msgpack_protocol_is_a_bad_request(connect: Connect) -> None:
    host = await connect("visit-1", {"token": token()}, protocol="visitroom.v1.msgpack")
    await host.next("welcome")
    await host.ws.send_str('{"type": "lobby"}')
    assert (await host.next("error"))["code"] == "bad_request"


async def test_an_oversized_frame_closes_with_1009(connect: Connect) -> None:
    host = await join_host(connect)
    await host.ws.send_str(json.dumps({"type": "lobby", "pad": "x" * 70_000}))
    assert await host.wait_closed() == 1009


async def test_a_compressed_bomb_closes_with_1009(connect: Connect) -> None:
    host = await connect("visit-1", None, compress=15)
    await host.send({"type": "hello", "token": token(), "pad": "a" * 2_000_000})
    assert await host.wait_closed() == 1009


async def test_the_first_message_must_be_hello(connect: Connect) -> None:
    peer = await connect("visit-1", None)
    await peer.send({"type": "admit", "all": True})
    assert (await peer.next("error"))["code"] == "unauthorized"
    await peer.wait_closed()


async def test_no_hello_in_time_closes_the_socket(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path, hello_timeout_s=0.3)))
    ws = await client.ws_connect("/v1/rooms/visit-1/ws")
    peer = Peer(ws)
    assert (await peer.next("error"))["code"] == "unauthorized"
    await peer.wait_closed()
    await peer.close()


async def test_a_foreign_origin_is_refused_at_the_upgrade(client: Any) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect("/v1/rooms/visit-1/ws", headers={"Origin": "https://evil.test"})
    assert caught.value.status == 403


async def test_own_and_configured_origins_are_allowed(aiohttp_client: Any, tmp_path: Path) -> None:
    config = make_config(tmp_path, allowed_origins=("https://portal.clinic.test",))
    client = await aiohttp_client(create_app(config))
    own = f"http://{client.host}:{client.port}"
    for origin in (own, "https://portal.clinic.test"):
        ws = await client.ws_connect("/v1/rooms/visit-1/ws", headers={"Origin": origin})
        await ws.close()


async def test_a_bad_room_id_in_the_path_is_404(client: Any) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect("/v1/rooms/..%2Fetc/ws")
    assert caught.value.status == 404


async def test_a_knock_flood_is_rate_limited_per_address_and_room(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = make_config(
        tmp_path, knock_rate_limit=RateLimit(3, 10.0), knock_address_rate_limit=RateLimit(3, 10.0)
    )
    client = await aiohttp_client(create_app(config))
    peers = []
    for room in ("busy",) * 4 + ("other",):
        ws = await client.ws_connect(f"/v1/rooms/{room}/ws")
        peer = Peer(ws)
        peers.append(peer)
        await peer.send({"type": "hello", "token": token(room, f"g{len(peers)}", "guest")})
    codes = [(await peer.first()).get("code", "ok") for peer in peers]
    assert codes == ["ok", "ok", "ok", "rate_limited", "ok"]
    for peer in peers:
        await peer.close()


async def test_a_message_flood_is_refused_without_hurting_others(connect: Connect) -> None:
    host = await join_host(connect)
    guest, gid = await knock_guest(connect, "Pat")
    await host.request({"type": "admit", "participant_ids": [gid]})
    for _ in range(200):
        await guest.send({"type": "pin", "participant_id": None})
    await guest.next("error", code="rate_limited")
    assert (await host.request({"type": "lobby"}))["type"] == "ack"
