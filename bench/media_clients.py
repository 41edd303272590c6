"""Servers and clients for the media benchmark.

`Server` starts `python -m signalling serve` (signalling + in-process SFU)
pinned to one core; `Client` joins a room through the real WebSocket
protocol and negotiates a `SyntheticPeer`; `RelayServer` is the aiortc
MediaRelay worker of bench/media_relay.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.tokens import mint  # noqa: E402
from tests.servers import free_port  # noqa: E402
from tests.synthetic_peer import SyntheticPeer  # noqa: E402

KEY, SECRET = "bench", "b" * 64
METRICS_TOKEN = "bench-metrics-" + "m" * 32  # /metrics is served only with it
METRICS_HEADERS = {"Authorization": f"Bearer {METRICS_TOKEN}"}


# Set by bench/media_fanout.py --nice: this machine is shared, and another
# job on the same core would otherwise preempt the measured processes.
PRIORITY = {"nice": 0}


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the benchmark dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def raise_group_priority(pid: int, nice: int) -> bool:
    """Give the scheduler autogroup of `pid` the priority `nice` (root; False if not applied).

    With `kernel.sched_autogroup_enabled` (the default on desktops and this
    machine), CFS first shares a core between sessions (autogroups) and only
    then by nice value inside a session: a benchmark at nice -10 still gets
    just its session's share next to other sessions' jobs.  Setting the
    group's own nice restores what --nice means.
    """
    if nice == 0 or not Path("/proc/sys/kernel/sched_autogroup_enabled").exists():
        return False
    try:
        if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() != "1":
            return False
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError:
        return False
    return True


def pinned(core: int) -> list[str]:
    """The command prefix that pins a process to `core` (and raises its priority)."""
    prefix = ["taskset", "-c", str(core)]
    if PRIORITY["nice"]:
        prefix = ["nice", "-n", str(PRIORITY["nice"]), *prefix]
    return prefix


async def loop_lag(lags: list[float]) -> None:
    """How late this (the generator's) event loop wakes up: it inflates latencies."""
    while True:
        start = time.monotonic()
        await asyncio.sleep(0.005)
        lags.append(max(0.0, time.monotonic() - start - 0.005))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Server:
    """`visitroom serve` on one core (`core` None: not pinned), media on `ice_host`
    (127.0.0.1 by default).

    By default the SFU runs inside the server process (VISITROOM_WORKERS=0),
    so that the process pinned to `core` is the whole media plane; `env`
    overrides that and anything else.
    """

    def __init__(
        self,
        core: int | None,
        env: dict[str, str] | None = None,
        ice_host: str = "127.0.0.1",
        own_session: bool = False,
        stderr: IO[str] | None = None,
    ) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="media-bench-")
        self.port = free_port()
        environment = {
            **os.environ,
            "VISITROOM_API_KEY": KEY,
            "VISITROOM_API_SECRET": SECRET,
            "VISITROOM_METRICS_TOKEN": METRICS_TOKEN,
            "VISITROOM_KNOCK_RATE_LIMIT": "0",
            "VISITROOM_MAX_PARTICIPANTS": "1000",
            "VISITROOM_LOG_LEVEL": "WARNING",
            "VISITROOM_ICE_HOSTS": ice_host,
            "VISITROOM_WORKERS": "0",
            **(env or {}),
        }
        prefix = pinned(core) if core is not None else []
        command = [*prefix, sys.executable, "-m", "signalling", "serve"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--data-dir", self.dir.name]
        # `own_session`: a session (so a scheduler autogroup) of its own, like Janus's
        # in bench/compare_janus.py, so that the generator's CPU is not taken from
        # the server's group share; it still dies with this process.
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=stderr,  # None: this process's (the server logs there)
            start_new_session=own_session,
            preexec_fn=_die_with_parent if own_session else None,
        )
        self.ps = psutil.Process(self.proc.pid)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    async def wait_healthy(self, session: aiohttp.ClientSession) -> None:
        async with asyncio.timeout(30):
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)

    async def counters(self, session: aiohttp.ClientSession) -> dict[str, float]:
        return await media_counters(session, self.url)

    async def create_room(self, session: aiohttp.ClientSession, room: str, size: int) -> None:
        admin = mint(KEY, SECRET, room="*", identity="bench", name="Bench", role="host", admin=True)
        now = time.time()
        body = {
            "room_id": room,
            "starts_at": datetime.fromtimestamp(now, UTC).isoformat(),
            "ends_at": datetime.fromtimestamp(now + 3600, UTC).isoformat(),
            "max_participants": size,
        }
        headers = {"Authorization": f"Bearer {admin}"}
        async with session.post(f"{self.url}/v1/rooms", json=body, headers=headers) as response:
            if response.status != 201:
                raise RuntimeError(f"creating the room failed: {await response.text()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.dir.cleanup()


class Client:
    """One participant: a WebSocket session and a synthetic media peer."""

    def __init__(self, name: str, **peer: Any) -> None:
        self.name = name
        self.peer = SyntheticPeer(**peer)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.slots: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []  # error messages after joining
        self.downlink_kbps: int | None = None  # the SFU's last `downlink` estimate

    async def join(self, server: Server, session: aiohttp.ClientSession, room: str) -> None:
        ws_url = f"{server.url.replace('http', 'ws', 1)}/v1/rooms/{room}/ws"
        self.ws = await session.ws_connect(ws_url, max_msg_size=0)
        token = mint(KEY, SECRET, room=room, identity=self.name, name=self.name, role="host")
        await self.ws.send_json({"type": "hello", "token": token})
        await self._read_until("welcome")
        await self.ws.send_json({"type": "offer", "sdp": await self.peer.offer(), "id": 1})
        answer = await self._read_until("answer")
        self.reader = asyncio.create_task(self._drain())
        await self.peer.connect(answer["sdp"])

    async def join_relay(self, relay: RelayServer) -> None:
        role = "publisher" if self.peer.video_ssrc is not None else "subscriber"
        answer = await relay.offer(role, await self.peer.offer())
        await self.peer.connect(answer)

    async def _read_until(self, kind: str) -> dict[str, Any]:
        assert self.ws is not None
        while True:
            message = await self.ws.receive_json(timeout=30)
            if message["type"] == "error":
                raise RuntimeError(f"{self.name}: {message}")
            if message["type"] == kind:
                return dict(message)

    async def _drain(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(message.data)
                if data.get("type") == "slots":
                    self.slots = data["slots"]
                elif data.get("type") == "error":
                    self.errors.append(data)
                elif data.get("type") == "downlink":
                    self.downlink_kbps = int(data["estimate_kbps"])

    async def send_video_sizes(self, width: int, height: int) -> None:
        """Report every receive video slot as shown at `width` x `height` (`video_sizes`)."""
        assert self.ws is not None
        slots = {mid: {"width": width, "height": height} for mid in self.video_mids()}
        await self.ws.send_json({"type": "video_sizes", "slots": slots, "id": 2})

    def video_mids(self) -> list[str]:
        return [m for m, kind, d in self.peer.mids if kind == "video" and d != "sendonly"]

    def video_bytes(self) -> int:
        """SRTP bytes received on the video slots."""
        ssrcs = self.peer.slot_ssrcs()
        streams = self.peer.transport.streams
        return sum(streams[ssrcs[m]].octets for m in self.video_mids() if ssrcs.get(m) in streams)

    def video_streams(self) -> int:
        return sum(1 for s in self.peer.transport.streams.values() if s.packets > 20)

    def received(self) -> int:
        return sum(s.packets for s in self.peer.transport.streams.values())

    def lost(self) -> int:
        return sum(s.lost for s in self.peer.transport.streams.values())

    def latencies(self) -> list[float]:
        return [x for s in self.peer.transport.streams.values() for x in s.latencies]

    def reset_latencies(self) -> None:
        for stream in self.peer.transport.streams.values():
            stream.latencies.clear()

    def decrypt_failures(self) -> int:
        return int(self.peer.transport.counters.srtp_errors)

    async def close(self) -> None:
        """Leave, then close: a participant whose WebSocket just drops keeps its place
        and its media session for the resume window (30 s), so the next run of a
        bench would be measured with the last run's participants still there
        (Janus tears a session down at once)."""
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                # Read before the close frame that follows it (one WebSocket, in order).
                await self.ws.send_json({"type": "leave", "id": 3})
        self.peer.close()
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader


async def connect_all(
    server: Server, session: aiohttp.ClientSession, room: str, clients: list[Client]
) -> None:
    """Join everyone, ten at a time."""
    gate = asyncio.Semaphore(10)

    async def join(client: Client) -> None:
        async with gate:
            await client.join(server, session, room)

    await asyncio.gather(*(join(c) for c in clients))


class RelayServer:
    """bench/media_relay.py on one core."""

    def __init__(self, core: int) -> None:
        script = str(ROOT / "bench" / "media_relay.py")
        command = [*pinned(core), sys.executable, script]
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        self.ps = psutil.Process(self.proc.pid)
        self._lock = asyncio.Lock()

    async def _line(self) -> str:
        assert self.proc.stdout is not None
        return await asyncio.get_running_loop().run_in_executor(None, self.proc.stdout.readline)

    async def started(self) -> None:
        await self._line()

    async def offer(self, role: str, sdp: str) -> str:
        async with self._lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"role": role, "sdp": sdp}) + "\n")
            self.proc.stdin.flush()
            return str(json.loads(await self._line())["sdp"])

    def cpu_s(self) -> float:
        total = 0.0
        for proc in [self.ps, *self.ps.children(recursive=True)]:
            times = proc.cpu_times()
            total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def media_counters(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The media plane's counters from the server's /metrics: `visitroom_media_NAME` -> NAME."""
    prefix = "visitroom_media_"
    async with session.get(f"{url}/metrics", headers=METRICS_HEADERS) as response:
        response.raise_for_status()
        text = await response.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            name, _, value = line.partition(" ")
            out[name.removeprefix(prefix)] = float(value)
    return out
