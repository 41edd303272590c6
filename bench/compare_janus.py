"""visitroom against Janus (VideoRoom), same load, same run, same core.

Both servers run for the whole benchmark, pinned to the same core (core 0)
with taskset; this generator runs on the other core.  For every scenario and
every run, the same synthetic publishers and subscribers (tests/synthetic_peer.py:
real ICE + DTLS-SRTP, pre-built VP8 and Opus RTP from bench/media_workload.py
at realistic rates with RFC 6464 audio levels) join one server and then the
other (the order alternates between runs), media flows for a warm-up, then
the measurement window:

* forwarded packets/s: what the subscribers received (every SRTP packet,
  counted by SSRC without decrypting), and per busy core: divided by the
  server's CPU time (all its threads) over the same window;
* loss: sequence gaps on the received streams;
* added latency: the subscriber's kernel receive timestamp minus the send
  time the publisher wrote into the payload's last 12 bytes (every 5th packet
  of a stream is decrypted to read it).  Janus rewrites abs-send-time on the
  way out, so the extension cannot serve; both servers are measured this way;
* server CPU (% of one core) and RSS.

The ratio the targets are judged by is `ratio_paired_median`: each run's
visitroom/Janus packets per busy core (the two measured back to back under
the same machine load), median over the runs.  `ratio` (the median of one
server's runs over the median of the other's) is kept beside it; on a
shared machine it pairs runs taken minutes apart.

visitroom is a real `python -m signalling serve` (bench/media_clients.py);
Janus is `janus -F <throwaway config>` (bench/janus_driver.py), driven over
its WebSocket API.  Janus never gathers ICE candidates on a loopback-flagged
interface, so the run adds an `ifb` interface holding one 127.0.0.x/32
address (root needed), and both servers and all clients use that address;
the interface is removed at the end, also on errors and Ctrl-C.

`--saturation` compares the two where it matters, at saturation, instead
of dividing a light load by the CPU it took.  On the same pinned core, each
server gets a room whose load is raised step by step: subscribers first
(one publisher, `--sat-subscribers` 50, 100, 200, 300, 400), then publishers
(2 and 3 at the most subscribers; every subscriber takes every publisher's
audio and video).  After each step (warm-up until every subscriber receives
every stream, then `--sat-duration` s measured) a point fails when loss
passes 1% or the added p99 passes 50 ms (`--sat-max-loss`,
`--sat-max-p99-ms`); a failure on p99 alone is measured once more before
it counts (`--sat-confirm`: another job's burst on a shared machine), then
the subscriber count is bisected between the last load that passed and the
one that failed (`--sat-refine` steps), each bisection point in a room
built afresh (an overloaded server may have dropped sessions); then the
publishers rise at the most subscribers that passed, a failure there
bisected the same way (bench/saturation.py `next_load`).  The result is the highest forwarded
packets/s a server sustained (`saturation_pps_visitroom`,
`saturation_pps_janus`, `saturation_ratio`: medians of `--sat-runs`
searches, the order alternating; `saturation_ratio_paired_median`: the
median of each search pair's ratio).  The pure search is bench/saturation.py,
the rig bench/saturation_rig.py.  `--sat-reduced` is one shorter search per
server (ladder 100-400 at one publisher, then 2 publishers; 2 bisection
steps; 3 s windows), about 5 minutes on a quiet machine.

The generator must not be the limit: at 200,000 packets/s a Python peer
that reads every packet would saturate first.  So only `--sat-sample` (6)
subscribers read every packet (sequence gaps, latency from the payload
stamp); every other subscriber is a real peer (ICE, DTLS, consent, as
before) whose socket is taken off the event loop once SRTP is keyed and
drained in bulk every 20 ms (bench/bulk_receive.py: recvmmsg through cffi,
up to 256 datagrams per call, classified with numpy: RTP counted per SSRC
with its sequence gaps, STUN/DTLS/RTCP handed to the peer's protocol so
consent checks are still answered).  The packets are really delivered into
the subscribers' sockets, so each server pays the same kernel cost per
packet as with reading clients.  Evidence the generator had headroom, per
point: its CPU, its event loop lag, and the kernel's drop counter of every
subscriber socket (/proc/net/udp `drops`, must be 0); also the machine's
CPU pressure (PSI) and load, since this machine is shared.  Loss is the
sequence-gap loss over every subscriber (RFC 3550), plus what a stalled
subscriber (under half the packets sent) missed; the delivered share
(received / (sent x subscribers)) is reported too, but a packet still in
flight at the window's end is not a lost one (saturation_rig.window_loss).
Each visitroom window also reports what the server counted itself
(packets in and out, drops by reason, from /metrics).

    apt-get install -y janus
    python bench/compare_janus.py --quick --json results/janus/quick.json
    python bench/compare_janus.py --json results/janus/compare.json
    python bench/compare_janus.py --saturation --json results/janus/saturation.json
    python bench/compare_janus.py --sat-reduced --json results/janus/saturation-reduced.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from janus_driver import (  # noqa: E402
    JanusConfig,
    JanusProcess,
    JanusPublisher,
    JanusSession,
    JanusSubscriber,
    LoopbackAlias,
    StreamRef,
    create_room,
    destroy_room,
    free_udp_range,
    janus_version,
    new_api_secret,
    remove_stale_aliases,
    request,
)
from media_clients import (  # noqa: E402
    PRIORITY,
    Client,
    Server,
    connect_all,
    loop_lag,
    percentile,
    pinned,
    raise_group_priority,
)
from media_workload import EncodedMedia, Publisher, encode_media, play  # noqa: E402
from saturation_rig import print_saturation, run_searches  # noqa: E402

from tests.servers import free_port  # noqa: E402
from tests.synthetic_peer import SyntheticPeer  # noqa: E402

SERVER_CORE, GENERATOR_CORE = 0, 1
SERVERS = ("visitroom", "janus")
LATENCY_EVERY = 5
JOIN_CONCURRENCY = 10


# -- scenarios ----------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    """What one participant publishes and how many streams it receives."""

    name: str
    audio: bool = False
    video: bool = False
    audio_slots: int = 0
    video_slots: int = 0

    @property
    def publishes(self) -> bool:
        return self.audio or self.video

    @property
    def receives(self) -> bool:
        return self.audio_slots + self.video_slots > 0


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    roles: tuple[Role, ...]

    @property
    def publishers(self) -> list[Role]:
        return [r for r in self.roles if r.publishes]

    @property
    def receivers(self) -> list[Role]:
        return [r for r in self.roles if r.receives]


def fanout(subscribers: int) -> Scenario:
    roles = [Role("pub", audio=True, video=True)]
    roles += [Role(f"sub-{i}", audio_slots=1, video_slots=1) for i in range(subscribers)]
    return Scenario(f"fanout-1x{subscribers}", f"fan-out 1x{subscribers}", tuple(roles))


def meeting(people: int, video_slots: int = 5, audio_slots: int = 3) -> Scenario:
    """Everyone publishes audio + video, receives `video_slots` videos and `audio_slots` voices."""
    roles = [
        Role(f"p{i}", audio=True, video=True, audio_slots=audio_slots, video_slots=video_slots)
        for i in range(people)
    ]
    return Scenario(f"meeting-{people}x{people}", f"meeting {people}x{people}", tuple(roles))


def audio_room(people: int, audio_slots: int = 3) -> Scenario:
    """Everyone publishes audio and receives `audio_slots` voices."""
    roles = [Role(f"p{i}", audio=True, audio_slots=audio_slots) for i in range(people)]
    return Scenario(f"audio-{people}", f"audio-only {people}", tuple(roles))


SCENARIOS = {s.name: s for s in (fanout(10), fanout(50), fanout(100), meeting(10), audio_room(50))}


JANUS_PLANS = ("top", "ring")


def janus_subscriptions(
    scenario: Scenario,
    receiver: int,
    feeds: dict[int, dict[str, tuple[int, str]]],
    plan: str = "top",
) -> list[StreamRef]:
    """The Janus streams role `receiver` subscribes to: as many as visitroom sends it.

    visitroom fills a receiver's slots with the most relevant other
    publishers (the recent speakers), so at any moment everyone receives
    nearly the same few streams.  Janus has no such selection; with plan
    "top" every receiver takes the video of the first `video_slots`
    publishers other than itself and the audio of the first `audio_slots`:
    the same number of streams as visitroom sends, with the same shape (a
    few streams, each to almost everyone).  Plan "ring" spreads them
    instead (the next publishers after the receiver): the same packet count,
    but each stream goes to only a few receivers.  `feeds` maps a role index
    to kind -> (Janus feed id, mid).
    """
    if plan not in JANUS_PLANS:
        raise ValueError(f"unknown plan {plan!r}")
    role = scenario.roles[receiver]
    count = len(scenario.roles)
    if plan == "ring":
        order = [(receiver + k) % count for k in range(1, count)]
    else:
        order = [i for i in range(count) if i != receiver]
    refs: list[StreamRef] = []
    for kind, wanted in (("video", role.video_slots), ("audio", role.audio_slots)):
        chosen = [i for i in order if kind in feeds.get(i, {})][:wanted]
        refs += [StreamRef(feeds[i][kind][0], feeds[i][kind][1]) for i in chosen]
    return refs


def expected_streams(scenario: Scenario, receiver: int) -> int:
    """Streams a receiver gets once everything flows (slots capped by the other publishers)."""
    role = scenario.roles[receiver]
    others = [r for i, r in enumerate(scenario.roles) if i != receiver]
    video = min(role.video_slots, sum(r.video for r in others))
    audio = min(role.audio_slots, sum(r.audio for r in others))
    return video + audio


# -- the two servers --------------------------------------------------------


@dataclass
class Joined:
    """The peers of one run, ready to play."""

    publishers: list[SyntheticPeer]
    receivers: list[SyntheticPeer]
    expected: list[int]  # streams per receiver
    close: Callable[[], Awaitable[None]]


class Side(Protocol):
    name: str

    def cpu_s(self) -> float: ...

    def rss(self) -> int: ...

    def threads(self) -> int: ...

    def pid(self) -> int: ...

    async def counters(self, http: aiohttp.ClientSession) -> dict[str, float]: ...

    async def join(self, http: aiohttp.ClientSession, scenario: Scenario, run: int) -> Joined: ...


def _tree(ps: psutil.Process) -> list[psutil.Process]:
    try:
        return [ps, *ps.children(recursive=True)]
    except psutil.Error:
        return [ps]


def tree_cpu_s(ps: psutil.Process) -> float:
    total = 0.0
    for proc in _tree(ps):
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def tree_rss(ps: psutil.Process) -> int:
    total = 0
    for proc in _tree(ps):
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def tree_threads(ps: psutil.Process) -> int:
    total = 0
    for proc in _tree(ps):
        with contextlib.suppress(psutil.Error):
            total += proc.num_threads()
    return total


class VisitroomSide:
    """`python -m signalling serve` (signalling + in-process SFU), media on `address`."""

    name = "visitroom"

    def __init__(self, address: str) -> None:
        self.address = address
        self.server = Server(SERVER_CORE, ice_host=address, own_session=True)

    async def start(self, http: aiohttp.ClientSession) -> None:
        await self.server.wait_healthy(http)

    def cpu_s(self) -> float:
        return tree_cpu_s(self.server.ps)

    def rss(self) -> int:
        return tree_rss(self.server.ps)

    def threads(self) -> int:
        return tree_threads(self.server.ps)

    def pid(self) -> int:
        return int(self.server.proc.pid)

    async def counters(self, http: aiohttp.ClientSession) -> dict[str, float]:
        """The media plane's counters from /metrics (`visitroom_media_*`, without the prefix)."""
        return await self.server.counters(http)

    async def join(self, http: aiohttp.ClientSession, scenario: Scenario, run: int) -> Joined:
        room = f"cmp-{os.getpid()}-{scenario.name}-{run}"
        await self.server.create_room(http, room, len(scenario.roles) + 2)
        clients = [
            Client(
                role.name,
                audio=role.audio,
                video=role.video,
                audio_slots=role.audio_slots,
                video_slots=role.video_slots,
                latency_every=LATENCY_EVERY if role.receives else 0,
                latency_source="payload",
                stamp=role.publishes,
                address=self.address,
            )
            for role in scenario.roles
        ]

        async def close() -> None:
            for client in clients:
                await client.close()

        try:
            await connect_all(self.server, http, room, clients)
        except BaseException:
            await close()
            raise
        return Joined(
            publishers=[
                c.peer for c, r in zip(clients, scenario.roles, strict=True) if r.publishes
            ],
            receivers=[c.peer for c, r in zip(clients, scenario.roles, strict=True) if r.receives],
            expected=[
                expected_streams(scenario, i) for i, r in enumerate(scenario.roles) if r.receives
            ],
            close=close,
        )

    def stop(self) -> None:
        self.server.stop()


class JanusSide:
    """Janus with the VideoRoom plugin; every participant has its own WebSocket session."""

    name = "janus"

    def __init__(
        self, alias: LoopbackAlias, folder: Path, event_loops: int, plan: str, pin: list[str]
    ) -> None:
        self.address = alias.address
        self.plan = plan
        self.config = JanusConfig(
            folder=folder,
            ws_port=free_port(),
            rtp_ports=free_udp_range(4000),
            interface=alias.name,
            address=alias.address,
            api_secret=new_api_secret(),
            event_loops=event_loops,
        )
        self.process = JanusProcess(self.config, pin)
        self.admin = JanusSession(self.process.url, self.config.api_secret)
        self.admin_handle = 0
        self.info: dict[str, Any] = {}

    async def start(self, http: aiohttp.ClientSession) -> None:
        await self.process.wait_ready()
        await self.admin.open(http)
        self.admin_handle = await self.admin.attach()
        self.info = await self.admin.send(request("info", self.admin.ids.next(), self.admin.secret))

    def cpu_s(self) -> float:
        return tree_cpu_s(self.process.ps)

    def rss(self) -> int:
        return tree_rss(self.process.ps)

    def threads(self) -> int:
        return tree_threads(self.process.ps)

    def pid(self) -> int:
        return int(self.process.proc.pid)

    async def counters(self, http: aiohttp.ClientSession) -> dict[str, float]:
        return {}  # Janus keeps no server-wide drop counters we could read the same way

    async def join(self, http: aiohttp.ClientSession, scenario: Scenario, run: int) -> Joined:
        room = random.randrange(1, 2**31)
        await self.admin.message(self.admin_handle, create_room(room, len(scenario.publishers)))
        sessions = [JanusSession(self.process.url, self.config.api_secret) for _ in scenario.roles]
        publishers: dict[int, JanusPublisher] = {}
        subscribers: dict[int, JanusSubscriber] = {}

        async def close() -> None:
            for peer in [p.peer for p in publishers.values()] + [
                s.peer for s in subscribers.values()
            ]:
                peer.close()
            await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.admin.message(self.admin_handle, destroy_room(room))

        gate = asyncio.Semaphore(JOIN_CONCURRENCY)

        async def publish(i: int, role: Role) -> None:
            async with gate:
                await sessions[i].open(http)
                peer = SyntheticPeer(
                    audio=role.audio, video=role.video, address=self.address, stamp=True
                )
                publishers[i] = JanusPublisher(sessions[i], peer, role.name)
                await publishers[i].publish(room)

        async def subscribe(i: int, streams: list[StreamRef]) -> None:
            async with gate:
                if sessions[i].ws is None:
                    await sessions[i].open(http)
                peer = SyntheticPeer(
                    address=self.address, latency_every=LATENCY_EVERY, latency_source="payload"
                )
                subscribers[i] = JanusSubscriber(sessions[i], peer)
                await subscribers[i].subscribe(room, streams)

        try:
            await asyncio.gather(
                *(publish(i, r) for i, r in enumerate(scenario.roles) if r.publishes)
            )
            feeds = {
                i: {kind: (p.feed, mid) for kind, mid in p.mids.items()}
                for i, p in publishers.items()
            }
            await asyncio.gather(
                *(
                    subscribe(i, janus_subscriptions(scenario, i, feeds, self.plan))
                    for i, r in enumerate(scenario.roles)
                    if r.receives
                )
            )
        except BaseException:
            await close()
            raise
        receivers = [i for i, r in enumerate(scenario.roles) if r.receives]
        return Joined(
            publishers=[publishers[i].peer for i in sorted(publishers)],
            receivers=[subscribers[i].peer for i in receivers],
            expected=[expected_streams(scenario, i) for i in receivers],
            close=close,
        )

    def stop(self) -> None:
        self.process.stop()


# -- one measured run ----------------------------------------------------------


@dataclass
class Run:
    server: str
    scenario: str
    run: int
    input_pps: float
    forwarded_pps: float
    server_cpu_pct: float
    idle_cpu_pct: float  # connected, before any media
    pps_per_core: float
    marginal_us_per_packet: float  # (CPU - idle CPU) per forwarded packet
    loss_pct: float
    added_p50_ms: float
    added_p99_ms: float
    latency_samples: int
    rss_mb: float
    rss_delta_mb: float
    threads: int
    streams_ok: bool
    decrypt_failures: int
    generator_cpu_pct: float
    generator_lag_p99_ms: float
    other_server_cpu_pct: float
    join_s: float
    load_1min: float


def received(peers: Sequence[SyntheticPeer]) -> int:
    return sum(s.packets for p in peers for s in p.transport.streams.values())


def lost(peers: Sequence[SyntheticPeer]) -> int:
    return sum(s.lost for p in peers for s in p.transport.streams.values())


def flowing(peer: SyntheticPeer) -> int:
    return sum(1 for s in peer.transport.streams.values() if s.packets > 20)


async def measure(
    side: Side,
    other: Side,
    http: aiohttp.ClientSession,
    scenario: Scenario,
    run: int,
    media: EncodedMedia,
    args: argparse.Namespace,
    profile: Path | None = None,  # a file stem: perf (and py-spy) record the window
) -> Run:
    rss0 = side.rss()
    started = time.monotonic()
    joined = await side.join(http, scenario, run)
    join_s = time.monotonic() - started
    try:
        # Everyone connected, no media yet: the server's fixed cost (timers, consent checks).
        idle0, t_idle = side.cpu_s(), time.monotonic()
        await asyncio.sleep(args.idle)
        idle_cpu = (side.cpu_s() - idle0) / (time.monotonic() - t_idle)
    except BaseException:
        await joined.close()
        raise
    publishers = [Publisher(peer, media, i) for i, peer in enumerate(joined.publishers)]
    stop = asyncio.Event()
    player = asyncio.create_task(play(publishers, stop))
    try:
        deadline = time.monotonic() + args.warmup
        while time.monotonic() < deadline:
            if all(flowing(p) >= n for p, n in zip(joined.receivers, joined.expected, strict=True)):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(args.settle)
        streams_ok = all(
            flowing(p) >= n for p, n in zip(joined.receivers, joined.expected, strict=True)
        )
        tools = []
        if profile is not None:
            tools.append(_start_perf(side.pid(), args.duration, profile.with_suffix(".perf")))
            if side.name == "visitroom":
                spy = profile.parent / f"{profile.name}.py-spy.txt"
                tools.append(_start_py_spy(side.pid(), args.duration, spy))
        for peer in joined.receivers:
            for stream in peer.transport.streams.values():
                stream.latencies.clear()
        me = psutil.Process()
        lags: list[float] = []
        monitor = asyncio.create_task(loop_lag(lags))
        gen0 = sum(me.cpu_times()[:2])
        got0, lost0 = received(joined.receivers), lost(joined.receivers)
        sent0 = sum(p.sent for p in publishers)
        cpu0, other0, t0 = side.cpu_s(), other.cpu_s(), time.monotonic()
        await asyncio.sleep(args.duration)
        elapsed = time.monotonic() - t0
        cpu = (side.cpu_s() - cpu0) / elapsed
        other_cpu = (other.cpu_s() - other0) / elapsed
        generator_cpu = (sum(me.cpu_times()[:2]) - gen0) / elapsed
        monitor.cancel()
        got = received(joined.receivers) - got0
        missing = lost(joined.receivers) - lost0
        sent = sum(p.sent for p in publishers) - sent0
        rss = side.rss()
        threads = side.threads()
        for tool in tools:
            await asyncio.get_running_loop().run_in_executor(None, tool.wait)
    finally:
        stop.set()
        await player
        await joined.close()
    latencies = sorted(
        x for p in joined.receivers for s in p.transport.streams.values() for x in s.latencies
    )
    forwarded = got / elapsed
    return Run(
        server=side.name,
        scenario=scenario.name,
        run=run,
        input_pps=sent / elapsed,
        forwarded_pps=forwarded,
        server_cpu_pct=100 * cpu,
        idle_cpu_pct=100 * idle_cpu,
        pps_per_core=forwarded / max(cpu, 1e-6),
        marginal_us_per_packet=1e6 * max(0.0, cpu - idle_cpu) / max(forwarded, 1.0),
        loss_pct=100 * missing / max(1, got + missing),
        added_p50_ms=1000 * percentile(latencies, 0.5),
        added_p99_ms=1000 * percentile(latencies, 0.99),
        latency_samples=len(latencies),
        rss_mb=rss / 2**20,
        rss_delta_mb=(rss - rss0) / 2**20,
        threads=threads,
        streams_ok=streams_ok,
        decrypt_failures=sum(int(p.transport.counters.srtp_errors) for p in joined.receivers),
        generator_cpu_pct=100 * generator_cpu,
        generator_lag_p99_ms=1000 * percentile(lags, 0.99),
        other_server_cpu_pct=100 * other_cpu,
        join_s=join_s,
        load_1min=os.getloadavg()[0],
    )


# -- profiling (py-spy for visitroom's Python, perf for both) ------------------

SENDMMSG = "sendmmsg of media (syscall: UDP send + loopback delivery)"
SENDTO = "sendto of media (syscall: UDP send + loopback delivery)"
FANOUT = "compiled fan-out (sfu.native._fanout: rewrite, SRTP, into the batch)"
RECEIVE = "receive path (parse, stats, levels, routing)"
OUR_CHECKS = "ICE consent: the server's checks (STUN build + HMAC, timers)"
THEIR_CHECKS = "ICE consent: answering the clients' checks (parse, HMAC)"
TICK_LAYERS = "200 ms tick: layer allocation"
TICK_RTCP = "200 ms tick: RTCP reports (build + SRTCP protect)"
TICK_SLOTS = "200 ms tick: speakers and slots"
TICK_CONSUMERS = "200 ms tick: per-consumer checks (layers, NACK retries, key frames)"
FAST_TICK = "100 ms tick: transport-cc feedback, probes"
PY_SPY_CATEGORIES: tuple[tuple[str, str], ...] = (
    # (frame name prefix, category); a sample goes to the first match walking up
    # from its leaf.  Compiled code (sfu.native) has no frame of its own: its
    # samples end in the Python frame that called it (see FANOUT_CALL).
    # single-port mode (sfu.transport.udpmux, sfu.transport.mmsg)
    ("SendBatch.flush", SENDMMSG),
    ("Egress.flush", SENDMMSG),
    ("Egress.release", SENDMMSG),
    ("Egress._flush_soon", SENDMMSG),
    ("DirectRoute.send", SENDTO),
    ("SendBatch.", "send batch (Python twin)"),
    ("Egress.", "send batch (Python twin)"),
    ("Route.send", "send batch (Python twin)"),
    ("RecvBatch.read", "recvmmsg (syscall + bytes per datagram)"),
    ("SocketReader.read", "recvmmsg (syscall + bytes per datagram)"),  # recvmsg fallback
    ("IceConnection.request_received", THEIR_CHECKS),
    ("UdpMux._stun", THEIR_CHECKS),
    ("MediaProtocol._stun", THEIR_CHECKS),
    ("IceConnection.", OUR_CHECKS),  # query_consent, _check, _send_check, ...
    ("first_answer", OUR_CHECKS),
    ("ConsentClock.", OUR_CHECKS),
    ("ConsentCheck.", OUR_CHECKS),
    ("Connection.", OUR_CHECKS),
    ("StunProtocol.", OUR_CHECKS),
    ("Session.protect_rtcp", TICK_RTCP),
    ("reports", TICK_RTCP),
    ("WebRtcTransport.send_rtcp", TICK_RTCP),
    ("Session.protect", "SRTP protect (pylibsrtp)"),
    ("Session.unprotect", "SRTP unprotect (pylibsrtp)"),
    ("Consumer.forward", "Consumer.forward (Python twin of the fan-out)"),
    ("LayerClock.", TICK_LAYERS),
    ("LayerControl.", TICK_LAYERS),
    ("LocalMedia.after_tick", TICK_LAYERS),
    ("Group.", TICK_SLOTS),
    ("LocalMedia.refill", TICK_SLOTS),
    ("Ticker.fast_tick", FAST_TICK),
    ("Ticker._run_fast", FAST_TICK),
    ("Probing.", FAST_TICK),
    ("Ticker.", TICK_CONSUMERS),
    ("RTCDtlsTransport.", "DTLS (aiortc)"),
    ("handle_rtcp", "RTCP received (reports, NACK, PLI, transport-cc)"),
    ("WebRtcTransport.send_rtp", "send_rtp (Python)"),
    ("Producer.", RECEIVE),
    ("Participant.on_rtp", RECEIVE),
    ("WebRtcTransport._on_srtp", RECEIVE),
    ("MediaProtocol.datagram_received", RECEIVE),
    ("UdpMux.", RECEIVE),
    ("SharedEndpoint.media", RECEIVE),
)
# The Python line that calls the compiled fan-out: its samples are the C loop's.
FANOUT_CALL = ("Producer.on_rtp", "sfu/routing/producer.py", "fanout(self, self.consumers")


def _fanout_frames() -> set[str]:
    """py-spy's names of the frame that calls the compiled fan-out ("func (file:line)")."""
    function, path, needle = FANOUT_CALL
    try:
        lines = (ROOT / path).read_text().splitlines()
    except OSError:
        return set()
    return {f"{function} ({path}:{n})" for n, line in enumerate(lines, 1) if needle in line}


# py-spy cannot tell uvloop waiting in epoll from uvloop's own C code: both show as
# samples whose Python leaf is Runner.run.  perf puts uvloop's C at ~1% of the
# server's CPU, so those samples are counted as idle and left out of the shares.
IDLE_LEAF = "Runner.run"


def _start_py_spy(pid: int, duration: float, out: Path) -> subprocess.Popen[bytes]:
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy if spy.exists() else "py-spy"), "record", "-p", str(pid), "--nonblocking"]
    command += ["-d", str(max(1, int(duration))), "-r", "250", "-f", "raw", "-o", str(out)]
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _start_perf(pid: int, duration: float, out: Path) -> subprocess.Popen[bytes]:
    command = ["perf", "record", "-e", "cpu-clock", "-F", "999", "-p", str(pid)]
    command += ["-o", str(out), "--", "sleep", str(duration)]
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _main_thread_stacks(path: Path) -> list[tuple[list[str], int]]:
    """py-spy raw stacks of the event loop thread (idle thread-pool workers are left out),
    each frame as py-spy names it: "function (file:line)"."""
    out = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[0].split(" (")[0] == "_run_module_as_main":
            out.append((frames, int(count)))
    return out


def summarize_py_spy(path: Path) -> dict[str, float]:
    """Share of the event loop thread's busy samples per category (PY_SPY_CATEGORIES)."""
    shares: Counter[str] = Counter()
    total = 0
    fanout = _fanout_frames()
    for located, count in _main_thread_stacks(path):
        frames = [f.split(" (")[0] for f in located]
        if frames[-1] == IDLE_LEAF:
            continue
        total += count
        shares[_category(frames, located[-1] in fanout)] += count
    return {k: v / max(1, total) for k, v in shares.most_common()}


def _category(frames: list[str], in_fanout: bool) -> str:
    if in_fanout:
        return FANOUT
    for frame in reversed(frames):
        if frame == "IceConnection.send_media" and "WebRtcTransport.send_rtp" in frames:
            return SENDTO
        match = next((c for prefix, c in PY_SPY_CATEGORIES if frame.startswith(prefix)), None)
        if match is not None:
            return match
    return "other"


def perf_report(path: Path, sort: str, top: int = 15) -> list[tuple[str, float]]:
    """`perf report --sort SORT`: (name, share of samples)."""
    result = subprocess.run(
        ["perf", "report", "-i", str(path), "--stdio", "--sort", sort],
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in result.stdout.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "%" not in line:
            continue
        share, _, name = line.partition("%")
        try:
            rows.append((" ".join(name.split()), float(share) / 100))
        except ValueError:
            continue
    return rows[:top]


async def _profiled_run(
    side: Side,
    other: Side,
    http: aiohttp.ClientSession,
    scenario: Scenario,
    media: EncodedMedia,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """An extra, uncounted run of `side` under perf (and py-spy for visitroom)."""
    folder = Path(args.results)
    stem = f"{side.name}-{scenario.name}"
    result = await measure(side, other, http, scenario, 99, media, args, folder / stem)
    loop = asyncio.get_running_loop()
    perf_data = folder / f"{stem}.perf"
    out: dict[str, Any] = {"server_cpu_pct": result.server_cpu_pct}
    out["perf_dso"] = await loop.run_in_executor(None, perf_report, perf_data, "dso")
    out["perf_symbols"] = await loop.run_in_executor(None, perf_report, perf_data, "dso,sym", 25)
    spy = folder / f"{stem}.py-spy.txt"
    if side.name == "visitroom":
        out["py_spy"] = summarize_py_spy(spy)
    return out


# -- statistics and output ---------------------------------------------------

METRICS = (
    "forwarded_pps",
    "input_pps",
    "server_cpu_pct",
    "idle_cpu_pct",
    "pps_per_core",
    "marginal_us_per_packet",
    "loss_pct",
    "added_p50_ms",
    "added_p99_ms",
    "rss_mb",
    "rss_delta_mb",
    "threads",
    "generator_cpu_pct",
    "generator_lag_p99_ms",
    "other_server_cpu_pct",
    "join_s",
)


def spread(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def summarize(scenario: Scenario, runs: dict[str, list[Run]]) -> dict[str, Any]:
    """The JSON record of one scenario: flat medians for both servers and the ratios."""
    out: dict[str, Any] = {"title": scenario.title, "participants": len(scenario.roles)}
    servers = [s for s in SERVERS if runs.get(s)]
    for server in servers:
        for metric in METRICS:
            values = [getattr(r, metric) for r in runs[server]]
            s = spread(values)
            out[f"{server}_{metric}"] = s["median"]
            out[f"{server}_{metric}_min"] = s["min"]
            out[f"{server}_{metric}_max"] = s["max"]
        out[f"{server}_streams_ok"] = all(r.streams_ok for r in runs[server])
        out[f"{server}_decrypt_failures"] = sum(r.decrypt_failures for r in runs[server])
    if len(servers) == 2:
        vr, ja = out["visitroom_pps_per_core"], out["janus_pps_per_core"]
        out["ratio"] = vr / max(ja, 1e-9)
        paired = [
            v.pps_per_core / max(j.pps_per_core, 1e-9)
            for v, j in zip(runs["visitroom"], runs["janus"], strict=True)
        ]
        out["ratio_paired_min"] = min(paired)
        out["ratio_paired_max"] = max(paired)
        # The figure the targets are judged by: each run's ratio (the two servers
        # measured back to back, under the same machine load), median over runs.
        out["ratio_paired_median"] = statistics.median(paired)
        out["cpu_ratio"] = out["visitroom_server_cpu_pct"] / max(out["janus_server_cpu_pct"], 1e-9)
    out["runs"] = {server: [asdict(r) for r in runs[server]] for server in servers}
    return out


def _fmt(summary: dict[str, Any], key: str, digits: int = 0) -> str:
    med, lo, hi = summary[key], summary[f"{key}_min"], summary[f"{key}_max"]
    return f"{med:,.{digits}f} ({lo:,.{digits}f}-{hi:,.{digits}f})"


def print_table(results: dict[str, Any]) -> None:
    header = (
        f"{'scenario':<14} {'server':<10} {'fwd pps':>8} {'CPU %':>18} {'pps per busy core':>26} "
        f"{'loss %':>7} {'p50 ms':>17} {'p99 ms':>20} {'RSS MB':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, s in results["scenarios"].items():
        for server in (x for x in SERVERS if f"{x}_pps_per_core" in s):
            print(
                f"{name:<14} {server:<10} {s[f'{server}_forwarded_pps']:>8,.0f} "
                f"{_fmt(s, f'{server}_server_cpu_pct', 1):>18} "
                f"{_fmt(s, f'{server}_pps_per_core'):>26} "
                f"{s[f'{server}_loss_pct']:>7.3f} "
                f"{_fmt(s, f'{server}_added_p50_ms', 2):>17} "
                f"{_fmt(s, f'{server}_added_p99_ms', 2):>20} "
                f"{s[f'{server}_rss_mb']:>7.0f}"
            )
        if "ratio" not in s:
            continue
        print(
            f"{'':<14} {'ratio':<10} visitroom/Janus pps per busy core: median of the paired "
            f"runs {s['ratio_paired_median']:.2f} ({s['ratio_paired_min']:.2f}-"
            f"{s['ratio_paired_max']:.2f}), of the medians {s['ratio']:.2f}; "
            f"CPU at this load {s['cpu_ratio']:.2f}x"
        )
    for name, prof in results.get("profiles", {}).items():
        for server in SERVERS:
            if server not in prof:
                continue
            print(f"\n{server}, {name}: perf, share of the server's CPU samples by library")
            for dso, share in prof[server]["perf_dso"][:8]:
                print(f"  {100 * share:5.1f}%  {dso}")
        if "py_spy" in prof.get("visitroom", {}):
            print(f"visitroom, {name}: py-spy, share of the event loop thread's busy samples")
            for what, share in prof["visitroom"]["py_spy"].items():
                print(f"  {100 * share:5.1f}%  {what}")


def plot(results: dict[str, Any], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["scenarios"])
    data = results["scenarios"]
    colors = {"visitroom": "#2b7bba", "janus": "#e07b39"}
    labels = {"visitroom": "visitroom (Python)", "janus": f"Janus {results['versions']['janus']}"}
    width = 0.38
    xs = range(len(names))

    servers = [x for x in SERVERS if x in results["settings"]["servers"]]

    def bars(ax: Any, key: str, title: str, log: bool = False) -> None:
        for k, server in enumerate(servers):
            med = [data[n][f"{server}_{key}"] for n in names]
            lo = [med[i] - data[n][f"{server}_{key}_min"] for i, n in enumerate(names)]
            hi = [data[n][f"{server}_{key}_max"] - med[i] for i, n in enumerate(names)]
            pos = [x + (k - 0.5) * width for x in xs]
            ax.bar(
                pos,
                med,
                width,
                yerr=[lo, hi],
                capsize=3,
                color=colors[server],
                label=labels[server],
            )
        ax.set_xticks(list(xs))
        ax.set_xticklabels([data[n]["title"] for n in names], rotation=15)
        ax.set_title(title)
        if log:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)

    runs = results["settings"]["runs"]
    stamp = (
        f"{results['date']}, {results['machine']['cpu']}, each server pinned to the same core; "
        f"median of {runs} runs, bars min-max"
    )
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    bars(axes[0], "pps_per_core", "forwarded packets/s per busy core (higher is better)")
    bars(axes[1], "server_cpu_pct", "server CPU at this load, % of one core (lower is better)")
    axes[0].legend()
    fig.suptitle(f"visitroom vs Janus VideoRoom: throughput ({stamp})", fontsize=10)
    fig.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    throughput = folder / "janus-throughput.png"
    fig.savefig(throughput, dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    bars(axes[0], "added_p50_ms", "added latency p50, ms (lower is better)")
    bars(axes[1], "added_p99_ms", "added latency p99, ms (log scale)", log=True)
    axes[0].legend()
    fig.suptitle(f"visitroom vs Janus VideoRoom: latency ({stamp})", fontsize=10)
    fig.tight_layout()
    latency = folder / "janus-latency.png"
    fig.savefig(latency, dpi=110)
    plt.close(fig)
    return [throughput, latency]


# -- the whole benchmark ---------------------------------------------------------


def _versions() -> dict[str, str]:
    import aioice
    import aiortc
    import pylibsrtp
    import uvloop

    return {
        "janus": janus_version(),
        "python": platform.python_version(),
        "aiortc": aiortc.__version__,
        "aioice": aioice.__version__,
        "pylibsrtp": pylibsrtp.__version__,
        "uvloop": str(getattr(uvloop, "__version__", "unknown")),
    }


def _machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
    }


async def run(args: argparse.Namespace, alias: LoopbackAlias) -> dict[str, Any]:
    os.sched_setaffinity(0, {GENERATOR_CORE})
    autogroup = False
    if args.nice:
        PRIORITY["nice"] = args.nice
        os.nice(args.nice)
        autogroup = raise_group_priority(os.getpid(), args.nice)
    scenarios = [SCENARIOS[name] for name in args.scenarios]
    media = encode_media(args.video_kbps)
    load_before = os.getloadavg()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": _machine(),
        "versions": _versions(),
        "command": " ".join(["python", *sys.argv]),
        "settings": {
            "runs": args.runs,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "settle_s": args.settle,
            "idle_s": args.idle,
            "servers": args.servers,
            "video_kbps": args.video_kbps,
            "video_pps_per_publisher": media.video_pps,
            "audio_pps_per_publisher": 50,
            "latency_every": LATENCY_EVERY,
            "server_core": SERVER_CORE,
            "generator_core": GENERATOR_CORE,
            "nice": args.nice,
            "autogroup_nice": autogroup,
            "address": alias.address,
            "janus_event_loops": args.janus_event_loops,
            "janus_plan": args.janus_plan,
        },
        "load_before": load_before,
        "scenarios": {},
    }
    pin = pinned(SERVER_CORE)
    folder = tempfile.TemporaryDirectory(prefix="janus-bench-")
    sides: list[Any] = []
    try:
        visitroom = VisitroomSide(alias.address)
        sides.append(visitroom)
        janus = JanusSide(alias, Path(folder.name), args.janus_event_loops, args.janus_plan, pin)
        sides.append(janus)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            await visitroom.start(http)
            await janus.start(http)
            if autogroup:  # each server runs in a session (autogroup) of its own
                raise_group_priority(janus.pid(), args.nice)
                raise_group_priority(visitroom.pid(), args.nice)
            results["janus_info"] = {
                k: janus.info.get(k) for k in ("version_string", "dependencies", "event_loops")
            }
            if args.warmup_run:
                warm = fanout(10)
                pairs: list[tuple[Side, Side]] = [(visitroom, janus), (janus, visitroom)]
                for side, other in (p for p in pairs if p[0].name in args.servers):
                    print(f"warm-up: {side.name} {warm.title}", flush=True)
                    await measure(side, other, http, warm, -1, media, _short(args))
            if args.saturation:
                sat = await run_searches(
                    {s.name: s for s in (visitroom, janus) if s.name in args.servers},
                    http,
                    media,
                    _saturation_args(args),
                )
                results["saturation"] = sat
                for key in ("saturation_pps_visitroom", "saturation_pps_janus", "saturation_ratio"):
                    if key in sat:
                        results[key] = sat[key]
            for scenario in scenarios:
                runs: dict[str, list[Run]] = {s: [] for s in args.servers}
                for n in range(args.runs):
                    order: list[tuple[Side, Side]] = [(visitroom, janus), (janus, visitroom)]
                    order = [p for p in order if p[0].name in args.servers]
                    for side, other in order if n % 2 == 0 else order[::-1]:
                        result = await measure(side, other, http, scenario, n, media, args)
                        runs[side.name].append(result)
                        print(
                            f"{scenario.name} run {n} {side.name}: "
                            f"{result.forwarded_pps:,.0f} pps at {result.server_cpu_pct:.1f}% "
                            f"-> {result.pps_per_core:,.0f} per core, loss "
                            f"{result.loss_pct:.3f}%, p50 {result.added_p50_ms:.2f} ms, "
                            f"p99 {result.added_p99_ms:.2f} ms, streams ok {result.streams_ok}, "
                            f"load {result.load_1min:.2f}",
                            flush=True,
                        )
                results["scenarios"][scenario.name] = summarize(scenario, runs)
                if args.profile:
                    print(f"{scenario.name}: profiling both (extra runs, not counted)", flush=True)
                    results.setdefault("profiles", {})[scenario.name] = {
                        side.name: await _profiled_run(side, other, http, scenario, media, args)
                        for side, other in ((visitroom, janus), (janus, visitroom))
                    }
            await janus.admin.close()
    finally:
        for side in reversed(sides):
            side.stop()
        _keep_log(Path(folder.name) / "janus.log", Path(args.results))
        folder.cleanup()
    results["load_after"] = os.getloadavg()
    return results


def _keep_log(log: Path, results: Path) -> None:
    """Keep Janus's log (warnings and errors only; the config with the secret is deleted)."""
    if log.exists():
        results.mkdir(parents=True, exist_ok=True)
        (results / "janus.log").write_text(log.read_text(errors="replace"))


def _saturation_args(args: argparse.Namespace) -> argparse.Namespace:
    sat = argparse.Namespace(**vars(args))
    sat.duration, sat.warmup, sat.settle = args.sat_duration, args.sat_warmup, args.sat_settle
    sat.runs = args.sat_runs
    return sat


def _short(args: argparse.Namespace) -> argparse.Namespace:
    short = argparse.Namespace(**vars(args))
    short.duration, short.warmup, short.settle, short.idle = 3.0, 5.0, 0.5, 0.5
    return short


def saturation_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("saturation (--saturation; see bench/saturation.py)")
    group.add_argument(
        "--saturation",
        action="store_true",
        help="instead of the scenarios: raise the load on each server until it breaks",
    )
    group.add_argument("--sat-subscribers", type=int, nargs="+", default=[50, 100, 200, 300, 400])
    group.add_argument("--sat-publishers", type=int, default=3, help="at most 3 (audio slots)")
    group.add_argument("--sat-refine", type=int, default=3, help="bisection steps after a fail")
    group.add_argument("--sat-sample", type=int, default=6, help="subscribers fully read")
    group.add_argument("--sat-max-loss", type=float, default=1.0, help="percent")
    group.add_argument("--sat-max-p99-ms", type=float, default=50.0)
    group.add_argument("--sat-duration", type=float, default=5.0, help="window per point")
    group.add_argument("--sat-warmup", type=float, default=8.0)
    group.add_argument("--sat-settle", type=float, default=1.0)
    group.add_argument("--sat-runs", type=int, default=3, help="searches per server")
    group.add_argument("--sat-confirm", type=int, default=1, help="re-measure a failure N times")
    group.add_argument(
        "--sat-reduced",
        action="store_true",
        help="a reduced search (<= 6 min): one per server, ladder 100-400 then 2 publishers, "
        "2 bisection steps, 3 s windows",
    )


def reduce_saturation(args: argparse.Namespace) -> None:
    """--sat-reduced: one shorter search per server, for a quick check on a quiet machine.

    Each point still waits until every subscriber receives every stream and
    measures a window of its own; what is cut is the number of searches (1,
    not 3: no median, so compare it with the same run's other server only),
    the low steps (50), the third publisher, one bisection step and the length
    of each window.  Explicit --sat-* options given with it are overridden.
    """
    args.saturation = True
    args.sat_runs, args.sat_subscribers, args.sat_publishers = 1, [100, 200, 300, 400], 2
    args.sat_refine, args.sat_duration, args.sat_warmup, args.sat_settle = 2, 3.0, 6.0, 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the 1x50 fan-out only (< 3 min)")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--results", default="results/janus", help="folder for plots/profiles")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=10.0, help="max wait for all streams")
    parser.add_argument("--settle", type=float, default=2.0, help="then this long before measuring")
    parser.add_argument("--idle", type=float, default=2.0, help="idle CPU window before media")
    parser.add_argument("--video-kbps", type=int, default=1500)
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument(
        "--janus-event-loops",
        type=int,
        default=1,
        help="Janus's event_loops (0 = its default, a thread per handle; see docs/benchmarks.md)",
    )
    parser.add_argument(
        "--janus-plan",
        choices=JANUS_PLANS,
        default="top",
        help="which streams Janus subscribers take (see janus_subscriptions)",
    )
    parser.add_argument("--no-warmup-run", dest="warmup_run", action="store_false")
    parser.add_argument("--no-plots", dest="plots", action="store_false")
    parser.add_argument(
        "--profile", action="store_true", help="perf both, py-spy visitroom (extra runs)"
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=-10 if os.geteuid() == 0 else 0,
        help="scheduling priority of both servers and the generator (default -10 as root)",
    )
    saturation_arguments(parser)
    args = parser.parse_args()
    if args.quick:
        args.scenarios, args.runs, args.duration = ["fanout-1x50"], 1, 10.0
        args.warmup, args.settle, args.warmup_run = 8.0, 1.0, False
        args.sat_runs = 1
    if args.sat_reduced:
        reduce_saturation(args)
    if args.saturation:
        args.scenarios, args.warmup_run = [], False
    if os.geteuid() != 0:
        parser.error("needs root: Janus needs an extra loopback-range interface (ip link add)")
    import uvloop

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    remove_stale_aliases()
    started = time.time()
    alias = LoopbackAlias()
    try:
        alias.create()
        results = uvloop.run(run(args, alias))
    finally:
        alias.remove()
    results["wall_s"] = time.time() - started
    print()
    print_table(results)
    if "saturation" in results:
        print_saturation(results["saturation"])
    if args.plots and results["scenarios"]:
        images = plot(results, Path(args.results))
        results["plots"] = [str(p) for p in images]
        print("plots: " + ", ".join(str(p) for p in images))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(
        f"wall time {results['wall_s']:.0f} s; load average before {results['load_before']}, "
        f"after {results['load_after']}"
    )


if __name__ == "__main__":
    main()
