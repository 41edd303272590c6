"""sfu.native._recv: a Producer's per-packet work in one C call (see _recv.c).

`receive` is the twin of sfu.routing.producer.Producer.on_rtp's Python path.
"""

from collections.abc import Callable

def configure(role: str, cls: type, /) -> None:
    """The slotted class ("producer", "header", "cache", "meter" or "nack") whose fields
    receive reads and writes in place."""

def bind(
    read_vp8_at: Callable[..., object],
    find_extension: Callable[..., object],
    rtp_error: type[BaseException],
    descriptor: type[tuple[object, ...]],
    tid_index: int,
    keyframe_index: int,
    rate_window: float,
    log_max: int,
    /,
) -> None:
    """The compiled parsers it calls, RtpError, Vp8Descriptor's field indices, RATE_WINDOW_S,
    and the most rows a speaker's level log (a list sink) takes."""

def receive(producer: object, data: bytes, h: object, now: float, /) -> bool | None:
    """Producer.on_rtp: True, False (unknown payload type), or None (not handled:
    nothing changed, run Python)."""
