"""Media fan-out benchmark: synthetic publishers and subscribers through the SFU.

The server is a real `visitroom serve` (signalling + the in-process SFU)
pinned to core 0 with taskset; this generator runs on core 1.  Every client
joins through the real WebSocket protocol (host tokens from
common.tokens.mint), offers, and runs real ICE + DTLS-SRTP; publishers play
pre-encoded VP8 (~1.5 Mbit/s, 30 fps) and Opus (50 packets/s, with RFC 6464
levels, the loud speaker rotating every 3 s); subscribers count packets and
sequence gaps per SSRC without decrypting (a sample is decrypted to check
SRTP) and measure the added latency from the abs-send-time extension, which
the SFU forwards untouched.

In the same run it measures the ceiling (bench/media_ceiling.py: a bare
uvloop loop doing only receive, header rewrite, SRTP protect and sendto for
the same fan-out, on the same core), the batched ceiling (the same loop
sending each incoming packet's copies with one sendmmsg through cffi:
`batched_ceiling_ratio` is the SFU against that, `batching_gain` what
batching alone buys a bare loop) and the naive alternative
(bench/media_relay.py: aiortc MediaRelay decoding and re-encoding) for
1 publisher x 5 subscribers against the SFU doing the same.

    python bench/media_fanout.py --quick --json results/media.json

Modes (`--modes`, run in rotation in one invocation, so that a shared
machine's load falls on all of them alike): `single` (the default: each
publisher one VP8 stream), `simulcast` (each publisher three layers as
Chromium sends them: bench/media_workload.py `encode_simulcast`; subscribers
take what the SFU forwards, the top layer unless `--thumbnails` of them
report small tiles with `video_sizes`).  `--simulcast` is `--modes simulcast`.
A mode ending in `+tcc` has every client negotiate transport-cc: the SFU
numbers what it sends each subscriber, subscribers send real transport-cc
feedback every 100 ms (tests/synthetic_peer.py) and the SFU runs its
estimator per subscriber, as with browsers; publishers number what they send
and get the SFU's feedback.  `--transport-cc` adds the `+tcc` twin of every
mode given.
With several modes the results carry `modes` (each mode's medians and
runs) and `per_core_ratio` (each mode's forwarded packets per busy core
against the first mode's); the top-level keys are the first mode's.

    python bench/media_fanout.py --modes single,simulcast --no-relay --no-ceiling
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import media_ceiling  # noqa: E402
from media_clients import (  # noqa: E402
    METRICS_HEADERS,
    PRIORITY,
    Client,
    RelayServer,
    Server,
    connect_all,
    loop_lag,
    percentile,
    pinned,
    raise_group_priority,
)
from media_workload import (  # noqa: E402
    SIMULCAST_RIDS,
    EncodedMedia,
    Publisher,
    SimulcastPublisher,
    encode_media,
    encode_simulcast,
    play,
)

from sfu.packet.rtp import build_rtp  # noqa: E402

SERVER_CORE, GENERATOR_CORE = 0, 1
MODES = ("single", "simulcast", "single+tcc", "simulcast+tcc")
THUMBNAIL_SIZE = (160, 90)  # what a `--thumbnails` subscriber reports for its tiles


@dataclass
class Run:
    publishers: int
    subscribers: int
    input_pps: float
    forwarded_pps: float
    server_cpu_cores: float
    loss_pct: float
    added_p50_ms: float
    added_p99_ms: float
    rss_per_participant_mb: float
    fanout: float
    decrypt_failures: int
    generator_cpu_cores: float
    generator_lag_p99_ms: float
    mode: str = "single"
    forwarded_per_core_pps: float = 0.0  # forwarded_pps / server_cpu_cores
    stage_video_kbps: float = 0.0  # video received per stream by a stage subscriber
    thumbnail_video_kbps: float = 0.0  # the same for a `--thumbnails` subscriber (0: none)
    twcc_feedback_in_per_s: float = 0.0  # transport-cc feedback packets the SFU read
    twcc_feedback_out_per_s: float = 0.0  # and sent to publishers
    downlink_kbps: float = 0.0  # median of the subscribers' last `downlink` estimates (0: none)
    client_errors: int = 0  # `error` messages the clients got after joining (video_sizes...)


@dataclass(frozen=True)
class Media:
    """What publishers play: the single stream (and the audio), the simulcast layers."""

    single: EncodedMedia
    layers: Any = None  # tests.simulcast_live.Encoded when a mode needs it


async def fanout_run(
    server: Server,
    session: aiohttp.ClientSession,
    args: argparse.Namespace,
    media: EncodedMedia | Media,
    n: int,
    mode: str = "single",
) -> Run:
    both = media if isinstance(media, Media) else Media(media)
    simulcast = mode.startswith("simulcast")
    negotiate = {"transport_cc": True} if mode.endswith("+tcc") else {}
    room = f"fanout-{os.getpid()}-{mode.replace('+', '-')}-{n}"
    total = args.publishers + args.subscribers
    await server.create_room(session, room, total + 2)
    rss_before = server.rss()
    rids = SIMULCAST_RIDS if simulcast else ()
    clients = [
        Client(
            f"pub-{i}",
            audio=True,
            video=True,
            audio_slots=3,
            video_slots=4,
            simulcast=rids,
            **negotiate,
        )
        for i in range(args.publishers)
    ] + [
        Client(
            f"sub-{i}",
            audio_slots=3,
            video_slots=4,
            decrypt_every=97,
            latency_every=5,
            **negotiate,
        )
        for i in range(args.subscribers)
    ]
    await connect_all(server, session, room, clients)
    thumbnails = round(getattr(args, "thumbnails", 0.0) * args.subscribers)
    small = clients[len(clients) - thumbnails :] if thumbnails else []
    for client in small:
        await client.send_video_sizes(*THUMBNAIL_SIZE)
    rss_after = server.rss()
    publishers: list[Publisher] = [
        SimulcastPublisher(c.peer, both.single, i, both.layers)
        if simulcast
        else Publisher(c.peer, both.single, i)
        for i, c in enumerate(clients[: args.publishers])
    ]
    stop = asyncio.Event()
    player = asyncio.create_task(play(publishers, stop))
    try:
        await _warm_up(clients, args.publishers, args.warmup)
        before = await media_counters(server, session, FEEDBACK_COUNTERS)
        t0 = time.monotonic()
        run = await _measure(server, clients, publishers, args, rss_after - rss_before, small)
        after = await media_counters(server, session, FEEDBACK_COUNTERS)
        elapsed = time.monotonic() - t0
        run.twcc_feedback_in_per_s = (after[0] - before[0]) / elapsed
        run.twcc_feedback_out_per_s = (after[1] - before[1]) / elapsed
        estimates = [c.downlink_kbps for c in clients[args.publishers :] if c.downlink_kbps]
        run.downlink_kbps = statistics.median(estimates) if estimates else 0.0
        run.client_errors = sum(len(c.errors) for c in clients)
        run.mode = mode
        return run
    finally:
        stop.set()
        await player
        for client in clients:
            await client.close()


FEEDBACK_COUNTERS = ("twcc_feedback_in", "twcc_feedback_out")


async def media_counters(
    server: Server, session: aiohttp.ClientSession, names: tuple[str, ...]
) -> list[float]:
    """Media-plane counters from /metrics (`visitroom_media_<name>`; 0 when absent)."""
    async with session.get(f"{server.url}/metrics", headers=METRICS_HEADERS) as response:
        text = await response.text()
    values = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        name = key.removeprefix("visitroom_media_")
        if key.startswith("visitroom_media_") and name in values:
            values[name] = float(value)
    return [values[n] for n in names]


async def _warm_up(clients: list[Client], publishers: int, seconds: float) -> None:
    """Until every subscriber gets video from every publisher (or `seconds`)."""
    deadline = time.monotonic() + seconds
    subscribers = clients[publishers:]
    while time.monotonic() < deadline:
        if all(c.video_streams() >= min(4, publishers) for c in subscribers):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # let switches and key frames settle


async def _measure(
    server: Server,
    clients: list[Client],
    publishers: list[Publisher],
    args: argparse.Namespace,
    rss_delta: int,
    small: list[Client] | None = None,
) -> Run:
    small = small or []
    stage = [c for c in clients[len(publishers) :] if c not in small]
    for client in clients:
        client.reset_latencies()
    stage0 = [c.video_bytes() for c in stage]
    small0 = [c.video_bytes() for c in small]
    me = psutil.Process()
    lags: list[float] = []
    monitor = asyncio.create_task(loop_lag(lags))
    gen0 = sum(me.cpu_times()[:2])
    received0 = sum(c.received() for c in clients)
    lost0 = sum(c.lost() for c in clients)
    sent0 = sum(p.sent for p in publishers)
    cpu0, t0 = server.cpu_s(), time.monotonic()
    await asyncio.sleep(args.duration)
    elapsed = time.monotonic() - t0
    cpu = (server.cpu_s() - cpu0) / elapsed
    generator_cpu = (sum(me.cpu_times()[:2]) - gen0) / elapsed
    monitor.cancel()
    received = sum(c.received() for c in clients) - received0
    lost = sum(c.lost() for c in clients) - lost0
    sent = sum(p.sent for p in publishers) - sent0
    latencies = sorted(x for c in clients for x in c.latencies())
    streams = max(1, min(4, len(publishers)))  # video streams each subscriber receives
    stage_kbps = _video_kbps(stage, stage0, elapsed * streams)
    small_kbps = _video_kbps(small, small0, elapsed * streams)
    return Run(
        publishers=args.publishers,
        subscribers=args.subscribers,
        input_pps=sent / elapsed,
        forwarded_pps=received / elapsed,
        server_cpu_cores=cpu,
        loss_pct=100 * lost / max(1, received + lost),
        added_p50_ms=1000 * percentile(latencies, 0.5),
        added_p99_ms=1000 * percentile(latencies, 0.99),
        rss_per_participant_mb=rss_delta / (args.publishers + args.subscribers) / 2**20,
        fanout=received / max(1, sent),
        decrypt_failures=sum(c.decrypt_failures() for c in clients),
        generator_cpu_cores=generator_cpu,
        generator_lag_p99_ms=1000 * percentile(lags, 0.99),
        forwarded_per_core_pps=received / elapsed / max(cpu, 1e-6),
        stage_video_kbps=statistics.mean(stage_kbps) if stage_kbps else 0.0,
        thumbnail_video_kbps=statistics.mean(small_kbps) if small_kbps else 0.0,
    )


def _layer_rates(layers: Any) -> dict[str, dict[str, float]]:
    """kbit/s and packets/s of each encoded simulcast layer (VP8 data, 30 fps)."""
    out = {}
    for rid, frames in layers.items():
        data = sum(len(d) for frame in frames for _, d in frame)
        packets = sum(len(frame) for frame in frames)
        out[rid] = {"kbps": 8 * data * 30 / len(frames) / 1000, "pps": packets * 30 / len(frames)}
    return out


def _video_kbps(clients: list[Client], before: list[int], seconds: float) -> list[float]:
    """kbit/s of video each client received since `before` (its byte counts)."""
    return [
        8 * (c.video_bytes() - b) / seconds / 1000 for c, b in zip(clients, before, strict=True)
    ]


async def relay_comparison(
    server: Server, session: aiohttp.ClientSession, media: Any, duration: float
) -> dict[str, float]:
    """CPU of aiortc MediaRelay vs the SFU for 1 publisher x 5 subscribers."""
    sfu_cpu, sfu_pps = await _one_by_five(server, None, session, media, duration)
    relay = RelayServer(SERVER_CORE)
    try:
        await relay.started()
        relay_cpu, relay_pps = await _one_by_five(None, relay, session, media, duration)
    finally:
        relay.stop()
    return {
        "sfu_1x5_cpu_cores": sfu_cpu,
        "sfu_1x5_delivered_pps": sfu_pps,
        "relay_1x5_cpu_cores": relay_cpu,
        "relay_1x5_delivered_pps": relay_pps,
        "relay_cpu_ratio": relay_cpu / max(sfu_cpu, 1e-6),
    }


async def _one_by_five(
    server: Server | None,
    relay: RelayServer | None,
    session: aiohttp.ClientSession,
    media: Any,
    duration: float,
) -> tuple[float, float]:
    """Server CPU (cores) and packets/s delivered to the five subscribers."""
    clients = [Client("pub", audio=True, video=True)]
    clients += [Client(f"sub-{i}", audio_slots=1, video_slots=1) for i in range(5)]
    target: Any = server if server is not None else relay
    if server is not None:
        room = f"relay-{os.getpid()}"
        await server.create_room(session, room, 8)
        await connect_all(server, session, room, clients)
    else:
        for client in clients:
            await client.join_relay(target)
    stop = asyncio.Event()
    player = asyncio.create_task(play([Publisher(clients[0].peer, media, 0)], stop))
    try:
        await asyncio.sleep(3.0)
        cpu0, t0 = target.cpu_s(), time.monotonic()
        got0 = sum(c.received() for c in clients[1:])
        await asyncio.sleep(duration)
        elapsed = time.monotonic() - t0
        got = sum(c.received() for c in clients[1:]) - got0
        return float((target.cpu_s() - cpu0) / elapsed), got / elapsed
    finally:
        stop.set()
        await player
        for client in clients:
            await client.close()


def _median_run(runs: list[Run]) -> dict[str, float]:
    keys = [k for k, v in asdict(runs[0]).items() if isinstance(v, (int, float))]
    return {k: statistics.median(getattr(r, k) for r in runs) for k in keys}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    os.sched_setaffinity(0, {GENERATOR_CORE})
    if args.nice:
        PRIORITY["nice"] = args.nice
        os.nice(args.nice)
        raise_group_priority(os.getpid(), args.nice)
    media = encode_media(args.video_kbps)
    modes = args.modes
    layers = encode_simulcast() if any(m.startswith("simulcast") for m in modes) else None
    both = Media(media, layers)
    server = Server(SERVER_CORE)
    results: dict[str, Any] = {}
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await server.wait_healthy(session)
            by_mode: dict[str, list[Run]] = {m: [] for m in modes}
            for n in range(args.runs):
                for mode in modes:  # in rotation: a busy neighbour slows every mode alike
                    by_mode[mode].append(await fanout_run(server, session, args, both, n, mode))
            runs = by_mode[modes[0]]
            if layers is not None:
                results["simulcast_layers"] = _layer_rates(layers)
            results.update(_median_run(runs))
            results["runs"] = [asdict(r) for r in runs]
            if len(modes) > 1:
                results["modes"] = {
                    m: {**_median_run(r), "runs": [asdict(x) for x in r]}
                    for m, r in by_mode.items()
                }
                base = results["modes"][modes[0]]["forwarded_per_core_pps"]
                results["per_core_ratio"] = {
                    m: results["modes"][m]["forwarded_per_core_pps"] / max(base, 1e-6)
                    for m in modes
                }
            if not args.no_relay:
                results.update(await relay_comparison(server, session, media, args.relay_duration))
    finally:
        server.stop()
    if not args.no_ceiling:
        packets = [
            build_rtp(payload_type=96, sequence=n, timestamp=n * 3000, ssrc=1, payload=payload)
            for n, payload in enumerate(p for frame in media.video for p in frame)
        ]
        ceiling = await media_ceiling.measure(
            packets,
            max(1, round(results["fanout"])),
            160_000,
            args.ceiling_duration,
            pinned(SERVER_CORE),
        )
        capacity = results["forwarded_pps"] / max(results["server_cpu_cores"], 1e-6)
        results["ceiling_pps"] = ceiling.ceiling_pps
        results["ceiling_delivered_pps"] = ceiling.delivered_pps
        results["ceiling_cpu_cores"] = ceiling.cpu_cores
        results["sfu_capacity_pps"] = capacity
        per_core = ceiling.ceiling_pps / max(ceiling.cpu_cores, 1e-6)
        results["ceiling_per_core_pps"] = per_core
        results["ceiling_ratio"] = capacity / max(per_core, 1.0)
        batched = await media_ceiling.measure(
            packets,
            max(1, round(results["fanout"])),
            args.batched_offer_pps,
            args.ceiling_duration,
            pinned(SERVER_CORE),
            batched=True,
        )
        batched_per_core = batched.ceiling_pps / max(batched.cpu_cores, 1e-6)
        results["batched_ceiling_pps"] = batched.ceiling_pps
        results["batched_ceiling_delivered_pps"] = batched.delivered_pps
        results["batched_ceiling_cpu_cores"] = batched.cpu_cores
        results["batched_ceiling_per_core_pps"] = batched_per_core
        results["batched_ceiling_ratio"] = capacity / max(batched_per_core, 1.0)
        results["batching_gain"] = batched_per_core / max(per_core, 1.0)
    return results


def print_table(results: dict[str, Any]) -> None:
    print(
        f"{'mode':>10} {'publishers':>10} {'subscribers':>11} {'fwd pps':>9} {'CPU %/core':>10} "
        f"{'pps/core':>9} {'loss %':>7} {'p50 ms':>7} {'p99 ms':>7} {'RSS/part MB':>11}"
    )
    modes = results.get("modes")
    runs = [r for m in modes.values() for r in m["runs"]] if modes else results["runs"]
    for r in runs:
        print(
            f"{r.get('mode', 'single'):>10} "
            f"{r['publishers']:>10} {r['subscribers']:>11} {r['forwarded_pps']:>9.0f} "
            f"{100 * r['server_cpu_cores']:>10.1f} {r.get('forwarded_per_core_pps', 0):>9.0f} "
            f"{r['loss_pct']:>7.3f} "
            f"{r['added_p50_ms']:>7.2f} {r['added_p99_ms']:>7.2f} "
            f"{r['rss_per_participant_mb']:>11.2f}   (generator "
            f"{100 * r['generator_cpu_cores']:.0f}% CPU, "
            f"loop lag p99 {r['generator_lag_p99_ms']:.1f} ms; video kbps/stream "
            f"stage {r.get('stage_video_kbps', 0):.0f}, "
            f"thumbnail {r.get('thumbnail_video_kbps', 0):.0f}; transport-cc feedback/s "
            f"in {r.get('twcc_feedback_in_per_s', 0):.0f}, "
            f"out {r.get('twcc_feedback_out_per_s', 0):.0f}; "
            f"downlink estimate {r.get('downlink_kbps', 0):.0f} kbps)"
        )
    for rid, rate in results.get("simulcast_layers", {}).items():
        print(f"simulcast layer {rid}: {rate['kbps']:.0f} kbit/s, {rate['pps']:.1f} packets/s")
    for mode, ratio in results.get("per_core_ratio", {}).items():
        median = results["modes"][mode]["forwarded_per_core_pps"]
        print(f"{mode}: median {median:.0f} forwarded pps per busy core, {ratio:.3f} x the first")
    if "ceiling_pps" in results:
        print(
            f"ceiling (bare uvloop, fan-out {results['fanout']:.0f}): "
            f"{results['ceiling_pps']:.0f} pps at {100 * results['ceiling_cpu_cores']:.0f}% CPU; "
            f"SFU {results['sfu_capacity_pps']:.0f} pps per core; "
            f"ratio {results['ceiling_ratio']:.2f}"
        )
    if "batched_ceiling_pps" in results:
        print(
            f"batched ceiling (recvmmsg, in-place SRTP, sendmmsg; "
            f"fan-out {results['fanout']:.0f}): "
            f"{results['batched_ceiling_pps']:.0f} pps at "
            f"{100 * results['batched_ceiling_cpu_cores']:.0f}% CPU "
            f"({results['batched_ceiling_per_core_pps']:.0f} per core, "
            f"{results['batching_gain']:.2f}x the sendto loop); "
            f"SFU/batched ceiling {results['batched_ceiling_ratio']:.2f}"
        )
    if "relay_cpu_ratio" in results:
        print(
            f"1x5: aiortc MediaRelay {100 * results['relay_1x5_cpu_cores']:.1f}% CPU "
            f"({results['relay_1x5_delivered_pps']:.0f} pps delivered), "
            f"SFU {100 * results['sfu_1x5_cpu_cores']:.1f}% CPU "
            f"({results['sfu_1x5_delivered_pps']:.0f} pps), "
            f"ratio {results['relay_cpu_ratio']:.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short run (< 90 s)")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--video-kbps", type=int, default=1500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--relay-duration", type=float, default=10.0)
    parser.add_argument("--ceiling-duration", type=float, default=10.0)
    parser.add_argument(
        "--batched-offer-pps",
        type=float,
        default=400_000,
        help="output packets/s offered to the batched ceiling (more than it can send)",
    )
    parser.add_argument(
        "--modes",
        default="single",
        help=f"comma-separated, run in rotation: {', '.join(MODES)} (default single)",
    )
    parser.add_argument("--simulcast", action="store_true", help="the same as --modes simulcast")
    parser.add_argument(
        "--transport-cc",
        action="store_true",
        help="run every mode also with transport-cc (the `+tcc` twin of each mode)",
    )
    parser.add_argument(
        "--thumbnails",
        type=float,
        default=0.0,
        help="share of subscribers (0-1) reporting {}x{} tiles (video_sizes)".format(
            *THUMBNAIL_SIZE
        ),
    )
    parser.add_argument("--no-relay", action="store_true")
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument(
        "--nice",
        type=int,
        default=-10 if os.geteuid() == 0 else 0,
        help="scheduling priority of the server, workers and generator (default -10 as root)",
    )
    args = parser.parse_args()
    args.modes = ["simulcast"] if args.simulcast else [m for m in args.modes.split(",") if m]
    if args.transport_cc:
        twins = [m + "+tcc" for m in args.modes if not m.endswith("+tcc")]
        args.modes = list(dict.fromkeys([*args.modes, *twins]))
    for mode in args.modes:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}: one of {', '.join(MODES)}")
    if not 0 <= args.thumbnails <= 1:
        parser.error("--thumbnails is a share between 0 and 1")
    if args.quick:
        args.runs, args.duration, args.warmup = 1, 10.0, 5.0
        args.relay_duration, args.ceiling_duration = 5.0, 5.0
    import uvloop

    started = time.time()
    results = uvloop.run(run(args))
    results["command"] = " ".join(["python", *sys.argv])
    results["wall_s"] = time.time() - started
    print_table(results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
