"""sfu.native._gcc: transport-cc feedback's per-packet loops in C (see _gcc.c).

Each is the twin of one Python function, with exactly the same outputs.
"""

from collections.abc import Sequence

from typing_extensions import Buffer

def tcc_chunk_walk(data: Buffer, i: int, end: int, status_count: int) -> tuple[int, int, bytes]:
    """sfu.packet.rtcp._tcc_chunk_walk (ValueError where it raises RtcpError)."""

def history_columns(
    ring: Buffer,
    mask: int,
    newest: int,
    oldest: float,
    base_seq: int,
    symbols: bytes,
    deltas: bytes,
    reference: int,
) -> tuple[list[int], list[float], list[int], list[float | None], list[int], int] | None:
    """sfu.transport.sendhistory.SendHistory._columns_per_packet's loop on its ring
    (4 doubles a slot; None: the reference time is beyond its range, take the
    Python path)."""

def split_feedback(
    sequences: Sequence[int],
    send_times: Sequence[float],
    sizes: Sequence[int],
    arrivals: Sequence[float | None],
    probes: Sequence[int],
    since: float,
) -> (
    tuple[
        int,
        int,
        list[tuple[int, int]],
        Sequence[int],
        Sequence[float],
        Sequence[int],
        Sequence[float],
        Sequence[int] | None,
        bool,
        bool,
    ]
    | None
):
    """sfu.policy.gcc._split."""

def arrival_order(
    arrivals: Sequence[float],
    sequences: Sequence[int],
    send_times: Sequence[float],
    sizes: Sequence[int],
    probes: Sequence[int] | None,
    in_sequence: bool,
) -> (
    tuple[Sequence[float], Sequence[int], Sequence[float], Sequence[int], Sequence[int] | None]
    | None
):
    """sfu.policy.gcc._arrival_order (None: a sequence number beyond 64 bits)."""

def acked_windows(
    arrivals: Sequence[float],
    sizes: Sequence[int],
    extra: int,
    last: float,
    window_s: float,
    total: int,
    kbps: float | None,
    variance: float,
) -> tuple[float, float, int, float | None, float, int]:
    """sfu.policy.gcc_rates._windows."""

class DelayDetector:
    """sfu.policy.gcc_delay.DelayDetector."""

    @property
    def state(self) -> str: ...
    @property
    def threshold(self) -> float: ...
    def reset(self) -> None: ...
    def add_all(
        self, send_times: Sequence[float], arrivals: Sequence[float], now: float
    ) -> None: ...
