"""Waiting for a condition that has no event to wait on (a key expiring in Redis, a
process becoming healthy): poll it under a deadline, and fail loudly at the deadline."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

POLL_S = 0.05


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], within_s: float = 5.0, what: str = ""
) -> None:
    try:
        async with asyncio.timeout(within_s):
            while True:
                result = condition()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(POLL_S)  # nothing to wait on but time
    except TimeoutError:
        raise AssertionError(f"not within {within_s} s: {what or condition}") from None
