"""Half-open connection flood for bench/signalling_storm.py --flood (loopback only).

Keeps `--count` connections open against 127.0.0.1:PORT, each having sent the
start of a request's headers and never the rest, spread over source addresses
127.0.0.2, 127.0.0.3, ... (`--per-source` each, as many addresses as a botnet
would use).  A connection the server closes is opened again (at most `--rate`
new connections per second) until `--duration` seconds have passed; then
everything is closed and one JSON line of counts is printed.

    python bench/half_open.py --port 8080 --count 10000 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from dataclasses import asdict, dataclass, field
from typing import cast

PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: half-open\r\nX-Slow: "


@dataclass
class Counts:
    attempts: int = 0
    established: int = 0
    connect_errors: int = 0
    refused_503: int = 0
    closed_by_server: int = 0
    max_open: int = 0
    open_at_end: int = 0
    lifetimes: list[float] = field(default_factory=list)


class HalfOpen(asyncio.Protocol):
    def __init__(self, flood: Flood, source: str) -> None:
        self.flood = flood
        self.source = source
        self.opened = time.monotonic()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(PARTIAL)
        self.flood.opened(self)

    def data_received(self, data: bytes) -> None:
        if data.startswith(b"HTTP/1.1 503"):
            self.flood.counts.refused_503 += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.flood.lost(self)


class Flood:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.counts = Counts()
        self.open: set[HalfOpen] = set()
        first = 2 + args.first_source
        self.by_source = {f"127.0.0.{first + i}": 0 for i in range(args.sources)}
        self.stopping = False
        self.wanted = asyncio.Event()
        self.wanted.set()

    def opened(self, conn: HalfOpen) -> None:
        self.counts.established += 1
        self.open.add(conn)
        self.counts.max_open = max(self.counts.max_open, len(self.open))

    def lost(self, conn: HalfOpen) -> None:
        if conn in self.open:
            self.open.discard(conn)
            if not self.stopping:
                self.counts.closed_by_server += 1
                self.counts.lifetimes.append(time.monotonic() - conn.opened)
        self.by_source[conn.source] -= 1
        self.wanted.set()

    def _source(self) -> str | None:
        for source, used in self.by_source.items():
            if used < self.args.per_source:
                return source
        return None

    async def _connect(self, source: str) -> None:
        loop = asyncio.get_running_loop()
        self.counts.attempts += 1
        try:
            await loop.create_connection(
                lambda: HalfOpen(self, source), "127.0.0.1", self.args.port, local_addr=(source, 0)
            )
        except OSError:
            self.counts.connect_errors += 1
            self.by_source[source] -= 1
            self.wanted.set()

    async def run(self) -> None:
        deadline = time.monotonic() + self.args.duration
        gap = 1.0 / self.args.rate
        pending: set[asyncio.Task[None]] = set()
        while time.monotonic() < deadline:
            source = self._source() if sum(self.by_source.values()) < self.args.count else None
            if source is None:
                self.wanted.clear()
                try:
                    await asyncio.wait_for(self.wanted.wait(), deadline - time.monotonic())
                except TimeoutError:
                    break
                continue
            self.by_source[source] += 1
            task = asyncio.get_running_loop().create_task(self._connect(source))
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.sleep(gap)
        self.stopping = True
        self.counts.open_at_end = len(self.open)
        for conn in list(self.open):
            if conn.transport is not None:
                conn.transport.abort()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def raise_fd_limit(want: int) -> tuple[int, int]:
    """Lift the open-file limit to `want` (as root), else the soft one to the hard one."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for limits in ((want, max(want, hard)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    flood = Flood(args)
    started = time.monotonic()
    await flood.run()
    counts = asdict(flood.counts)
    lifetimes = sorted(counts.pop("lifetimes"))
    counts["lifetime_p50_s"] = lifetimes[len(lifetimes) // 2] if lifetimes else None
    counts["lifetime_max_s"] = lifetimes[-1] if lifetimes else None
    counts["seconds"] = time.monotonic() - started
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--per-source", type=int, default=400)
    parser.add_argument("--rate", type=float, default=2000.0, help="new connections per second")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--first-source", type=int, default=0, help="start at 127.0.0.(2+this)")
    args = parser.parse_args()
    args.sources = -(-args.count // args.per_source)
    if args.first_source + args.sources > 250:
        parser.error("at most 250 source addresses (127.0.0.2-127.0.0.251)")
    soft, hard = raise_fd_limit(args.count + 1024)
    import uvloop

    result = uvloop.run(main_async(args))
    result.update({"fd_limit": soft, "fd_hard_limit": hard, "sources": args.sources})
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
