"""An asyncio loop on a thread of its own, for synchronous (Playwright) tests that
drive async servers and clients next to a real browser.

`stop` cancels what still runs on the loop before it closes it: a connection a page
opened as the test ended (a relay's upstream connection still being opened, a reading
task) would otherwise stay pending on a closed loop, its socket closed by nobody, and
the garbage collector would find it unclosed during some later test of the same
worker, failing that one (`filterwarnings = error`; tests/test_loop_thread.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any


class LoopThread:
    """An event loop running forever on a daemon thread until `stop`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        """Run `coroutine` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        """Cancel every task still on the loop, let the transports they closed close
        their sockets, then stop and close the loop."""
        if self.loop.is_closed():
            return
        if self._thread.is_alive():
            self.run(_cancel_the_rest(), 10.0)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
        self.loop.close()


async def _cancel_the_rest() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # a transport closes its socket in a callback the loop runs on its next turns
    for _ in range(3):
        await asyncio.sleep(0)
