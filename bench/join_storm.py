"""Issue 16: does the publisher survive a join storm?  One publisher, then N subscribers at once.

A room with one publisher (VP8 + Opus at `--video-kbps`, played at real
time), `--base` subscribers joined first, then `--storm` more joined at once
(ten at a time, as bench/compare_janus.py --saturation does, or
`--concurrency` at a time) while
`visitroom serve` runs pinned to core 0 (this generator on core 1).  The
subscribers are those of the saturation rig (bench/saturation_rig.py): a few
read every packet, the others are counted in bulk.

Every half second it records the publisher's side (its transport state, the
consent warnings of its own ICE agent, the server's signalling messages to
it: `ice_restart_needed`, `transport_failed`) and the server's (event-loop
lag from /metrics, the drops of its sockets from /proc/net/udp), and the packets/s the publisher's
stream reaches the first (sample) subscribers with; each join's time (from
its WebSocket to its transport connected) is kept.  At the
end it says whether the publisher's transport stayed up through the storm
and `--hold` seconds after it, and whether every subscriber receives.  The
server's log (INFO) is kept with `--log`.

    python bench/join_storm.py --base 200 --storm 100 --json /tmp/storm.json --log /tmp/storm.log
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bulk_receive import process_socket_drops
from media_clients import (
    METRICS_HEADERS,
    PRIORITY,
    Client,
    Server,
    _die_with_parent,
    loop_lag,
    percentile,
    raise_group_priority,
)
from media_workload import EncodedMedia, Publisher, encode_media
from saturation import Load
from saturation_rig import Closer, VisitroomRig

from tests.synthetic_peer import SyntheticPeer

SERVER_CORE, GENERATOR_CORE = 0, 1
SAMPLE_EVERY_S = 0.5
# What /metrics says of the server: the last and the largest loop lag, every
# transport's consent warnings (ice_restart_needed) and late consent answers.
SERVER_METRICS = {
    "visitroom_event_loop_lag_seconds": "server_lag_s",
    "visitroom_event_loop_lag_max_seconds": "server_lag_max_s",
    "visitroom_media_consent_warnings": "server_consent_warnings",
    "visitroom_media_consent_late": "server_consent_late",
    # Pacing of joins (absent before it): the window and the offers waiting.
    "visitroom_media_joins_window": "server_joins_window",
    "visitroom_media_joins_queued": "server_joins_queued",
}
# Messages the publisher gets all the time: not kept.
NOISE = ("slots", "downlink", "roster", "participant_joined", "participant_left", "pong")


def hogs(count: int) -> list[subprocess.Popen[bytes]]:
    """`count` busy loops on the server's core, each in a session (autogroup) of its own:
    with one, the server gets about half of its core (a saturated, shared machine)."""
    command = ["taskset", "-c", str(SERVER_CORE), sys.executable, "-c", "while True: pass"]
    return [
        subprocess.Popen(command, start_new_session=True, preexec_fn=_die_with_parent)
        for _ in range(count)
    ]


class Side:
    """What the saturation rig needs of a server: its address, process and `Server`."""

    def __init__(self, server: Server, address: str) -> None:
        self.server = server
        self.address = address

    def pid(self) -> int:
        return int(self.server.proc.pid)

    def cpu_s(self) -> float:
        return self.server.cpu_s()


class WatchedClient(Client):
    """A client that keeps every signalling message it receives, with the time."""

    def __init__(self, name: str, started: float, **peer: Any) -> None:
        super().__init__(name, **peer)
        self.started = started
        self.messages: list[tuple[float, str]] = []

    async def _drain(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                kind = str(json.loads(message.data).get("type"))
                if kind not in NOISE:
                    self.messages.append((round(time.monotonic() - self.started, 2), kind))


class StormRig(VisitroomRig):
    """The saturation rig's visitroom room, its publisher a `WatchedClient`."""

    def __init__(self, side: Side, http: aiohttp.ClientSession, media: EncodedMedia,
                 sample: int, started: float) -> None:  # fmt: skip
        super().__init__(side, http, media, 1, sample)
        self.started = started
        # Every join: when it started (s into the run), how long it took, whether it worked.
        self.joins: list[dict[str, Any]] = []

    async def join_subscriber(self, index: int, peer: SyntheticPeer) -> Closer:
        started, ok = time.monotonic(), False
        try:
            close = await super().join_subscriber(index, peer)
            ok = True
            return close
        finally:
            self.joins.append({
                "index": index, "at_s": round(started - self.started, 3),
                "seconds": round(time.monotonic() - started, 3), "ok": ok,
            })  # fmt: skip

    def sample_packets(self) -> int:
        """RTP packets the sample subscribers (the first ones to join) received so far."""
        return sum(
            st.packets for s in self.subscribers if s.sample
            for st in s.peer.transport.streams.values()
        )  # fmt: skip

    async def open(self) -> None:
        self.room = f"storm-{os.getpid()}"
        self.clients = []
        self.serial = 0
        await self.side.server.create_room(self.http, self.room, 1000)
        client = WatchedClient("pub-0", self.started, audio=True, video=True, stamp=True,
                               address=self.side.address)  # fmt: skip
        await client.join(self.side.server, self.http, self.room)
        self.clients.append(client)
        self.publishers.append(Publisher(client.peer, self.media, 0))


async def server_lag(http: aiohttp.ClientSession, server: Server) -> dict[str, float | None]:
    """Event-loop lag (s) and consent counters from /metrics (None: no answer in 2 s)."""
    lag: dict[str, float | None] = dict.fromkeys(SERVER_METRICS.values())
    try:
        async with asyncio.timeout(2):
            async with http.get(f"{server.url}/metrics", headers=METRICS_HEADERS) as response:
                text = await response.text()
    except (TimeoutError, aiohttp.ClientError):
        return lag
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        key = SERVER_METRICS.get(name)
        if key is not None:
            lag[key] = round(float(value), 3)
    return lag


def server_rx_queue(pid: int, path: str = "/proc/net/udp") -> int:
    """Bytes waiting in the fullest receive queue of the server's UDP sockets (/proc/net/udp)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = fd.readlink().name
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    queued = 0
    for line in Path(path).read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 10 and parts[9] in inodes:
            queued = max(queued, int(parts[4].split(":")[1], 16))
    return queued


async def watch(rig: StormRig, http: aiohttp.ClientSession, started: float,
                timeline: list[dict[str, Any]]) -> None:  # fmt: skip
    peer = rig.publishers[0].peer
    lags: list[float] = []
    monitor = asyncio.create_task(loop_lag(lags))
    try:
        await sample(rig, http, started, timeline, peer, lags)
    finally:
        monitor.cancel()


async def sample(rig: StormRig, http: aiohttp.ClientSession, started: float,
                 timeline: list[dict[str, Any]], peer: Any, lags: list[float]) -> None:  # fmt: skip
    cpu, at = rig.side.cpu_s(), time.monotonic()
    got, sent = rig.sample_packets(), rig.sent()
    while True:
        generator_lag = max(lags, default=0.0)
        lags.clear()
        # The server's share of one core since the last sample.
        now_cpu, now = rig.side.cpu_s(), time.monotonic()
        server_cpu = (now_cpu - cpu) / max(1e-3, now - at)
        cpu, at = now_cpu, now
        # The publisher's stream as the sample subscribers get it: packets/s each, and sent.
        samples = max(1, sum(1 for s in rig.subscribers if s.sample))
        now_got, now_sent = rig.sample_packets(), rig.sent()
        forwarded = (now_got - got) / samples / SAMPLE_EVERY_S
        published = (now_sent - sent) / SAMPLE_EVERY_S
        got, sent = now_got, now_sent
        timeline.append({
            "t": round(time.monotonic() - started, 2),
            "clock": time.strftime("%H:%M:%S"),
            "subscribers": len(rig.subscribers),
            "subscribers_connected": sum(s.peer.transport.connected for s in rig.subscribers),
            "publisher": peer.transport.state.value,
            "publisher_consent_warnings": peer.transport.counters.consent_warnings,
            "publisher_consent_late": getattr(peer.transport.counters, "consent_late", None),
            "generator_lag_max_s": round(generator_lag, 3),
            "server_cpu_pct": round(100 * server_cpu),
            "sample_rx_pps": round(forwarded, 1),
            "publisher_sent_pps": round(published, 1),
            **await server_lag(http, rig.side.server),
            "server_socket_drops": process_socket_drops(rig.side.pid()),
            "server_rx_queue_bytes": server_rx_queue(rig.side.pid()),
        })  # fmt: skip
        await asyncio.sleep(SAMPLE_EVERY_S)


async def join(rig: StormRig, subscribers: int) -> tuple[float, str]:
    """Join up to `subscribers` in all; (seconds, what failed: the others stay)."""
    started = time.monotonic()
    try:
        await rig.resize(Load(1, subscribers))
    except RuntimeError as exc:  # some joins timed out
        return round(time.monotonic() - started, 2), str(exc)
    return round(time.monotonic() - started, 2), ""


async def wait_flowing(rig: StormRig, seconds: float) -> int:
    """Wait until every subscriber receives the publisher's two streams; how many do."""
    deadline = time.monotonic() + seconds
    while True:
        flowing = sum(rig.flowing(s) >= rig.expected_streams() for s in rig.subscribers)
        if flowing == len(rig.subscribers) or time.monotonic() > deadline:
            return flowing
        await asyncio.sleep(0.2)


async def storm(args: argparse.Namespace, server: Server, result: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    media = encode_media(args.video_kbps)
    timeline: list[dict[str, Any]] = []
    result["timeline"] = timeline
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await server.wait_healthy(http)
        if PRIORITY["nice"]:
            raise_group_priority(server.proc.pid, PRIORITY["nice"])
        rig = StormRig(Side(server, "127.0.0.1"), http, media, args.sample, started)
        await rig.open()
        result["joins"] = rig.joins
        watcher = asyncio.create_task(watch(rig, http, started, timeline))
        try:
            result["base_join_s"], result["base_failures"] = await join(rig, args.base)
            result["base_flowing"] = await wait_flowing(rig, 10)
            print(f"{len(rig.subscribers)} of {args.base} joined in {result['base_join_s']:.1f} s "
                  f"{result['base_failures']}, {result['base_flowing']} receive",
                  flush=True)  # fmt: skip
            result["storm_started_s"] = round(time.monotonic() - started, 2)
            before = len(rig.subscribers)
            rig.join_concurrency = args.concurrency or args.storm
            result["storm_join_s"], result["join_failures"] = await join(rig, before + args.storm)
            result["storm_ended_s"] = round(time.monotonic() - started, 2)
            print(
                f"{len(rig.subscribers) - before} of {args.storm} more joined in "
                f"{result['storm_join_s']:.1f} s {result['join_failures']}",
                flush=True,
            )
            await asyncio.sleep(args.hold)
            result["flowing"] = await wait_flowing(rig, 5)
            result["subscribers"] = len(rig.subscribers)
        finally:
            watcher.cancel()
            peer = rig.publishers[0].peer
            result["publisher_connected"] = peer.transport.connected
            result["publisher_state"] = rig.publisher_state()
            result["publisher_messages"] = rig.clients[0].messages  # type: ignore[attr-defined]
            await rig.close()
    return result


def storm_figures(result: dict[str, Any], base: int) -> dict[str, Any]:
    """The storm's joins (p50/p95/max seconds, timeouts, when each finished after the
    storm began) and the publisher's stream at the sample subscribers meanwhile."""
    start, end = result.get("storm_started_s"), result.get("storm_ended_s")
    if start is None or end is None:
        return {}
    joins = [j for j in result["joins"] if j["index"] >= base]
    took = [j["seconds"] for j in joins if j["ok"]]
    done = [j["at_s"] + j["seconds"] - start for j in joins if j["ok"]]
    during = [p for p in result["timeline"] if start <= p["t"] <= end + 1]
    ratios = [
        p["sample_rx_pps"] / p["publisher_sent_pps"] for p in during if p["publisher_sent_pps"]
    ]
    lags = [p["server_lag_max_s"] for p in during if p["server_lag_max_s"] is not None]
    return {
        "storm_joins": len(joins),
        "storm_failed": len(joins) - len(took),
        "storm_join_p50_s": round(percentile(took, 0.5), 2),
        "storm_join_p95_s": round(percentile(took, 0.95), 2),
        "storm_join_max_s": round(max(took, default=float("nan")), 2),
        "storm_done_p50_s": round(percentile(done, 0.5), 2),
        "storm_done_max_s": round(max(done, default=float("nan")), 2),
        "storm_forwarded_median": round(percentile(ratios, 0.5), 3),
        "storm_forwarded_min": round(min(ratios, default=float("nan")), 3),
        "storm_server_lag_max_s": max(lags, default=float("nan")),
    }


def summary(result: dict[str, Any]) -> str:
    lags = [p["server_lag_max_s"] for p in result["timeline"] if p["server_lag_max_s"] is not None]
    silent = sum(p["server_lag_s"] is None for p in result["timeline"])
    generator = max((p["generator_lag_max_s"] for p in result["timeline"]), default=0)
    return (
        f"publisher {'KEPT' if result['publisher_connected'] else 'LOST'} "
        f"({result['publisher_state']}); receiving: {result.get('flowing')}/"
        f"{result.get('subscribers')}; server lag max {max(lags, default=0):.2f} s, "
        f"/metrics unanswered {silent}x; generator lag max {generator:.2f} s; "
        f"publisher heard {result['publisher_messages']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=int, default=200)
    parser.add_argument("--storm", type=int, default=100)
    parser.add_argument("--hold", type=float, default=40.0, help="seconds watched after the storm")
    parser.add_argument("--sample", type=int, default=6)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="storm joins in progress at once from the generator (0: all)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the server (repeatable)",
    )
    parser.add_argument("--video-kbps", type=int, default=1500)
    parser.add_argument("--nice", type=int, default=-10 if os.geteuid() == 0 else 0)
    parser.add_argument(
        "--hog",
        type=int,
        default=0,
        help="busy loops sharing the server's core during the whole run",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--log", type=Path, help="keep the server's log (INFO) here")
    args = parser.parse_args()
    os.sched_setaffinity(0, {GENERATOR_CORE})
    if args.nice:
        PRIORITY["nice"] = args.nice
        os.nice(args.nice)
        raise_group_priority(os.getpid(), args.nice)
    log = args.log or Path(os.devnull)
    with log.open("w") as stderr:
        env = dict(item.split("=", 1) for item in args.env)
        server = Server(SERVER_CORE, env={"VISITROOM_LOG_LEVEL": "INFO", **env},
                        own_session=True, stderr=stderr)  # fmt: skip
    result: dict[str, Any] = {}
    busy = hogs(args.hog)
    try:
        result = asyncio.run(storm(args, server, result))
    finally:
        for hog in busy:
            hog.kill()
            hog.wait()
        server.stop()
        result["load_1min_end"] = os.getloadavg()[0]
        result["command"] = " ".join(["python", *sys.argv])
        result.update(storm_figures(result, args.base))
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
    print(summary(result), flush=True)
    print(json.dumps({k: v for k, v in result.items() if k.startswith("storm_")}), flush=True)


if __name__ == "__main__":
    main()
