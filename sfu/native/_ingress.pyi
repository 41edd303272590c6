"""sfu.native._ingress: an incoming SRTP datagram from the socket to its Producer in C
(see _ingress.c).

`Inlet` is the twin of sfu.transport.webrtc.WebRtcTransport._on_srtp (with
sfu.routing.participant.Participant.on_rtp's common case inlined); `dispatch`
of the loop in sfu.transport.udpmux.UdpMux._drain with `datagram`'s SRTP case.
"""

from collections.abc import Callable

def configure(role: str, cls: type, /) -> None:
    """The Counters ("counters"), ReceiveLog ("log"), Participant ("participant"),
    rxtime.Arrival ("arrival") or Producer ("producer") class."""

def bind(
    parse_rtp: Callable[..., object], rtp_error: type[BaseException], arrival: object, /
) -> None:
    """The compiled parse_rtp, RtpError, and sfu.transport.rxtime.ARRIVAL."""

def dispatch(
    batch: list[tuple[bytes, tuple[str, int], float]],
    by_addr: dict[tuple[str, int], object],
    datagram: Callable[[bytes, tuple[str, int]], None],
    arrival: object,
    dropped: Callable[[tuple[str, int], BaseException], None],
    routes: Routes | None = None,
    /,
) -> None:
    """Each item: arrival.at set, an SRTP datagram of a selected address to its agent's
    on_srtp (an exception: dropped(addr, exc)), anything else to datagram(data, addr)."""

def moved() -> None:
    """An ICE agent's selected or on_srtp, or an endpoint's ice, changed: every Routes
    forgets what it remembered."""

class Routes:
    """dispatch's memo: source address -> the handler its selected pair gave."""

    hits: int
    misses: int
    drops: int
    def size(self) -> int: ...
    def forget(self) -> None:
        """Empty the memo now (an endpoint left: its handler must not be kept)."""

class Stamp:
    """A Participant's change counter (Participant.inlet_stamp)."""

    count: int
    def bump(self) -> None: ...

class Inlet:
    """WebRtcTransport._on_srtp in C; `fallback` is the Python method."""

    delivered: int
    fallbacks: int
    reads: int
    participant_reads: int
    def __init__(self, transport: object, fallback: Callable[[bytes], None]) -> None: ...
    def __call__(self, data: bytes, /) -> None: ...
    def forget(self) -> None:
        """Read the transport's _rx, _sink, _rx_direct, inbound_ssrcs, counters again."""
    def close(self) -> None:
        """The transport closed: drop it, the fallback and the memo (datagrams are dropped)."""
