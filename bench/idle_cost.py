"""The server's fixed CPU per subscriber: N quiet subscribers, one low-rate publisher.

At a light fan-out most of the SFU's CPU is not per forwarded packet but
per participant (ICE consent checks, the clock's tick, RTCP reports).  This
bench shows that cost on its own: `python -m signalling serve` (in-process
SFU) pinned to core 0 (`--core`), `--subscribers` synthetic peers
(tests/synthetic_peer.py: real ICE + DTLS-SRTP, one audio and one video
slot each, no RTCP of their own, like the subscribers of
bench/compare_janus.py) and one publisher, in two phases:

* `idle`: everyone connected, no media at all;
* `light`: the publisher sends Opus at 50 packets/s (`--publish audio`, the
  default) or Opus plus VP8 at `--video-kbps` (`--publish av`).

Each phase is measured over `--windows` windows of `--duration` s; the
table gives the medians: the server's CPU (% of one core), CPU per
subscriber (microseconds of CPU per second, i.e. millionths of a core) and,
in `light`, forwarded packets/s (what the subscribers received).
`--profile STEM` records the last window of each phase with py-spy
(STEM-idle.py-spy.txt, STEM-light.py-spy.txt) and prints the share of the
event loop's busy samples per category (bench/compare_janus.py's).

    python bench/idle_cost.py --subscribers 50 --json /tmp/idle.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from compare_janus import _start_py_spy, summarize_py_spy, tree_cpu_s  # noqa: E402
from media_clients import Client, Server, connect_all  # noqa: E402
from media_workload import EncodedMedia, Publisher, encode_media, play  # noqa: E402


def received(clients: list[Client]) -> int:
    return sum(c.received() for c in clients)


async def window(server: Server, subscribers: list[Client], seconds: float) -> dict[str, float]:
    """CPU and forwarded packets over one window of `seconds`."""
    cpu0, got0, t0 = tree_cpu_s(server.ps), received(subscribers), time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    cpu = (tree_cpu_s(server.ps) - cpu0) / elapsed
    return {
        "cpu_pct": 100 * cpu,
        "us_per_subscriber_s": 1e6 * cpu / max(1, len(subscribers)),
        "forwarded_pps": (received(subscribers) - got0) / elapsed,
        "load_1min": os.getloadavg()[0],
    }


def medians(windows: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(w[key] for w in windows) for key in windows[0]}


async def phase(
    server: Server, subscribers: list[Client], args: argparse.Namespace, spy: Path | None = None
) -> dict[str, Any]:
    windows = []
    for n in range(args.windows):
        tool = None
        if spy is not None and n == args.windows - 1:
            tool = _start_py_spy(server.proc.pid, args.duration, spy)
        windows.append(await window(server, subscribers, args.duration))
        if tool is not None:
            await asyncio.get_running_loop().run_in_executor(None, tool.wait)
    return {"median": medians(windows), "windows": windows}


def _spy(args: argparse.Namespace, name: str) -> Path | None:
    return Path(f"{args.profile}-{name}.py-spy.txt") if args.profile else None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    media: EncodedMedia = encode_media(args.video_kbps)
    server = Server(args.core, own_session=True)
    publisher_client = Client("pub", audio=True, video=args.publish == "av")
    subscribers = [
        Client(f"sub-{i}", audio_slots=1, video_slots=1) for i in range(args.subscribers)
    ]
    result: dict[str, Any] = {"settings": vars(args).copy(), "load_before": os.getloadavg()}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            await server.wait_healthy(http)
            await server.create_room(http, "idle", args.subscribers + 2)
            await connect_all(server, http, "idle", [publisher_client, *subscribers])
            await asyncio.sleep(args.settle)  # joins, first key frames, consent ramp-up
            result["idle"] = await phase(server, subscribers, args, _spy(args, "idle"))
            stop = asyncio.Event()
            player = asyncio.create_task(play([Publisher(publisher_client.peer, media, 0)], stop))
            try:
                await asyncio.sleep(args.settle)
                result["light"] = await phase(server, subscribers, args, _spy(args, "light"))
            finally:
                stop.set()
                await player
            if args.profile:
                for name in ("idle", "light"):
                    spy = _spy(args, name)
                    assert spy is not None
                    result[name]["py_spy"] = summarize_py_spy(spy)
            for client in [publisher_client, *subscribers]:
                await client.close()
    finally:
        server.stop()
    result["load_after"] = os.getloadavg()
    return result


def report(result: dict[str, Any]) -> None:
    n = result["settings"]["subscribers"]
    print(f"{n} subscribers, publisher: {result['settings']['publish']}")
    print(f"{'phase':<7} {'cpu %':>7} {'us/sub/s':>9} {'fwd pps':>9} {'load':>5}")
    for name in ("idle", "light"):
        m = result[name]["median"]
        print(
            f"{name:<7} {m['cpu_pct']:7.2f} {m['us_per_subscriber_s']:9.1f}"
            f" {m['forwarded_pps']:9.0f} {m['load_1min']:5.2f}"
        )
    for name in ("idle", "light"):
        for category, share in result[name].get("py_spy", {}).items():
            print(f"  {name}: {100 * share:5.1f}%  {category}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--publish", choices=("audio", "av"), default="audio")
    parser.add_argument("--video-kbps", type=int, default=300)
    parser.add_argument("--duration", type=float, default=10.0, help="s per window")
    parser.add_argument("--windows", type=int, default=3, help="windows per phase")
    parser.add_argument("--settle", type=float, default=8.0, help="s before each phase")
    parser.add_argument("--core", type=int, default=0, help="the server's core")
    parser.add_argument("--profile", default="", help="py-spy file stem (module doc)")
    parser.add_argument("--json", default="", help="write the result here")
    args = parser.parse_args()
    if os.cpu_count() and os.cpu_count() != 1:  # the generator off the server's core
        os.sched_setaffinity(0, {c for c in range(os.cpu_count() or 1) if c != args.core})
    result = asyncio.run(run(args))
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
