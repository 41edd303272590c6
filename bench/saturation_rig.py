"""The live part of bench/compare_janus.py --saturation: load one server until it breaks.

One `Rig` per server and repetition: a room with `max_publishers`
publishers joined up front (silent until the ladder activates them) and
subscribers joined or closed as the search asks (bench/saturation.py).
Every subscriber takes the audio and video of every publisher (at most 3
voices: visitroom's audio slot cap).

The first `sample` subscribers are full synthetic peers (every packet read
by the event loop, one in `LATENCY_EVERY` decrypted for the added latency);
all the others are counted in bulk (bench/bulk_receive.py): real ICE + DTLS
and consent, then their sockets are drained with recvmmsg every 20 ms and
classified with numpy, so the generator costs ~nothing per packet and the
server, not the generator, is what saturates.  The kernel's drop counter of
every subscriber socket (/proc/net/udp) shows whether the generator kept up.

The publishers play at a constant rate: a key-frame request does not restart
their video (a key frame is 5-10x a delta frame's packets).  Janus passes its
lagging subscribers' PLIs to the publisher, and a restarting publisher then
sent up to 1.5x the nominal packets, which the search credited to Janus as
throughput (docs/benchmarks.md, the saturation branch's subsection).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from bulk_receive import (
    BulkReader,
    backlog_drops,
    cpu_pressure_us,
    peer_counts,
    peer_protocols,
    process_socket_drops,
    socket_drops,
)
from janus_driver import (
    JanusPublisher,
    JanusSession,
    JanusSubscriber,
    StreamRef,
    create_room,
    destroy_room,
)
from media_clients import Client, loop_lag, percentile
from media_workload import EncodedMedia, Publisher, play
from saturation import (
    Limits,
    Load,
    Point,
    ladder,
    median_or_nan,
    next_load,
    saturated,
    sustained,
)

from sfu.packet.rtcp import build_rr
from tests.synthetic_peer import SyntheticPeer

Closer = Callable[[], Awaitable[None]]
LATENCY_EVERY = 5
AUDIO_CAP = 3  # visitroom's default audio slots per subscriber
JOIN_CONCURRENCY = 10
# Like a browser, every subscriber sends a receiver report about once a second
# (spread over the second): both servers get the same RTCP from their
# subscribers.  (visitroom checks a client that sends under 5 packets/s at the
# RFC 7675 pace only, sfu.transport.pathwatch, whether it reports or not.)
# Empty reports: the servers' work per report is the same small parse, and
# nothing is claimed about loss.
REPORT_EVERY_S = 1.0
REPORT_GROUPS = 10


@dataclass
class Subscriber:
    peer: SyntheticPeer
    sample: bool
    close: Closer


@dataclass
class Measured:
    """One point of the search."""

    server: str
    publishers: int
    subscribers: int
    passed: bool
    forwarded_pps: float
    expected_pps: float  # what the publishers sent x subscribers
    delivery_pct: float
    gap_loss_pct: float
    loss_pct: float  # sequence gaps + what stalled subscribers missed (`window_loss`)
    stalled_subscribers: int
    added_p50_ms: float
    added_p99_ms: float
    latency_samples: int
    server_cpu_pct: float
    generator_cpu_pct: float
    generator_lag_p99_ms: float
    generator_socket_drops: int  # kernel drops on the subscribers' sockets in the window
    server_socket_drops: int  # kernel drops on the server's own UDP sockets in the window
    backlog_drops: int  # kernel drops in the CPUs' input backlog (loopback delivery)
    bulk_sweep_cpu_pct: float  # share of the window the bulk sweeps took
    bulk_max_batch: int
    streams_ok: bool
    join_s: float
    publishers_connected: int  # active publishers whose transport is still up
    publisher_state: str  # how the active publishers' transports (and sessions) stand
    cpu_pressure_pct: float  # PSI: share of the window some task waited for a CPU
    # The server's core in the window (/proc/stat): softirq time (the kernel's
    # packet delivery; tick accounting charges it to the task it interrupted) and
    # idle time (near 0: the core was full, whatever server_cpu_pct says).
    core_softirq_pct: float
    core_idle_pct: float
    load_1min: float
    # What the server itself counted in the window (visitroom's /metrics; Janus: none):
    # packets in and out and every drop reason that moved (sfu.packet.counters).
    server_counters: dict[str, float] = field(default_factory=dict)


class Rig:
    """Publishers and subscribers of one server, resized between measurements."""

    name = "?"
    # Joins in progress at once from this generator (bench/join_storm.py --concurrency).
    join_concurrency = JOIN_CONCURRENCY

    def __init__(self, side: Any, http: aiohttp.ClientSession, media: EncodedMedia,
                 max_publishers: int, sample: int) -> None:  # fmt: skip
        self.side = side
        self.http = http
        self.media = media
        self.max_publishers = max_publishers
        self.sample = sample
        self.reader = BulkReader()
        self.publishers: list[Publisher] = []
        self.subscribers: list[Subscriber] = []
        self.active = 0
        self._stops: list[asyncio.Event] = []
        self._players: list[asyncio.Task[None]] = []
        self._reporter: asyncio.Task[None] | None = None

    # -- server specific ----------------------------------------------------------

    async def open(self) -> None:
        raise NotImplementedError

    async def join_subscriber(self, index: int, peer: SyntheticPeer) -> Closer:
        raise NotImplementedError

    async def close_room(self) -> None:
        raise NotImplementedError

    # -- common -------------------------------------------------------------------

    def new_subscriber_peer(self, index: int) -> SyntheticPeer:
        sample = index < self.sample
        peer = SyntheticPeer(
            audio_slots=min(AUDIO_CAP, self.max_publishers),
            video_slots=self.max_publishers,
            latency_every=LATENCY_EVERY if sample else 0,
            latency_source="payload",
            address=self.side.address,
        )
        if not sample:
            self.reader.bind_patch(peer.transport._ice)
        return peer

    async def resize(self, load: Load) -> float:
        """Start or stop publishers and join or close subscribers; the join time."""
        started = time.monotonic()
        while self.active < load.publishers:
            stop = asyncio.Event()
            publisher = self.publishers[self.active]
            self._stops.append(stop)
            self._players.append(asyncio.create_task(play([publisher], stop)))
            self.active += 1
        while self.active > load.publishers:
            self.active -= 1
            self._stops.pop().set()
            await self._players.pop()
        if self._reporter is None:
            self._reporter = asyncio.create_task(self._report())
        while len(self.subscribers) > load.subscribers:
            await self.subscribers.pop().close()
        gate = asyncio.Semaphore(self.join_concurrency)

        async def join(index: int) -> Subscriber:
            async with gate:
                peer = self.new_subscriber_peer(index)
                close = await self.join_subscriber(index, peer)
                if index >= self.sample:
                    self.reader.bulk(peer_protocols(peer))
                return Subscriber(peer, index < self.sample, close)

        first = len(self.subscribers)
        joined = await asyncio.gather(
            *(join(i) for i in range(first, load.subscribers)), return_exceptions=True
        )
        failures = [j for j in joined if isinstance(j, BaseException)]
        self.subscribers += [j for j in joined if isinstance(j, Subscriber)]
        if failures:
            raise RuntimeError(f"{len(failures)} subscribers failed to join: {failures[0]!r}")
        return time.monotonic() - started

    async def _report(self) -> None:
        """Receiver reports from every subscriber, a tenth of them every 0.1 s."""
        tick = 0
        while True:
            await asyncio.sleep(REPORT_EVERY_S / REPORT_GROUPS)
            for sub in self.subscribers[tick % REPORT_GROUPS :: REPORT_GROUPS]:
                sub.peer.transport.send_rtcp(build_rr(sub.peer.rtcp_ssrc))
            tick += 1

    def expected_streams(self) -> int:
        return self.active + min(AUDIO_CAP, self.active)

    def flowing(self, sub: Subscriber) -> int:
        if sub.sample:
            return sum(1 for s in sub.peer.transport.streams.values() if s.packets > 20)
        return sum(c.flowing() for c in peer_counts(sub.peer))

    def received(self) -> list[tuple[int, int]]:
        """(packets, sequence gaps) of each subscriber, in order."""
        each = []
        for sub in self.subscribers:
            if sub.sample:
                streams = sub.peer.transport.streams.values()
                each.append((sum(s.packets for s in streams), sum(s.lost for s in streams)))
            else:
                counts = peer_counts(sub.peer)
                each.append((sum(c.packets for c in counts), sum(c.lost for c in counts)))
        return each

    def ports(self) -> set[int]:
        ports = set()
        for sub in self.subscribers:
            for protocol in peer_protocols(sub.peer):
                with contextlib.suppress(Exception):
                    ports.add(int(protocol.transport.get_extra_info("sockname")[1]))
        return ports

    def publisher_state(self) -> str:
        """The transport state of each active publisher (and its session, when known)."""
        return ", ".join(
            f"{p.peer.transport.state.value}{self.session_state(i)}"
            for i, p in enumerate(self.publishers[: self.active])
        )

    def session_state(self, index: int) -> str:
        return ""

    def sent(self) -> int:
        return sum(p.sent for p in self.publishers[: self.active])

    async def close(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            self._reporter = None
        for stop in self._stops:
            stop.set()
        for player in self._players:
            with contextlib.suppress(Exception):
                await player
        for sub in self.subscribers:
            with contextlib.suppress(Exception):
                await sub.close()
        self.subscribers.clear()
        await self.reader.stop()
        await self.close_room()


class VisitroomRig(Rig):
    name = "visitroom"

    async def open(self) -> None:
        self.room = f"sat-{os.getpid()}-{random.getrandbits(32)}"
        self.clients: list[Client] = []
        self.serial = 0
        await self.side.server.create_room(self.http, self.room, 1000)
        for i in range(self.max_publishers):
            client = Client(f"pub-{i}", audio=True, video=True, stamp=True,
                            address=self.side.address)  # fmt: skip
            await client.join(self.side.server, self.http, self.room)
            self.clients.append(client)
            self.publishers.append(Publisher(client.peer, self.media, i, restarts=False))

    def session_state(self, index: int) -> str:
        ws = self.clients[index].ws
        if ws is None or not ws.closed:
            return " (WebSocket open)"
        return f" (WebSocket closed, code {ws.close_code})"

    async def join_subscriber(self, index: int, peer: SyntheticPeer) -> Closer:
        self.serial += 1  # a new identity each time: a closed subscriber's may be rejoined
        client = Client(f"sub-{index}-{self.serial}")
        client.peer.close()
        client.peer = peer
        await client.join(self.side.server, self.http, self.room)

        async def close() -> None:
            # Leave first: a participant whose WebSocket just drops is kept for the
            # resume window, and its media with it (Janus tears a session down at once).
            if client.ws is not None and not client.ws.closed:
                with contextlib.suppress(Exception):
                    await client.ws.send_json({"type": "leave", "id": 2})
                    await asyncio.sleep(0.05)
            await client.close()

        return close

    async def close_room(self) -> None:
        for client in self.clients:
            await client.close()


class JanusRig(Rig):
    name = "janus"

    async def open(self) -> None:
        self.room = random.randrange(1, 2**31)
        self.sessions: list[JanusSession] = []
        admin = self.side.admin
        await admin.message(self.side.admin_handle, create_room(self.room, self.max_publishers))
        self.feeds: list[JanusPublisher] = []
        for i in range(self.max_publishers):
            session = JanusSession(self.side.process.url, self.side.config.api_secret)
            await session.open(self.http)
            self.sessions.append(session)
            peer = SyntheticPeer(audio=True, video=True, address=self.side.address, stamp=True)
            publisher = JanusPublisher(session, peer, f"pub-{i}")
            await publisher.publish(self.room)
            self.feeds.append(publisher)
            self.publishers.append(Publisher(peer, self.media, i, restarts=False))

    def streams(self) -> list[StreamRef]:
        refs = [StreamRef(p.feed, p.mids["video"]) for p in self.feeds]
        return refs + [StreamRef(p.feed, p.mids["audio"]) for p in self.feeds[:AUDIO_CAP]]

    async def join_subscriber(self, index: int, peer: SyntheticPeer) -> Closer:
        session = JanusSession(self.side.process.url, self.side.config.api_secret)
        await session.open(self.http)
        try:
            await JanusSubscriber(session, peer).subscribe(self.room, self.streams())
        except BaseException:
            peer.close()
            await session.close()
            raise

        async def close() -> None:
            peer.close()
            await session.close()

        return close

    async def close_room(self) -> None:
        for publisher in self.feeds:
            publisher.peer.close()
        await asyncio.gather(*(s.close() for s in self.sessions), return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.side.admin.message(self.side.admin_handle, destroy_room(self.room))


def core_ticks(core: int, path: str = "/proc/stat") -> tuple[int, int]:
    """(softirq, idle + iowait) clock ticks of one CPU since boot ((0, 0) if unreadable)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return 0, 0
    for line in lines:
        fields = line.split()
        if fields and fields[0] == f"cpu{core}" and len(fields) > 7:
            return int(fields[7]), int(fields[4]) + int(fields[5])
    return 0, 0


async def measure(rig: Rig, load: Load, args: Any, limits: Limits) -> Measured:
    join_s = await rig.resize(load)
    expected = rig.expected_streams()
    deadline = time.monotonic() + args.warmup
    while time.monotonic() < deadline:
        if all(rig.flowing(s) >= expected for s in rig.subscribers):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(args.settle)
    streams_ok = all(rig.flowing(s) >= expected for s in rig.subscribers)
    for sub in rig.subscribers:
        for stream in sub.peer.transport.streams.values():
            stream.latencies.clear()
    me = psutil.Process()
    lags: list[float] = []
    monitor = asyncio.create_task(loop_lag(lags))
    ports = rig.ports()
    drops0 = socket_drops(ports)
    server_drops0 = process_socket_drops(rig.side.pid())
    backlog0 = backlog_drops()
    # Sweep the bulk sockets at both edges of the window: between sweeps (every
    # 50 ms) their counts lag by up to 50 ms, +-1 % of a 5 s window in the
    # delivered share, which decided points at the 1 % loss limit.
    counters0 = await rig.side.counters(rig.http)
    rig.reader.sweep()
    received0 = rig.received()
    sent0 = rig.sent()
    sweep0 = rig.reader.sweep_seconds
    rig.reader.max_batch = 0
    psi0 = cpu_pressure_us()
    core = min(os.sched_getaffinity(rig.side.pid()))
    softirq0, idle0 = core_ticks(core)
    gen0, cpu0, t0 = sum(me.cpu_times()[:2]), rig.side.cpu_s(), time.monotonic()
    await asyncio.sleep(args.duration)
    elapsed = time.monotonic() - t0
    cpu = (rig.side.cpu_s() - cpu0) / elapsed
    generator = (sum(me.cpu_times()[:2]) - gen0) / elapsed
    psi = (cpu_pressure_us() - psi0) / 1e6 / elapsed
    softirq1, idle1 = core_ticks(core)
    hz = os.sysconf("SC_CLK_TCK")
    monitor.cancel()
    rig.reader.sweep()
    received1 = rig.received()
    counted = window_counters(counters0, await rig.side.counters(rig.http))
    got = sum(g for g, _ in received1) - sum(g for g, _ in received0)
    sent = rig.sent() - sent0
    drops = socket_drops(ports) - drops0
    server_drops = process_socket_drops(rig.side.pid()) - server_drops0
    backlog = backlog_drops() - backlog0
    latencies = sorted(
        x for s in rig.subscribers if s.sample
        for st in s.peer.transport.streams.values() for x in st.latencies
    )  # fmt: skip
    expected_packets = sent * len(rig.subscribers)
    delivery = 100 * got / max(1, expected_packets)
    gap_loss, stalled_loss, stalled = window_loss(received0, received1, sent)
    loss = gap_loss + stalled_loss
    p99 = 1000 * percentile(latencies, 0.99)
    return Measured(
        server=rig.name,
        publishers=load.publishers,
        subscribers=load.subscribers,
        passed=limits.passes(loss, p99),
        forwarded_pps=got / elapsed,
        expected_pps=expected_packets / elapsed,
        delivery_pct=delivery,
        gap_loss_pct=gap_loss,
        loss_pct=loss,
        stalled_subscribers=stalled,
        added_p50_ms=1000 * percentile(latencies, 0.5),
        added_p99_ms=p99,
        latency_samples=len(latencies),
        server_cpu_pct=100 * cpu,
        generator_cpu_pct=100 * generator,
        generator_lag_p99_ms=1000 * percentile(lags, 0.99),
        generator_socket_drops=drops,
        server_socket_drops=server_drops,
        backlog_drops=backlog,
        bulk_sweep_cpu_pct=100 * (rig.reader.sweep_seconds - sweep0) / elapsed,
        bulk_max_batch=rig.reader.max_batch,
        streams_ok=streams_ok,
        join_s=join_s,
        publishers_connected=sum(p.peer.transport.connected for p in rig.publishers[: rig.active]),
        publisher_state=rig.publisher_state(),
        cpu_pressure_pct=100 * psi,
        core_softirq_pct=100 * (softirq1 - softirq0) / hz / elapsed,
        core_idle_pct=100 * (idle1 - idle0) / hz / elapsed,
        load_1min=os.getloadavg()[0],
        server_counters=counted,
    )


def window_loss(
    before: list[tuple[int, int]], after: list[tuple[int, int]], sent: int
) -> tuple[float, float, int]:
    """Loss in a window from each subscriber's (packets, sequence gaps) at its edges.

    Returns (gap loss %, stalled loss %, stalled subscribers).  Gap loss is RFC
    3550's: holes in the sequence numbers over what arrived plus the holes.  It
    has no edge error: a packet still on its way at the window's end is counted
    in the next window, not as lost, where "100 % minus received / (sent x
    subscribers)" counted it lost (the in-flight share at the two edges, up to
    p99 / window: 97.8-100.4 % "delivered" with no packet missing).  What gaps
    cannot see is a subscriber that stopped receiving: one that got under half of
    the `sent` packets (each subscriber takes every publisher's streams) is
    stalled, and what it missed counts as lost.
    """
    got = lost = missed = stalled = 0
    for (got0, lost0), (got1, lost1) in zip(before, after, strict=True):
        g, gaps = got1 - got0, lost1 - lost0
        got, lost = got + g, lost + gaps
        if g < sent / 2:
            stalled += 1
            missed += sent - g
    expected = sent * len(after)
    gap_pct = 100 * lost / max(1, got + lost)
    return gap_pct, 100 * missed / max(1, expected), stalled


# The server's counters a window reports: traffic, and these drop reasons when they moved.
TRAFFIC = ("rtp_in", "rtp_out", "udp_send_calls")
DROPS = (
    "send_errors", "read_backlog", "bad_rtp", "srtp_errors", "oversize", "unknown_ssrc",
    "unknown_packets", "not_keyed", "foreign_source", "errors",
)  # fmt: skip


def window_counters(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What moved between two reads of the server's counters: the traffic always, drops if any."""
    out = {name: after[name] - before.get(name, 0.0) for name in TRAFFIC if name in after}
    for name in DROPS:
        moved = after.get(name, 0.0) - before.get(name, 0.0)
        if moved:
            out[name] = moved
    return out


async def search(make_rig: Callable[[], Rig], args: Any) -> dict[str, Any]:
    """Walk the ladder (bench/saturation.py) on one server; every point and the result.

    After a failing point the room is closed and built again (publishers and
    subscribers join afresh) before the next one: an overloaded server may
    have dropped sessions (consent checks lost in full buffers), and a load
    measured on those leftovers would say nothing.  A point that failed on
    p99 alone is measured once more first (`--sat-confirm`): on a shared
    machine a burst of another job on the server's core spoils one window.
    """
    limits = Limits(args.sat_max_loss, args.sat_max_p99_ms)
    steps = ladder(args.sat_subscribers, args.sat_publishers)
    history: list[Point] = []
    points: list[Measured] = []
    rig = make_rig()
    name = rig.name
    await rig.open()
    try:
        while (load := next_load(history, steps, args.sat_refine)) is not None:
            if history and not history[-1].passed:
                await rig.close()
                rig = make_rig()
                await rig.open()
            m = await measure(rig, load, args, limits)
            for _ in range(args.sat_confirm):
                if m.passed or m.loss_pct > limits.loss_pct:
                    break
                report(m, "retry")
                points.append(m)
                m = await measure(rig, load, args, limits)
            history.append(Point(load, m.forwarded_pps, m.passed))
            points.append(m)
            report(m, "pass" if m.passed else "FAIL")
    finally:
        await rig.close()
    best = sustained(history)
    at_best = next((m for m in reversed(points) if m.passed and best
                    and m.forwarded_pps == best.forwarded_pps), None)  # fmt: skip
    return {
        "server": name,
        "saturation_pps": best.forwarded_pps if best else 0.0,
        "saturated": saturated(history),
        "at_saturation": asdict(at_best) if at_best else None,
        "points": [asdict(m) for m in points],
    }


def _counted(counters: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:,.0f}" for name, value in counters.items())


def report(m: Measured, verdict: str) -> None:
    print(
        f"  {m.server} {m.publishers}x{m.subscribers}: "
        f"{m.forwarded_pps:,.0f} pps ({m.delivery_pct:.2f}% delivered) at "
        f"{m.server_cpu_pct:.0f}% CPU, loss {m.loss_pct:.3f}%"
        + (f" ({m.stalled_subscribers} stalled)" if m.stalled_subscribers else "")
        + ", p99 "
        f"{m.added_p99_ms:.1f} ms -> {verdict}; generator "
        f"{m.generator_cpu_pct:.0f}% CPU, lag p99 {m.generator_lag_p99_ms:.1f} ms, "
        f"drops {m.generator_socket_drops} (server's {m.server_socket_drops}, "
        f"backlog {m.backlog_drops}), "
        f"join {m.join_s:.1f} s; "
        f"CPU pressure {m.cpu_pressure_pct:.0f}%, load {m.load_1min:.1f}; "
        f"server core softirq {m.core_softirq_pct:.0f}%, idle {m.core_idle_pct:.0f}%; "
        f"publishers up {m.publishers_connected}/{m.publishers}"
        + ("" if m.publishers_connected == m.publishers else f" ({m.publisher_state})")
        + (f"; server counted {_counted(m.server_counters)}" if m.server_counters else ""),
        flush=True,
    )


async def run_searches(
    sides: dict[str, Any], http: aiohttp.ClientSession, media: EncodedMedia, args: Any
) -> dict[str, Any]:
    """`args.runs` searches per server, alternating the order; medians and the ratio."""
    lag: list[float] = []
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    rigs = {"visitroom": VisitroomRig, "janus": JanusRig}
    monitor = asyncio.create_task(loop_lag(lag))
    try:
        for n in range(args.runs):
            order = list(sides) if n % 2 == 0 else list(sides)[::-1]
            for name in order:
                print(f"saturation run {n + 1}/{args.runs}: {name}", flush=True)
                kind, side = rigs[name], sides[name]

                def make_rig(kind: type[Rig] = kind, side: Any = side) -> Rig:
                    return kind(side, http, media, args.sat_publishers, args.sat_sample)

                results[name].append(await search(make_rig, args))
    finally:
        monitor.cancel()
    return summarize(results)


def summarize(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": results}
    for name, runs in results.items():
        values = [r["saturation_pps"] for r in runs]
        out[f"saturation_pps_{name}"] = median_or_nan(values)
        out[f"saturation_pps_{name}_min"] = min(values, default=0.0)
        out[f"saturation_pps_{name}_max"] = max(values, default=0.0)
        out[f"saturated_{name}"] = all(r["saturated"] for r in runs)
        at = [r["at_saturation"] for r in runs if r["at_saturation"]]
        out[f"generator_cpu_pct_max_{name}"] = max(
            (p["generator_cpu_pct"] for r in runs for p in r["points"]), default=0.0
        )
        out[f"generator_socket_drops_{name}"] = sum(
            p["generator_socket_drops"] for r in runs for p in r["points"]
        )
        out[f"server_cpu_pct_at_saturation_{name}"] = [a["server_cpu_pct"] for a in at]
    if "visitroom" in results and "janus" in results:
        vr, ja = out["saturation_pps_visitroom"], out["saturation_pps_janus"]
        out["saturation_ratio"] = vr / ja if ja else float("nan")
        paired = [
            v["saturation_pps"] / j["saturation_pps"]
            for v, j in zip(results["visitroom"], results["janus"], strict=True)
            if j["saturation_pps"]
        ]
        out["saturation_ratio_paired_min"] = min(paired, default=float("nan"))
        out["saturation_ratio_paired_max"] = max(paired, default=float("nan"))
        out["saturation_ratio_paired_median"] = median_or_nan(paired)
    return out


def print_saturation(sat: dict[str, Any]) -> None:
    print("saturation: the highest forwarded packets/s at <= 1% loss and p99 <= 50 ms")
    for name in ("visitroom", "janus"):
        if f"saturation_pps_{name}" not in sat:
            continue
        runs = sat["runs"][name]
        each = ", ".join(f"{r['saturation_pps']:,.0f}" for r in runs)
        cpu = ", ".join(f"{c:.0f}" for c in sat[f"server_cpu_pct_at_saturation_{name}"])
        print(
            f"  {name:<10} {sat[f'saturation_pps_{name}']:>9,.0f} pps (runs {each}); "
            f"saturated {sat[f'saturated_{name}']}; server CPU there {cpu} %; generator CPU "
            f"max {sat[f'generator_cpu_pct_max_{name}']:.0f} %, socket drops "
            f"{sat[f'generator_socket_drops_{name}']}"
        )
    if "saturation_ratio" in sat:
        print(
            f"  ratio visitroom/Janus {sat['saturation_ratio']:.2f} (paired runs: median "
            f"{sat['saturation_ratio_paired_median']:.2f}, "
            f"{sat['saturation_ratio_paired_min']:.2f}-{sat['saturation_ratio_paired_max']:.2f})"
        )
