"""`sendmmsg`/`recvmmsg` through cffi in ABI mode: libc opened with dlopen, no compiler.

CPython's `socket` has no `sendmmsg`/`recvmmsg`.  cffi's ABI mode declares
the C structures and functions here and calls libc at run time, so nothing
is compiled at install and no wheel has to be built per platform; the cost
is that the structure layouts below must match the C library's exactly,
which is why `load()` only offers the binding on Linux with glibc (whose
`struct msghdr` has `size_t` lengths on every 64-bit architecture it runs
on); everywhere else it returns None and `sfu.transport.udpmux` falls back
to one `sendto`/`recvfrom` per datagram (docs/media-plane.md, "Single-port
mode and batched sends").

`SendBatch` owns one preallocated buffer of `capacity` slots of 1500 bytes,
their `iovec`s and `mmsghdr`s: `add` copies a datagram into the next slot,
`flush` hands them all to the kernel in as few `sendmmsg` calls as it can.
A datagram the kernel refuses (bad address, ...) is skipped and counted, a
full socket buffer (EAGAIN) drops the rest of the batch and counts it: a
flush never waits and never retries in a loop.  `RecvBatch` reads up to
`capacity` datagrams per `recvmmsg` call, each with its kernel receive time
(`sfu.transport.rxtime`).
"""

from __future__ import annotations

import errno
import platform
import socket
import struct
import sys
from typing import TYPE_CHECKING, Any, Protocol

from sfu import native
from sfu.packet.counters import Counters
from sfu.transport import rxtime

if TYPE_CHECKING:
    from sfu.transport.srtp import OutboundSrtp

SLOT = 1536  # a 1500-byte datagram, or a plain packet protected in place (+ its SRTP tag)
SRTP_TRAILER = 16  # the largest tag libsrtp appends (AES-GCM)
RECV_SLOT = 2048  # larger datagrams arrive truncated and are dropped as oversize
MSG_DONTWAIT = 0x40
MSG_CTRUNC = 0x08

CDEF = """
struct iovec { void *iov_base; size_t iov_len; };
struct msghdr {
    void *msg_name; unsigned int msg_namelen;
    struct iovec *msg_iov; size_t msg_iovlen;
    void *msg_control; size_t msg_controllen;
    int msg_flags;
};
struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
int sendmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags);
int recvmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags, void *timeout);
"""

# RTP header bytes 1-11: marker + payload type, sequence, timestamp, SSRC.
_HEADER = struct.Struct("!BHII")
_SEQ = struct.Struct("!H")
_DROP_ALL = {errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS}


class Mmsg:
    """The libc binding: `ffi` and `lib` (sendmmsg, recvmmsg)."""

    def __init__(self) -> None:
        from cffi import FFI  # type: ignore[import-untyped]

        self.ffi = FFI()
        self.ffi.cdef(CDEF)
        self.lib: Any = self.ffi.dlopen(None)  # the C library the interpreter runs on
        # Resolving the symbols now fails here rather than on the first packet.
        self.sendmmsg = self.lib.sendmmsg
        self.recvmmsg = self.lib.recvmmsg


_LOADED: list[Mmsg | None] = []


def load() -> Mmsg | None:
    """The binding, or None where it cannot be trusted (not Linux/glibc, no cffi, no symbol)."""
    if not _LOADED:
        _LOADED.append(_load())
    return _LOADED[0]


def _load() -> Mmsg | None:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    if struct.calcsize("P") != 8:
        return None
    try:
        return Mmsg()
    except (ImportError, OSError, AttributeError):
        return None


def sockaddr(family: int, addr: tuple[str, int]) -> bytes:
    """`struct sockaddr_in`/`sockaddr_in6` for (host, port), as the kernel wants it."""
    host, port = addr[0], addr[1]
    if family == socket.AF_INET:
        return struct.pack("=H", socket.AF_INET) + struct.pack(
            "!H4s8x", port, socket.inet_aton(host)
        )
    return struct.pack("=H", socket.AF_INET6) + struct.pack(
        "!HI16sI", port, 0, socket.inet_pton(socket.AF_INET6, host), 0
    )


def address(raw: bytes) -> tuple[str, int]:
    """(host, port) of a `sockaddr_in`/`sockaddr_in6` (the inverse of `sockaddr`)."""
    (family,) = struct.unpack_from("=H", raw)
    (port,) = struct.unpack_from("!H", raw, 2)
    if family == socket.AF_INET:
        return socket.inet_ntoa(raw[4:8]), port
    return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port


class Destination:
    """A remote address with its sockaddr kept in C memory for `SendBatch`
    (`raw`: the same bytes, for the compiled batch, which copies them into its own)."""

    __slots__ = ("addr", "name", "raw", "size")

    def __init__(self, mmsg: Mmsg | None, family: int, addr: tuple[str, int] | None) -> None:
        self.addr = addr
        raw = self.raw = b"" if addr is None else sockaddr(family, addr)
        self.size = len(raw)
        # NULL for a connected socket (tests use a socketpair).
        self.name: Any = mmsg.ffi.new("char[]", raw) if mmsg is not None and raw else None


class SendBatch:
    """Datagrams for one socket, sent with `sendmmsg` (see module doc)."""

    def __init__(self, mmsg: Mmsg, fd: int, capacity: int = 256) -> None:
        ffi = self._ffi = mmsg.ffi
        self._send = mmsg.sendmmsg
        self.fd = fd
        self.capacity = capacity
        self._buffer = ffi.new("char[]", capacity * SLOT)
        self._iov = ffi.new("struct iovec[]", capacity)
        self._msgs = ffi.new("struct mmsghdr[]", capacity)
        self._slots = [self._buffer + i * SLOT for i in range(capacity)]
        self._iovs = [self._iov[i] for i in range(capacity)]
        self._headers = [self._msgs[i].msg_hdr for i in range(capacity)]
        for i in range(capacity):
            self._iovs[i].iov_base = self._slots[i]
            self._headers[i].msg_iov = self._iov + i
            self._headers[i].msg_iovlen = 1
        self._memmove = ffi.memmove
        self._view = ffi.buffer(self._buffer)
        self._null = ffi.NULL
        # Each slot's destination, kept (alive for its msg_name) until the slot
        # goes elsewhere: a steady fan-out sets no address twice.
        self._names: list[Destination | None] = [None] * capacity
        self._counters: list[Counters | None] = [None] * capacity
        self.count = 0
        self.calls = 0  # sendmmsg system calls made
        self.sent = 0
        self.dropped = 0

    def add(self, data: bytes, destination: Destination, counters: Counters) -> bool:
        """Copy one datagram into the batch; True when the batch is now full."""
        i = self.count
        size = len(data)
        if size > SLOT:
            counters.oversize += 1
            return False
        self._memmove(self._slots[i], data, size)
        self._iovs[i].iov_len = size
        if self._names[i] is not destination:
            header = self._headers[i]
            header.msg_name = destination.name if destination.name is not None else self._null
            header.msg_namelen = destination.size
            self._names[i] = destination
        self._counters[i] = counters
        self.count = i + 1
        return self.count >= self.capacity

    def add_srtp(
        self,
        packet: bytes,
        srtp: OutboundSrtp,
        destination: Destination,
        counters: Counters,
        twcc_at: int = -1,
        twcc_seq: int = 0,
    ) -> int:
        """Copy a plain RTP packet in and protect it there; its protected size, or -1.

        `twcc_at`, `twcc_seq`: as in `add_rewritten` (the transport-wide
        sequence number written in the copy, `packet` itself is not changed).
        """
        size = len(packet)
        if size > SLOT - SRTP_TRAILER:
            counters.oversize += 1
            return -1
        i = self.count
        slot = self._slots[i]
        self._memmove(slot, packet, size)
        if 0 <= twcc_at <= size - 2:
            _SEQ.pack_into(self._view, i * SLOT + twcc_at, twcc_seq & 0xFFFF)
        return self._seal(i, slot, size, srtp, destination, counters)

    def add_rewritten(
        self,
        packet: bytes,
        header: tuple[int, int, int, int],
        srtp: OutboundSrtp,
        destination: Destination,
        counters: Counters,
        twcc_at: int = -1,
        twcc_seq: int = 0,
    ) -> int:
        """`add_srtp` of `packet` with a new (payload type, sequence, timestamp, SSRC).

        The marker bit is kept; the header is written in the batch's buffer,
        so the forwarded packet is copied once, from the producer's bytes.
        With `twcc_at` >= 0 (the offset of the transport-wide sequence
        extension's 2-byte value in `packet`, from its parsed header), the
        low 16 bits of `twcc_seq` are written there too.
        """
        size = len(packet)
        if size > SLOT - SRTP_TRAILER or size < 12:
            counters.oversize += 1
            return -1
        i = self.count
        slot = self._slots[i]
        self._memmove(slot, packet, size)
        pt, sequence, timestamp, ssrc = header
        _HEADER.pack_into(
            self._view, i * SLOT + 1, (packet[1] & 0x80) | pt, sequence, timestamp, ssrc
        )
        if 0 <= twcc_at <= size - 2:
            _SEQ.pack_into(self._view, i * SLOT + twcc_at, twcc_seq & 0xFFFF)
        # _seal inlined: this runs once per forwarded copy.
        length = srtp.length
        length[0] = size
        if srtp.protect(srtp.ctx, slot, length):
            counters.send_errors += 1
            return -1
        protected: int = length[0]
        self._iovs[i].iov_len = protected
        if self._names[i] is not destination:
            hdr = self._headers[i]
            hdr.msg_name = destination.name
            hdr.msg_namelen = destination.size
            self._names[i] = destination
        self._counters[i] = counters
        self.count = i + 1
        return protected

    def _seal(
        self,
        i: int,
        slot: Any,
        size: int,
        srtp: OutboundSrtp,
        destination: Destination,
        counters: Counters,
    ) -> int:
        length = srtp.length
        length[0] = size
        if srtp.protect(srtp.ctx, slot, length):
            counters.send_errors += 1
            return -1
        size = length[0]
        self._iovs[i].iov_len = size
        if self._names[i] is not destination:  # a steady fan-out keeps its slots
            header = self._headers[i]
            header.msg_name = destination.name
            header.msg_namelen = destination.size
            self._names[i] = destination
        self._counters[i] = counters
        self.count = i + 1
        return size

    def close(self) -> None:
        """The socket is closed: what is queued, and will be, is dropped (its fd may be reused)."""
        self.fd = -1
        self.flush()

    def flush(self) -> int:
        """Send everything queued; returns how many datagrams the kernel took."""
        n = self.count
        if not n:
            return 0
        self.count = 0
        if self.fd < 0:
            self._drop(0, n)
            return 0
        done = sent = 0
        while done < n:
            self.calls += 1
            result = self._send(self.fd, self._msgs + done, n - done, MSG_DONTWAIT)
            if result > 0:
                done += result
                sent += result
                continue
            code = self._ffi.errno
            if result == 0 or code in _DROP_ALL:
                self._drop(done, n)  # the socket buffer is full: no spinning
                break
            if code == errno.EINTR:
                continue
            self._drop(done, done + 1)  # this datagram was refused; the rest go on
            done += 1
        self.sent += sent
        return sent

    def _drop(self, start: int, end: int) -> None:
        for i in range(start, end):
            counters = self._counters[i]
            if counters is not None:
                counters.send_errors += 1
        self.dropped += end - start


class Batch(Protocol):
    """A send batch: `SendBatch` below or its compiled twin `sfu.native._fanout.SendBatch`."""

    @property
    def fd(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def count(self) -> int: ...
    @property
    def calls(self) -> int: ...
    @property
    def sent(self) -> int: ...
    @property
    def dropped(self) -> int: ...

    def add(self, data: bytes, destination: Destination, counters: Counters) -> bool: ...

    def add_srtp(
        self,
        packet: bytes,
        srtp: OutboundSrtp,
        destination: Destination,
        counters: Counters,
        twcc_at: int = -1,
        twcc_seq: int = 0,
    ) -> int: ...

    def add_rewritten(
        self,
        packet: bytes,
        header: tuple[int, int, int, int],
        srtp: OutboundSrtp,
        destination: Destination,
        counters: Counters,
        twcc_at: int = -1,
        twcc_seq: int = 0,
    ) -> int: ...

    def flush(self) -> int: ...

    def close(self) -> None: ...


def new_batch(mmsg: Mmsg, fd: int, capacity: int = 256) -> Batch:
    """The compiled send batch when sfu.native has it (docs/media-plane.md, "Compiled
    per-packet paths"), else `SendBatch`: the same behaviour either way."""
    compiled = native.load("_fanout")
    if compiled is not None:
        batch: Batch = compiled.SendBatch(fd, capacity)
        return batch
    return SendBatch(mmsg, fd, capacity)


class Reader(Protocol):
    """A receive batch: `RecvBatch` below or its compiled twin `sfu.native._fanout.RecvBatch`."""

    @property
    def calls(self) -> int: ...

    def read(self) -> list[tuple[bytes, tuple[str, int], float]]: ...


def new_reader(mmsg: Mmsg, fd: int, capacity: int = 64) -> Reader:
    """The compiled receive batch when sfu.native has it, else `RecvBatch` (same behaviour)."""
    compiled = native.load("_fanout")
    if compiled is not None:
        reader: Reader = compiled.RecvBatch(fd, capacity)
        return reader
    return RecvBatch(mmsg, fd, capacity)


class RecvBatch:
    """Up to `capacity` datagrams per `recvmmsg` call, as (bytes, (host, port), arrival).

    `arrival`: the kernel's receive time on the monotonic clock when the
    socket has SO_TIMESTAMPNS on, else the read's (`sfu.transport.rxtime`).
    """

    def __init__(self, mmsg: Mmsg, fd: int, capacity: int = 64) -> None:
        ffi = self._ffi = mmsg.ffi
        self._recv = mmsg.recvmmsg
        self.fd = fd
        self.capacity = capacity
        self._buffer = ffi.new("char[]", capacity * RECV_SLOT)
        self._names = ffi.new("char[]", capacity * 128)
        self._control = ffi.new("char[]", capacity * rxtime.CONTROL_BYTES)
        self._iov = ffi.new("struct iovec[]", capacity)
        self._msgs = ffi.new("struct mmsghdr[]", capacity)
        self._slots = [self._buffer + i * RECV_SLOT for i in range(capacity)]
        self._name_slots = [self._names + i * 128 for i in range(capacity)]
        self._control_slots = [self._control + i * rxtime.CONTROL_BYTES for i in range(capacity)]
        self._headers = [self._msgs[i].msg_hdr for i in range(capacity)]
        self._buf = ffi.buffer
        for i in range(capacity):
            self._iov[i].iov_base = self._slots[i]
            self._iov[i].iov_len = RECV_SLOT
            self._headers[i].msg_iov = self._iov + i
            self._headers[i].msg_iovlen = 1
            self._headers[i].msg_name = self._name_slots[i]
            self._headers[i].msg_control = self._control_slots[i]
        self._addresses: dict[bytes, tuple[str, int]] = {}
        self.calls = 0

    def read(self) -> list[tuple[bytes, tuple[str, int], float]]:
        """What is waiting now (empty when nothing is); OSError for a real error."""
        for header in self._headers:
            header.msg_namelen = 128
            header.msg_controllen = rxtime.CONTROL_BYTES
        self.calls += 1
        n = self._recv(self.fd, self._msgs, self.capacity, MSG_DONTWAIT, self._null())
        if n < 0:
            code = self._ffi.errno
            if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return []
            raise OSError(code, "recvmmsg failed")
        offset, read_ns = rxtime.clock_offset()
        out = []
        buf, msgs, addresses = self._buf, self._msgs, self._addresses
        for i in range(n):
            header = self._headers[i]
            raw = buf(self._name_slots[i], header.msg_namelen)[:]
            addr = addresses.get(raw)
            if addr is None:
                if len(addresses) >= 4096:
                    addresses.clear()
                addr = addresses[raw] = address(raw)
            at = rxtime.monotonic_of(self._stamp(i, header), offset, read_ns)
            out.append((buf(self._slots[i], msgs[i].msg_len)[:], addr, at))
        return out

    def _stamp(self, i: int, header: Any) -> int:
        size = header.msg_controllen
        if header.msg_flags & MSG_CTRUNC or not 0 < size <= rxtime.CONTROL_BYTES:
            return 0
        return rxtime.stamp_in_control(self._buf(self._control_slots[i], size), size)

    def _null(self) -> Any:
        return self._ffi.NULL


class SocketReader:
    """Without the binding: one `recvmsg` per datagram, up to `capacity` per `read`,
    the kernel's stamp from its ancillary data (the same answers as `RecvBatch`)."""

    def __init__(self, sock: socket.socket, capacity: int = 64) -> None:
        self.sock = sock
        self.capacity = capacity
        self.calls = 0

    def read(self) -> list[tuple[bytes, tuple[str, int], float]]:
        """What is waiting now (empty when nothing is); OSError for a real error."""
        got = []
        recvmsg = self.sock.recvmsg
        for _ in range(self.capacity):
            self.calls += 1
            try:
                data, ancdata, _flags, addr = recvmsg(RECV_SLOT, rxtime.CONTROL_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            got.append((data, (addr[0], addr[1]), rxtime.stamp_in_ancillary(ancdata)))
        if not got:
            return []
        offset, read_ns = rxtime.clock_offset()
        at = rxtime.monotonic_of
        return [(data, addr, at(stamp, offset, read_ns)) for data, addr, stamp in got]
