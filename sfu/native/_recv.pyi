"""sfu.native._recv: recvmmsg for the shared UDP socket (see _recv.c).

The twin of sfu.transport.mmsg.RecvBatch, with the same answers.
"""

class RecvBatch:
    fd: int
    calls: int
    @property
    def capacity(self) -> int: ...
    def __init__(self, fd: int, capacity: int = 64) -> None: ...
    def read(self) -> list[tuple[bytes, tuple[str, int]]]:
        """What is waiting now ([] when nothing is); OSError for a real error."""
