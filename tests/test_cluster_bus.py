"""The bus contract, run against LocalBus and against a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from cluster.bus import Bus, BusUnavailable, LocalBus
from cluster.redisbus import RedisBus
from tests.redis_server import RedisServer
from tests.waiting import eventually


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["local", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "local":
        impl: Bus = LocalBus()
    else:
        server = request.getfixturevalue("redis_server")
        impl = RedisBus(server.url)
    await impl.start()
    yield impl
    await impl.close()


async def test_set_get_delete(bus: Bus) -> None:
    assert await bus.get("k") is None
    assert await bus.set("k", b"v")
    assert await bus.get("k") == b"v"
    await bus.delete("k")
    assert await bus.get("k") is None


async def test_only_new_is_a_lease_that_one_holder_wins(bus: Bus) -> None:
    results = await asyncio.gather(
        *(bus.set("lease", f"n{i}".encode(), ttl_ms=5000, only_new=True) for i in range(10))
    )
    assert results.count(True) == 1
    holder = await bus.get("lease")
    assert holder is not None
    assert not await bus.renew("lease", b"someone-else", 5000)
    assert await bus.renew("lease", holder, 5000)
    assert not await bus.release("lease", b"someone-else")
    assert await bus.release("lease", holder)
    assert await bus.get("lease") is None


async def test_expiry(bus: Bus) -> None:
    await bus.set("short", b"x", ttl_ms=100)

    async def gone() -> bool:
        return await bus.get("short") is None

    await eventually(gone, 3, "the key expired")


async def test_hashes_and_atomic_apply(bus: Bus) -> None:
    await bus.hset("h", {"a": b"1", "b": b"2"})
    await bus.apply({"h": {"c": b"3"}}, {"h": ("a",)}, {"meta": b"m"})
    assert await bus.hgetall("h") == {"b": b"2", "c": b"3"}
    assert await bus.hget("h", "c") == b"3"
    assert await bus.get("meta") == b"m"


async def test_members_by_prefix(bus: Bus) -> None:
    await bus.set("vr:node:a", b"1", ttl_ms=5000)
    await bus.set("vr:node:b", b"1", ttl_ms=5000)
    await bus.set("vr:other", b"1")
    assert await bus.members("vr:node:") == ["vr:node:a", "vr:node:b"]


async def test_publish_reaches_subscribers(bus: Bus) -> None:
    got: asyncio.Queue[bytes] = asyncio.Queue()
    bus.subscribe("chan", got.put_nowait)

    async def delivered() -> bool:
        await bus.publish("chan", b"hello")
        return not got.empty()

    await eventually(delivered, 5, "delivered")
    assert await got.get() == b"hello"


def test_local_bus_expires_by_its_clock() -> None:
    clock = Clock()
    bus = LocalBus(clock)

    async def run() -> None:
        await bus.set("k", b"v", ttl_ms=1000)
        clock.now = 0.999
        assert await bus.get("k") == b"v"
        clock.now = 1.0
        assert await bus.get("k") is None

    asyncio.run(run())


async def test_redis_outage_fails_fast_and_recovers_with_resubscription(
    redis_server: RedisServer,
) -> None:
    bus = RedisBus(redis_server.url)
    await bus.start()
    got: asyncio.Queue[bytes] = asyncio.Queue()
    bus.subscribe("events", got.put_nowait)
    await _until_delivered(bus, got)
    redis_server.stop()
    with pytest.raises(BusUnavailable):
        async with asyncio.timeout(3):
            await bus.set("k", b"v")
    await eventually(lambda: not bus.healthy, 3, "the outage noticed")
    redis_server.start()
    await eventually(lambda: bus.healthy, 5, "recovered")
    assert await bus.set("k", b"v")
    await _until_delivered(bus, got)
    await bus.close()


async def _until_delivered(bus: RedisBus, got: asyncio.Queue[bytes]) -> None:
    async with asyncio.timeout(8):
        while True:
            with contextlib.suppress(BusUnavailable):
                await bus.publish("events", b"ping")
            try:
                async with asyncio.timeout(0.2):
                    assert await got.get() == b"ping"
                    return
            except TimeoutError:
                continue
