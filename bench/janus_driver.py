"""Janus (Debian package `janus`, VideoRoom plugin) as the benchmark's reference SFU.

Pure parts, tested without Janus (tests/test_bench_janus_config.py):

* `janus_config()` writes a throwaway configuration: the WebSocket transport
  on 127.0.0.1 only, ICE only on one extra interface holding a 127.0.0.x
  address, a UDP port range, a random API secret, no admin API, no STUN, and
  every plugin, transport, logger and event handler disabled except
  VideoRoom and WebSockets;
* the Janus API / VideoRoom message builders and reply parsers.

Live parts, used by bench/compare_janus.py:

* `LoopbackAlias`: Janus never gathers candidates on an interface flagged
  loopback, so an `ifb` interface with a 127.0.0.x/32 address is added for
  the run (root needed) and removed afterwards (see
  /work/shared/notes/janus-on-loopback.md);
* `JanusProcess`: `janus -F CONFDIR` pinned to a core;
* `JanusSession`: one Janus session over one WebSocket (subprotocol
  `janus-protocol`), with keepalives, like one browser tab;
* `JanusPublisher` / `JanusSubscriber`: a VideoRoom publisher and
  subscriber driving a `SyntheticPeer` (real ICE + DTLS-SRTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.synthetic_peer import SyntheticPeer  # noqa: E402

JANUS_BINARY = "/usr/bin/janus"
JANUS_LIBDIR = Path("/usr/lib/x86_64-linux-gnu/janus")
VIDEOROOM = "janus.plugin.videoroom"
KEEP_PLUGINS = ("libjanus_videoroom.so",)
KEEP_TRANSPORTS = ("libjanus_websockets.so",)
WS_PROTOCOL = "janus-protocol"
KEEPALIVE_S = 25.0  # Janus drops a session after 60 s of silence
# The network lab's addresses (tests/netlab.py): a veth the lab created may carry ICE too.
LAB_NETWORK = ipaddress.ip_network("10.77.0.0/16")


class JanusError(RuntimeError):
    """Janus (or the VideoRoom plugin) answered a request with an error."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"Janus error {code}: {reason}")
        self.code = code
        self.reason = reason


# -- configuration (pure) ---------------------------------------------------


@dataclass(frozen=True)
class JanusConfig:
    """What the throwaway configuration needs."""

    folder: Path
    ws_port: int
    rtp_ports: tuple[int, int]
    interface: str  # the extra interface ICE is restricted to
    address: str  # its 127.0.0.x address
    api_secret: str
    event_loops: int = 0  # 0: one loop (thread) per handle, Janus's default
    debug_level: int = 3  # 3 = warnings; nothing per packet is logged below 5
    ws_ip: str = "127.0.0.1"
    libdir: Path = JANUS_LIBDIR

    def __post_init__(self) -> None:
        for name, value in (("address", self.address), ("ws_ip", self.ws_ip)):
            lab = name == "address" and ipaddress.ip_address(value) in LAB_NETWORK
            if not (ipaddress.ip_address(value).is_loopback or lab) or ":" in value:
                raise ValueError(f"{name} must be an IPv4 127.0.0.0/8 address, not {value!r}")
        low, high = self.rtp_ports
        if not 1024 <= low <= high <= 65535:
            raise ValueError(f"bad RTP port range {low}-{high}")
        if len(self.api_secret) < 16:
            raise ValueError("the API secret must be at least 16 characters")
        if not self.interface or len(self.interface) > 15 or "," in self.interface:
            raise ValueError(f"bad interface name {self.interface!r}")


def new_api_secret() -> str:
    return secrets.token_urlsafe(24)


def _shared_objects(folder: Path) -> list[str]:
    try:
        return sorted(p.name for p in folder.iterdir() if p.name.endswith(".so"))
    except FileNotFoundError:
        return []


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if '"' in text or "\\" in text or "\n" in text:
        raise ValueError(f"cannot write {text!r} into a jcfg string")
    return f'"{text}"'


def _jcfg(sections: dict[str, dict[str, object]]) -> str:
    """libconfig syntax, as Janus's *.jcfg files use."""
    out = ["# Written by bench/janus_driver.py for one benchmark run; deleted afterwards."]
    for name, items in sections.items():
        out.append(f"{name}: {{")
        out += [f"\t{key} = {_value(value)}" for key, value in items.items()]
        out.append("}")
    return "\n".join(out) + "\n"


def janus_config(
    config: JanusConfig,
    *,
    plugins: Iterable[str] | None = None,
    transports: Iterable[str] | None = None,
    loggers: Iterable[str] | None = None,
    event_handlers: Iterable[str] | None = None,
) -> dict[str, str]:
    """File name -> content of the configuration (the `*.so` lists default to Janus's folders)."""
    lib = config.libdir
    plugins = _shared_objects(lib / "plugins") if plugins is None else list(plugins)
    transports = _shared_objects(lib / "transports") if transports is None else list(transports)
    loggers = _shared_objects(lib / "loggers") if loggers is None else list(loggers)
    handlers = _shared_objects(lib / "events") if event_handlers is None else list(event_handlers)
    general: dict[str, object] = {
        "configs_folder": str(config.folder),
        "plugins_folder": str(lib / "plugins"),
        "transports_folder": str(lib / "transports"),
        "events_folder": str(lib / "events"),
        "loggers_folder": str(lib / "loggers"),
        "debug_level": config.debug_level,
        "debug_timestamps": True,
        "debug_colors": False,
        "api_secret": config.api_secret,
        "server_name": "visitroom-bench-janus",
        "session_timeout": 60,
        "hide_dependencies": False,
    }
    if config.event_loops:
        general["event_loops"] = config.event_loops
    disable = {
        "plugins": [p for p in plugins if p not in KEEP_PLUGINS],
        "transports": [t for t in transports if t not in KEEP_TRANSPORTS],
        "loggers": loggers,
        "events": handlers,
    }
    main: dict[str, dict[str, object]] = {
        "general": general,
        "certificates": {},
        "media": {
            "ipv6": False,
            "rtp_port_range": f"{config.rtp_ports[0]}-{config.rtp_ports[1]}",
        },
        "nat": {
            "nice_debug": False,
            "ice_enforce_list": config.interface,
            "ignore_mdns": True,
            "full_trickle": False,
            "ice_lite": False,
            "ice_tcp": False,
        },
        "plugins": {"disable": ",".join(disable["plugins"])} if disable["plugins"] else {},
        "transports": (
            {"disable": ",".join(disable["transports"])} if disable["transports"] else {}
        ),
        "loggers": {"disable": ",".join(disable["loggers"])} if disable["loggers"] else {},
        "events": {"broadcast": False}
        | ({"disable": ",".join(disable["events"])} if disable["events"] else {}),
    }
    websockets: dict[str, dict[str, object]] = {
        "general": {
            "json": "compact",
            "ws": True,
            "ws_ip": config.ws_ip,
            "ws_port": config.ws_port,
            "wss": False,
        },
        "admin": {"admin_ws": False, "admin_wss": False},
    }
    videoroom: dict[str, dict[str, object]] = {"general": {"events": False}}
    return {
        "janus.jcfg": _jcfg(main),
        "janus.transport.websockets.jcfg": _jcfg(websockets),
        "janus.plugin.videoroom.jcfg": _jcfg(videoroom),
    }


def write_janus_config(config: JanusConfig) -> Path:
    """Write the files into `config.folder` (mode 0600: the API secret is in them)."""
    config.folder.mkdir(parents=True, exist_ok=True)
    for name, text in janus_config(config).items():
        path = config.folder / name
        path.write_text(text)
        path.chmod(0o600)
    return config.folder / "janus.jcfg"


# -- the Janus API and VideoRoom messages (pure) ----------------------------


class Transactions:
    """Transaction ids, unique per connection."""

    def __init__(self, prefix: str = "t") -> None:
        self._prefix = prefix
        self._count = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._count)}"


def request(
    kind: str, transaction: str, secret: str, *, session: int | None = None, **fields: Any
) -> dict[str, Any]:
    """A Janus API request: `create`, `attach`, `message`, `keepalive`, `detach`, `destroy`."""
    body: dict[str, Any] = {"janus": kind, "transaction": transaction, "apisecret": secret}
    if session is not None:
        body["session_id"] = session
    body.update(fields)
    return body


def attach_request(transaction: str, secret: str, session: int) -> dict[str, Any]:
    return request("attach", transaction, secret, session=session, plugin=VIDEOROOM)


def message_request(
    transaction: str,
    secret: str,
    session: int,
    handle: int,
    body: dict[str, Any],
    jsep: dict[str, Any] | None = None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {"handle_id": handle, "body": body}
    if jsep is not None:
        fields["jsep"] = jsep
    return request("message", transaction, secret, session=session, **fields)


def create_room(room: int, publishers: int, *, bitrate: int = 0) -> dict[str, Any]:
    """A VideoRoom room for `publishers` senders of Opus + VP8.

    No periodic FIR (`fir_freq` 0: the publishers' media starts a key frame
    every 2 s anyway), no recording, no audio level events, and the
    transport-wide-cc extension off for publishers: the synthetic clients
    do not offer it to visitroom either.
    """
    return {
        "request": "create",
        "room": room,
        "permanent": False,
        "publishers": publishers,
        "bitrate": bitrate,
        "fir_freq": 0,
        "audiocodec": "opus",
        "videocodec": "vp8",
        "record": False,
        "audiolevel_event": False,
        "transport_wide_cc_ext": False,
        "notify_joining": False,
    }


def destroy_room(room: int) -> dict[str, Any]:
    return {"request": "destroy", "room": room, "permanent": False}


def publisher_join(room: int, display: str) -> dict[str, Any]:
    return {"request": "join", "ptype": "publisher", "room": room, "display": display}


def publisher_configure() -> dict[str, Any]:
    return {"request": "configure", "audio": True, "video": True}


@dataclass(frozen=True)
class StreamRef:
    """One stream of one publisher (`mid` None: all of its streams)."""

    feed: int
    mid: str | None = None


def subscriber_join(room: int, streams: Sequence[StreamRef]) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for s in streams:
        item: dict[str, Any] = {"feed": s.feed}
        if s.mid is not None:
            item["mid"] = s.mid
        items.append(item)
    return {"request": "join", "ptype": "subscriber", "room": room, "streams": items}


def subscriber_start() -> dict[str, Any]:
    return {"request": "start"}


def jsep(kind: str, sdp: str) -> dict[str, Any]:
    return {"type": kind, "sdp": sdp, "trickle": False}


def check_reply(message: dict[str, Any]) -> dict[str, Any]:
    """`message` if it is not an error (core or plugin), else raise JanusError."""
    if message.get("janus") == "error":
        error = message.get("error", {})
        raise JanusError(int(error.get("code", 0)), str(error.get("reason", "unknown")))
    data = plugin_data(message)
    if data is not None and ("error_code" in data or "error" in data):
        raise JanusError(int(data.get("error_code", 0)), str(data.get("error", "plugin error")))
    return message


def plugin_data(message: dict[str, Any]) -> dict[str, Any] | None:
    plugindata = message.get("plugindata")
    if not isinstance(plugindata, dict):
        return None
    data = plugindata.get("data")
    return data if isinstance(data, dict) else None


def created_id(message: dict[str, Any]) -> int:
    """The id in a `success` reply to `create` (a session) or `attach` (a handle)."""
    check_reply(message)
    if message.get("janus") != "success":
        raise JanusError(0, f"expected success, got {message.get('janus')!r}")
    return int(message["data"]["id"])


def videoroom_event(message: dict[str, Any], expected: str) -> dict[str, Any]:
    """The plugin data of a VideoRoom reply whose `videoroom` field is `expected`."""
    check_reply(message)
    data = plugin_data(message)
    if data is None or data.get("videoroom") != expected:
        got = None if data is None else data.get("videoroom")
        raise JanusError(0, f"expected videoroom {expected!r}, got {got!r}")
    return data


def answer_sdp(message: dict[str, Any], kind: str) -> str:
    """The SDP of the `jsep` of type `kind` carried by a reply."""
    description = message.get("jsep")
    if not isinstance(description, dict) or description.get("type") != kind:
        raise JanusError(0, f"expected a jsep {kind}")
    return str(description["sdp"])


def publisher_mids(data: dict[str, Any]) -> dict[str, str]:
    """kind -> mid of the streams a `configured`/`joined` publisher event lists."""
    streams = data.get("streams", [])
    return {str(s["type"]): str(s["mid"]) for s in streams if "mid" in s and "type" in s}


# -- the extra loopback-range interface --------------------------------------


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)


def local_ipv4_addresses() -> set[str]:
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], check=True, capture_output=True, text=True
    ).stdout
    found = set()
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            found.add(parts[parts.index("inet") + 1].split("/")[0])
    return found


def free_alias_address(taken: set[str]) -> str:
    """The first 127.0.0.x (x >= 2) no interface holds."""
    for x in range(2, 255):
        address = f"127.0.0.{x}"
        if address not in taken:
            return address
    raise RuntimeError("no free 127.0.0.x address")


ALIAS_PREFIX = "vrj"


def remove_stale_aliases() -> list[str]:
    """Delete `vrj<pid>` interfaces left by a run that was killed (its pid is gone)."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    removed = []
    for line in out.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        suffix = name[len(ALIAS_PREFIX) :]
        if (
            name.startswith(ALIAS_PREFIX)
            and suffix.isdigit()
            and not psutil.pid_exists(int(suffix))
        ):
            subprocess.run(["ip", "link", "del", name], check=False, capture_output=True)
            removed.append(name)
    return removed


class LoopbackAlias:
    """An `ifb` interface with one 127.0.0.x/32 address (removed by `remove()`)."""

    def __init__(self, name: str | None = None, address: str | None = None) -> None:
        self.name = name or f"{ALIAS_PREFIX}{os.getpid()}"
        self.address = address or free_alias_address(local_ipv4_addresses())
        self.created = False

    def create(self) -> None:
        if os.geteuid() != 0:
            raise PermissionError("adding the loopback-range interface for Janus needs root")
        _run("ip", "link", "add", self.name, "type", "ifb")
        self.created = True
        _run("ip", "link", "set", self.name, "up")
        _run("ip", "addr", "add", f"{self.address}/32", "dev", self.name)
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv6/conf/{self.name}/disable_ipv6").write_text("1\n")

    def remove(self) -> None:
        if self.created:
            subprocess.run(["ip", "link", "del", self.name], check=False, capture_output=True)
            self.created = False

    def __enter__(self) -> LoopbackAlias:
        self.create()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


# -- the Janus process -------------------------------------------------------


def janus_version() -> str:
    try:
        out = subprocess.run(
            [JANUS_BINARY, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in out.splitlines():
        if line.startswith("Janus version:"):  # "Janus version: 1102 (1.1.2)"
            value = line.split(":", 1)[1].strip()
            return value[value.find("(") + 1 : value.find(")")] if "(" in value else value
    return "unknown"


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the benchmark dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class JanusProcess:
    """`janus -F CONFDIR` with the command prefix `pin` (taskset, nice)."""

    def __init__(self, config: JanusConfig, pin: list[str]) -> None:
        if not Path(JANUS_BINARY).exists():
            raise FileNotFoundError(
                f"{JANUS_BINARY} not found: install it with `apt-get install -y janus`"
            )
        self.config = config
        self.log_path = config.folder / "janus.log"
        write_janus_config(config)
        command = [*pin, JANUS_BINARY, "-F", str(config.folder), "-C"]
        command += [str(config.folder / "janus.jcfg"), "-o", "-N", "-L", str(self.log_path)]
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us; we stop Janus cleanly
            preexec_fn=_die_with_parent,
        )
        self.ps = psutil.Process(self.proc.pid)

    @property
    def url(self) -> str:
        return f"ws://{self.config.ws_ip}:{self.config.ws_port}"

    def cpu_s(self) -> float:
        """CPU time of every thread of the process (psutil sums threads)."""
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def threads(self) -> int:
        return int(self.ps.num_threads())

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def wait_ready(self, timeout: float = 20.0) -> None:
        """Until the WebSocket port accepts connections."""
        async with asyncio.timeout(timeout):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"janus exited ({self.proc.returncode}):\n{self.log_tail()}")
                try:
                    _, writer = await asyncio.open_connection(
                        self.config.ws_ip, self.config.ws_port
                    )
                except OSError:
                    await asyncio.sleep(0.1)
                    continue
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # Janus's clean shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def free_udp_range(size: int, start: int = 30000, end: int = 60000) -> tuple[int, int]:
    """A port range nothing is bound to right now (checked on the first and last port)."""
    for low in range(start, end - size, size):
        if all(_udp_free(p) for p in (low, low + size - 1, low + size // 2)):
            return low, low + size - 1
    raise RuntimeError("no free UDP port range")


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- a Janus session over a WebSocket ---------------------------------------


@dataclass
class _Pending:
    future: asyncio.Future[dict[str, Any]]
    ack_is_reply: bool


@dataclass
class _Handle:
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)


class JanusSession:
    """One WebSocket, one Janus session, any number of VideoRoom handles."""

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.secret = secret
        self.ids = Transactions()
        self.session_id = 0
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._pending: dict[str, _Pending] = {}
        self._handles: dict[int, _Handle] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self, http: aiohttp.ClientSession) -> None:
        self.ws = await http.ws_connect(self.url, protocols=(WS_PROTOCOL,), max_msg_size=0)
        self._tasks.append(asyncio.create_task(self._read()))
        reply = await self.send(request("create", self.ids.next(), self.secret))
        self.session_id = created_id(reply)
        self._tasks.append(asyncio.create_task(self._keepalive()))

    async def attach(self) -> int:
        reply = await self.send(attach_request(self.ids.next(), self.secret, self.session_id))
        handle = created_id(reply)
        self._handles[handle] = _Handle()
        return handle

    async def message(
        self, handle: int, body: dict[str, Any], description: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A plugin request; its reply (`success`, or the `event` after an `ack`)."""
        tx = self.ids.next()
        reply = await self.send(
            message_request(tx, self.secret, self.session_id, handle, body, description)
        )
        return check_reply(reply)

    async def next_event(self, handle: int, kind: str, timeout: float = 20.0) -> dict[str, Any]:
        """The next asynchronous event `kind` (e.g. `webrtcup`) on `handle`."""
        queue = self._handles[handle].events
        async with asyncio.timeout(timeout):
            while True:
                event = await queue.get()
                if event.get("janus") == kind:
                    return event
                if event.get("janus") == "hangup":
                    raise JanusError(0, f"handle {handle} hung up: {event.get('reason')}")

    async def send(self, body: dict[str, Any], timeout: float = 20.0) -> dict[str, Any]:
        assert self.ws is not None
        tx = str(body["transaction"])
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[tx] = _Pending(future, ack_is_reply=body["janus"] == "keepalive")
        try:
            await self.ws.send_str(json.dumps(body))
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._pending.pop(tx, None)

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            self._dispatch(data)
        error = ConnectionError("the Janus WebSocket closed")
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(error)

    def _dispatch(self, data: dict[str, Any]) -> None:
        kind = data.get("janus")
        pending = self._pending.get(str(data.get("transaction", "")))
        if pending is not None and not pending.future.done():
            if kind != "ack" or pending.ack_is_reply:
                pending.future.set_result(data)
            return
        handle = self._handles.get(int(data.get("sender", 0) or 0))
        if handle is not None:
            handle.events.put_nowait(data)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            with contextlib.suppress(Exception):
                await self.send(
                    request("keepalive", self.ids.next(), self.secret, session=self.session_id)
                )

    async def close(self) -> None:
        for task in self._tasks[1:]:
            task.cancel()
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.send(
                    request("destroy", self.ids.next(), self.secret, session=self.session_id),
                    timeout=5,
                )
            await self.ws.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()


# -- VideoRoom participants ---------------------------------------------------


class JanusPublisher:
    """A VideoRoom publisher: its synthetic peer offers, Janus answers."""

    def __init__(self, session: JanusSession, peer: SyntheticPeer, display: str) -> None:
        self.session = session
        self.peer = peer
        self.display = display
        self.handle = 0
        self.feed = 0
        self.mids: dict[str, str] = {}

    async def publish(self, room: int) -> None:
        self.handle = await self.session.attach()
        joined = await self.session.message(self.handle, publisher_join(room, self.display))
        self.feed = int(videoroom_event(joined, "joined")["id"])
        offer = await self.peer.offer()
        reply = await self.session.message(self.handle, publisher_configure(), jsep("offer", offer))
        data = videoroom_event(reply, "event")
        if data.get("configured") != "ok":
            raise JanusError(0, f"publisher not configured: {data}")
        self.mids = publisher_mids(data) or {"audio": "0", "video": "1"}
        await self.peer.connect(answer_sdp(reply, "answer"))
        await self.session.next_event(self.handle, "webrtcup")


class JanusSubscriber:
    """A VideoRoom subscriber of some streams: Janus offers, the synthetic peer answers."""

    def __init__(self, session: JanusSession, peer: SyntheticPeer) -> None:
        self.session = session
        self.peer = peer
        self.handle = 0

    async def subscribe(self, room: int, streams: Sequence[StreamRef]) -> None:
        self.handle = await self.session.attach()
        reply = await self.session.message(self.handle, subscriber_join(room, streams))
        videoroom_event(reply, "attached")
        answer = await self.peer.answer_offer(answer_sdp(reply, "offer"))
        started = await self.session.message(
            self.handle, subscriber_start(), jsep("answer", answer)
        )
        data = videoroom_event(started, "event")
        if data.get("started") != "ok":
            raise JanusError(0, f"subscription not started: {data}")
        await self.peer.wait_connected()
        await self.session.next_event(self.handle, "webrtcup")
