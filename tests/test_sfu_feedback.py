"""RTCP in and out of a participant, without sockets."""

from __future__ import annotations

from sfu.packet.rtcp import (
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    Sdes,
    SenderReport,
    build_nack,
    build_pli,
    build_rr,
    build_sr,
    parse_rtcp,
)
from sfu.packet.rtp import parse_rtp
from sfu.routing import feedback
from sfu.routing.group import Group
from sfu.routing.participant import Participant
from sfu.settings import MediaSettings
from tests.sfu_fakes import Capture, media_plans, vp8


def pair() -> tuple[Participant, Participant, Capture, Capture]:
    group = Group("r", "main")
    people = []
    for n, pid in enumerate(("pub", "sub")):
        p = Participant(
            pid,
            "r",
            group,
            precall=False,
            settings=MediaSettings(),
            on_transport_lost=lambda participant, reason: None,
        )
        p.apply(media_plans(ssrc=1000 * (n + 1), audio_slots=1, video_slots=1))
        group.add(p)
        people.append(p)
    pub, sub = people
    group.changed_orders(0.0)
    group.refill(sub, 0.0)
    upstream, downstream = Capture(), Capture()
    for producer in pub.producers.values():
        producer.output = upstream
    for consumer in sub.consumers.values():
        consumer.output = downstream
    return pub, sub, upstream, downstream


def send_video(pub: Participant, seqs: range, now: float, keyframe_first: bool = True) -> None:
    producer = pub.producers["v"]
    for seq in seqs:
        keyframe = keyframe_first and seq == seqs[0]
        data = vp8(seq, seq * 3000, ssrc=producer.ssrc or 0, keyframe=keyframe)
        producer.on_rtp(data, parse_rtp(data), now)


def test_subscriber_plis_reach_the_publisher_at_most_once_per_half_second() -> None:
    _, sub, upstream, _ = pair()
    video = sub.consumers["rv0"]
    upstream.rtcp.clear()
    for n in range(10):
        feedback.handle_rtcp(sub, build_pli(1, video.ssrc), 5.0 + n * 0.04)
    assert [type(i) for p in upstream.rtcp for i in parse_rtcp(p)] == [Pli]
    feedback.handle_rtcp(sub, build_pli(1, video.ssrc), 5.6)
    assert len(upstream.rtcp) == 2
    assert sub.counters.keyframe_requests == 2


def test_a_nack_is_answered_from_the_cache() -> None:
    pub, sub, _, downstream = pair()
    send_video(pub, range(100, 105), 1.0)
    lost = parse_rtp(downstream.rtp[2]).sequence
    downstream.rtp.clear()
    video = sub.consumers["rv0"]
    feedback.handle_rtcp(sub, build_nack(1, video.ssrc, [lost]), 1.1)
    assert len(downstream.rtp) == 1 and sub.counters.retransmitted == 1


def test_nacks_are_answered_within_the_subscribers_estimate() -> None:
    # No transport-cc here: the subscriber's REMB says what its link has room for.
    pub, sub, upstream, downstream = pair()
    send_video(pub, range(100, 101), 0.0)
    send_video(pub, range(101, 180), 2.5, keyframe_first=False)
    lost = [parse_rtp(p).sequence for p in downstream.rtp[20:80]]
    downstream.rtp.clear()
    upstream.rtcp.clear()
    video = sub.consumers["rv0"]
    sub.remb_estimate = 50_000  # 60 packets are more than it repays within a second
    feedback.handle_rtcp(sub, build_nack(1, video.ssrc, lost), 2.6)
    assert downstream.rtp == [] and sub.counters.retransmitted == 0
    assert [type(i) for p in upstream.rtcp for i in parse_rtcp(p)] == [Pli]
    assert sub.resend_budget.keyframes == 1


def test_without_any_estimate_every_nack_is_answered() -> None:
    pub, sub, _, downstream = pair()
    send_video(pub, range(100, 180), 1.0)
    lost = [parse_rtp(p).sequence for p in downstream.rtp[20:80]]
    downstream.rtp.clear()
    video = sub.consumers["rv0"]
    feedback.handle_rtcp(sub, build_nack(1, video.ssrc, lost), 1.1)
    assert len(downstream.rtp) == 60 and sub.counters.retransmitted == 60


def test_a_publishers_sender_report_is_kept_for_its_producer() -> None:
    pub, _, _, _ = pair()
    producer = pub.producers["v"]
    feedback.handle_rtcp(pub, build_sr(producer.ssrc or 0, 123 << 32, 4567, 10, 1000), 2.0)
    assert producer.last_sr == (123 << 32, 4567, 2.0)


def test_receiver_reports_give_loss_jitter_and_round_trip() -> None:
    pub, sub, _, _ = pair()
    send_video(pub, range(1, 4), 1.0)
    pub.producers["v"].on_sender_report(0xAAAA_0000_0000_0000, 3000, 1.0)
    compounds = feedback.reports(sub, 1.2, None)
    sr = next(i for p in compounds for i in parse_rtcp(p) if isinstance(i, SenderReport))
    lsr = (sr.ntp >> 16) & 0xFFFFFFFF
    block = ReportBlock(sr.ssrc, 64, 3, 10, 900, lsr, 65536 // 10)
    feedback.handle_rtcp(sub, build_rr(7, [block]), 1.5)
    video = sub.consumers["rv0"]
    assert video.reported_loss == 0.25
    assert video.reported_jitter is not None and abs(video.reported_jitter - 0.01) < 1e-9
    assert video.rtt is not None and abs(video.rtt - 0.2) < 1e-3


def test_periodic_reports_carry_srs_rr_blocks_cname_and_remb() -> None:
    pub, sub, _, _ = pair()
    send_video(pub, range(1, 30), 1.0)
    producer = pub.producers["v"]
    producer.on_sender_report(0xBBBB_CCCC_DDDD_0000, 5000, 1.0)
    items = [i for p in feedback.reports(pub, 2.0, 300_000) for i in parse_rtcp(p)]
    rr = next(i for i in items if isinstance(i, ReceiverReport))
    assert {b.ssrc for b in rr.reports} == {producer.ssrc}
    block = next(b for b in rr.reports if b.ssrc == producer.ssrc)
    assert (block.lsr, block.dlsr) == (0xCCCCDDDD, 65536)
    remb = next(i for i in items if isinstance(i, Remb))
    assert remb.bitrate == 300_000 and remb.ssrcs == (producer.ssrc,)
    assert any(isinstance(i, Sdes) for i in items)
    sub_items = [i for p in feedback.reports(sub, 2.0, None) for i in parse_rtcp(p)]
    srs = [i for i in sub_items if isinstance(i, SenderReport)]
    assert [sr.ssrc for sr in srs] == [sub.consumers["rv0"].ssrc]
    assert srs[0].packet_count == 29


def test_malformed_rtcp_is_dropped_and_counted() -> None:
    _, sub, _, _ = pair()
    feedback.handle_rtcp(sub, b"\x81\xcd\x00\x09" + bytes(8), 1.0)
    assert sub.counters.bad_rtcp == 1


def test_feedback_about_unknown_ssrcs_is_ignored() -> None:
    _, sub, upstream, downstream = pair()
    upstream.rtcp.clear()
    feedback.handle_rtcp(sub, build_pli(1, 424242), 1.0)
    feedback.handle_rtcp(sub, build_nack(1, 424242, [1, 2]), 1.0)
    assert upstream.rtcp == [] and downstream.rtp == []
