"""One room of 200 participants on 1 and 2 SFU workers: throughput, loss, join time, memory.

A real `visitroom serve --workers N` (signalling + N worker processes) and
a synthetic load generator (tests/synthetic_peer.py through
bench/media_clients.py: real WebSocket joins, real ICE + DTLS-SRTP, no
codecs).  A few speakers publish pre-encoded VP8 and Opus
(bench/media_workload.py; the loud speaker rotates every 3 s); everyone,
speakers included, subscribes with the profile's slots:

* ``audio+1``: 3 audio slots and 1 video slot (the dominant speaker);
* ``gallery``: 3 audio slots and 4 video slots, all at full rate (no
  thumbnail trick): what 200 people watching a 4-tile gallery cost;
* ``gallery-thumbs`` (called ``gallery`` before 2026-12-06): 3 audio slots
  and 4 video slots, the first (on stage) at full rate and 3 thumbnails at a
  reduced rate: the SFU forwards key frames only to thumbnail slots and asks
  their publishers for one every `--thumbnail-refresh` seconds (no
  simulcast: see docs/benchmarks.md).

Counting 80,000+ packets/s in Python would make the generator the limit on
these 2 cores, so all but `--sample` listeners are counted in bulk
(bench/bulk_receive.py: real ICE + DTLS and consent, then their sockets are
drained with recvmmsg every 20 ms and classified with numpy; sequence gaps
are still counted per SSRC).  The kernel's drop counter of every listener
socket (/proc/net/udp) is reported: it must stay 0.  `--no-bulk` reads
every packet in Python as before.

Participants join in steps (default 50, 100, 150, 200) while media flows;
after each step the generator measures, for `--duration` seconds, what the
subscribers received (packets/s, sequence gaps = loss), the CPU time of
every server process (psutil: the signalling process and each worker), the
server's memory, and its own CPU and loop lag (the generator shares the 2
cores: it is reported so that a generator-limited run shows).  Each
subscriber's join-to-first-frame is the time from opening its WebSocket to
the first packet on a video slot.

The scaling efficiency compares capacity, not the fixed load of the room
(1 and 2 workers forward the same packets): a configuration's capacity is
the forwarded packets/s divided by the CPU share of its busiest worker
(what it could forward before that worker saturates), and efficiency =
capacity(2 workers) / (2 x capacity(1 worker)).  It falls below 1 with
relay overhead and with an uneven split of the room.

    python bench/room200.py --quick --json results/room200.json
    python bench/room200.py --json results/room200.json --png docs/room200.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bulk_receive import BulkReader, peer_counts, peer_ports, socket_drops  # noqa: E402
from media_clients import (  # noqa: E402
    METRICS_HEADERS,
    Client,
    Server,
    loop_lag,
    percentile,
    raise_group_priority,
)
from media_workload import EncodedMedia, Publisher, encode_media, play  # noqa: E402

# audio slots, video slots, on stage (0: every video slot at full rate)
PROFILES = {"audio+1": (3, 1, 0), "gallery": (3, 4, 0), "gallery-thumbs": (3, 4, 1)}


@dataclass
class Step:
    profile: str
    workers: int
    participants: int
    forwarded_pps: float
    loss_pct: float
    with_video: float  # share of subscribers that received video in the window
    worker_cpu: list[float]  # cores, per worker
    signalling_cpu: float
    generator_cpu: float
    generator_lag_p99_ms: float
    join_to_first_frame_p50_ms: float
    join_to_first_frame_p95_ms: float
    join_to_connected_p95_ms: float  # of which: WebSocket, offer/answer, ICE and DTLS
    rss_per_participant_mb: float
    relay_pps: float
    capacity_pps: float  # forwarded_pps / the busiest worker's CPU share
    generator_socket_drops: int = 0  # kernel drops on the listeners' sockets in the window
    bulk_receivers: int = 0  # listeners counted in bulk (bench/bulk_receive.py)
    # From the workers' counters (/metrics, reported about once a second): every RTP
    # packet sent (media, retransmissions and probe padding), the padding alone, and
    # the transport-cc feedback received (0 unless `--transport-cc`).
    rtp_out_pps: float = 0.0
    padding_pps: float = 0.0
    twcc_feedback_pps: float = 0.0
    # The SFU's last `downlink` estimate to each participant that got one, median (kbit/s;
    # 0: none, i.e. no transport-cc): against what a listener receives, app-limited or not.
    downlink_kbps_median: float = 0.0

    @property
    def ok(self) -> bool:
        return self.loss_pct < 1.0 and self.with_video >= 0.99


class PoolServer(Server):
    """`visitroom serve --workers N`, not pinned: the workers need both cores."""

    def __init__(self, workers: int, env: dict[str, str]) -> None:
        super().__init__(None, {"VISITROOM_WORKERS": str(workers), **env})

    def processes(self) -> dict[str, psutil.Process]:
        found = {"signalling": self.ps}
        for child in self.ps.children():
            try:
                cmdline = child.cmdline()
            except psutil.Error:
                continue
            if "sfu.workers.worker" in cmdline:
                found[cmdline[cmdline.index("--name") + 1]] = child
        return found

    def cpu_by_process(self) -> dict[str, float]:
        result = {}
        for name, proc in self.processes().items():
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            result[name] = float(times.user + times.system)
        return result

    def rss(self) -> int:
        total = 0
        for proc in self.processes().values():
            try:
                total += int(proc.memory_info().rss)
            except psutil.Error:
                continue
        return total


@dataclass
class Joined:
    client: Client
    started: float
    connected: float = 0.0  # SRTP keyed
    video_ssrcs: set[int] = field(default_factory=set)

    def first_frame_ms(self) -> float | None:
        streams = self.client.peer.transport.streams
        firsts = [streams[s].first_at for s in self.video_ssrcs if s in streams]
        for count in peer_counts(self.client.peer):
            firsts += [count.ssrcs[s].first_at for s in self.video_ssrcs if s in count.ssrcs]
        return 1000 * (min(firsts) - self.started) if firsts else None

    def video_packets(self) -> int:
        streams = self.client.peer.transport.streams
        total = sum(streams[s].packets for s in self.video_ssrcs if s in streams)
        for count in peer_counts(self.client.peer):
            total += sum(count.ssrcs[s].packets for s in self.video_ssrcs if s in count.ssrcs)
        return total


def received(client: Client) -> int:
    return client.received() + sum(c.packets for c in peer_counts(client.peer))


def lost(client: Client) -> int:
    return client.lost() + sum(c.lost for c in peer_counts(client.peer))


async def join_all(
    server: Server,
    session: aiohttp.ClientSession,
    room: str,
    clients: list[Client],
    at_once: int,
    reader: BulkReader | None = None,
) -> list[Joined]:
    """Join `clients`; with a `reader`, each is counted in bulk once connected."""
    gate = asyncio.Semaphore(at_once)

    async def join(client: Client) -> Joined:
        async with gate:
            joined = Joined(client, time.monotonic())
            if reader is not None:
                reader.bind_patch(client.peer.transport._ice)
            await client.join(server, session, room)
            joined.connected = time.monotonic()
            if reader is not None:
                reader.bulk(client.peer.transport._ice._protocols)
            kinds = {mid: kind for mid, kind, _ in client.peer.mids}
            slots = client.peer.slot_ssrcs()
            joined.video_ssrcs = {s for mid, s in slots.items() if kinds.get(mid) == "video"}
            return joined

    return list(await asyncio.gather(*(join(c) for c in clients)))


async def measure(
    server: PoolServer,
    joined: list[Joined],
    new: list[Joined],
    args: argparse.Namespace,
    label: tuple[str, int],
    rss0: int,
) -> Step:
    me = psutil.Process()
    lags: list[float] = []
    monitor = asyncio.create_task(loop_lag(lags))
    clients = [j.client for j in joined]
    ports = set().union(*(peer_ports(c.peer) for c in clients))
    drops0 = socket_drops(ports)
    received0, lost0 = sum(received(c) for c in clients), sum(lost(c) for c in clients)
    video0 = [j.video_packets() for j in joined]
    cpu0, gen0, t0 = server.cpu_by_process(), sum(me.cpu_times()[:2]), time.monotonic()
    counters0 = await media_counters(server)
    await asyncio.sleep(args.duration)
    elapsed = time.monotonic() - t0
    cpu1, gen1 = server.cpu_by_process(), sum(me.cpu_times()[:2])
    counters1 = await media_counters(server)
    rates = {name: (counters1[name] - counters0[name]) / elapsed for name in COUNTERS}
    monitor.cancel()
    got = sum(received(c) for c in clients) - received0
    missing = sum(lost(c) for c in clients) - lost0
    drops = socket_drops(ports) - drops0
    workers = sorted(k for k in cpu1 if k.startswith("worker"))
    worker_cpu = [(cpu1[w] - cpu0.get(w, cpu1[w])) / elapsed for w in workers]
    firsts = sorted(f for j in new if (f := j.first_frame_ms()) is not None)
    forwarded = got / elapsed
    return Step(
        profile=label[0],
        workers=label[1],
        participants=len(joined),
        forwarded_pps=forwarded,
        loss_pct=100 * missing / max(1, got + missing),
        with_video=sum(j.video_packets() > v for j, v in zip(joined, video0, strict=True))
        / max(1, len(joined)),
        worker_cpu=worker_cpu,
        signalling_cpu=(cpu1["signalling"] - cpu0["signalling"]) / elapsed,
        generator_cpu=(gen1 - gen0) / elapsed,
        generator_lag_p99_ms=1000 * percentile(lags, 0.99),
        join_to_first_frame_p50_ms=percentile(firsts, 0.5) if len(firsts) == len(new) else math.inf,
        join_to_first_frame_p95_ms=percentile(firsts, 0.95)
        if len(firsts) == len(new)
        else math.inf,
        join_to_connected_p95_ms=percentile([1000 * (j.connected - j.started) for j in new], 0.95),
        rss_per_participant_mb=(server.rss() - rss0) / len(joined) / 2**20,
        relay_pps=rates["relay_rtp_out"],
        capacity_pps=forwarded / max(max(worker_cpu, default=0.0), 1e-6),
        generator_socket_drops=drops,
        bulk_receivers=sum(1 for c in clients if peer_counts(c.peer)),
        rtp_out_pps=rates["rtp_out"],
        padding_pps=rates["padding_out"],
        twcc_feedback_pps=rates["twcc_feedback_in"],
        downlink_kbps_median=statistics.median(
            [c.downlink_kbps for c in clients if c.downlink_kbps is not None] or [0]
        ),
    )


COUNTERS = ("relay_rtp_out", "rtp_out", "padding_out", "twcc_feedback_in")


async def media_counters(server: Server) -> dict[str, float]:
    """`COUNTERS` from /metrics (every worker, summed by the pool); absent: 0."""
    found = dict.fromkeys(COUNTERS, 0.0)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/metrics", headers=METRICS_HEADERS) as response,
    ):
        for line in (await response.text()).splitlines():
            name, _, value = line.partition(" ")
            short = name.removeprefix("visitroom_media_")
            if short in found and name != short:
                found[short] = float(value)
    return found


async def settle(joined: list[Joined], seconds: float) -> None:
    """Until everyone gets video (or `seconds`), then one more second for switches."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(j.video_packets() for j in joined):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)


async def run_profile(
    profile: str, workers: int, media: EncodedMedia, args: argparse.Namespace
) -> list[Step]:
    audio_slots, video_slots, stage = PROFILES[profile]
    env = {
        "VISITROOM_WORKER_MAX_PARTICIPANTS": str(math.ceil(args.participants / workers)),
        "VISITROOM_STAGE_VIDEO_SLOTS": str(stage),
        "VISITROOM_THUMBNAIL_REFRESH_S": str(args.thumbnail_refresh),
    }
    server = PoolServer(workers, env)
    steps: list[Step] = []
    stop = asyncio.Event()
    player: asyncio.Task[None] | None = None
    joined: list[Joined] = []
    reader: BulkReader | None = None
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await server.wait_healthy(session)
            await asyncio.sleep(1.0)  # the workers are up once /healthz answers; let them settle
            room = f"room200-{os.getpid()}-{profile.replace('+', '')}-{workers}"
            await server.create_room(session, room, args.participants + 10)
            rss0 = server.rss()
            tcc = args.transport_cc
            speakers = [
                Client(f"spk-{i}", audio=True, video=True, audio_slots=audio_slots,
                       video_slots=video_slots, transport_cc=tcc)
                for i in range(args.speakers)
            ]  # fmt: skip
            joined = await join_all(server, session, room, speakers, args.at_once)
            publishers = [Publisher(c.peer, media, i) for i, c in enumerate(speakers)]
            player = asyncio.create_task(play(publishers, stop))
            reader = None if args.no_bulk else BulkReader()
            for target in args.steps:
                first = len(joined)
                sample = [n for n in range(first, target) if n - args.speakers < args.sample]
                bulk = [n for n in range(first, target) if n not in sample]
                new = []
                for numbers, bulk_reader in ((sample, None), (bulk, reader)):
                    new_clients = [
                        Client(
                            f"sub-{n}",
                            audio_slots=audio_slots,
                            video_slots=video_slots,
                            transport_cc=tcc,
                        )
                        for n in numbers
                    ]
                    new += await join_all(
                        server, session, room, new_clients, args.at_once, bulk_reader
                    )
                joined += new
                await settle(joined, args.warmup)
                step = await measure(server, joined, new, args, (profile, workers), rss0)
                steps.append(step)
                print_step(step)
    finally:
        stop.set()
        if player is not None:
            await player
        for j in joined:
            await j.client.close()
        if reader is not None:
            await reader.stop()
        server.stop()
    return steps


def print_step(s: Step) -> None:
    cpu = "/".join(f"{100 * c:.0f}" for c in s.worker_cpu)
    print(
        f"{s.profile:>8} {s.workers:>2}w {s.participants:>4} "
        f"{'ok ' if s.ok else 'BAD'} fwd {s.forwarded_pps:>7.0f} pps  loss {s.loss_pct:6.3f}%  "
        f"video {100 * s.with_video:5.1f}%  cpu/core {cpu:>9}%  "
        f"sig {100 * s.signalling_cpu:3.0f}%  "
        f"gen {100 * s.generator_cpu:3.0f}% (lag p99 {s.generator_lag_p99_ms:5.1f} ms)  "
        f"join->frame p50 {s.join_to_first_frame_p50_ms:6.0f} p95 "
        f"{s.join_to_first_frame_p95_ms:6.0f} ms (connected p95 "
        f"{s.join_to_connected_p95_ms:4.0f})  rss/part {s.rss_per_participant_mb:.2f} MB  "
        f"relay {s.relay_pps:>6.0f} pps  gen drops {s.generator_socket_drops}  "
        f"sent {s.rtp_out_pps:>6.0f} pps (padding {s.padding_pps:>5.0f}, "
        f"twcc fb in {s.twcc_feedback_pps:>5.0f}/s, "
        f"downlink p50 {s.downlink_kbps_median:.0f} kbit/s)",
        flush=True,
    )


def summarise(runs: list[dict[str, list[Step]]], args: argparse.Namespace) -> dict[str, Any]:
    """Medians (with min and max) over runs, per profile and worker count."""
    out: dict[str, Any] = {}
    for key in runs[0]:
        profile, workers = key.split("/")
        finals = [r[key][-1] for r in runs]
        reached = [max((s.participants for s in r[key] if s.ok), default=0) for r in runs]
        entry = {
            "participants_ok": _spread(reached),
            **{
                name: _spread([getattr(s, name) for s in finals])
                for name in (
                    "forwarded_pps", "loss_pct", "join_to_first_frame_p50_ms",
                    "join_to_first_frame_p95_ms", "join_to_connected_p95_ms",
                    "rss_per_participant_mb", "capacity_pps",
                    "signalling_cpu", "generator_cpu", "generator_lag_p99_ms", "relay_pps",
                    "generator_socket_drops", "rtp_out_pps", "padding_pps", "twcc_feedback_pps",
                    "downlink_kbps_median",
                )
            },
            "worker_cpu": [  # busiest worker first
                _spread(list(c))
                for c in zip(*(sorted(s.worker_cpu, reverse=True) for s in finals), strict=True)
            ],
            "steps": [[asdict(s) for s in r[key]] for r in runs],
        }  # fmt: skip
        out.setdefault(profile, {})[workers] = entry
    for profile, by_workers in out.items():
        if "1" in by_workers and "2" in by_workers:
            effs = [
                r[f"{profile}/2"][-1].capacity_pps / (2 * r[f"{profile}/1"][-1].capacity_pps)
                for r in runs
            ]
            by_workers["2"]["scaling_efficiency"] = _spread(effs)
            by_workers["1"]["scaling_efficiency"] = _spread([1.0] * len(runs))
    return out


def _spread(values: Sequence[float]) -> dict[str, float]:
    finite = [v for v in values if math.isfinite(v)] or [math.inf]
    return {"median": statistics.median(finite), "min": min(finite), "max": max(finite)}


def print_table(summary: dict[str, Any]) -> None:
    print()
    print(
        f"{'profile':>8} {'workers':>7} {'ok (<1% loss)':>13} {'fwd pps':>9} {'loss %':>7} "
        f"{'CPU %/core':>12} {'join p50 ms':>11} {'p95 ms':>7} {'MB/part':>7} {'scaling':>7}"
    )
    for profile, by_workers in summary.items():
        for workers, e in sorted(by_workers.items()):
            cpu = "/".join(f"{100 * c['median']:.0f}" for c in e["worker_cpu"])
            eff = e.get("scaling_efficiency", {}).get("median", float("nan"))
            print(
                f"{profile:>8} {workers:>7} {e['participants_ok']['median']:>13.0f} "
                f"{e['forwarded_pps']['median']:>9.0f} {e['loss_pct']['median']:>7.3f} "
                f"{cpu:>12} {e['join_to_first_frame_p50_ms']['median']:>11.0f} "
                f"{e['join_to_first_frame_p95_ms']['median']:>7.0f} "
                f"{e['rss_per_participant_mb']['median']:>7.2f} {eff:>7.2f}"
            )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    media = encode_media(args.video_kbps)
    runs: list[dict[str, list[Step]]] = []
    for n in range(args.runs):
        result: dict[str, list[Step]] = {}
        for profile in args.profiles:
            for workers in args.workers:
                print(f"run {n + 1}/{args.runs}: {profile}, {workers} worker(s)", flush=True)
                result[f"{profile}/{workers}"] = await run_profile(profile, workers, media, args)
        runs.append(result)
    return {"summary": summarise(runs, args), "video_pps_per_publisher": media.video_pps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="audio+1 only, one short run")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--png", help="write a plot of this run to this file")
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 100, 150, 200])
    parser.add_argument("--speakers", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--profiles", nargs="+", default=["audio+1", "gallery"], choices=PROFILES)
    parser.add_argument("--profile", choices=PROFILES, help="one profile (same as --profiles P)")
    parser.add_argument("--sample", type=int, default=10, help="listeners read packet by packet")
    parser.add_argument("--no-bulk", action="store_true", help="read every listener in Python")
    parser.add_argument(
        "--nice",
        type=int,
        default=-10 if os.geteuid() == 0 else 0,
        help="priority of the generator, server and workers (default -10 as root)",
    )
    parser.add_argument("--video-kbps", type=int, default=300, help="the REMB cap above 20")
    parser.add_argument("--thumbnail-refresh", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--at-once", type=int, default=10, help="joins in flight")
    parser.add_argument(
        "--transport-cc",
        action="store_true",
        help="every participant negotiates transport-cc and sends feedback (needs --no-bulk: "
        "a bulk listener sees its packets only every sweep, no arrival times to report)",
    )
    args = parser.parse_args()
    if args.profile:
        args.profiles = [args.profile]
    if args.transport_cc and not args.no_bulk:
        parser.error("--transport-cc needs --no-bulk")
    if args.quick:
        args.profiles, args.runs, args.duration, args.warmup = ["audio+1"], 1, 5.0, 5.0
    args.steps = sorted({*(s for s in args.steps if s < args.participants), args.participants})
    import uvloop

    if args.nice:  # this process, the server and its workers: one session, one autogroup
        os.nice(args.nice)
        raise_group_priority(os.getpid(), args.nice)
    started = time.time()
    results = uvloop.run(run(args))
    results["command"] = " ".join(["python", *sys.argv])
    results["nice"] = args.nice
    results["wall_s"] = time.time() - started
    results["cpus"] = os.cpu_count()
    print_table(results["summary"])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    if args.png:
        from room200_plot import plot

        plot(results, Path(args.png))


if __name__ == "__main__":
    main()
