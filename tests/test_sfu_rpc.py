"""The pool <-> worker RPC: framing, malformed frames, and a connection that outlives them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest

from sfu.control import MediaError
from sfu.workers import rpc
from sfu.workers.api import REQUESTS, params_ok
from sfu.workers.rpc import BadFrame, FrameDecoder, Notification, RemoteError, Request, Response


def test_every_kind_of_message_survives_any_split_of_the_stream() -> None:
    stream = (
        rpc.request_frame(1, "offer", ["p1", "v=0"])
        + rpc.response_frame(1, None, {"sdp": "v=0"})
        + rpc.response_frame(2, ("not_admitted", "no session"), None)
        + rpc.notify_frame("event", ["slots_changed", ["p1", []]])
    )
    expected = [
        Request(1, "offer", ["p1", "v=0"]),
        Response(1, None, {"sdp": "v=0"}),
        Response(2, ("not_admitted", "no session"), None),
        Notification("event", ["slots_changed", ["p1", []]]),
    ]
    for size in (1, 3, 7, len(stream)):
        decoder = FrameDecoder()
        got = [m for i in range(0, len(stream), size) for m in decoder.feed(stream[i : i + size])]
        assert got == expected, size
        assert decoder.bad_frames == 0


@pytest.mark.parametrize(
    ("body", "msgid"),
    [
        (b"\xc1\xc1", None),  # not msgpack
        (msgpack.packb({"type": "request"}), None),  # not an array
        (msgpack.packb([]), None),
        (msgpack.packb([7, 1, "x", []]), None),  # no such kind
        (msgpack.packb([0, "one", "open", []]), None),  # request id not an int
        (msgpack.packb([0, True, "open", []]), None),  # bool is not an id
        (msgpack.packb([0, 5, 42, []]), 5),  # method not a string: answerable
        (msgpack.packb([0, 6, "open", "p1"]), 6),  # params not a list
        (msgpack.packb([1, 3, ["only code"], None]), None),  # bad error shape
        (msgpack.packb([2, "event"]), None),  # notification without params
    ],
)
def test_a_malformed_frame_is_dropped_counted_and_the_next_one_still_decodes(
    body: bytes, msgid: int | None
) -> None:
    decoder = FrameDecoder()
    good = rpc.notify_frame("load", [{"cpu": 0.5}])
    messages = decoder.feed(len(body).to_bytes(4, "big") + body + good)
    assert len(messages) == 2
    assert isinstance(messages[0], BadFrame) and messages[0].msgid == msgid
    assert messages[1] == Notification("load", [{"cpu": 0.5}])
    assert decoder.bad_frames == 1


def test_an_oversized_frame_is_skipped_without_being_buffered() -> None:
    decoder = FrameDecoder(max_frame=64)
    huge = (10_000).to_bytes(4, "big") + bytes(10_000)
    stream = huge + rpc.request_frame(9, "ping", [])
    messages = []
    for i in range(0, len(stream), 1000):
        messages += decoder.feed(stream[i : i + 1000])
        assert len(decoder._buffer) <= 1000
    assert isinstance(messages[0], BadFrame) and "over 64" in messages[0].reason
    assert messages[1:] == [Request(9, "ping", [])]


def test_a_frame_too_large_to_send_is_refused_at_the_sender() -> None:
    with pytest.raises(ValueError, match="over"):
        rpc.frame(["x" * (rpc.MAX_FRAME + 1)])


def test_parameters_are_checked_by_type_and_count() -> None:
    assert params_ok(["p", "sdp"], REQUESTS["offer"])
    assert params_ok(["p", "c", None, 0], REQUESTS["candidate"])
    assert not params_ok(["p", "c", None, True], REQUESTS["candidate"]), "bool is not an int"
    assert not params_ok(["p"], REQUESTS["offer"])
    assert not params_ok([1, 2, 3], REQUESTS["open"])


class Handler:
    def __init__(self) -> None:
        self.notes: list[tuple[str, list[Any]]] = []
        self.lost = asyncio.Event()

    async def handle_request(self, method: str, params: list[Any]) -> Any:
        if method == "refuse":
            raise MediaError("not_admitted", "no session")
        if method == "crash":
            raise RuntimeError("bug")
        await asyncio.sleep(0.01 if method == "slow" else 0)
        return [method, *params]

    def handle_notification(self, method: str, params: list[Any]) -> None:
        self.notes.append((method, params))

    def connection_lost(self) -> None:
        self.lost.set()


@pytest.fixture
async def pair() -> AsyncIterator[tuple[rpc.RpcConnection, rpc.RpcConnection, Handler]]:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    server_handler, client_handler = Handler(), Handler()
    server = rpc.RpcConnection(server_handler, "server")
    client = rpc.RpcConnection(client_handler, "client")
    await loop.create_unix_connection(lambda: server, sock=a)
    await loop.create_unix_connection(lambda: client, sock=b)
    yield client, server, server_handler
    client.close()
    server.close()
    await server.drain_handlers()


async def test_requests_are_answered_and_errors_keep_their_protocol_code(
    pair: tuple[rpc.RpcConnection, rpc.RpcConnection, Handler],
) -> None:
    client, _, handler = pair
    slow = client.request("slow", 1)
    fast = client.request("fast", 2)
    assert await fast == ["fast", 2] and await slow == ["slow", 1]
    with pytest.raises(RemoteError) as refused:
        await client.request("refuse")
    assert (refused.value.code, refused.value.message) == ("not_admitted", "no session")
    with pytest.raises(RemoteError) as crashed:
        await client.request("crash")
    assert crashed.value.code == "internal"
    assert client.notify("peers", [])
    assert await client.request("after") == ["after"]
    assert handler.notes == [("peers", [[]])]


async def test_garbage_on_the_stream_is_answered_where_possible_and_the_peer_carries_on(
    pair: tuple[rpc.RpcConnection, rpc.RpcConnection, Handler],
) -> None:
    client, server, _ = pair
    client.write_raw(b"\x00\x00\x00\x02\xc1\xc1")
    bad = msgpack.packb([0, 77, "open", "not a list"])
    client.write_raw(len(bad).to_bytes(4, "big") + bad)
    answers: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    client._pending[77] = answers  # the reply to the malformed request comes back to it
    with pytest.raises(RemoteError) as refused:
        await answers
    assert refused.value.code == "bad_request"
    assert await client.request("still", "here") == ["still", "here"]
    assert server.bad_frames == 2 and not server.closed


async def test_pending_requests_fail_when_the_connection_is_lost(
    pair: tuple[rpc.RpcConnection, rpc.RpcConnection, Handler],
) -> None:
    client, server, handler = pair
    pending = client.request("slow")
    server.close()
    with pytest.raises(ConnectionError):
        await pending
    assert client.closed and not handler.lost.is_set(), "a deliberate close is not a loss"
    with pytest.raises(ConnectionError):
        await client.request("late")
    assert not client.notify("late")
