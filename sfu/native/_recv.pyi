"""sfu.native._recv: a Producer's per-packet bookkeeping in one C call (see _recv.c).

`ingest` is the twin of sfu.routing.producer.Producer._book.
"""

from collections.abc import Callable

def configure(role: str, cls: type, /) -> None:
    """The slotted class ("producer", "header", "cache", "meter" or "nack") whose fields
    ingest reads and writes in place."""

def bind(
    read_vp8_at: Callable[..., object],
    find_extension: Callable[..., object],
    rtp_error: type[BaseException],
    descriptor: type[tuple[object, ...]],
    tid_index: int,
    keyframe_index: int,
    rate_window: float,
    /,
) -> None:
    """The compiled parsers it calls, RtpError, Vp8Descriptor's field indices, RATE_WINDOW_S."""

def ingest(producer: object, data: bytes, h: object, now: float, /) -> str | bool | None:
    """Producer._book: the codec to forward with, True, False, or None (not handled:
    nothing changed, run Producer._book)."""
