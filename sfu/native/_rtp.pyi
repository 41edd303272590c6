"""sfu.native._rtp: the receive path's per-packet parsing in C (see _rtp.c).

Each is the twin of one Python function, with the same results and errors.
"""

from typing_extensions import Buffer

from sfu.packet.rtp import RtpError, RtpHeader
from sfu.packet.vp8 import Vp8Descriptor, Vp8Error

def bind_rtp(header: type[RtpHeader], error: type[RtpError], /) -> None:
    """The classes parse_rtp and find_extension answer with (sfu.packet.rtp does it)."""

def bind_vp8(descriptor: type[Vp8Descriptor], error: type[Vp8Error], /) -> None:
    """The classes parse_vp8 and read_vp8_at answer with (sfu.packet.vp8 does it)."""

def parse_rtp(data: Buffer, max_size: int = 1500) -> RtpHeader:
    """sfu.packet.rtp.parse_rtp_python."""

def find_extension(
    data: Buffer, profile: int, start: int, length: int, ext_id: int, /
) -> bytes | None:
    """sfu.packet.rtp.find_element_python."""

def element_value(data: Buffer, profile: int, start: int, end: int, ext_id: int, /) -> int:
    """sfu.packet.twcc.element_value_python."""

def parse_vp8(payload: Buffer, /) -> Vp8Descriptor:
    """sfu.packet.vp8.parse_vp8_python."""

def read_vp8_at(data: Buffer, offset: int, length: int, /) -> Vp8Descriptor | None:
    """sfu.packet.vp8.read_vp8_at_python."""

def unprotect(
    owner: object, function: int, context: int, max_size: int, data: bytes, /
) -> bytes | None:
    """sfu.transport.srtp.InboundSrtp.unprotect_python (srtp_unprotect at `function`;
    `owner` keeps the session at `context` alive)."""

class SeqUnwrapper:
    """sfu.packet.rtp.SeqUnwrapperPython."""

    _last: int
    _ext: int
    def unwrap(self, seq: int, /) -> int: ...
