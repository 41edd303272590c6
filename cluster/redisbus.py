"""`RedisBus`: the coordination bus on Redis (redis-py asyncio with hiredis).

Commands fail fast (1 s timeouts) with `BusUnavailable` while Redis is away;
a watchdog pings it and flips `healthy`; the pub/sub reader reconnects and
resubscribes every channel on its own once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cluster.bus import BusUnavailable, Handler

log = logging.getLogger(__name__)

PING_INTERVAL_S = 0.5
RECONNECT_DELAY_S = 0.5

RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class RedisBus:
    def __init__(self, url: str) -> None:
        self._url = url
        self._redis: redis.Redis = redis.Redis.from_url(
            url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=5
        )
        self._healthy = False
        self._handlers: dict[str, list[Handler]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._new_channel = asyncio.Event()
        self.on_recovered: list[Callable[[], Awaitable[None]]] = []

    @property
    def healthy(self) -> bool:
        return self._healthy

    async def start(self) -> None:
        with contextlib.suppress(BusUnavailable):
            await self._call(self._redis.ping)
            self._healthy = True
        self._tasks = [
            asyncio.create_task(self._watch(), name="redis-watchdog"),
            asyncio.create_task(self._listen(), name="redis-pubsub"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()

    async def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self._healthy = False
            raise BusUnavailable(str(exc)) from None
        except RedisError as exc:
            raise BusUnavailable(f"redis error: {exc}") from None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(PING_INTERVAL_S)
            was = self._healthy
            try:
                await self._call(self._redis.ping)
                self._healthy = True
            except BusUnavailable:
                self._healthy = False
            if self._healthy and not was:
                log.warning("redis is reachable again")
                for callback in list(self.on_recovered):
                    await callback()
            elif was and not self._healthy:
                log.warning("redis is unreachable")

    async def _listen(self) -> None:
        """Read pub/sub forever; after any failure reconnect and subscribe everything again."""
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await self._pump(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("pub/sub connection lost: %s", exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def _pump(self, pubsub: Any) -> None:
        subscribed: set[str] = set()
        while True:
            missing = set(self._handlers) - subscribed
            if missing:
                await pubsub.subscribe(*sorted(missing))
                subscribed |= missing
            if not subscribed:
                self._new_channel.clear()
                await self._new_channel.wait()
                continue
            message = await pubsub.get_message(timeout=0.5)
            if message is not None:
                await self._dispatch(message["channel"].decode(), message["data"])

    async def _dispatch(self, channel: str, data: bytes) -> None:
        for handler in list(self._handlers.get(channel, ())):
            try:
                result = handler(data)
                if result is not None:
                    await result
            except Exception:
                log.exception("pub/sub handler for %s failed", channel)

    def subscribe(self, channel: str, handler: Handler) -> None:
        self._handlers.setdefault(channel, []).append(handler)
        self._new_channel.set()

    async def publish(self, channel: str, message: bytes) -> None:
        await self._call(self._redis.publish, channel, message)

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._call(self._redis.get, key)
        return value

    async def set(
        self, key: str, value: bytes, ttl_ms: int | None = None, only_new: bool = False
    ) -> bool:
        done = await self._call(self._redis.set, key, value, px=ttl_ms, nx=only_new)
        return bool(done)

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._call(self._redis.delete, *keys)

    async def renew(self, key: str, value: bytes, ttl_ms: int) -> bool:
        done = await self._call(self._redis.eval, RENEW, 1, key, value, ttl_ms)
        return bool(done)

    async def release(self, key: str, value: bytes) -> bool:
        done = await self._call(self._redis.eval, RELEASE, 1, key, value)
        return bool(done)

    async def hset(self, key: str, mapping: Mapping[str, bytes]) -> None:
        if mapping:
            await self._call(self._redis.hset, key, mapping=dict(mapping))

    async def hdel(self, key: str, *fields: str) -> None:
        if fields:
            await self._call(self._redis.hdel, key, *fields)

    async def hgetall(self, key: str) -> dict[str, bytes]:
        raw: dict[bytes, bytes] = await self._call(self._redis.hgetall, key)
        return {k.decode(): v for k, v in raw.items()}

    async def hget(self, key: str, field: str) -> bytes | None:
        value: bytes | None = await self._call(self._redis.hget, key, field)
        return value

    async def apply(
        self,
        sets: Mapping[str, Mapping[str, bytes]],
        deletes: Mapping[str, tuple[str, ...]],
        values: Mapping[str, bytes],
    ) -> None:
        async def run() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                for key, mapping in sets.items():
                    if mapping:
                        pipe.hset(key, mapping=dict(mapping))  # type: ignore[arg-type]
                for key, fields in deletes.items():
                    if fields:
                        pipe.hdel(key, *fields)
                for key, value in values.items():
                    pipe.set(key, value)
                await pipe.execute()

        await self._call(run)

    async def members(self, prefix: str) -> list[str]:
        async def scan() -> list[str]:
            found = [key.decode() async for key in self._redis.scan_iter(match=prefix + "*")]
            return sorted(found)

        keys: list[str] = await self._call(scan)
        return keys
