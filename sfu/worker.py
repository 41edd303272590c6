"""An SFU worker process: `python -m sfu.worker --fd N`, driven by the pool over RPC.

The pool (`sfu.pool`) starts one worker per core with one end of a
socketpair as file descriptor N.  The worker runs its own uvloop with a
`ShardMedia` and serves the RPC protocol of `sfu.rpc` on that socket:

* requests: ``init`` (settings, ids, relay address; answers the relay
  port), ``ping`` (the heartbeat), ``stop``, and the `MediaControl` calls
  ``open``, ``open_precall``, ``offer``, ``candidate``, ``pin``, ``move``,
  ``close``, ``close_room``;
* notifications from the pool: ``peers``, ``relay_out``, ``remote_add``,
  ``remote_remove``, ``group_role``, ``impose``;
* notifications to the pool: ``event`` (a `MediaEvents` call), ``streams``,
  ``group_order`` and ``load`` (about once a second: packets/s, CPU, memory
  and the counters of `stats()`).

Parameters are checked against `sfu.workerapi` before anything is called;
a bad message is refused (request) or dropped (notification) and counted.
When the socket closes (the pool is gone) the worker stops its media and
exits, so workers never outlive their server.
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
from typing import Any

import psutil

from .control import MediaError, PrecallStats, Slot
from .relay import RelayEndpoint
from .rpc import RemoteError, RpcConnection
from .settings import MediaSettings, SettingsError
from .shard import ShardMedia
from .workerapi import NOTIFICATIONS, REQUESTS, params_ok

logger = logging.getLogger(__name__)


class Link:
    """`MediaEvents` and `PoolLink` as notifications on the RPC connection."""

    def __init__(self, conn: RpcConnection) -> None:
        self.conn = conn

    def slots_changed(self, participant_id: str, slots: list[Slot]) -> None:
        self.conn.notify("event", "slots_changed", [participant_id, slots])

    def active_speaker(self, room_id: str, group: str, participant_id: str) -> None:
        self.conn.notify("event", "active_speaker", [room_id, group, participant_id])

    def media_closed(self, participant_id: str, reason: str) -> None:
        self.conn.notify("event", "media_closed", [participant_id, reason])

    def precall_stats(self, participant_id: str, stats: PrecallStats) -> None:
        self.conn.notify("event", "precall_stats", [participant_id, dict(stats)])

    def streams(self, participant_id: str, streams: list[dict[str, Any]]) -> None:
        self.conn.notify("streams", participant_id, streams)

    def group_order(self, room_id: str, group: str, video: list[str], audio: list[str]) -> None:
        self.conn.notify("group_order", room_id, group, video, audio)


class Worker:
    """The RPC handler of a worker process (see module doc)."""

    def __init__(self) -> None:
        self.conn = RpcConnection(self, "worker")
        self.media: ShardMedia | None = None
        self.done = asyncio.Event()
        self.bad_messages = 0
        self._reporter: asyncio.Task[None] | None = None

    async def handle_request(self, method: str, params: list[Any]) -> Any:
        if method == "init":
            if len(params) != 1 or not isinstance(params[0], dict):
                raise RemoteError("bad_request", "init takes one map")
            return await self._init(params[0])
        spec = REQUESTS.get(method)
        if spec is None or not params_ok(params, spec):
            self.bad_messages += 1
            raise RemoteError("bad_request", f"unknown method or bad parameters: {method}")
        if method == "ping":
            return time.monotonic()
        if method == "stop":
            self.done.set()
            return None
        if self.media is None:
            raise MediaError("unavailable", "the worker is not initialised")
        result = await getattr(self.media, method)(*params)
        return result

    def handle_notification(self, method: str, params: list[Any]) -> None:
        spec = NOTIFICATIONS.get(method)
        media = self.media
        if spec is None or not params_ok(params, spec) or media is None:
            self.bad_messages += 1
            logger.warning("dropped notification %r", method)
            return
        if method == "peers":
            media.set_peers(_peers(params[0]))
        elif method == "relay_out":
            media.relay_out(params[0], [o for o in params[1] if isinstance(o, int)])
        else:
            getattr(media, method)(*params)

    def connection_lost(self) -> None:
        self.done.set()

    async def _init(self, config: dict[str, Any]) -> dict[str, Any]:
        if self.media is not None:
            raise RemoteError("bad_request", "already initialised")
        try:
            settings = MediaSettings.from_dict(config["settings"])
            origin, host = int(config["origin"]), str(config["relay_host"])
            interval = float(config.get("report_interval", 1.0))
        except (KeyError, TypeError, ValueError, SettingsError) as exc:
            raise RemoteError("bad_request", f"bad init: {exc}") from None
        endpoint = RelayEndpoint(origin)
        address = await endpoint.bind(host, int(config.get("relay_port", 0)))
        link = Link(self.conn)
        self.media = ShardMedia(settings, link, endpoint, link)
        await self.media.start()
        self._reporter = asyncio.create_task(self._report(interval))
        return {"relay": list(address), "pid": os.getpid()}

    async def _report(self, interval: float) -> None:
        meter = LoadMeter()
        while True:
            await asyncio.sleep(interval)
            if self.media is not None:
                stats = self.media.stats()
                stats["rpc_bad_frames"] = self.conn.bad_frames
                stats["rpc_bad_messages"] = self.bad_messages
                self.conn.notify("load", meter.measure(stats))

    async def close(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reporter
        if self.media is not None:
            await self.media.stop()
        self.conn.close()


def _peers(items: list[Any]) -> dict[int, tuple[str, int]]:
    peers = {}
    for item in items:
        if (
            isinstance(item, list)
            and len(item) == 3
            and isinstance(item[0], int)
            and isinstance(item[1], str)
            and isinstance(item[2], int)
        ):
            peers[item[0]] = (item[1], item[2])
    return peers


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
    await loop.create_unix_connection(lambda: worker.conn, sock=sock)
    for sig in (signal.SIGTERM,):
        loop.add_signal_handler(sig, worker.done.set)
    await worker.done.wait()
    await worker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="an SFU worker (started by the pool)")
    parser.add_argument("--fd", type=int, required=True, help="the RPC socket")
    parser.add_argument("--name", default="worker")
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops its workers itself
    logging.basicConfig(
        level=os.environ.get("VISITROOM_LOG_LEVEL", "INFO").upper(),
        format=f"%(asctime)s %(levelname)s {args.name} %(name)s: %(message)s",
    )
    import uvloop

    uvloop.run(serve(args.fd))


if __name__ == "__main__":
    main()
