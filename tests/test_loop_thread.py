"""The loop thread of the sync browser tests' helpers closes everything it opened
(tests/loop_thread.py): nothing is left for the garbage collector to find unclosed
during a later test."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from collections.abc import Iterator

import pytest

from tests.loop_thread import LoopThread
from tests.web_support import TcpProxy


@pytest.fixture
def full_target() -> Iterator[int]:
    """A port whose accept queue is full: a further connection to it stays half-open
    (its SYN dropped), as one being opened when a test ends."""
    target = socket.socket()
    target.bind(("127.0.0.1", 0))
    target.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(target.getsockname())
        fillers.append(filler)
    yield target.getsockname()[1]
    for filler in fillers:
        filler.close()
    target.close()


def test_a_relay_stopped_while_it_opens_an_upstream_connection_leaves_no_socket_open(
    full_target: int,
) -> None:
    proxy = TcpProxy(full_target)
    proxy.start()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5):
        deadline = time.monotonic() + 5
        while not asyncio.all_tasks(proxy._loop.loop):  # the relay's task: opening upstream
            assert time.monotonic() < deadline, "the relay never accepted the connection"
            time.sleep(0.01)
        proxy.stop()
    del proxy
    gc.collect()  # an unclosed socket or transport here fails the test (filterwarnings)


def test_stop_cancels_what_still_runs_on_the_loop() -> None:
    thread = LoopThread()
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def spawn() -> None:
        asyncio.get_running_loop().create_task(forever())
        await started.wait()

    thread.run(spawn())
    thread.stop()
    assert cancelled == [True] and thread.loop.is_closed()
    thread.stop()  # twice: nothing left to do
