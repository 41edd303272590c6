"""transport-cc on the receive side: a publisher's arrivals become feedback to it."""

from __future__ import annotations

import dataclasses

from sfu.packet.rtcp import TransportCc, parse_rtcp
from sfu.packet.rtp import build_rtp
from sfu.packet.twcc import receive_times
from sfu.routing import feedback
from sfu.routing.group import Group
from sfu.routing.participant import Participant
from sfu.sdp.negotiate import TWCC_URI, MediaPlan
from sfu.settings import MediaSettings
from tests.sfu_fakes import media_plans

TWCC_ID = 5


def with_transport_cc(plans: tuple[MediaPlan, ...]) -> tuple[MediaPlan, ...]:
    return tuple(
        dataclasses.replace(
            plan,
            extensions=(*plan.extensions, (TWCC_ID, TWCC_URI)),
            codecs=tuple(
                dataclasses.replace(c, feedback=(*c.feedback, "transport-cc")) for c in plan.codecs
            ),
        )
        for plan in plans
    )


def participant(plans: tuple[MediaPlan, ...]) -> Participant:
    p = Participant(
        "pub",
        "r",
        Group("r", "main"),
        precall=False,
        settings=MediaSettings(),
        on_transport_lost=lambda participant, reason: None,
    )
    p.apply(plans)
    return p


def packet(ssrc: int, seq: int, twcc: int | None) -> bytes:
    exts = {3: b"v"} if twcc is None else {3: b"v", TWCC_ID: twcc.to_bytes(2, "big")}
    return build_rtp(
        payload_type=96,
        sequence=seq,
        timestamp=seq * 3000,
        ssrc=ssrc,
        payload=b"\x10" + bytes(60),
        extensions=exts,
    )


def test_a_publisher_that_negotiated_transport_cc_gets_feedback_on_its_arrivals() -> None:
    p = participant(with_transport_cc(media_plans(ssrc=1000)))
    video = p.producers["v"]
    assert p.twcc_id == TWCC_ID and video.ssrc == 1010
    # Transport-wide 65534, 65535, 1 arrive (0 is lost), then 0 late; and one RTX packet, 2.
    for n, twcc in enumerate((65534, 65535, 1)):
        p.on_rtp(packet(1010, 100 + n, twcc))
    p.on_rtp(packet(1011, 7, 2))  # the RTX stream is numbered from the same counter
    assert video.twcc_at > 0, "the offset is handed to the producer for its consumers"
    packets = feedback.transport_feedback(p)
    assert packets and feedback.transport_feedback(p) == [], "each arrival reported once"
    fb = parse_rtcp(packets[0])[0]
    assert isinstance(fb, TransportCc)
    assert (fb.sender_ssrc, fb.base_seq, fb.status_count) == (p.rtcp_ssrc, 65534, 5)
    assert fb.media_ssrc in (1000, 1010), "one of the publisher's own streams"
    times = receive_times(fb)
    assert [s for s, _ in times] == [65534, 65535, 0, 1, 2]
    assert times[2][1] is None and all(t is not None for s, t in times if s != 0)
    arrived = [t for _, t in times if t is not None]
    assert arrived == sorted(arrived) and arrived[-1] - arrived[0] < 2_000_000
    p.on_rtp(packet(1010, 104, 0))  # the lost one comes late: reported next time
    late = [
        receive_times(f)
        for d in feedback.transport_feedback(p)
        for f in parse_rtcp(d)
        if isinstance(f, TransportCc)
    ]
    assert late and late[0][0][0] == 0 and late[0][0][1] is not None
    assert p.counters.twcc_feedback_out == 2


def test_without_transport_cc_nothing_is_recorded_or_sent() -> None:
    p = participant(media_plans(ssrc=1000))
    assert p.twcc_id == 0 and p.receive_log is None
    p.on_rtp(packet(1010, 100, 1))
    assert p.producers["v"].twcc_at == -1
    assert feedback.transport_feedback(p) == []


def test_renegotiating_without_transport_cc_stops_the_feedback() -> None:
    p = participant(with_transport_cc(media_plans(ssrc=1000)))
    p.on_rtp(packet(1010, 100, 1))
    p.apply(media_plans(ssrc=1000))
    assert feedback.transport_feedback(p) == []
