"""argon2id password hashing, on its own small thread pool so the event loop never waits.

`verify(None, password)` checks against a dummy hash made with the same
parameters, so an unknown account costs the same time as a wrong password.
"""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor

import argon2

# Each hash holds 64 MiB for its duration; two at a time bounds memory under a flood.
HASH_THREADS = 2


class Passwords:
    def __init__(self, hasher: argon2.PasswordHasher | None = None) -> None:
        self._hasher = hasher or argon2.PasswordHasher()  # argon2id, RFC 9106 low-memory
        self._executor = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="portal-argon2")
        self._dummy: str | None = None

    async def start(self) -> None:
        self._dummy = await self.hash(secrets.token_urlsafe(24))

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """True only when `stored` is given and matches; always does one full verification."""
        target = stored if stored is not None else self._dummy
        if target is None:
            raise RuntimeError("Passwords.start() was not awaited")
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._executor, self._check, target, password)
        return ok and stored is not None

    def _check(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError:
            return False
