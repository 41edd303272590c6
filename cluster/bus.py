"""The coordination bus: keys with expiry, leases, hashes and pub/sub.

`LocalBus` is the embedded default (one machine, no Redis); `RedisBus` is
chosen by `--redis URL`. Both implement `Bus`, so everything above them
(the node registry, room leases, room state) runs the same code either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

log = logging.getLogger(__name__)

Handler = Callable[[bytes], Awaitable[None] | None]


class BusUnavailable(Exception):
    """The bus (Redis) cannot be reached right now."""


class Bus(Protocol):
    @property
    def healthy(self) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def set(
        self, key: str, value: bytes, ttl_ms: int | None = None, only_new: bool = False
    ) -> bool: ...

    async def delete(self, *keys: str) -> None: ...

    async def renew(self, key: str, value: bytes, ttl_ms: int) -> bool:
        """Extend the expiry of `key` only while it still holds `value` (a lease)."""
        ...

    async def release(self, key: str, value: bytes) -> bool:
        """Delete `key` only while it still holds `value`."""
        ...

    async def hset(self, key: str, mapping: Mapping[str, bytes]) -> None: ...

    async def hdel(self, key: str, *fields: str) -> None: ...

    async def hgetall(self, key: str) -> dict[str, bytes]: ...

    async def hget(self, key: str, field: str) -> bytes | None: ...

    async def apply(
        self,
        sets: Mapping[str, Mapping[str, bytes]],
        deletes: Mapping[str, tuple[str, ...]],
        values: Mapping[str, bytes],
    ) -> None:
        """Hash sets, hash field deletes and plain sets in one atomic step."""
        ...

    async def members(self, prefix: str) -> list[str]:
        """Keys starting with `prefix` (small key spaces only: nodes, workers)."""
        ...

    async def publish(self, channel: str, message: bytes) -> None: ...

    def subscribe(self, channel: str, handler: Handler) -> None: ...


class LocalBus:
    """In-process bus with the same semantics as Redis for what visitroom uses."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, tuple[bytes, float | None]] = {}
        self._hashes: dict[str, dict[str, bytes]] = {}
        self._handlers: dict[str, list[Handler]] = {}

    @property
    def healthy(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._handlers.clear()

    def _live(self, key: str) -> bytes | None:
        item = self._values.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and self._clock() >= expires:
            del self._values[key]
            return None
        return value

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def set(
        self, key: str, value: bytes, ttl_ms: int | None = None, only_new: bool = False
    ) -> bool:
        if only_new and self._live(key) is not None:
            return False
        expires = self._clock() + ttl_ms / 1000 if ttl_ms else None
        self._values[key] = (value, expires)
        return True

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._values.pop(key, None)
            self._hashes.pop(key, None)

    async def renew(self, key: str, value: bytes, ttl_ms: int) -> bool:
        if self._live(key) != value:
            return False
        self._values[key] = (value, self._clock() + ttl_ms / 1000)
        return True

    async def release(self, key: str, value: bytes) -> bool:
        if self._live(key) != value:
            return False
        del self._values[key]
        return True

    async def hset(self, key: str, mapping: Mapping[str, bytes]) -> None:
        self._hashes.setdefault(key, {}).update(mapping)

    async def hdel(self, key: str, *fields: str) -> None:
        table = self._hashes.get(key, {})
        for name in fields:
            table.pop(name, None)

    async def hgetall(self, key: str) -> dict[str, bytes]:
        return dict(self._hashes.get(key, {}))

    async def hget(self, key: str, field: str) -> bytes | None:
        return self._hashes.get(key, {}).get(field)

    async def apply(
        self,
        sets: Mapping[str, Mapping[str, bytes]],
        deletes: Mapping[str, tuple[str, ...]],
        values: Mapping[str, bytes],
    ) -> None:
        for key, mapping in sets.items():
            await self.hset(key, mapping)
        for key, fields in deletes.items():
            await self.hdel(key, *fields)
        for key, value in values.items():
            await self.set(key, value)

    async def members(self, prefix: str) -> list[str]:
        keys = [k for k in list(self._values) if k.startswith(prefix) and self._live(k)]
        return sorted(keys)

    async def publish(self, channel: str, message: bytes) -> None:
        for handler in list(self._handlers.get(channel, ())):
            result = handler(message)
            if result is not None:
                await result

    def subscribe(self, channel: str, handler: Handler) -> None:
        self._handlers.setdefault(channel, []).append(handler)
