"""The ceiling: a bare uvloop forwarder doing only what an SFU cannot avoid.

Per received packet and per output: copy, rewrite the RTP header (SSRC,
sequence, timestamp), SRTP-protect with that output's session, sendto.  No
parsing, no routing, no RTCP, no decryption of the input.  Run on the same
core as the SFU with the same fan-out and more input than it can take, the
output rate it sustains is the best a Python forwarder can do there.

With `--batched` it is the ceiling of the single-port path instead: up to
64 datagrams per `recvmmsg`, each output's header rewritten and protected in
place in a preallocated batch (libsrtp through sfu.transport.srtp), one
`sendmmsg` per read batch (sfu.transport.mmsg), the same calls the SFU makes.

    python bench/media_ceiling.py --worker --port P --dest 127.0.0.1:Q --fanout F [--batched]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil
import pylibsrtp

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(Path(__file__).resolve())
_REWRITE = struct.Struct("!BHII")


class Forwarder(asyncio.DatagramProtocol):
    def __init__(self, dest: tuple[str, int], fanout: int) -> None:
        self.dest = dest
        # [session, ssrc, sequence]: a plain list, the cheapest to update per packet
        self.outputs: list[list[Any]] = []
        for n in range(fanout):
            policy = pylibsrtp.Policy(
                key=os.urandom(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND
            )
            self.outputs.append([pylibsrtp.Session(policy), 1000 + n, 0])
        self.sock: socket.socket | None = None
        self.sent = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        fd = transport.get_extra_info("socket").fileno()
        self.sock = socket.socket(fileno=os.dup(fd))

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        sendto = self.sock.sendto  # type: ignore[union-attr]
        dest = self.dest
        for out in self.outputs:
            out[2] = (out[2] + 1) & 0xFFFF
            packet = bytearray(data)
            _REWRITE.pack_into(packet, 1, packet[1], out[2], 12345, out[1])
            with contextlib.suppress(OSError):
                sendto(out[0].protect(bytes(packet)), dest)
                self.sent += 1


class BatchedForwarder:
    """The same work as `Forwarder` on the SFU's batched path (see module doc)."""

    def __init__(self, sock: socket.socket, dest: tuple[str, int], fanout: int) -> None:
        sys.path.insert(0, str(ROOT))
        from sfu.packet.counters import Counters
        from sfu.transport import mmsg, srtp

        binding, lib = mmsg.load(), srtp.load()
        if binding is None or lib is None:
            raise SystemExit("no sendmmsg or libsrtp binding here")
        self.sock = sock
        self.reader = mmsg.RecvBatch(binding, sock.fileno(), 64)
        self.batch = mmsg.SendBatch(binding, sock.fileno(), 256)
        self.dest = mmsg.Destination(binding, socket.AF_INET, dest)
        self.counters = Counters()
        self.outputs: list[list[Any]] = [
            [
                lib.outbound(os.urandom(30), pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80),
                1000 + n,
                0,
            ]
            for n in range(fanout)
        ]

    @property
    def sent(self) -> int:
        return self.batch.sent

    def readable(self) -> None:
        add, batch, dest, counters = self.batch.add_rewritten, self.batch, self.dest, self.counters
        for data, _, _ in self.reader.read():
            for out in self.outputs:
                out[2] = (out[2] + 1) & 0xFFFF
                add(data, (data[1] & 0x7F, out[2], 12345, out[1]), out[0], dest, counters)
                if batch.count >= batch.capacity:
                    batch.flush()
        batch.flush()


async def worker(port: int, dest: tuple[str, int], fanout: int, batched: bool = False) -> None:
    loop = asyncio.get_running_loop()
    forwarder: Forwarder | BatchedForwarder
    if batched:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(("127.0.0.1", port))
        forwarder = BatchedForwarder(sock, dest, fanout)
        loop.add_reader(sock.fileno(), forwarder.readable)
    else:
        transport, forwarder = await loop.create_datagram_endpoint(
            lambda: Forwarder(dest, fanout), local_addr=("127.0.0.1", port)
        )
        sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    print("ready", flush=True)
    while True:  # the driver reads how many packets went out, and when
        print(f"{time.monotonic()} {forwarder.sent}", flush=True)
        await asyncio.sleep(0.25)


@dataclass
class CeilingResult:
    fanout: int
    offered_pps: float
    ceiling_pps: float  # what the forwarder sent (sendto succeeded)
    delivered_pps: float  # what the counting socket received
    cpu_cores: float


class Counter:
    """A receiving socket that only counts datagrams."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.count = 0
        self._buffer = bytearray(2048)

    def drain(self) -> None:
        recv = self.sock.recv_into
        buffer = self._buffer
        try:
            while True:
                recv(buffer)
                self.count += 1
        except BlockingIOError:
            pass


async def measure(
    packets: list[bytes],
    fanout: int,
    target_out_pps: float,
    duration: float,
    prefix: list[str],
    batched: bool = False,
) -> CeilingResult:
    """Run the worker (`prefix` pins it), offer `target_out_pps / fanout`, count the output."""
    counter = Counter()
    loop = asyncio.get_running_loop()
    loop.add_reader(counter.sock, counter.drain)
    port = _free_udp_port()
    command = [*prefix, sys.executable, SCRIPT]
    command += ["--worker", "--port", str(port), "--fanout", str(fanout)]
    command += ["--dest", f"127.0.0.1:{counter.sock.getsockname()[1]}"]
    command += ["--batched"] if batched else []
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    progress: list[tuple[float, int]] = []
    try:
        assert proc.stdout is not None
        await loop.run_in_executor(None, proc.stdout.readline)
        reader = loop.run_in_executor(None, _read_progress, proc.stdout, progress)
        ps = psutil.Process(proc.pid)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rate = target_out_pps / fanout
        await _blast(sender, ("127.0.0.1", port), packets, rate, 1.0)  # warm-up
        cpu0, count0, t0, first = _cpu(ps), counter.count, time.monotonic(), progress[-1]
        await _blast(sender, ("127.0.0.1", port), packets, rate, duration)
        elapsed = time.monotonic() - t0
        last = progress[-1]
        cpu = (_cpu(ps) - cpu0) / elapsed
        sent = (last[1] - first[1]) / (last[0] - first[0])
        delivered = (counter.count - count0) / elapsed
        return CeilingResult(fanout, target_out_pps, sent, delivered, cpu)
    finally:
        loop.remove_reader(counter.sock)
        proc.terminate()
        proc.wait(10)
        if progress:
            await reader


async def _blast(
    sock: socket.socket, dest: tuple[str, int], packets: list[bytes], rate: float, duration: float
) -> None:
    start = time.monotonic()
    sent = 0
    while (now := time.monotonic()) - start < duration:
        due = int((now - start) * rate)
        while sent < due:
            sock.sendto(packets[sent % len(packets)], dest)
            sent += 1
        await asyncio.sleep(0.002)


def _read_progress(stream: IO[str], progress: list[tuple[float, int]]) -> None:
    for line in stream:
        when, sent = line.split()
        progress.append((float(when), int(sent)))


def _cpu(ps: psutil.Process) -> float:
    times = ps.cpu_times()
    return float(times.user + times.system)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dest", required=True)
    parser.add_argument("--fanout", type=int, required=True)
    parser.add_argument("--batched", action="store_true")
    args = parser.parse_args()
    import uvloop

    host, port = args.dest.rsplit(":", 1)
    uvloop.run(worker(args.port, (host, int(port)), args.fanout, args.batched))


if __name__ == "__main__":
    main()
