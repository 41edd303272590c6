"""Cheap receivers for load generators: count most subscribers' packets in bulk.

A subscriber that decodes nothing still costs a Python load generator a
few microseconds per packet when the event loop hands it every datagram
(one `recvmsg`, a bytes object, an address tuple, a callback, the per-SSRC
bookkeeping).  At a server's saturation (hundreds of thousands of packets
per second) that generator would be the limit, not the server.

`BulkReader` gives chosen subscribers a socket the event loop never reads
once they are connected:

1. While ICE and DTLS run, the socket is read packet by packet
   (`loop.add_reader`) and every datagram goes to the aioice/DTLS protocol,
   exactly as before: the subscriber is a real WebRTC peer.
2. Once SRTP is keyed, `bulk()` takes the socket off the event loop.  Its
   receive buffer is made large (`SO_RCVBUFFORCE` as root: 16 MiB); every
   `interval` seconds one sweep drains every bulk socket with `recvmmsg`
   (up to 256 datagrams per system call into one preallocated buffer) and
   classifies each batch with numpy (`classify`): RTP packets (version 2,
   not an RTCP packet type) are counted per SSRC with their sequence gaps
   (loss), without decrypting; anything else (STUN consent checks and
   their answers, DTLS, RTCP) is handed to the protocol as before, so the
   subscriber keeps answering the server's consent checks and stays
   connected.
3. The kernel counts what the generator failed to take: `socket_drops()`
   reads the `drops` column of /proc/net/udp for these ports.  A run whose
   generator sockets dropped anything is not a measurement of the server.

The packets still cross the loopback into real sockets, so the sender (the
server) pays the same kernel cost as with a subscriber that reads every
packet; only the generator's per-packet Python cost goes away (a sweep costs
~20 ns per packet plus ~2 us per socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from mmsg import Batch

SO_RCVBUFFORCE = 33
BULK_BUFFER = 16 * 1024 * 1024


@dataclass
class SsrcCount:
    packets: int = 0
    lost: int = 0
    last_seq: int = -1
    first_at: float = field(default_factory=time.monotonic)  # the sweep that saw it first


@dataclass
class SocketCount:
    """What one bulk socket received (RTP only)."""

    packets: int = 0
    lost: int = 0
    other: int = 0  # handed to the protocol (STUN, DTLS, RTCP)
    ssrcs: dict[int, SsrcCount] = field(default_factory=dict)

    def flowing(self, threshold: int = 20) -> int:
        return sum(1 for s in self.ssrcs.values() if s.packets > threshold)


def classify(
    data: npt.NDArray[np.uint8], lengths: npt.NDArray[np.uint32], n: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """The first `n` datagrams: (is RTP, SSRC of each RTP one, its sequence number)."""
    head = data[:n, :12]
    b0, b1 = head[:, 0], head[:, 1]
    rtp = ((b0 & 0xC0) == 0x80) & ((b1 < 192) | (b1 > 223)) & (lengths[:n] >= 12)
    packets = head[rtp]
    ssrc = np.ascontiguousarray(packets[:, 8:12]).view(">u4").ravel().astype(np.uint32)
    seq = (packets[:, 2].astype(np.int64) << 8) | packets[:, 3].astype(np.int64)
    return rtp, ssrc, seq


def count_sequences(stream: SsrcCount, seqs: npt.NDArray[np.int64]) -> None:
    """Add one SSRC's sequence numbers (arrival order) to its count and gaps.

    A step forward of d counts d - 1 lost; a step back or a duplicate counts
    nothing (a reordered packet thus counts as a loss once: loopback does not
    reorder).
    """
    if not len(seqs):
        return
    stream.packets += len(seqs)
    first = stream.last_seq if stream.last_seq >= 0 else int(seqs[0])
    previous = np.concatenate(([first], seqs[:-1]))
    delta = (seqs - previous) & 0xFFFF
    forward = delta[(delta > 0) & (delta < 0x8000)]
    stream.lost += int((forward - 1).sum())
    stream.last_seq = int(seqs[-1])


def add_batch(
    count: SocketCount, rtp: npt.NDArray[np.bool_], ssrc: npt.NDArray[np.uint32],
    seq: npt.NDArray[np.int64],
) -> None:  # fmt: skip
    count.packets += len(ssrc)
    count.other += int((~rtp).sum())
    for value in np.unique(ssrc):
        stream = count.ssrcs.setdefault(int(value), SsrcCount())
        before = stream.lost
        count_sequences(stream, seq[ssrc == value])
        count.lost += stream.lost - before


class BulkTransport(asyncio.DatagramTransport):
    """A datagram transport over a plain socket that `BulkReader` can take off the loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: asyncio.DatagramProtocol,
        reader: BulkReader,
    ) -> None:
        super().__init__()
        self.loop = loop
        self.sock = sock
        self.protocol = protocol
        self.reader = reader
        self.count = SocketCount()
        self.closing = False
        self.bulk_mode = False
        loop.add_reader(sock.fileno(), self._read_live)

    def _read_live(self) -> None:
        for _ in range(64):
            try:
                data, addr = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.protocol.error_received(exc)
                return
            self.protocol.datagram_received(data, addr)

    def sendto(self, data: Any, addr: Any = None) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
            self.sock.sendto(data, addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self.sock
        if name == "sockname":
            return self.sock.getsockname()
        return default

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if self.bulk_mode:
            self.reader.forget(self)
        else:
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.loop.call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


class BulkReader:
    """Sweeps the bulk sockets every `interval` seconds (see the module doc)."""

    def __init__(self, interval: float = 0.02, batch: int = 256) -> None:
        self.interval = interval
        self.batch = Batch(batch, 1500)
        self.transports: list[BulkTransport] = []
        self.sweeps = 0
        self.sweep_seconds = 0.0
        self.max_batch = 0
        self.errors = 0
        self._task: asyncio.Task[None] | None = None

    def bind_patch(self, ice: Any) -> None:
        """Make an sfu.transport.ice.IceConnection bind its sockets through us."""

        async def bind(address: str) -> Any:
            loop = asyncio.get_running_loop()
            for port in ice._port_allocator.candidates():
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    sock.bind((address, port))
                except OSError:
                    sock.close()
                    continue
                sock.setblocking(False)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, BULK_BUFFER)
                protocol = _media_protocol(ice)
                transport = BulkTransport(loop, sock, protocol, self)
                protocol.connection_made(transport)
                return protocol
            return None

        ice._bind = bind

    def bulk(self, protocols: Iterable[Any]) -> None:
        """From now on, sweep these protocols' sockets instead of reading them live."""
        for protocol in protocols:
            transport = protocol.transport
            if not isinstance(transport, BulkTransport) or transport.closing:
                continue
            if not transport.bulk_mode:
                transport.loop.remove_reader(transport.sock.fileno())
                transport.bulk_mode = True
                self.transports.append(transport)
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def forget(self, transport: BulkTransport) -> None:
        with contextlib.suppress(ValueError):
            self.transports.remove(transport)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            self.sweep()
            self.sweep_seconds += loop.time() - start
            self.sweeps += 1
            await asyncio.sleep(max(0.0, self.interval - (loop.time() - start)))

    def sweep(self) -> None:
        batch = self.batch
        for transport in list(self.transports):
            fd = transport.sock.fileno()
            while True:
                n = batch.receive(fd)
                if n <= 0:
                    if n < 0:
                        self.errors += 1
                    break
                self.max_batch = max(self.max_batch, n)
                rtp, ssrc, seq = classify(batch.data, batch.lengths, n)
                add_batch(transport.count, rtp, ssrc, seq)
                if not rtp.all():
                    for i in np.flatnonzero(~rtp):
                        data, addr = batch.message(int(i))
                        transport.protocol.datagram_received(data, addr)
                if n < batch.n:
                    break

    def packets(self) -> int:
        return sum(t.count.packets for t in self.transports)

    def lost(self) -> int:
        return sum(t.count.lost for t in self.transports)

    def ports(self) -> set[int]:
        return {int(t.sock.getsockname()[1]) for t in self.transports}

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _media_protocol(ice: Any) -> Any:
    from sfu.transport.ice import MediaProtocol

    return MediaProtocol(ice)


def socket_drops(ports: set[int], path: str = "/proc/net/udp") -> int:
    """Datagrams the kernel dropped on the UDP sockets bound to `ports` (full buffers)."""
    return sum(parse_proc_udp(Path(path).read_text(), ports).values())


def parse_proc_udp(text: str, ports: set[int]) -> dict[int, int]:
    """Local port -> the `drops` column, for the sockets of /proc/net/udp bound to `ports`."""
    out: dict[int, int] = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 13 or ":" not in parts[1]:
            continue
        port = int(parts[1].rsplit(":", 1)[1], 16)
        if port in ports:
            out[port] = out.get(port, 0) + int(parts[-1])
    return out


def peer_protocols(peer: Any) -> list[Any]:
    """The MediaProtocols of a SyntheticPeer (its ICE sockets)."""
    return list(peer.transport._ice._protocols)


def peer_counts(peer: Any) -> list[SocketCount]:
    """What the bulk sockets of a SyntheticPeer counted (none if it reads live)."""
    return [t.count for p in peer_protocols(peer) if isinstance(t := p.transport, BulkTransport)]


def peer_ports(peer: Any) -> set[int]:
    ports = set()
    for protocol in peer_protocols(peer):
        with contextlib.suppress(Exception):
            ports.add(int(protocol.transport.get_extra_info("sockname")[1]))
    return ports


def cpu_pressure_us(path: str = "/proc/pressure/cpu") -> float:
    """Microseconds some runnable task waited for a CPU (PSI `some total`); NaN without PSI."""
    try:
        text = Path(path).read_text()
    except OSError:
        return float("nan")
    for line in text.splitlines():
        if line.startswith("some "):
            return float(line.rsplit("total=", 1)[1])
    return float("nan")
