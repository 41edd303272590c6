"""Configuration of the media plane.

The signalling server builds a `MediaSettings` from its own configuration
(VISITROOM_ICE_HOSTS, VISITROOM_ANNOUNCED_IP, VISITROOM_RTC_PORTS) and hands
it to `LocalMedia`.  Every field is plain data so the same settings can be
sent to SFU worker processes as msgpack.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, replace
from typing import Any

from sfu.policy.bitrate import DEFAULT_REMB_TABLE, RembTable, parse_table


class SettingsError(ValueError):
    """The settings cannot be used; the message says which field and why."""


@dataclass(frozen=True)
class MediaSettings:
    """How the SFU listens and how it treats media.

    `ice_hosts` are the local addresses host candidates are gathered on (an
    empty tuple means every non-loopback address of the machine; tests use
    ``("127.0.0.1",)``).  `announced_ip` replaces the address advertised in
    the candidates (a server behind 1:1 NAT).

    UDP sockets: by default every transport of this process shares one UDP
    socket per ICE host address (single-port mode, `sfu.transport.udpmux`),
    on `rtc_udp_port` (a worker pool gives worker i the port
    `rtc_udp_port + i`), or on a port the kernel picks when it is None.
    With `rtc_ports` (and no `rtc_udp_port`) every transport binds a socket
    of its own in that range (inclusive) instead.
    """

    ice_hosts: tuple[str, ...] = ()
    announced_ip: str | None = None
    rtc_ports: tuple[int, int] | None = None
    rtc_udp_port: int | None = None
    # sendmmsg/recvmmsg on the shared sockets when the libc binding loads
    # (sfu.transport.mmsg); False: one sendto/recvfrom per datagram.
    batched_io: bool = True
    # With batched_io: RTP protected in place in the send batch by libsrtp
    # bound with cffi (sfu.transport.srtp); False: pylibsrtp's Session.protect.
    direct_srtp: bool = True
    # Freeze the survivors of each full gc collection (sfu.gcfreeze), so that
    # the next one walks only what was promoted since: no 100 ms pauses.
    gc_freeze: bool = True
    # Room size -> REMB cap for each publisher (sfu.policy.bitrate; config "2:1500000,*:300000").
    remb_table: RembTable = DEFAULT_REMB_TABLE
    video_slots_cap: int = 8  # the reference client asks for 8 (9 tiles with its own)
    audio_slots_cap: int = 3
    # A transport whose ICE + DTLS has not completed by then is closed.
    connect_timeout_s: float = 30.0
    # Joins paced (sfu.policy.joinpace): new transports connecting (ICE +
    # DTLS) at once in this process, at most a window that halves while the
    # process is behind and grows while it is not, up to this; the other
    # offers wait for their answer in arrival order (at most join_queue_s:
    # below the web SDK's 15 s request timeout, so the client hears `unavailable`);
    # a slot is freed when its transport connects, fails or closes, or after
    # connecting_hold_s.  0 (the default): no pacing; 64 is a sensible
    # ceiling (docs/operations.md, "Pacing joins").
    max_connecting: int = 0
    connecting_hold_s: float = 10.0
    join_queue_s: float = 12.0
    # ICE consent checks (RFC 7675) every this long (+-20%); 2 unanswered in a
    # row: the client is asked to restart ICE; 6: consent expired, transport_failed.
    consent_interval_s: float = 5.0
    # A pre-call echo test ends by itself after this long.
    precall_max_s: float = 60.0
    precall_stats_interval_s: float = 1.0
    # Key frame requests to one publisher are sent at most this often.
    keyframe_min_interval_s: float = 0.5
    # Ask simulcast publishers for per-layer key frames (x-google-per-layer-pli=1 in
    # the answer, sfu.sdp.negotiate); False: Chromium re-keys every layer per request.
    per_layer_keyframes: bool = True
    # Packets kept per video publisher for answering NACKs.
    rtx_cache_packets: int = 512
    rtx_cache_age_s: float = 1.0
    # How often the dominant speaker and the slots are re-evaluated.
    selection_interval_s: float = 0.2
    # Receive buffer of each media socket (the kernel caps it at rmem_max).
    socket_buffer_bytes: int = 4 * 1024 * 1024
    # Transports per LocalMedia; an offer past it is refused.
    max_transports: int = 1000
    # Video slots per subscriber at full rate (its first choices: pinned,
    # screen shares, the last speakers); the others are thumbnails that get
    # key frames only, each thumbnail source asked for one every
    # `thumbnail_refresh_s` (no simulcast: a reduced frame rate is all an SFU
    # that never decodes can offer). 0: every video slot at full rate.
    stage_video_slots: int = 0
    thumbnail_refresh_s: float = 1.0
    # A directory: each SFU process appends its layer trace there (sfu.routing.trace;
    # a debug aid, one JSON line per tick). None: no trace.
    layer_trace: str | None = None

    def __post_init__(self) -> None:
        for host in self.ice_hosts:
            _check_ip("ice_hosts", host)
        if self.announced_ip is not None:
            _check_ip("announced_ip", self.announced_ip)
        if self.rtc_ports is not None:
            low, high = self.rtc_ports
            if not (1024 <= low <= high <= 65535):
                raise SettingsError(f"rtc_ports must be 1024 <= low <= high <= 65535: {low}-{high}")
        if self.rtc_udp_port is not None and not 1024 <= self.rtc_udp_port <= 65535:
            raise SettingsError(f"rtc_udp_port must be 1024-65535: {self.rtc_udp_port}")
        if not self.remb_table or any(b <= 0 for _, b in self.remb_table):
            raise SettingsError("remb_table needs rows of (room_size, positive bitrate)")
        if self.video_slots_cap < 0 or self.audio_slots_cap < 0:
            raise SettingsError("slot caps must not be negative")
        if self.consent_interval_s <= 0:
            raise SettingsError("consent_interval_s must be positive")
        if self.max_connecting < 0 or self.connecting_hold_s <= 0 or self.join_queue_s <= 0:
            raise SettingsError("max_connecting >= 0, connecting_hold_s and join_queue_s > 0")
        if self.stage_video_slots < 0 or self.thumbnail_refresh_s <= 0:
            raise SettingsError("stage_video_slots >= 0 and thumbnail_refresh_s > 0, please")

    @property
    def shared_socket(self) -> bool:
        """Single-port mode (see the class doc)."""
        return self.rtc_udp_port is not None or self.rtc_ports is None

    def for_worker(self, index: int) -> MediaSettings:
        """Worker `index`'s settings: its own port in single-port mode (base + index)."""
        if self.rtc_udp_port is None:
            return self
        port = self.rtc_udp_port + index
        if port > 65535:
            raise SettingsError(f"rtc_udp_port + worker index passes 65535: {port}")
        return replace(self, rtc_udp_port=port)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for msgpack (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MediaSettings:
        """Inverse of `to_dict`, tolerant of lists where tuples are expected."""
        values = dict(data)
        values["ice_hosts"] = tuple(values.get("ice_hosts", ()))
        if values.get("rtc_ports") is not None:
            values["rtc_ports"] = tuple(values["rtc_ports"])
        if "remb_table" in values:
            values["remb_table"] = tuple(tuple(row) for row in values["remb_table"])
        return cls(**values)


def parse_ports(text: str) -> tuple[int, int]:
    """Parse "40000-49999" (the VISITROOM_RTC_PORTS format)."""
    low, sep, high = text.strip().partition("-")
    try:
        ports = (int(low), int(high if sep else low))
    except ValueError:
        raise SettingsError(f"port range must look like LOW-HIGH, not {text!r}") from None
    MediaSettings(rtc_ports=ports)
    return ports


def parse_remb_table(text: str) -> RembTable:
    """Parse "2:1500000,4:1000000,*:300000" (sfu.policy.bitrate's config form)."""
    try:
        return parse_table(text)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def parse_hosts(text: str) -> tuple[str, ...]:
    """Parse a comma separated address list (the VISITROOM_ICE_HOSTS format)."""
    hosts = tuple(part.strip() for part in text.split(",") if part.strip())
    for host in hosts:
        _check_ip("ice_hosts", host)
    return hosts


def _check_ip(name: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise SettingsError(f"{name}: {value!r} is not an IP address") from None
