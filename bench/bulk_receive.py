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
   `interval` (50 ms) one sweep drains every bulk socket with `recvmmsg`
   (up to 256 datagrams per system call) into one preallocated buffer of
   16,384 slots, then classifies the whole sweep at once with numpy
   (`classify`, `group_sequences`): RTP packets (version 2, not an RTCP
   packet type) are counted per socket and SSRC with their sequence gaps
   (loss), without decrypting; anything else (STUN consent checks and
   their answers, DTLS, RTCP) is handed to the protocol as before, so the
   subscriber keeps answering the server's consent checks and stays
   connected.  A sweep that fills the buffer leaves the remaining sockets
   for the next one (their kernel buffers hold seconds of packets).
3. The kernel counts what the generator failed to take: `socket_drops()`
   reads the `drops` column of /proc/net/udp for these ports.  A run whose
   generator sockets dropped anything is not a measurement of the server.

The packets still cross the loopback into real sockets, so the sender (the
server) pays the same kernel cost as with a subscriber that reads every
packet; only the generator's per-packet Python cost goes away (a sweep costs a
system call per socket, a few numpy passes over the buffer and ~2 us of
Python per stream).
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


def group_sequences(
    keys: npt.NDArray[np.int64], seqs: npt.NDArray[np.int64]
) -> tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
]:
    """Per key (socket and SSRC), in arrival order: (key, packets, first sequence
    number, last one, sequence numbers missing between them), as `count_sequences`."""
    empty = np.zeros(0, dtype=np.int64)
    if not len(keys):
        return empty, empty, empty, empty, empty
    order = np.argsort(keys, kind="stable")
    k, s = keys[order], seqs[order]
    starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
    counts = np.diff(np.append(starts, len(k)))
    delta = (s[1:] - s[:-1]) & 0xFFFF
    gaps = np.where((delta > 0) & (delta < 0x8000), delta - 1, 0)
    gaps[starts[1:] - 1] = 0  # across two keys: not a gap
    lost = np.add.reduceat(np.append(gaps, 0), starts) if len(gaps) else np.zeros(1, np.int64)
    return k[starts], counts, s[starts], s[starts + counts - 1], lost.astype(np.int64)


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

    def __init__(self, interval: float = 0.05, slots: int = 16384, per_call: int = 256) -> None:
        self.interval = interval
        self.batch = Batch(slots, 1500)
        self.per_call = per_call
        self._next = 0
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
        """Drain every bulk socket into one buffer, then classify and count it all at once."""
        batch = self.batch
        owners: list[tuple[BulkTransport, int]] = []  # (transport, messages), in buffer order
        filled = 0
        transports = self.transports
        start = self._next % len(transports) if transports else 0
        for transport in transports[start:] + transports[:start]:
            if filled >= batch.n:
                break
            fd = transport.sock.fileno()
            while filled < batch.n:
                n = batch.receive(fd, filled, self.per_call)
                if n <= 0:
                    if n < 0:
                        self.errors += 1
                    break
                owners.append((transport, n))
                filled += n
                if n < self.per_call:
                    break
            self._next += 1
        self.max_batch = max(self.max_batch, filled)
        if filled:
            self._count(filled, owners)

    def _count(self, filled: int, owners: list[tuple[BulkTransport, int]]) -> None:
        batch = self.batch
        rtp, ssrc, seq = classify(batch.data, batch.lengths, filled)
        index = np.repeat(np.arange(len(owners), dtype=np.int64), [n for _, n in owners])
        if not rtp.all():
            for i in np.flatnonzero(~rtp):
                transport = owners[int(index[i])][0]
                transport.count.other += 1
                data, addr = batch.message(int(i))
                transport.protocol.datagram_received(data, addr)
        keys = (index[rtp] << 32) | ssrc.astype(np.int64)
        for key, packets, first, last, lost in zip(*group_sequences(keys, seq), strict=True):
            count = owners[int(key) >> 32][0].count
            stream = count.ssrcs.get(int(key) & 0xFFFFFFFF)
            if stream is None:
                stream = count.ssrcs[int(key) & 0xFFFFFFFF] = SsrcCount()
            elif stream.last_seq >= 0:
                step = (int(first) - stream.last_seq) & 0xFFFF
                if 0 < step < 0x8000:
                    lost += step - 1
            stream.packets += int(packets)
            stream.lost += int(lost)
            stream.last_seq = int(last)
            count.packets += int(packets)
            count.lost += int(lost)

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


def process_socket_drops(pid: int, path: str = "/proc/net/udp") -> int:
    """Datagrams the kernel dropped on the UDP sockets of process `pid` and its children.

    A server's own drops: its receive buffers overflowed (it fell behind).
    """
    inodes: set[int] = set()
    pids = [pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    for one in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{one}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = fd.readlink().name
                    if target.startswith("socket:["):
                        inodes.add(int(target[8:-1]))
    return sum(parse_proc_udp_inodes(Path(path).read_text(), inodes).values())


def parse_proc_udp_inodes(text: str, inodes: set[int]) -> dict[int, int]:
    """Socket inode -> the `drops` column, for the sockets of /proc/net/udp in `inodes`."""
    out: dict[int, int] = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 13 and parts[9].isdigit() and int(parts[9]) in inodes:
            out[int(parts[9])] = int(parts[-1])
    return out


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


def backlog_drops(path: str = "/proc/net/softnet_stat") -> int:
    """Packets the kernel dropped because a CPU's input backlog was full (all CPUs).

    Loopback delivery goes through that backlog (`net.core.netdev_max_backlog`);
    when softirq processing is starved it overflows and datagrams vanish before
    any socket sees them.
    """
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return 0
    return sum(int(line.split()[1], 16) for line in lines if len(line.split()) > 1)
