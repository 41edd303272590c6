"""Kernel receive timestamps: when a datagram reached the machine, not when Python read it.

The transport-cc feedback the SFU sends a publisher says when each of its
packets arrived; the publisher's delay-based estimator reads the growth of
(arrival - send) spacing as queueing.  Stamped when the event loop reads the
packet, a loop busy for 200 ms turns a steady 10 ms pacing into 200 ms of
silence and a burst of arrivals 0 ms apart: to the browser that is a queue
building up, and it lowers its send rate.  The kernel stamps each datagram as
it is received (`SO_TIMESTAMPNS`: a `SCM_TIMESTAMPNS` control message per
datagram, a `struct timespec` on CLOCK_REALTIME), so the shared UDP socket
(`sfu.transport.udpmux`) turns that option on and its readers hand each
datagram's stamp on:

* the compiled `recvmmsg` (`sfu.native._fanout.RecvBatch`) and its cffi twin
  (`sfu.transport.mmsg.RecvBatch`) read each message's control buffer;
* without the binding, `socket.recvmsg` with an ancillary buffer
  (`UdpMux._read`).

**The clock.**  The arrival log and the rest of the SFU count on
CLOCK_MONOTONIC (`time.monotonic`); the stamp is CLOCK_REALTIME.  Each read
samples the offset between the two right after its system call (monotonic,
realtime, monotonic; the offset against the middle of the bracket; a bracket
wider than 20 us, the thread preempted inside it, is taken again, up to 3
times, keeping the narrowest), and the stamps of that read are converted
with it (`monotonic_of`).  The error is half the bracket (well under a
microsecond with the vDSO clocks) plus what
CLOCK_REALTIME was slewed between the arrival and the read (NTP slews at
most 500 ppm: 0.1 ms after a 200 ms stall); the feedback carries 250 us
units.  A step of the realtime clock (settimeofday) between an arrival and
its read would move that arrival by the step: a stamp is therefore never
placed after its read nor more than `MAX_AGE_NS` before it.  A datagram
without a stamp (option refused, a kernel without it, a truncated control
buffer) gets the read's own time, as before.

**Who uses it.**  Dispatch is synchronous: the mux sets `ARRIVAL.at` before it
hands a datagram on and clears it (0.0) after the batch, so whoever handles
the packet in between (`Participant.on_rtp` recording the transport-wide
sequence number's arrival) can read it; anywhere else (per-transport sockets
read by asyncio, which gives no control messages; the relay) it is 0.0 and
the reader's own clock applies.
"""

from __future__ import annotations

import socket
import struct
import sys
import time

# Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS; asm-generic/socket.h, the 64-bit
# `struct timespec` one); Python's socket module does not name it.
SO_TIMESTAMPNS = 35 if sys.platform.startswith("linux") and struct.calcsize("P") == 8 else None
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
# The control buffer a datagram needs: CMSG_SPACE(sizeof(struct timespec)), with room to spare.
CONTROL_BYTES = 64
# A stamp older than this against its read is a clock step, not a stall.
MAX_AGE_NS = 2_000_000_000
# clock_offset: a bracket this narrow is taken at once, else the narrowest of the tries.
OFFSET_TRIES = 3
GOOD_BRACKET_NS = 20_000
_TIMESPEC = struct.Struct("=qq")
_CMSGHDR = struct.Struct("=Qii")  # size_t cmsg_len; int cmsg_level; int cmsg_type
_ALIGN = 8


class Arrival:
    """The kernel arrival time of the datagram being dispatched (see module doc)."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = 0.0  # seconds on time.monotonic's clock; 0.0: none


ARRIVAL = Arrival()


def enable(sock: socket.socket) -> bool:
    """Turn on receive timestamps for `sock`; False where the platform refuses."""
    if SO_TIMESTAMPNS is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def clock_offset() -> tuple[int, int]:
    """(realtime - monotonic, monotonic) now, in ns: the conversion of this read's stamps.

    Against the middle of two monotonic reads around the realtime one: the
    narrowest of up to `OFFSET_TRIES` brackets (a thread preempted inside
    one would be off by half the preemption).
    """
    best = offset = after = 0
    for attempt in range(OFFSET_TRIES):
        before = time.monotonic_ns()
        real = time.clock_gettime_ns(time.CLOCK_REALTIME)
        after = time.monotonic_ns()
        width = after - before
        if not attempt or width < best:
            best, offset = width, real - (before + width // 2)
        if width <= GOOD_BRACKET_NS:
            break
    return offset, after


def monotonic_of(stamp_ns: int, offset_ns: int, read_ns: int) -> float:
    """The CLOCK_REALTIME stamp `stamp_ns` on the monotonic clock, in seconds.

    Never after the read (`read_ns`), never more than `MAX_AGE_NS` before it;
    `stamp_ns` <= 0 (none): the read's time.  `sfu.native._fanout.monotonic_of`
    is the compiled twin (int64 arithmetic: an overflowing difference counts
    as none).
    """
    at = stamp_ns - offset_ns
    if stamp_ns <= 0 or at > read_ns or at < -(2**63):
        at = read_ns
    elif at < read_ns - MAX_AGE_NS:
        at = read_ns - MAX_AGE_NS
    return at / 1e9


def stamp_in_control(control: bytes | memoryview, size: int) -> int:
    """The SCM_TIMESTAMPNS stamp (ns) in the first `size` bytes of a control buffer, or 0."""
    offset = 0
    while offset + _CMSGHDR.size <= size:
        length, level, kind = _CMSGHDR.unpack_from(control, offset)
        if length < _CMSGHDR.size or offset + length > size:
            return 0
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
            if length < _CMSGHDR.size + _TIMESPEC.size:
                return 0
            return _ns(*_TIMESPEC.unpack_from(control, offset + _CMSGHDR.size))
        offset += (length + _ALIGN - 1) & ~(_ALIGN - 1)
    return 0


def stamp_in_ancillary(ancdata: list[tuple[int, int, bytes]]) -> int:
    """The SCM_TIMESTAMPNS stamp (ns) among `socket.recvmsg`'s ancillary data, or 0."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(data) >= 16:
            return _ns(*_TIMESPEC.unpack_from(data))
    return 0


def _ns(seconds: int, nanos: int) -> int:
    if seconds < 0 or not 0 <= nanos < 1_000_000_000 or seconds > 2**63 // 10**9 - 2:
        return 0
    return seconds * 1_000_000_000 + nanos
