"""Knock storm: N guests knock at once, the host admits everyone.

Starts a real `visitroom serve` process pinned to core 0, connects one host and
N guests over WebSockets from this process, and measures:
  - knock -> host notified latency (p50/p95) and when all knocks were visible,
  - admit-all -> the last guest holding a complete roster,
  - WebSocket messages the server sent per round (from /metrics),
  - server CPU seconds per round (psutil on the server process).

    python bench/signalling_storm.py --quick --json results/storm.json

With `--front nginx` each round runs twice, alternating: straight to the server
and through nginx terminating TLS (deploy/nginx/visitroom.conf as the tests run
it, tests/nginx.py), and reports the CPU nginx spends per round beside the
server's: what TLS in front of signalling costs at the knock storm.

    python bench/signalling_storm.py --front nginx --json results/storm_tls.json

With `--flood N` it runs the flood phase instead (bench/storm_flood.py): a call
with media through SFU worker processes while N half-open connections and
knock storms hit the server.

    python bench/signalling_storm.py --flood 20000 --json results/flood.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from media_clients import KEY, METRICS_HEADERS, SECRET, Server, percentile  # noqa: E402

from common.tokens import mint  # noqa: E402

SERVER_CORE = 0


@dataclass
class Round:
    knock_to_host_p50_ms: float
    knock_to_host_p95_ms: float
    knocks_visible_ms: float
    admit_all_converged_ms: float
    messages_sent: int
    server_cpu_s: float


async def messages_sent(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(f"{url}/metrics", headers=METRICS_HEADERS) as response:
        for line in (await response.text()).splitlines():
            if line.startswith("visitroom_ws_messages_sent_total "):
                return int(float(line.split()[1]))
    return 0


async def read_until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        message = await ws.receive_json()
        if message["type"] == kind:
            return dict(message)


async def one_round(
    session: aiohttp.ClientSession,
    server: Server,
    guests: int,
    room: str,
    front: str | None = None,
) -> Round:
    """`front`: the https URL of a TLS proxy to go through instead of the server."""
    url = server.url
    await server.create_room(session, room, guests + 1)
    base = front or url
    ws_url = f"{base.replace('http', 'ws', 1)}/v1/rooms/{room}/ws"
    host = await session.ws_connect(ws_url, ssl=False)
    token = mint(KEY, SECRET, room=room, identity="dr-bench", name="Dr Bench", role="host")
    await host.send_json({"type": "hello", "token": token})
    await read_until(host, "lobby")
    sockets = [await session.ws_connect(ws_url, ssl=False) for _ in range(guests)]
    sent_before = await messages_sent(session, url)
    cpu_before = server.cpu_s()
    knocked_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}

    async def watch_knocks() -> None:
        while len(seen_at) < guests:
            message = await host.receive_json()
            if message["type"] == "knock":
                seen_at[message["participant"]["name"]] = time.perf_counter()

    watcher = asyncio.create_task(watch_knocks())
    start = time.perf_counter()
    for index, ws in enumerate(sockets):
        knocked_at[f"guest-{index}"] = time.perf_counter()
        await ws.send_json({"type": "hello", "name": f"guest-{index}"})
    await asyncio.wait_for(watcher, 60)
    knocks = [(seen_at[name] - knocked_at[name]) * 1000 for name in knocked_at]
    visible = (max(seen_at.values()) - start) * 1000
    converged = await admit_all(host, sockets, guests)
    sent = await messages_sent(session, url) - sent_before
    cpu = server.cpu_s() - cpu_before
    await host.send_json({"type": "end"})
    await read_until(host, "left")  # the end is carried out before the next round counts
    for ws in [host, *sockets]:
        await ws.close()
    return Round(percentile(knocks, 0.5), percentile(knocks, 0.95), visible, converged, sent, cpu)


async def admit_all(
    host: aiohttp.ClientWebSocketResponse,
    sockets: list[aiohttp.ClientWebSocketResponse],
    guests: int,
) -> float:
    async def roster_time(ws: aiohttp.ClientWebSocketResponse) -> float:
        roster = await read_until(ws, "roster")
        if len(roster["participants"]) != guests + 1:
            raise AssertionError(f"incomplete roster: {len(roster['participants'])}")
        return time.perf_counter()

    waiters = [asyncio.create_task(roster_time(ws)) for ws in sockets]
    started = time.perf_counter()
    await host.send_json({"type": "admit", "all": True})
    done = await asyncio.wait_for(asyncio.gather(*waiters), 60)
    return (max(done) - started) * 1000


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.front == "nginx":
        return await run_fronted(args)
    server = Server(SERVER_CORE)
    rounds: list[Round] = []
    try:
        connector = aiohttp.TCPConnector(limit=0)  # each WebSocket holds a connection
        async with aiohttp.ClientSession(connector=connector) as session:
            await server.wait_healthy(session)
            for index in range(args.rounds + 1):
                room = f"storm-{os.getpid()}-{index}"
                result = await one_round(session, server, args.guests, room)
                if index > 0:  # the first round warms up imports and caches
                    rounds.append(result)
    finally:
        if server is not None:
            server.stop()
    return summarise(args, rounds)


async def run_fronted(args: argparse.Namespace) -> dict[str, Any]:
    """Rounds straight to the server and through nginx (TLS), alternating, in one run."""
    from tests.nginx import PROXY_ADDRESS, Nginx

    server = Server(SERVER_CORE, {"VISITROOM_TRUSTED_PROXIES": PROXY_ADDRESS})
    workdir = tempfile.TemporaryDirectory(prefix="storm-nginx-")
    nginx = Nginx(Path(workdir.name), [server.port])
    direct: list[Round] = []
    fronted: list[Round] = []
    nginx_cpu: list[float] = []
    server_round: tuple[list[float], list[float]] = ([], [])  # direct, through nginx
    try:
        nginx.start()
        proxy = psutil.Process(nginx.proc.pid) if nginx.proc is not None else None
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await server.wait_healthy(session)
            for index in range(args.rounds + 1):
                room = f"storm-{os.getpid()}-{index}"
                # whole rounds (connections and TLS handshakes included) on both sides
                cpu0 = server.cpu_s()
                plain = await one_round(session, server, args.guests, room + "-d")
                cpu1, proxy0 = server.cpu_s(), tree_cpu_s(proxy)
                tls = await one_round(session, server, args.guests, room + "-t", nginx.url)
                cpu2, proxy1 = server.cpu_s(), tree_cpu_s(proxy)
                if index > 0:
                    direct.append(plain)
                    fronted.append(tls)
                    server_round[0].append(cpu1 - cpu0)
                    server_round[1].append(cpu2 - cpu1)
                    nginx_cpu.append(proxy1 - proxy0)
    finally:
        nginx.stop()
        server.stop()
        workdir.cleanup()
    result = summarise(args, direct)
    result["benchmark"] = "signalling_storm_tls_front"
    result["through_nginx"] = summarise(args, fronted)
    result["nginx_cpu_s"] = statistics.median(nginx_cpu)
    result["nginx_cpu_s_rounds"] = nginx_cpu
    result["server_round_cpu_s_direct"] = statistics.median(server_round[0])
    result["server_round_cpu_s_through_nginx"] = statistics.median(server_round[1])
    alone = result["server_round_cpu_s_direct"]
    with_tls = result["server_round_cpu_s_through_nginx"] + result["nginx_cpu_s"]
    result["extra_cpu_ratio"] = with_tls / alone if alone else None
    return result


def tree_cpu_s(process: psutil.Process | None) -> float:
    """CPU seconds of a process and its children (nginx: master and workers)."""
    if process is None:
        return 0.0
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def summarise(args: argparse.Namespace, rounds: list[Round]) -> dict[str, Any]:
    fields = list(asdict(rounds[0]))
    medians = {f: statistics.median(getattr(r, f) for r in rounds) for f in fields}
    return {
        "benchmark": "signalling_storm",
        "guests": args.guests,
        "rounds": len(rounds),
        **medians,
        "min": {f: min(getattr(r, f) for r in rounds) for f in fields},
        "max": {f: max(getattr(r, f) for r in rounds) for f in fields},
        "targets": {"knocks_visible_ms": 1000, "admit_all_converged_ms": 500},
    }


def print_table(result: dict[str, Any]) -> None:
    if "through_nginx" in result:
        print("straight to the server:")
        print_rounds(result)
        print("through nginx (TLS):")
        print_rounds(result["through_nginx"])
        print("CPU per whole round (connections and TLS handshakes included), medians:")
        print(f"  server, straight:        {result['server_round_cpu_s_direct']:.2f} s")
        print(f"  server, through nginx:   {result['server_round_cpu_s_through_nginx']:.2f} s")
        print(f"  nginx (TLS):             {result['nginx_cpu_s']:.2f} s")
        print(f"  (server + nginx) / server straight: {result['extra_cpu_ratio']:.2f}")
        return
    print_rounds(result)


def print_rounds(result: dict[str, Any]) -> None:
    print(f"signalling storm: {result['guests']} guests, median of {result['rounds']} rounds")
    print(f"{'metric':32} {'median':>10} {'min':>10} {'max':>10}")
    for field in (
        "knock_to_host_p50_ms",
        "knock_to_host_p95_ms",
        "knocks_visible_ms",
        "admit_all_converged_ms",
        "messages_sent",
        "server_cpu_s",
    ):
        print(
            f"{field:32} {result[field]:>10.2f} {result['min'][field]:>10.2f}"
            f" {result['max'][field]:>10.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 rounds (< 60 s)")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument(
        "--front", choices=["nginx"], help="also run each round through this TLS proxy"
    )
    parser.add_argument("--flood", type=int, default=0, help="half-open connections (flood phase)")
    parser.add_argument("--flood-duration", type=float, default=30.0)
    parser.add_argument("--flood-rate", type=float, default=4000.0, help="new connections/s")
    parser.add_argument("--flood-workers", type=int, default=2, help="SFU worker processes")
    parser.add_argument("--flood-warmup", type=float, default=4.0)
    parser.add_argument("--flood-baseline", type=float, default=5.0, help="s before and after")
    parser.add_argument("--video-kbps", type=int, default=1500)
    parser.add_argument(
        "--flood-no-nice", action="store_true", help="server and generators all at nice 0"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds = 2
    import uvloop

    if args.flood:
        from storm_flood import print_flood_table, run_flood

        result = uvloop.run(run_flood(args))
        result["command"] = " ".join(["python", *sys.argv])
        print_flood_table(result)
    else:
        result = uvloop.run(run(args))
        print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
