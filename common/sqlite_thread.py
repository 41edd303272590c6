"""One thread for one SQLite connection, so the event loop never blocks on disk.

Every store that keeps a SQLite file (audit trail, rooms, room state, portal)
runs its database work through one of these: calls run on the same thread, one
at a time, in the order they were made, so a connection is only ever used by
the thread that owns it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class SqliteThread:
    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the database thread; RuntimeError once the thread has stopped."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def stop(self) -> None:
        """Finish the work already submitted, then end the thread (idempotent)."""
        self._executor.shutdown(wait=True)
