"""An SFU worker process: `python -m sfu.workers.worker --fd N`, driven by the pool over RPC.

The pool (`sfu.workers.pool`) starts one worker per core with one end of a
socketpair as file descriptor N.  The worker runs its own uvloop with a
`ShardMedia` and serves the RPC protocol of `sfu.workers.rpc` on that socket:

* requests: ``init`` (settings, ids, relay address; answers the relay
  port), ``ping`` (the heartbeat), ``stop``, and the `MediaControl` calls
  ``open``, ``open_precall``, ``offer``, ``candidate``, ``pin``,
  ``video_sizes``, ``move``, ``close``, ``close_room``;
* notifications from the pool: ``peers`` (with which are on other
  machines: their relay is sealed with SRTP), ``relay_out``, ``remote_add``,
  ``remote_remove``, ``group_role``, ``impose``;
* notifications to the pool: ``event`` (a `MediaEvents` call), ``streams``,
  ``group_order`` and ``load`` (about once a second: packets/s, CPU, memory
  and the counters of `stats()`).

Parameters are checked against `sfu.workers.api` before anything is called;
a bad message is refused (request) or dropped (notification) and counted.
When the socket closes (the pool is gone) the worker stops its media and
exits, so workers never outlive their server.

In a cluster the worker also listens on TCP for the pools of other nodes
(`sfu.workers.session`: one `Session` each, authenticated by a ``hello``, see
`sfu.workers.rpcauth`); participants belong to the session that opened them, and
when a remote session goes away what it opened is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Coroutine
from typing import Any

import psutil

from sfu.control import MediaError
from sfu.relay.endpoint import RelayEndpoint
from sfu.settings import MediaSettings, SettingsError
from sfu.shard import ShardMedia
from sfu.workers.api import NOTIFICATIONS, REQUESTS, params_ok
from sfu.workers.rpc import RemoteError, RpcConnection
from sfu.workers.rpcauth import HelloChecker, answer
from sfu.workers.session import Router, Session

logger = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 5.0


class Worker:
    """The RPC side of a worker process (see module doc)."""

    def __init__(self) -> None:
        self.local = Session(self, "pool", trusted=True)
        self.sessions: list[Session] = [self.local]
        self.router = Router()
        self.media: ShardMedia | None = None
        self.done = asyncio.Event()
        self.bad_messages = 0
        self._origin = 0
        self._secret: str | None = None
        self._checker: HelloChecker | None = None
        self._server: asyncio.Server | None = None
        self._added_by: dict[tuple[int, int], Session] = {}
        self._relay_by: dict[int, Session] = {}
        self._reporter: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # requests and notifications of every session

    async def request(self, session: Session, method: str, params: list[Any]) -> Any:
        if method in ("init", "hello"):
            if len(params) != (1 if method == "init" else 4):
                raise RemoteError("bad_request", f"bad {method}")
            return (
                await self._init(session, params[0])
                if method == "init"
                else self._hello(session, params)
            )
        spec = REQUESTS.get(method)
        if spec is None or not params_ok(params, spec):
            self.bad_messages += 1
            raise RemoteError("bad_request", f"unknown method or bad parameters: {method}")
        if method == "ping":
            return time.monotonic()
        if method == "stop":
            if not session.local:
                raise RemoteError("forbidden", "only the worker's own node may stop it")
            self.done.set()
            return None
        if self.media is None:
            raise MediaError("unavailable", "the worker is not initialised")
        self._own(session, method, params)
        return await getattr(self.media, method)(*params)

    def _own(self, session: Session, method: str, params: list[Any]) -> None:
        assert self.media is not None
        owners = self.router.owners
        if method in ("open", "open_precall"):
            owners[params[-1]] = session  # the participant id is the last parameter
        elif method == "close":
            owners.pop(params[0], None)
        elif method == "close_room":
            for pid, participant in self.media.participants.items():
                if participant.room_id == params[0]:
                    owners.pop(pid, None)

    def notification(self, session: Session, method: str, params: list[Any]) -> None:
        spec = NOTIFICATIONS.get(method)
        media = self.media
        if spec is None or not params_ok(params, spec) or media is None:
            self.bad_messages += 1
            logger.warning("dropped notification %r", method)
            return
        if method == "peers":
            session.peers, session.secure = _peers(params[0])
            self._apply_peers()
        elif method == "relay_out":
            self._relay_by[params[0]] = session
            media.relay_out(params[0], [o for o in params[1] if isinstance(o, int)])
        elif method == "remote_add":
            self._added_by[(params[0], params[1])] = session
            media.remote_add(*params)
        elif method == "remote_remove":
            self._added_by.pop((params[0], params[1]), None)
            media.remote_remove(*params)
        else:
            if method == "group_role":
                self.router.group_owners[(params[0], params[1])] = session
            getattr(media, method)(*params)

    def _apply_peers(self) -> None:
        if self.media is not None:
            peers = {o: a for s in self.sessions for o, a in s.peers.items()}
            secure = {o for s in self.sessions for o in s.secure}
            self.media.set_peers(peers, secure)

    def session_lost(self, session: Session) -> None:
        if session.local:
            self.done.set()
            return
        if session in self.sessions:
            self.sessions.remove(session)
        media = self.media
        if media is None or not session.trusted:
            return
        logger.info("the pool of node %s went away: closing what it had opened", session.node)
        for pid in self.router.forget(session):
            self._track(media.close(pid))
        for key in [k for k, s in self._added_by.items() if s is session]:
            del self._added_by[key]
            media.remote_remove(*key)
        for stream in [k for k, s in self._relay_by.items() if s is session]:
            del self._relay_by[stream]
            media.relay_out(stream, [])
        self._apply_peers()

    def _track(self, call: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(call)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # start-up, other nodes, reports

    async def _init(self, session: Session, config: Any) -> dict[str, Any]:
        if self.media is not None or not session.local or not isinstance(config, dict):
            raise RemoteError("bad_request", "init comes once, from the worker's own pool")
        try:
            settings = MediaSettings.from_dict(config["settings"])
            origin, host = int(config["origin"]), str(config["relay_host"])
            interval = float(config.get("report_interval", 1.0))
            secret = config.get("secret")
            listen = config.get("rpc_listen")
        except (KeyError, TypeError, ValueError, SettingsError) as exc:
            raise RemoteError("bad_request", f"bad init: {exc}") from None
        self._origin, self._secret = origin, secret if isinstance(secret, str) else None
        endpoint = RelayEndpoint(origin, secret=self._secret)
        address = await endpoint.bind(host, int(config.get("relay_port", 0)))
        self.media = ShardMedia(settings, self.router, endpoint, self.router)
        await self.media.start()
        self._reporter = asyncio.create_task(self._report(interval))
        reply: dict[str, Any] = {"relay": list(address), "pid": os.getpid()}
        if listen and self._secret:
            reply["rpc"] = await self._listen(str(listen[0]), int(listen[1]))
        return reply

    async def _listen(self, host: str, port: int) -> list[Any]:
        """Take the RPC of other nodes' pools over TCP (they must say hello first)."""
        assert self._secret is not None
        self._checker = HelloChecker(self._secret)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, host, port)
        bound = self._server.sockets[0].getsockname()
        return [str(bound[0]), int(bound[1])]

    def _accept(self) -> RpcConnection:
        session = Session(self, "tcp", trusted=False)
        self.sessions.append(session)
        asyncio.get_running_loop().call_later(HELLO_TIMEOUT_S, session.expire)
        return session.conn

    def _hello(self, session: Session, params: list[Any]) -> dict[str, Any]:
        node = self._checker.check(params) if self._checker is not None else None
        if node is None or self._secret is None or session.trusted:
            raise RemoteError("unauthorized", "bad hello")
        session.trusted, session.node = True, node
        logger.info("the pool of node %s connected", node)
        return {"origin": self._origin, "mac": answer(self._secret, self._origin, params[2])}

    async def _report(self, interval: float) -> None:
        meter = LoadMeter()
        while True:
            await asyncio.sleep(interval)
            if self.media is not None:
                stats = self.media.stats()
                stats["rpc_bad_frames"] = sum(s.conn.bad_frames for s in self.sessions)
                stats["rpc_bad_messages"] = self.bad_messages
                load = meter.measure(stats)
                for session in self.sessions:
                    if session.trusted:
                        session.conn.notify("load", load)

    async def close(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reporter
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.conn.close()
        if self.media is not None:
            await self.media.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _peers(items: list[Any]) -> tuple[dict[int, tuple[str, int]], set[int]]:
    """[[origin, host, port, secure], ...] -> (addresses, the secure origins)."""
    peers, secure = {}, set()
    for item in items:
        if (
            isinstance(item, list)
            and len(item) == 4
            and isinstance(item[0], int)
            and isinstance(item[1], str)
            and isinstance(item[2], int)
            and isinstance(item[3], bool)
        ):
            peers[item[0]] = (item[1], item[2])
            if item[3]:
                secure.add(item[0])
    return peers, secure


class LoadMeter:
    """Packets per second and CPU share between two reports."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._time = time.monotonic()
        self._cpu = time.process_time()
        self._counts: dict[str, float] = {}

    def measure(self, stats: dict[str, float]) -> dict[str, Any]:
        now, cpu = time.monotonic(), time.process_time()
        elapsed = max(now - self._time, 1e-6)
        rates = {}
        for name, key in (
            ("forwarded_pps", "rtp_out"),
            ("received_pps", "rtp_in"),
            ("relay_out_pps", "relay_rtp_out"),
            ("relay_in_pps", "relay_rtp_in"),
        ):
            rates[name] = max(0.0, stats.get(key, 0) - self._counts.get(key, 0)) / elapsed
            self._counts[key] = stats.get(key, 0)
        load = {
            "cpu": (cpu - self._cpu) / elapsed,
            "rss": self._process.memory_info().rss,
            **rates,
            "stats": stats,
        }
        self._time, self._cpu = now, cpu
        return load


async def serve(fd: int) -> None:
    loop = asyncio.get_running_loop()
    worker = Worker()
    sock = socket.socket(fileno=fd)
    await loop.create_unix_connection(lambda: worker.local.conn, sock=sock)
    await worker.done.wait()
    await worker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="an SFU worker (started by the pool)")
    parser.add_argument("--fd", type=int, required=True, help="the RPC socket")
    parser.add_argument("--name", default="worker")
    args = parser.parse_args()
    # The server stops its workers itself (a `stop` request, or its end closing
    # the socket): a Ctrl-C or a service manager's SIGTERM to the whole process
    # group must not take them away while it drains.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=os.environ.get("VISITROOM_LOG_LEVEL", "INFO").upper(),
        format=f"%(asctime)s %(levelname)s {args.name} %(name)s: %(message)s",
    )
    import uvloop

    uvloop.run(serve(args.fd))


if __name__ == "__main__":
    main()
