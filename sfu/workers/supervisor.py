"""One SFU worker as the pool sees it: spawned, initialised, watched, ended.

`WorkerLink` is what the pool uses of any worker: the RPC connection, its
state, its last load report and the heartbeat; `WorkerHandle` is a worker
process of this machine, `sfu.workers.remote.RemoteWorker` one of another
node reached over TCP.

`WorkerHandle.start` creates a socketpair, starts ``python -m sfu.workers.worker``
with one end, runs the RPC connection on the other and sends ``init``.  From
then on three things can end it, and each reports to the owner (the pool)
exactly once, with a reason:

* the process exits (its exit status is awaited, so this is immediate);
* the RPC connection closes (the worker's socket end went away);
* the heartbeat: a ``ping`` every `heartbeat_s`, answered by the worker's
  loop; no answer (nor any other message) for `timeout_s` means a hung or
  starved worker, which is then killed (SIGKILL) so its ports and sockets
  are released.  The silence is counted by `sfu.workers.liveness.Silence`, in time
  this (the judge's) loop was on time: a stalled signalling loop is not
  taken for a dead worker, so a flood of connections never closes the
  calls' media.

A handle is never reused: a restarted worker is a new handle with a new
origin id, so nothing addressed to the dead incarnation reaches the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from sfu.workers.liveness import Silence
from sfu.workers.rpc import RemoteError, RpcConnection

logger = logging.getLogger(__name__)

PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


class WorkerState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    LOST = "lost"
    STOPPED = "stopped"


_ALLOWED = {
    WorkerState.STARTING: {WorkerState.READY, WorkerState.LOST, WorkerState.STOPPED},
    WorkerState.READY: {WorkerState.LOST, WorkerState.STOPPED},
    WorkerState.LOST: set(),
    WorkerState.STOPPED: set(),
}


class WorkerOwner(Protocol):
    def worker_notification(self, handle: WorkerLink, method: str, params: list[Any]) -> None: ...

    def worker_lost(self, handle: WorkerLink, reason: str) -> None: ...


class WorkerLink:
    """A worker the pool talks to: connection, state, load, heartbeat (see module doc)."""

    node: str = ""  # "" for this machine's workers

    def __init__(
        self,
        index: int,
        origin: int,
        owner: WorkerOwner,
        *,
        heartbeat_s: float = 0.5,
        timeout_s: float = 2.0,
    ) -> None:
        self.index = index
        self.origin = origin
        self.state = WorkerState.STARTING
        self.reason = ""
        self.relay: tuple[str, int] | None = None
        self.pid: int | None = None
        self.load: dict[str, Any] = {}
        self.silence = Silence(heartbeat_s, timeout_s, time.monotonic())
        self.conn = RpcConnection(self, f"worker{index}")
        self._owner = owner
        self._heartbeat_s = heartbeat_s
        self._timeout_s = timeout_s
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def ready(self) -> bool:
        return self.state == WorkerState.READY

    def _set_state(self, state: WorkerState) -> bool:
        if state == self.state:
            return False
        if state not in _ALLOWED[self.state]:
            raise RuntimeError(f"worker cannot go from {self.state.value} to {state.value}")
        self.state = state
        return True

    def _ready(self) -> None:
        self.silence.heard(time.monotonic())
        self._set_state(WorkerState.READY)
        self._tasks.append(asyncio.get_running_loop().create_task(self._heartbeat()))

    async def _heartbeat(self) -> None:
        while self.state == WorkerState.READY:
            await asyncio.sleep(self._heartbeat_s)
            if self.silence.beat(time.monotonic()):
                self._report(f"no heartbeat for {self._timeout_s:.1f} s")
                return
            if self.silence.last_late_s > self._heartbeat_s:
                logger.warning(
                    "the pool's event loop was %.1f s late: not held against worker%d",
                    self.silence.last_late_s,
                    self.index,
                )
            self.conn.request("ping").add_done_callback(self._pong)

    def _pong(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            self.silence.heard(time.monotonic())

    def _report(self, reason: str) -> None:
        if self.state in (WorkerState.STARTING, WorkerState.READY):
            self._owner.worker_lost(self, reason)

    # RpcHandler

    async def handle_request(self, method: str, params: list[Any]) -> Any:
        raise RemoteError("bad_request", "the pool takes no requests")

    def handle_notification(self, method: str, params: list[Any]) -> None:
        self.silence.heard(time.monotonic())  # its loop runs: as good as a pong
        if self.state == WorkerState.READY:
            self._owner.worker_notification(self, method, params)

    def connection_lost(self) -> None:
        self._report("control connection closed")

    # calls

    def request(self, method: str, *params: Any) -> asyncio.Future[Any]:
        return self.conn.request(method, *params)

    def notify(self, method: str, *params: Any) -> bool:
        return self.ready and self.conn.notify(method, *params)

    # ending

    def lose(self, reason: str) -> bool:
        """Mark lost and end it; False if it had already ended."""
        if self.state in (WorkerState.LOST, WorkerState.STOPPED):
            return False
        self._set_state(WorkerState.LOST)
        self.reason = reason
        self._end()
        return True

    def _end(self) -> None:
        self.conn.close()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def stop(self, within_s: float = 5.0) -> None:
        if self.state not in (WorkerState.LOST, WorkerState.STOPPED):
            self._set_state(WorkerState.STOPPED)
        self._end()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class WorkerHandle(WorkerLink):
    """One incarnation of this machine's worker slot `index` (see module doc)."""

    def __init__(
        self,
        index: int,
        origin: int,
        owner: WorkerOwner,
        *,
        heartbeat_s: float = 0.5,
        timeout_s: float = 2.0,
    ) -> None:
        super().__init__(index, origin, owner, heartbeat_s=heartbeat_s, timeout_s=timeout_s)
        self.rpc: tuple[str, int] | None = None  # its TCP endpoint for other nodes
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self, init: dict[str, Any], within_s: float) -> None:
        """Spawn and initialise; raises (and cleans up) if it does not come up in time."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sfu.workers.worker",
                "--fd", str(child.fileno()), "--name", f"worker{self.index}",
                pass_fds=(child.fileno(),),
                env=_env(),
            )  # fmt: skip
        finally:
            child.close()
        self.pid = self._proc.pid
        loop = asyncio.get_running_loop()
        await loop.create_unix_connection(lambda: self.conn, sock=parent)
        self._tasks.append(loop.create_task(self._watch(self._proc)))
        try:
            async with asyncio.timeout(within_s):
                reply = await self.conn.request("init", init)
        except (TimeoutError, ConnectionError, RemoteError) as exc:
            self.lose(f"did not start: {exc or 'timeout'}")
            raise ConnectionError(f"worker{self.index} did not start: {exc}") from None
        self.relay = (str(reply["relay"][0]), int(reply["relay"][1]))
        if reply.get("rpc"):
            self.rpc = (str(reply["rpc"][0]), int(reply["rpc"][1]))
        self._ready()

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        self._report(f"exited with status {code}")

    def _end(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        super()._end()

    async def stop(self, within_s: float = 5.0) -> None:
        """Ask the worker to stop, wait for it, kill it if it does not."""
        if self.state in (WorkerState.LOST, WorkerState.STOPPED):
            await self.wait_exited(within_s)
            return
        self._set_state(WorkerState.STOPPED)
        with contextlib.suppress(ConnectionError, RemoteError, TimeoutError):
            async with asyncio.timeout(min(within_s, 2.0)):
                await self.conn.request("stop")
        if not await self.wait_exited(within_s):
            logger.warning("worker%d did not stop in %.0f s: killed", self.index, within_s)
        self._end()

    async def wait_exited(self, within_s: float) -> bool:
        """Wait for the process to end (killing it after `within_s`); False if killed."""
        proc = self._proc
        exited = True
        if proc is not None:
            try:
                async with asyncio.timeout(within_s):
                    await proc.wait()
            except TimeoutError:
                exited = False
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return exited

    def signal(self, sig: int) -> None:
        """Send a signal to the process (tests: SIGKILL, SIGSTOP)."""
        if self.pid is not None:
            os.kill(self.pid, sig)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [PACKAGE_ROOT, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env
