"""`sendmmsg` / `recvmmsg` for the benchmarks, through cffi in ABI mode (no compiler).

Bench-only: the SFU's own batched egress lives in sfu/transport/.  Linux
x86_64/aarch64 glibc layouts (LP64): `struct msghdr` is 56 bytes and
`struct mmsghdr` 64; `check_layout()` asserts it.

* `Batch`: a preallocated array of `n` messages for one call; `send()` sends
  the first `count` (each with its own buffer and destination) in one
  `sendmmsg`; `receive()` fills up to `n` with one `recvmmsg` into one
  contiguous buffer, viewed as a numpy array (`Batch.data`, `Batch.lengths`)
  so that a caller can classify a whole batch without a Python loop.
"""

from __future__ import annotations

import errno
import importlib
import socket
import struct
from typing import Any

import numpy as np

# Imported by name: no stubs for cffi here, and this keeps mypy quiet either way.
ffi: Any = importlib.import_module("cffi").FFI()
ffi.cdef(
    """
    struct iovec { void *iov_base; size_t iov_len; };
    struct msghdr {
        void *msg_name; unsigned int msg_namelen;
        struct iovec *msg_iov; size_t msg_iovlen;
        void *msg_control; size_t msg_controllen;
        int msg_flags;
    };
    struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
    struct timespec { long tv_sec; long tv_nsec; };
    int sendmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags);
    int recvmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags,
                 struct timespec *timeout);
    """
)
libc: Any = ffi.dlopen(None)

MSG_DONTWAIT = 0x40
SOCKADDR_IN = 16
_MMSGHDR_WORDS = 16  # 64 bytes as uint32
_MSG_LEN_WORD = 14  # offset 56
_MSG_NAMELEN_WORD = 2  # offset 8


def check_layout() -> None:
    if ffi.sizeof("struct msghdr") != 56 or ffi.sizeof("struct mmsghdr") != 64:
        raise RuntimeError("unexpected struct msghdr layout (not LP64 glibc)")


def sockaddr_in(host: str, port: int) -> bytes:
    """A `struct sockaddr_in` (AF_INET, network byte order)."""
    return struct.pack("=HH4s8x", socket.AF_INET, socket.htons(port), socket.inet_aton(host))


def parse_sockaddr_in(raw: bytes) -> tuple[str, int]:
    _, port, address = struct.unpack_from("=HH4s", raw)
    return socket.inet_ntoa(address), socket.ntohs(port)


class Batch:
    """`n` messages of at most `size` bytes, reused for every call."""

    def __init__(self, n: int, size: int = 1500) -> None:
        check_layout()
        self.n = n
        self.size = size
        self.msgs = ffi.new("struct mmsghdr[]", n)
        self.iovs = ffi.new("struct iovec[]", n)
        self.names = ffi.new("char[]", n * SOCKADDR_IN)
        self.data = np.zeros((n, size), dtype=np.uint8)
        base = ffi.cast("char *", self.data.ctypes.data)
        for i in range(n):
            self.iovs[i].iov_base = base + i * size
            self.iovs[i].iov_len = size
            hdr = self.msgs[i].msg_hdr
            hdr.msg_iov = self.iovs + i
            hdr.msg_iovlen = 1
            hdr.msg_name = self.names + i * SOCKADDR_IN
            hdr.msg_namelen = SOCKADDR_IN
        words = np.frombuffer(ffi.buffer(self.msgs), dtype=np.uint32).reshape(n, _MMSGHDR_WORDS)
        self.lengths = words[:, _MSG_LEN_WORD]
        self._namelens = words[:, _MSG_NAMELEN_WORD]
        self._keep: list[Any] = []

    # -- sending ----------------------------------------------------------------

    def set_destination(self, i: int, address: bytes) -> None:
        ffi.memmove(self.names + i * SOCKADDR_IN, address, SOCKADDR_IN)

    def set_payload(self, i: int, payload: bytes) -> None:
        """Message `i` sends `payload` itself (no copy; kept alive until the next `send`)."""
        pointer = ffi.from_buffer(payload)
        self._keep.append(pointer)
        self.iovs[i].iov_base = pointer
        self.iovs[i].iov_len = len(payload)

    def send(self, fd: int, count: int) -> int:
        """sendmmsg of messages 0..count-1; how many went out (-errno on failure)."""
        sent = 0
        try:
            while sent < count:
                done = libc.sendmmsg(fd, self.msgs + sent, count - sent, MSG_DONTWAIT)
                if done < 0:
                    return sent if sent else -ffi.errno
                sent += done
            return sent
        finally:
            self._keep.clear()

    # -- receiving --------------------------------------------------------------

    def receive(self, fd: int, offset: int = 0, count: int | None = None) -> int:
        """recvmmsg without waiting into messages offset.. (at most `count`):
        how many were filled (0 if none; -errno on other errors)."""
        count = self.n - offset if count is None else min(count, self.n - offset)
        self._namelens[offset : offset + count] = SOCKADDR_IN  # the kernel wrote them back
        got = libc.recvmmsg(fd, self.msgs + offset, count, MSG_DONTWAIT, ffi.NULL)
        if got < 0:
            code = ffi.errno
            return 0 if code in (errno.EAGAIN, errno.EWOULDBLOCK) else -code
        return int(got)

    def message(self, i: int) -> tuple[bytes, tuple[str, int]]:
        """Message `i` of the last receive, as (data, (host, port))."""
        length = int(self.lengths[i])
        name = bytes(ffi.buffer(self.names + i * SOCKADDR_IN, SOCKADDR_IN))
        return self.data[i, :length].tobytes(), parse_sockaddr_in(name)
