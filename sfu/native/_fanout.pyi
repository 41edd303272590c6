"""Types of sfu.native._fanout (sfu/native/_fanout.c): the per-copy send path in C."""

from typing import Any, Protocol

SLOT: int
SRTP_TRAILER: int

class _Destination(Protocol):
    raw: bytes

class _Srtp(Protocol):
    ctx_address: int
    protect_address: int

class _Counters(Protocol):
    send_errors: int
    oversize: int

class SendBatch:
    """sfu.transport.mmsg.SendBatch's compiled twin (same methods and semantics)."""

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
    def __init__(self, fd: int, capacity: int = 256) -> None: ...
    def add(self, data: bytes, destination: _Destination, counters: _Counters, /) -> bool: ...
    def add_srtp(
        self,
        packet: bytes,
        srtp: _Srtp,
        destination: _Destination,
        counters: _Counters,
        twcc_at: int = -1,
        twcc_seq: int = 0,
        /,
    ) -> int: ...
    def add_rewritten(
        self,
        packet: bytes,
        header: tuple[int, int, int, int],
        srtp: _Srtp,
        destination: _Destination,
        counters: _Counters,
        twcc_at: int = -1,
        twcc_seq: int = 0,
        /,
    ) -> int: ...
    def flush(self) -> int: ...
    def close(self) -> None: ...

class Direct:
    """One transport's keyed route into a compiled batch (WebRtcTransport.fast)."""

    # The transport's own, written by its properties (the plain copies read them here).
    twcc_id: int
    probe_id: int
    @property
    def retired(self) -> int: ...
    def retire(self) -> None:
        """No longer its transport's `fast` (consumers' memos read `fast` again)."""
    @property
    def batch(self) -> SendBatch: ...
    @property
    def destination(self) -> object: ...
    @property
    def srtp(self) -> object: ...
    def __init__(
        self,
        batch: SendBatch,
        destination: _Destination,
        srtp: _Srtp,
        counters: object,
        history: object,
        egress: object,
        twcc_id: int = 0,
        probe_id: int = -1,
    ) -> None: ...
    def send(
        self,
        packet: bytes,
        payload_type: int,
        sequence: int,
        timestamp: int,
        ssrc: int,
        twcc_at: int,
        twcc_id: int,
        probe_id: int,
        /,
    ) -> int: ...

def configure(role: str, cls: type, max_tid: int = -1, /) -> None:
    """The slotted class ("counters", "history", "egress" or "consumer") whose fields the loops use,
    or ("descriptor") the VP8 descriptor NamedTuple read by field index."""

def fanout(
    producer: object,
    consumers: list[Any],
    data: bytes,
    h: object,
    codec: str,
    now: float,
    twcc_at: int,
    /,
) -> None:
    """`Consumer.forward` for each consumer: the plain ones in C, the others in Python."""

class Memo:
    """A consumer's plain-copy fields as C numbers (its `_memo`, made by `fanout`)."""

    @property
    def cells(self) -> int:
        """How many of the fields it holds."""

class RecvBatch:
    """sfu.transport.mmsg.RecvBatch's compiled twin."""

    @property
    def fd(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def calls(self) -> int: ...
    def __init__(self, fd: int, capacity: int = 64) -> None: ...
    def read(self) -> list[tuple[bytes, tuple[str, int], float]]: ...

def monotonic_of(stamp_ns: int, offset_ns: int, read_ns: int) -> float:
    """sfu.transport.rxtime.monotonic_of's compiled twin."""
