"""Per-call CPU of the consent path's STUN handling, hot and cold (issue 16).

Drives the real handlers with real STUN bytes: `--transports` server agents
(`IceConnection`, controlled, on one `UdpMux`) connected over loopback to
as many client agents (real ICE), then, round-robin over the transports:

* `request`: a client's consent check (built with the client's credentials)
  handed to `UdpMux.datagram` as if read from the socket: parse, ufrag
  lookup, authentication, the answer (sent), `check_incoming`;
* `check`: one of our consent checks sent (`IceConnection._send_check`);
* `answer`: the client's answer to it handed to `UdpMux.datagram`: parse,
  transaction lookup, authentication, the check resolved.

Each is timed per call (`time.thread_time_ns`, medians) `hot` (calls back to
back), `cold` (a `--thrash-mb` copy between calls evicts the caches, as
the server's other work does between two STUN datagrams 50 ms apart) and
`asleep` (the thread sleeps `--sleep-ms` between calls: the core idles, as
the server's does between wake-ups at a light load).

    python bench/stun_path.py --calls 2000 --json /tmp/stun.json
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aioice.candidate import candidate_priority  # noqa: E402

from sfu.packet.counters import Counters  # noqa: E402
from sfu.transport import mmsg  # noqa: E402
from sfu.transport.ice import IceConnection, PortAllocator  # noqa: E402
from sfu.transport.stunwire import Signer, binding_request, binding_response  # noqa: E402
from sfu.transport.udpmux import UdpMux  # noqa: E402


def agent(controlling: bool, muxes: list[UdpMux] | None) -> IceConnection:
    ice = IceConnection(
        addresses=["127.0.0.1"],
        ports=PortAllocator(None),
        counters=Counters(),
        buffer_bytes=1 << 20,
        on_srtp=lambda data: None,
        controlling=controlling,
        muxes=muxes,
    )
    ice.consent_interval = 3600.0  # no consent loop of their own during the run
    return ice


async def connected(mux: UdpMux) -> tuple[IceConnection, IceConnection]:
    client, server = agent(True, None), agent(False, [mux])
    await client.gather_candidates()
    await server.gather_candidates()
    for here, there in ((client, server), (server, client)):
        here.remote_username, here.remote_password = there.local_username, there.local_password
        for candidate in there.local_candidates:
            await here.add_remote_candidate(candidate)
        await here.add_remote_candidate(None)
    await asyncio.gather(client.connect(), server.connect())
    return client, server


class Thrash:
    """Evicts the caches: one copy of `mb` MiB."""

    def __init__(self, mb: int) -> None:
        self.a = bytearray(mb << 20)
        self.b = bytearray(mb << 20)

    def __call__(self) -> None:
        self.a[:] = self.b


def timed(fn: Any, *args: Any) -> int:
    t = time.thread_time_ns()
    fn(*args)
    return time.thread_time_ns() - t


def measure(
    pairs: list[tuple[IceConnection, IceConnection]], mux: UdpMux, calls: int, thrash: Any
) -> dict[str, float]:
    samples: dict[str, list[int]] = {"request": [], "check": [], "answer": []}
    for n in range(calls):
        client, server = pairs[n % len(pairs)]
        source = (client.local_candidates[0].host, client.local_candidates[0].port)
        request = binding_request(
            os.urandom(12),
            f"{server.local_username}:{client.local_username}",
            candidate_priority(1, "prflx"),
            client._tie_breaker,
            True,
            Signer(server.local_password.encode()),
        )
        thrash()
        samples["request"].append(timed(mux.datagram, request, source))
        pair = server._nominated[1]
        key = (server.remote_password or "").encode()
        thrash()
        t = time.thread_time_ns()
        check = server._send_check(pair, key)
        samples["check"].append(time.thread_time_ns() - t)
        assert check is not None
        answer = binding_response(check.transaction_id, source, Signer(key))
        thrash()
        samples["answer"].append(timed(mux.datagram, answer, pair.remote_addr))
        assert check.answered.done(), "the answer was taken"
    return {name: statistics.median(s) / 1e3 for name, s in samples.items()}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    mux = UdpMux("127.0.0.1", 0, buffer_bytes=1 << 22, binding=mmsg.load())
    mux.open()
    pairs = [await connected(mux) for _ in range(args.transports)]
    try:
        result: dict[str, Any] = {"settings": vars(args).copy(), "load": os.getloadavg()}
        measure(pairs, mux, len(pairs), lambda: None)  # warm-up
        result["hot"] = measure(pairs, mux, args.calls, lambda: None)
        result["cold"] = measure(pairs, mux, args.calls // 4, Thrash(args.thrash_mb))
        result["asleep"] = measure(
            pairs, mux, args.calls // 20, lambda: time.sleep(args.sleep_ms / 1e3)
        )
        result["bad_stun"] = mux.counters.bad_stun + sum(s.counters.bad_stun for _, s in pairs)
        return result
    finally:
        for client, server in pairs:
            await client.close()
            await server.close()
        mux.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transports", type=int, default=50)
    parser.add_argument("--calls", type=int, default=2000, help="hot calls (cold: a fourth)")
    parser.add_argument("--thrash-mb", type=int, default=32)
    parser.add_argument("--sleep-ms", type=float, default=20.0)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(f"us per call (median), {args.transports} transports, load {result['load'][0]:.2f}")
    for mode in ("hot", "cold", "asleep"):
        print(f"  {mode:<6}", "  ".join(f"{k} {v:6.1f}" for k, v in result[mode].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
