"""A receive slot: rewriting, seamless switches, key frame gating, retransmissions."""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable

from sfu.packet.rtcp import Pli, parse_rtcp
from sfu.packet.rtp import extensions, parse_rtp
from sfu.packet.rtx import build_rtx, parse_rtx
from sfu.policy.resend import ResendBudget
from sfu.routing.consumer import Consumer, extension_map
from sfu.routing.producer import Producer
from tests.sfu_fakes import EXT_IDS, OPUS, VP8, Capture, opus, producer, vp8


def consumer(
    kind: str = "video", ext_ids: dict[str, int] | None = None
) -> tuple[Consumer, Capture]:
    out = Capture()
    c = Consumer(
        owner="bob",
        mid="1",
        kind=kind,
        ssrc=777,
        rtx_ssrc=778 if kind == "video" else None,
        codecs=(VP8,) if kind == "video" else (OPUS,),
        ext_ids=EXT_IDS if ext_ids is None else ext_ids,
        output=out,
    )
    return c, out


def feed(
    p: Producer,
    seqs: Iterable[int],
    ts_of: Callable[[int], int] = lambda s: s * 3000,
    now: float = 0.0,
    keyframe_at: Container[int] = (),
) -> None:
    assert p.ssrc is not None
    for seq in seqs:
        data = vp8(seq, ts_of(seq), ssrc=p.ssrc, keyframe=seq in keyframe_at)
        p.on_rtp(data, parse_rtp(data), now)


def test_video_starts_at_a_key_frame_with_the_consumers_ssrc_and_payload_type() -> None:
    a = producer()
    c, out = consumer()
    assert c.switch(a) is True  # a key frame is needed
    feed(a, range(100, 105))
    assert out.rtp == []
    feed(a, range(105, 108), keyframe_at={105})
    headers = out.headers()
    assert [h.ssrc for h in headers] == [777] * 3
    assert [h.payload_type for h in headers] == [96] * 3
    seqs = [h.sequence for h in headers]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(3)]
    assert c.source is a and c.pending is None


def test_payloads_are_forwarded_byte_for_byte() -> None:
    a = producer()
    c, out = consumer()
    c.switch(a)
    data = vp8(1, 3000, keyframe=True)
    a.on_rtp(data, parse_rtp(data), 0.0)
    h_in, h_out = parse_rtp(data), parse_rtp(out.rtp[0])
    assert out.rtp[0][h_out.payload_offset :] == data[h_in.payload_offset :]


def test_a_switch_keeps_the_old_source_until_the_new_ones_key_frame() -> None:
    a, b = producer(ssrc=1000), producer(ssrc=2000, owner="carol")
    c, out = consumer()
    c.switch(a)
    feed(a, range(10, 20), keyframe_at={10}, now=1.0)
    assert c.switch(b) is True
    feed(a, range(20, 23), now=1.5)  # still a's picture
    feed(b, range(500, 503), ts_of=lambda s: 7_000_000 + s * 3000, now=1.5)  # not a key frame
    assert len(out.rtp) == 13
    feed(b, range(503, 506), ts_of=lambda s: 7_000_000 + s * 3000, now=2.0, keyframe_at={503})
    feed(a, range(23, 25), now=2.0)  # a is no longer forwarded
    headers = out.headers()
    assert len(headers) == 16
    seqs = [h.sequence for h in headers]
    assert all((seqs[i + 1] - seqs[i]) & 0xFFFF == 1 for i in range(len(seqs) - 1))
    jump = (headers[13].timestamp - headers[12].timestamp) & 0xFFFFFFFF
    assert 0.4 * 90000 <= jump <= 0.6 * 90000  # the wall time since a's last packet
    assert c.source is b and a.consumers == []


def test_packets_older_than_the_switch_are_dropped_and_gaps_stay_visible() -> None:
    a = producer()
    c, out = consumer()
    c.switch(a)
    feed(a, [50], keyframe_at={50})
    feed(a, [49, 51, 53])  # 49 predates the segment; 52 is lost upstream
    seqs = [h.sequence for h in out.headers()]
    assert (seqs[1] - seqs[0]) & 0xFFFF == 1
    assert (seqs[2] - seqs[1]) & 0xFFFF == 2


def test_sequence_numbers_wrap_with_the_source() -> None:
    a = producer()
    c, out = consumer()
    c.switch(a)
    feed(a, [65534, 65535, 0, 1], keyframe_at={65534})
    seqs = [h.sequence for h in out.headers()]
    assert all((seqs[i + 1] - seqs[i]) & 0xFFFF == 1 for i in range(3))


def test_audio_switches_at_once_and_continues_the_sequence() -> None:
    a, b = producer("audio", ssrc=1), producer("audio", ssrc=2, owner="carol")
    c, out = consumer("audio")
    assert c.switch(a) is False
    for seq in range(5):
        data = opus(seq, seq * 960, ssrc=1)
        a.on_rtp(data, parse_rtp(data), seq * 0.02)
    c.switch(b)
    for seq in range(900, 903):
        data = opus(seq, 5_000_000 + seq * 960, ssrc=2)
        b.on_rtp(data, parse_rtp(data), 1.0 + seq * 0.0)
    seqs = [h.sequence for h in out.headers()]
    assert len(seqs) == 8
    assert all((seqs[i + 1] - seqs[i]) & 0xFFFF == 1 for i in range(7))


def test_a_codec_the_subscriber_did_not_negotiate_is_not_forwarded() -> None:
    a = producer("audio", ssrc=1)
    c, out = consumer("video")
    c.switch(a)
    data = opus(1, 960, ssrc=1)
    a.on_rtp(data, parse_rtp(data), 0.0)
    assert out.rtp == []


def test_extensions_only_the_publisher_uses_stay_unless_their_ids_mean_something_else() -> None:
    """Found with the fan-out bench: a simulcast publisher's RID and repaired-RID ids,
    which the subscriber did not negotiate, sent every copy down the slow remap path."""
    rid = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
    publisher = {**EXT_IDS, rid: 10}
    assert extension_map(publisher, EXT_IDS) is None  # id 10 means nothing to the subscriber
    clash = {**EXT_IDS, "urn:example:other": 10}
    assert extension_map(publisher, clash) == {i: i for i in EXT_IDS.values()}


def test_extension_ids_are_remapped_when_the_subscriber_uses_others() -> None:
    assert extension_map(EXT_IDS, EXT_IDS) is None
    a = producer("audio", ssrc=1)
    other_ids = {uri: i + 5 for uri, i in EXT_IDS.items()}
    c, out = consumer("audio", ext_ids=other_ids)
    c.switch(a)
    data = opus(1, 960, ssrc=1, level=42)
    a.on_rtp(data, parse_rtp(data), 0.0)
    sent = out.rtp[0]
    assert extensions(sent, parse_rtp(sent)) == {6: bytes([0x80 | 42])}


def test_a_nack_is_answered_with_rtx_from_the_producers_cache() -> None:
    a = producer()
    c, out = consumer()
    c.switch(a)
    feed(a, range(10, 15), keyframe_at={10})
    sent = out.headers()
    lost = sent[2]
    out.rtp.clear()
    assert c.retransmit([lost.sequence], 0.1) == 1
    rtx = parse_rtp(out.rtp[0])
    assert rtx.ssrc == 778 and rtx.payload_type == 97
    osn, original = parse_rtx(out.rtp[0], rtx, ssrc=777, payload_type=96)
    assert osn == lost.sequence
    assert parse_rtp(original).timestamp == lost.timestamp


def test_a_packet_is_not_resent_again_within_a_round_trip() -> None:
    # A receiver behind a full bottleneck NACKs a packet again before the first resend
    # came out of the queue; resending it each time puts copies in that queue (mediasoup
    # and libwebrtc skip a packet resent less than an RTT ago).
    a = producer()
    c, out = consumer()
    c.switch(a)
    feed(a, range(10, 15), keyframe_at={10})
    lost = out.headers()[2].sequence
    out.rtp.clear()
    assert c.retransmit([lost], 0.1) == 1
    assert c.retransmit([lost], 0.15) == 0  # no RTT measured yet: 100 ms assumed
    assert c.retransmit([lost], 0.21) == 1
    c.rtt = 0.3  # measured (behind a 200 ms queue)
    assert c.retransmit([lost], 0.41) == 0
    assert c.retransmit([lost], 0.52) == 1
    assert len(out.rtp) == 3


def test_a_nack_without_rtx_resends_the_packet_itself() -> None:
    a = producer()
    c, out = consumer()
    c.update((VP8.__class__(**{**VP8.__dict__, "rtx_payload_type": None}),), EXT_IDS)
    c.switch(a)
    feed(a, range(10, 13), keyframe_at={10})
    wanted = out.headers()[1]
    out.rtp.clear()
    c.retransmit([wanted.sequence], 0.1)
    again = parse_rtp(out.rtp[0])
    assert (again.ssrc, again.sequence, again.payload_type) == (777, wanted.sequence, 96)


def test_a_nack_maps_back_across_a_switch_and_ignores_unsent_numbers() -> None:
    a, b = producer(ssrc=1000), producer(ssrc=2000, owner="carol")
    c, out = consumer()
    c.switch(a)
    feed(a, range(10, 13), keyframe_at={10})
    c.switch(b)
    feed(b, range(90, 93), keyframe_at={90})
    first_of_a = out.headers()[0].sequence
    last_sent = out.headers()[-1].sequence
    out.rtp.clear()
    assert c.retransmit([first_of_a, (last_sent + 5) & 0xFFFF], 0.1) == 1
    assert c.unfilled == 1  # the unsent number: counted for the layer trace
    assert c.retransmit([(last_sent + 5) & 0xFFFF], 0.3) == 0
    assert c.unfilled == 1, "a number is counted once, however often it is NACKed"
    assert c.retransmit([first_of_a], 0.3) == 1 and c.unfilled == 1


def a_budget(estimate_bps: int, level: int | None = None, now: float = 0.0) -> ResendBudget:
    """A subscriber's resend budget at `estimate_bps`, holding `level` bytes (default full)."""
    b = ResendBudget()
    b.refill(now - 1.0, estimate_bps)
    b.refill(now, estimate_bps)
    if level is not None:
        assert b.take(int(b.level) - level)
    return b


def plis(upstream: Capture) -> int:
    return sum(isinstance(i, Pli) for p in upstream.rtcp for i in parse_rtcp(p))


def a_storm(a: Producer, c: Consumer, out: Capture) -> list[int]:
    """`c` switched to `a`, its key frame at 0 s, then 79 packets at 2.5 s (past the
    key frame's 2 s), 60 of them lost: the sequence numbers a NACK asks for."""
    c.switch(a)
    feed(a, [10], keyframe_at={10}, now=0.0)
    feed(a, range(11, 90), now=2.5)
    return [h.sequence for h in out.headers()[20:80]]


def test_resends_stay_within_the_budget_and_the_rest_waits_for_the_next_nack() -> None:
    a = producer()
    c, out = consumer()
    c.switch(a)
    feed(a, range(10, 30), keyframe_at={10}, now=0.9)
    size = len(out.rtp[1]) + 2  # as RTX
    lost = [h.sequence for h in out.headers()[1:9]]
    out.rtp.clear()
    b = a_budget(300_000, level=3 * size + 10, now=1.0)
    assert c.retransmit(lost, 1.0, b) == 3  # in order: the oldest first
    assert [parse_rtx(p, parse_rtp(p))[0] for p in out.rtp] == lost[:3]
    assert b.denied == 1
    b.refill(1.2, 300_000)  # 1.5 kB more: the rest
    assert c.retransmit(lost[3:], 1.2, b) == 5


def test_a_packet_is_resent_at_most_six_times() -> None:
    # Copies that keep being lost say the link has no room for them; at random loss six
    # are lost in a row almost never, three once in ~27 of the lab's 5 % loss runs.
    a = producer()
    c, out = consumer()
    c.switch(a)
    feed(a, range(10, 15), keyframe_at={10})
    lost = out.headers()[2].sequence
    out.rtp.clear()
    answers = [c.retransmit([lost], 0.1 + 0.15 * n) for n in range(9)]
    assert answers == [1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert {parse_rtx(p, parse_rtp(p))[0] for p in out.rtp} == {lost}


def test_more_losses_than_the_budget_repays_soon_start_the_slot_again_from_a_key_frame() -> None:
    # The lab's 300 kbit/s viewer: its queue overflowed and it NACKs 60 packets.
    # Resending them at a rate the link has room for comes too late; faster is a storm.
    upstream = Capture()
    a = producer(output=upstream)
    c, out = consumer()
    lost = a_storm(a, c, out)
    out.rtp.clear()
    upstream.rtcp.clear()
    assert c.retransmit(lost, 2.6, a_budget(50_000, now=2.6)) == 0
    assert out.rtp == [] and plis(upstream) == 1
    feed(a, range(90, 95), now=2.7)  # the rest of the old frames: left out
    assert out.rtp == []
    feed(a, range(95, 98), keyframe_at={95}, now=2.8)
    headers = out.headers()
    assert len(headers) == 3 and headers[0].sequence == (lost[-1] + 1) & 0xFFFF
    assert c.source is a and c.pending is None
    out.rtp.clear()
    budget = a_budget(10_000_000, now=2.9)
    assert c.retransmit(lost, 2.9, budget) == 0  # older than the key frame: useless
    assert c.retransmit([headers[1].sequence], 2.9, budget) == 1


def test_losses_within_two_seconds_of_the_slots_key_frame_are_resent_within_the_budget() -> None:
    # Most likely the key frame itself overflowed the link's queue (the lab's step down
    # to q): another key frame would overflow it the same way.
    upstream = Capture()
    a = producer(output=upstream)
    c, out = consumer()
    c.switch(a)
    feed(a, range(10, 90), keyframe_at={10}, now=1.0)
    lost = [h.sequence for h in out.headers()[1:61]]
    out.rtp.clear()
    upstream.rtcp.clear()
    b = a_budget(50_000, now=1.5)
    sent = c.retransmit(lost, 1.5, b)
    assert 0 < sent < len(lost) and sum(map(len, out.rtp)) <= b.capacity
    assert plis(upstream) == 0 and c.source is a and c.pending is None


def test_a_second_loss_storm_within_two_seconds_is_answered_within_the_budget() -> None:
    upstream = Capture()
    a = producer(output=upstream)
    c, out = consumer()
    lost = a_storm(a, c, out)
    assert c.retransmit(lost, 2.6, a_budget(50_000, now=2.6)) == 0
    feed(a, [90], keyframe_at={90}, now=2.7)
    feed(a, range(91, 190), now=3.8)
    lost = [h.sequence for h in out.headers()[100:160]]
    upstream.rtcp.clear()
    out.rtp.clear()
    b = a_budget(50_000, now=3.9)
    sent = c.retransmit(lost, 3.9, b)
    assert 0 < sent < len(lost) and sum(map(len, out.rtp)) <= b.capacity
    assert plis(upstream) == 0 and c.pending is None
    assert c.retransmit(lost, 4.75, a_budget(50_000, now=4.75)) == 0  # due again
    assert plis(upstream) == 1 and c.pending is a


def test_sender_reports_reuse_the_publishers_ntp_clock() -> None:
    a = producer()
    c, out = consumer()
    c.switch(a)
    assert c.sender_report(1.0) is None
    feed(a, range(10, 13), keyframe_at={10}, now=1.0)
    assert c.sender_report(1.0) is None  # the publisher sent no SR yet
    ntp = 0xE000_0000_0000_0000
    a.on_sender_report(ntp, 11 * 3000, 1.0)
    report = c.sender_report(1.5)
    assert report is not None
    ntp_out, rtp_out = report
    assert ntp_out == ntp + 0x8000_0000
    offset = (out.headers()[1].timestamp - 11 * 3000) & 0xFFFFFFFF
    assert rtp_out == (11 * 3000 + offset + 45000) & 0xFFFFFFFF


def test_resync_waits_for_a_new_key_frame() -> None:
    a = producer()
    c, out = consumer()
    c.switch(a)
    feed(a, [1], keyframe_at={1})
    assert c.resync() is True
    feed(a, [2, 3])
    assert len(out.rtp) == 1
    feed(a, [4], keyframe_at={4})
    assert len(out.rtp) == 2


def test_closing_detaches_from_the_producer() -> None:
    a = producer()
    c, _ = consumer()
    c.switch(a)
    c.close()
    assert a.consumers == [] and c.target is None


def test_a_closing_source_leaves_a_pending_switch_in_place() -> None:
    a, b = producer(ssrc=1000), producer(ssrc=2000, owner="carol")
    c, out = consumer()
    c.switch(a)
    feed(a, [1], keyframe_at={1})
    c.switch(b)
    a.close()
    assert c.source is None and c.pending is b
    feed(b, [7, 8], keyframe_at={7})
    assert c.source is b and len(out.rtp) == 3


def test_a_closing_pending_source_keeps_the_current_one() -> None:
    a, b = producer(ssrc=1000), producer(ssrc=2000, owner="carol")
    c, out = consumer()
    c.switch(a)
    feed(a, [1], keyframe_at={1})
    c.switch(b)
    b.close()
    feed(a, [2])
    assert c.source is a and c.pending is None and len(out.rtp) == 2


def frame(p, seq: int, ts: int, keyframe: bool, parts: int = 3) -> None:  # type: ignore[no-untyped-def]
    """One video frame of `parts` packets (all with the frame's timestamp)."""
    for n in range(parts):
        data = vp8(seq + n, ts, ssrc=p.ssrc, keyframe=keyframe and n == 0, start=n == 0)
        p.on_rtp(data, parse_rtp(data), ts / 90000)


def test_a_thumbnail_gets_whole_key_frames_only_without_sequence_gaps() -> None:
    a = producer()
    c, out = consumer()
    c.switch(a)
    assert c.set_thumbnail(True) is False
    frame(a, 100, 3000, keyframe=True)
    frame(a, 103, 6000, keyframe=False)
    frame(a, 106, 9000, keyframe=False)
    frame(a, 109, 12000, keyframe=True)
    headers = out.headers()
    assert len(headers) == 6, "two key frames of three packets each"
    seqs = [h.sequence for h in headers]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(6)], "no gap where frames were dropped"
    assert len({h.timestamp for h in headers}) == 2 and headers[3].timestamp > headers[0].timestamp


def test_a_thumbnail_back_on_stage_resumes_at_a_key_frame() -> None:
    a = producer()
    c, out = consumer()
    c.switch(a)
    c.set_thumbnail(True)
    frame(a, 100, 3000, keyframe=True)
    assert c.set_thumbnail(False) is True, "a key frame must be asked for"
    frame(a, 103, 6000, keyframe=False)
    assert len(out.rtp) == 3, "a delta frame would reference frames it never got"
    frame(a, 106, 9000, keyframe=True)
    frame(a, 109, 12000, keyframe=False)
    assert len(out.rtp) == 9 and c.source is a
    assert consumer("audio")[0].set_thumbnail(True) is False, "audio is never thumbnailed"


def test_an_old_key_frame_sent_again_over_rtx_is_not_a_new_one() -> None:
    # Chromium's bandwidth probes resend old packets over RTX, key frames first.
    a = producer()
    c, out = consumer()
    c.switch(a)
    c.set_thumbnail(True)
    frame(a, 100, 3000, keyframe=True)
    frame(a, 103, 6000, keyframe=True)
    old_key = a.cached(100, 0.1)
    assert old_key is not None and a.rtx_ssrc is not None
    rtx = build_rtx(
        old_key, parse_rtp(old_key), rtx_ssrc=a.rtx_ssrc, rtx_payload_type=97, rtx_sequence=1
    )
    assert a.on_rtx(rtx, parse_rtp(rtx), 0.1)
    assert len(out.rtp) == 6, "a thumbnail does not go back to an old picture"
    b = producer(ssrc=6000)
    frame(b, 500, 3000, keyframe=True)
    frame(b, 503, 6000, keyframe=False)
    c, out = consumer()
    c.switch(a)
    frame(a, 106, 9000, keyframe=True)
    assert c.switch(b) is True
    old_key = b.cached(500, 0.1)
    assert old_key is not None and b.rtx_ssrc is not None
    rtx = build_rtx(
        old_key, parse_rtp(old_key), rtx_ssrc=b.rtx_ssrc, rtx_payload_type=97, rtx_sequence=1
    )
    assert b.on_rtx(rtx, parse_rtp(rtx), 0.1)
    frame(a, 109, 12000, keyframe=False)
    assert c.source is a and len(out.rtp) == 6, "a switch waits for a new key frame"
    frame(b, 506, 9000, keyframe=True)
    assert c.source is b and len(out.rtp) == 9


def test_a_copy_of_a_packet_already_forwarded_is_not_sent_again_but_a_lost_one_is() -> None:
    a = producer()
    c, out = consumer()
    c.switch(a)
    feed(a, [10, 11, 13], keyframe_at=[10])
    assert a.rtx_ssrc is not None
    for seq in (11, 12):  # a probe's padding (a copy), then the retransmission of a lost packet
        original = vp8(seq, seq * 3000)
        rtx = build_rtx(
            original,
            parse_rtp(original),
            rtx_ssrc=a.rtx_ssrc,
            rtx_payload_type=97,
            rtx_sequence=seq,
        )
        assert a.on_rtx(rtx, parse_rtp(rtx), 0.1)
    seqs = [h.sequence for h in out.headers()]
    assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 3, seqs[0] + 2]


def test_what_a_slot_remembers_of_a_number_s_resends_expires_with_the_number() -> None:
    # Sequence numbers wrap (16 bits: a few minutes of a top layer): a packet NACKed now
    # is not the one that had its number a wrap ago, resent six times then.
    upstream = Capture()
    a = producer(output=upstream)
    c, out = consumer()
    c.switch(a)
    feed(a, range(10, 15), keyframe_at={10})
    lost = out.headers()[2].sequence
    assert [c.retransmit([lost], 0.1 + 0.15 * n) for n in range(7)] == [1] * 6 + [0]
    for start in range(15, 15 + 0x10000, 4096):  # a wrap later, 4 minutes at 270 packets/s
        feed(a, range(start, start + 4096), now=240.0 * (start + 4096 - 15) / 0x10000)
    assert out.headers()[-3].sequence == lost  # (the packets after it: 5 fed first)
    out.rtp.clear()
    asked = plis(upstream)
    assert c.retransmit([lost], 240.1) == 1
    assert plis(upstream) == asked  # its first NACK: not lost for good (sfu.policy.resend)
