"""The unraisable filter of tests/leaked_clients.py: only client sockets to the tests' own
server subprocesses are let through, every other unraisable exception still fails."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace
from typing import Any

from tests.leaked_clients import server_peer
from tests.servers import SERVER_PORTS


def unraisable(value: BaseException, traceback: Any = None) -> SimpleNamespace:
    return SimpleNamespace(exc_value=value, exc_traceback=traceback, object=None)


def test_an_unclosed_socket_to_a_test_server_is_recognised_by_its_port() -> None:
    SERVER_PORTS.add(20001)
    leaked = "unclosed <socket.socket fd=16, laddr=('127.0.0.1', 47116), raddr=('127.0.0.1', {})>"
    assert server_peer(unraisable(ResourceWarning(leaked.format(20001)))) == 20001
    assert server_peer(unraisable(ResourceWarning(leaked.format(20002)))) is None
    assert server_peer(unraisable(ValueError(leaked.format(20001)))) is None


def test_an_unclosed_transport_is_recognised_by_its_peer() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        async def connected() -> Any:
            transport, _ = await asyncio.get_running_loop().create_connection(
                asyncio.Protocol, "127.0.0.1", port
            )
            return transport

        loop = asyncio.new_event_loop()
        try:
            transport = loop.run_until_complete(connected())

            def __del__(self: Any) -> None:  # as asyncio's transport warns in its own
                raise ResourceWarning(f"unclosed transport {self!r}")

            try:
                __del__(transport)
            except ResourceWarning as warning:
                caught = unraisable(warning, warning.__traceback__)
            assert server_peer(caught) is None  # not a test server's port
            SERVER_PORTS.add(port)
            assert server_peer(caught) == port
        finally:
            SERVER_PORTS.discard(port)
            transport.close()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()
