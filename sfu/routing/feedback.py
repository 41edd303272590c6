"""RTCP in and out for one participant.

In: the compound packet is parsed strictly (`sfu.packet.rtcp`); any malformed
sub-packet drops the whole datagram and counts it.  Sender reports of the
participant's own streams give the NTP/RTP mapping the SFU reuses for its
consumers' SRs; report blocks about the SFU's consumer streams give loss,
jitter and round trip; PLI/FIR about a consumer go (coalesced) to the
producer currently feeding, or about to feed, that slot; NACKs are answered
from the producers' retransmission caches, within the participant's resend
budget (`sfu.policy.resend`, refilled from its bandwidth estimate, else its
REMB).

Out (about once a second): one SR per consumer that has sent media (with
the publisher's NTP clock, see `Consumer.sender_report`), an RR with one
report block per producer (loss, jitter, LSR/DLSR), the CNAME, and a REMB
capping the participant's video by the size of its room (with transport-cc
negotiated the browser estimates its uplink itself from our feedback, and
the REMB is only an upper bound on that estimate).

transport-cc: a feedback from a subscriber is matched against its
transport's send history (`SendHistory.columns`) and the packets' columns go
to `Participant.on_packet_results` (the estimator's `on_feedback_arrays`);
`transport_feedback` (every `TWCC_FEEDBACK_INTERVAL` on the clock) tells a
publisher when each of its packets arrived, so its own send-side estimator works through the SFU.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sfu.packet.rtcp import (
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtcpError,
    SenderReport,
    TransportCc,
    build_remb,
    build_rr,
    build_sdes,
    build_sr,
    ntp_middle32,
    parse_rtcp,
)

if TYPE_CHECKING:
    from sfu.routing.participant import Participant

SRS_PER_COMPOUND = 30
# A participant's SDES (its RTCP SSRC and CNAME) never changes: built once.
_sdes = functools.lru_cache(maxsize=4096)(build_sdes)
# libwebrtc's remote_estimator_proxy sends every 100 ms by default (50-250 ms).
TWCC_FEEDBACK_INTERVAL = 0.1


def handle_rtcp(p: Participant, data: bytes, now: float) -> None:
    """Dispatch one decrypted RTCP compound packet from `p`."""
    try:
        packets = parse_rtcp(data)
    except RtcpError:
        p.counters.bad_rtcp += 1
        return
    for packet in packets:
        handler = _HANDLERS.get(type(packet))
        if handler is not None:
            handler(p, packet, now)


def _sender_report(p: Participant, sr: SenderReport, now: float) -> None:
    producer = p.by_ssrc.get(sr.ssrc)
    if producer is not None:
        producer.on_sender_report(sr.ntp, sr.rtp_timestamp, now)
    _blocks(p, sr.reports, now)


def _receiver_report(p: Participant, rr: ReceiverReport, now: float) -> None:
    _blocks(p, rr.reports, now)


def _blocks(p: Participant, blocks: tuple[ReportBlock, ...], now: float) -> None:
    for block in blocks:
        consumer = p.consumers_by_ssrc.get(block.ssrc)
        if consumer is not None:
            consumer.on_report(block.fraction_lost, block.jitter, block.lsr, block.dlsr, now)
            if p.estimator is not None and consumer.rtt is not None and block.lsr:
                p.estimator.on_rtt(consumer.rtt, now)


def _keyframe(p: Participant, media_ssrc: int, now: float) -> None:
    consumer = p.consumers_by_ssrc.get(media_ssrc)
    target = consumer.target if consumer is not None else None
    if target is not None and target.request_keyframe(now):
        p.counters.keyframe_requests += 1


def _pli(p: Participant, pli: Pli, now: float) -> None:
    _keyframe(p, pli.media_ssrc, now)


def _fir(p: Participant, fir: Fir, now: float) -> None:
    for ssrc, _seq in fir.entries[:8]:
        _keyframe(p, ssrc, now)


def _nack(p: Participant, nack: Nack, now: float) -> None:
    consumer = p.consumers_by_ssrc.get(nack.media_ssrc)
    if consumer is None:
        return
    estimate = p.estimator.estimate_bps if p.estimator is not None else p.remb_estimate
    budget = None
    if estimate is not None:  # else nothing says what its link has room for
        budget = p.resend_budget
        budget.refill(now, estimate)
    p.counters.retransmitted += consumer.retransmit(nack.lost[:64], now, budget)


def _remb(p: Participant, remb: Remb, now: float) -> None:
    p.remb_estimate = remb.bitrate
    if p.estimator is not None:  # its own receive-side estimate bounds ours
        p.set_max_bps(max(remb.bitrate, 1))


def _transport_cc(p: Participant, fb: TransportCc, now: float) -> None:
    transport = p.transport
    if transport is None or not transport.twcc_id:
        return
    p.counters.twcc_feedback_in += 1
    columns = transport.history.columns(fb, now)
    if columns is not None:
        p.on_packet_results(columns, now)


def transport_feedback(p: Participant) -> list[bytes]:
    """transport-cc feedback about what `p` sent since the last call ([] if nothing)."""
    log = p.receive_log
    if log is None or not log.pending:
        return []
    media = next((pr.ssrc for pr in p.producers.values() if pr.ssrc is not None), 0)
    packets = log.feedback(p.rtcp_ssrc, media)
    p.counters.twcc_feedback_out += len(packets)
    return packets


_HANDLERS: dict[type, Callable[[Participant, Any, float], None]] = {
    SenderReport: _sender_report,
    ReceiverReport: _receiver_report,
    Pli: _pli,
    Fir: _fir,
    Nack: _nack,
    Remb: _remb,
    TransportCc: _transport_cc,
}


def reports(p: Participant, now: float, remb_bitrate: int | None) -> list[bytes]:
    """The periodic RTCP compounds for `p` (each starts with an SR or RR)."""
    srs = []
    for consumer in p.consumers.values():
        mapping = consumer.sender_report(now)
        if mapping is not None:
            ntp, rtp_ts = mapping
            srs.append(
                build_sr(consumer.ssrc, ntp, rtp_ts, consumer.packets_sent, consumer.octets_sent)
            )
            consumer.sr_sent(ntp_middle32(ntp), now)
    first = build_rr(p.rtcp_ssrc, _report_blocks(p, now)) + _sdes(p.rtcp_ssrc, p.cname)
    remb = _remb_packet(p, remb_bitrate)
    compounds = [first + remb]
    for i in range(0, len(srs), SRS_PER_COMPOUND):
        compounds.append(b"".join(srs[i : i + SRS_PER_COMPOUND]))
    return compounds


def _report_blocks(p: Participant, now: float) -> list[ReportBlock]:
    blocks = []
    for producer in p.all_producers():
        if producer.ssrc is None or producer.stats.received == 0:
            continue
        r = producer.stats.report(now)
        blocks.append(
            ReportBlock(
                ssrc=producer.ssrc,
                fraction_lost=r.fraction_lost,
                packets_lost=r.cumulative_lost,
                highest_seq=r.highest_sequence,
                jitter=r.jitter,
                lsr=r.lsr,
                dlsr=r.dlsr,
            )
        )
    return blocks[:31]


def _remb_packet(p: Participant, bitrate: int | None) -> bytes:
    ssrcs = [
        pr.ssrc
        for pr in p.all_producers()
        if pr.kind == "video" and pr.use_remb and pr.ssrc is not None
    ]
    if bitrate is None or not ssrcs:
        return b""
    return build_remb(p.rtcp_ssrc, bitrate, ssrcs)
