"""sfu.native._stats: a stream's per-packet receive counters (see _stats.c).

The twin of sfu.packet.streamstats.ReceiveCorePython, with the same values.
"""

class ReceiveCore:
    max_seq: int
    received: int
    bytes: int
    _base: int
    _jitter: float
    _transit: float | None
    @property
    def _clock_rate(self) -> int: ...
    def __init__(self, clock_rate: int) -> None: ...
    def add(self, ext_seq: int, timestamp: int, size: int, now: float, /) -> None: ...
