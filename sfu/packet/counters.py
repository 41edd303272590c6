"""Per-transport packet counters.

Every dropped packet is counted under the reason it was dropped for, so a
hostile or broken peer shows up in `LocalMedia.stats()` instead of in a
traceback.  Plain ints on a slotted object: incrementing one is as cheap as
Python gets, which matters on the forwarding path.
"""

from __future__ import annotations

from collections.abc import Iterable

FIELDS = (
    # traffic
    "rtp_in",
    "rtp_out",
    "rtcp_in",
    "rtcp_out",
    "dtls_in",
    "bytes_in",
    "bytes_out",
    "retransmitted",
    "nacks_sent",
    "keyframe_requests",
    # transport-cc feedback received and sent, padding probe packets sent
    "twcc_feedback_in",
    "twcc_feedback_out",
    "padding_out",
    # ICE restarts completed, consent outages reported, consent answers that
    # came after the 0.5 s RTO but still counted (sfu.transport.ice)
    "ice_restarts",
    "consent_warnings",
    "consent_late",
    # drops, by reason
    "bad_stun",
    "bad_rtp",
    "bad_rtcp",
    "bad_red",  # a malformed RFC 2198 audio payload (sfu.packet.red)
    "srtp_errors",
    "bad_dtls",
    "oversize",
    "foreign_source",
    "unknown_ssrc",
    "unknown_packets",
    "not_keyed",
    "dtls_overflow",
    "send_errors",
    "ignored_candidates",
    "errors",
    # shared sockets (sfu.transport.udpmux): STUN for no transport of ours,
    # an address another transport has selected
    "unknown_ufrag",
    "address_conflicts",
    # a shared socket still had a full batch waiting when its read budget was spent
    "read_backlog",
)


class Counters:
    """Monotonic counters of one transport (see FIELDS)."""

    __slots__ = FIELDS

    rtp_in: int
    rtp_out: int
    rtcp_in: int
    rtcp_out: int
    dtls_in: int
    bytes_in: int
    bytes_out: int
    retransmitted: int
    nacks_sent: int
    keyframe_requests: int
    twcc_feedback_in: int
    twcc_feedback_out: int
    padding_out: int
    ice_restarts: int
    consent_warnings: int
    consent_late: int
    bad_stun: int
    bad_rtp: int
    bad_rtcp: int
    bad_red: int
    srtp_errors: int
    bad_dtls: int
    oversize: int
    foreign_source: int
    unknown_ssrc: int
    unknown_packets: int
    not_keyed: int
    dtls_overflow: int
    send_errors: int
    ignored_candidates: int
    errors: int
    unknown_ufrag: int
    address_conflicts: int
    read_backlog: int

    def __init__(self) -> None:
        for name in FIELDS:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in FIELDS}

    @property
    def dropped(self) -> int:
        """Packets dropped for any reason (traffic counters excluded)."""
        start = FIELDS.index("bad_stun")
        return sum(getattr(self, name) for name in FIELDS[start:] if name != "ignored_candidates")


def total(counters: Iterable[Counters], into: dict[str, int] | None = None) -> dict[str, int]:
    """Sum of several counters as a plain dict (added to `into` if given)."""
    result = dict.fromkeys(FIELDS, 0) if into is None else into
    for item in counters:
        for name in FIELDS:
            result[name] = result.get(name, 0) + getattr(item, name)
    return result
