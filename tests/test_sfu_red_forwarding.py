"""RED audio through a producer to its consumers: as is, re-labelled, or stripped to Opus."""

from __future__ import annotations

from dataclasses import replace

from sfu.packet.counters import Counters
from sfu.packet.red import parse_red
from sfu.packet.rtp import build_rtp, extensions, parse_rtp
from sfu.relay.remote import codecs_of, describe
from sfu.routing.consumer import Consumer
from sfu.routing.producer import Producer
from sfu.sdp.negotiate import CodecChoice
from tests.sfu_fakes import EXT_IDS, OPUS, RED, Capture, opus, red, red_payload

OPUS_109 = replace(OPUS, payload_type=109)
RED_109 = replace(RED, payload_type=100, fmtp="109/109")


def publisher(codecs: tuple[CodecChoice, ...] = (RED, OPUS)) -> Producer:
    p = Producer(
        owner="alice",
        mid="0",
        kind="audio",
        source="audio",
        codecs=codecs,
        ssrc=6000,
        rtx_ssrc=None,
        ext_ids=EXT_IDS,
        output=Capture(),
    )
    p.counters = Counters()
    return p


def slot(p: Producer, codecs: tuple[CodecChoice, ...]) -> Capture:
    out = Capture()
    c = Consumer(
        owner="bob",
        mid="1",
        kind="audio",
        ssrc=777,
        rtx_ssrc=None,
        codecs=codecs,
        ext_ids=EXT_IDS,
        output=out,
    )
    c.switch(p)
    return out


def send(p: Producer, packets: list[bytes]) -> None:
    for n, data in enumerate(packets):
        assert p.on_rtp(data, parse_rtp(data), n * 0.02)


def payload(data: bytes) -> bytes:
    h = parse_rtp(data)
    return data[h.payload_offset : h.payload_offset + h.payload_length]


def test_a_red_subscriber_gets_the_red_packets_unchanged_but_for_the_header() -> None:
    p = publisher()
    out = slot(p, (RED, OPUS))
    packets = [red(seq, seq * 960) for seq in range(10, 15)]
    send(p, packets)
    assert [payload(d) for d in out.rtp] == [payload(d) for d in packets]
    assert {h.payload_type for h in out.headers()} == {63}
    assert {h.ssrc for h in out.headers()} == {777}


def test_a_subscriber_without_red_gets_the_primary_opus_frames_in_sequence() -> None:
    p = publisher()
    out = slot(p, (OPUS,))
    send(p, [red(seq, seq * 960, level=50) for seq in range(10, 15)])
    headers = out.headers()
    assert [payload(d)[:5] for d in out.rtp] == [
        b"\xfc" + seq.to_bytes(4, "big") for seq in range(10, 15)
    ]
    assert [len(payload(d)) for d in out.rtp] == [41] * 5
    assert {h.payload_type for h in headers} == {111}
    seqs = [h.sequence for h in headers]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(5)]
    stamps = [h.timestamp for h in headers]
    assert [(t - stamps[0]) & 0xFFFFFFFF for t in stamps] == [0, 960, 1920, 2880, 3840]
    assert extensions(out.rtp[0], headers[0]) == {1: bytes([0x80 | 50])}


def test_a_packet_lost_before_the_sfu_comes_back_from_the_next_ones_redundant_block() -> None:
    p = publisher()
    out = slot(p, (OPUS,))
    send(p, [red(seq, seq * 960) for seq in (10, 11, 13, 14)])
    headers = out.headers()
    seqs = [h.sequence for h in headers]
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == [0, 1, 2, 3, 4]
    stamps = [(h.timestamp - headers[0].timestamp) & 0xFFFFFFFF for h in headers]
    assert stamps == [0, 960, 1920, 2880, 3840]
    recovered = payload(out.rtp[2])
    assert recovered == b"\xfc" + (12).to_bytes(4, "big") + bytes(30)  # frame 12, repeated in 13
    assert {h.payload_type for h in headers} == {111}


def test_a_loss_longer_than_the_redundancy_stays_visible_as_loss() -> None:
    p = publisher()
    out = slot(p, (OPUS,))
    send(p, [red(seq, seq * 960) for seq in (10, 11, 14, 15)])  # 12 and 13 lost, 13 repeated
    seqs = [h.sequence for h in out.headers()]
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == [0, 1, 3, 4, 5]


def test_nothing_older_than_the_slots_first_packet_is_recovered() -> None:
    p = publisher()
    send(p, [red(10, 9600)])
    out = slot(p, (OPUS,))  # joins after packet 10; 11 is lost on the way in
    send(p, [red(12, 12 * 960), red(13, 13 * 960)])
    seqs = [h.sequence for h in out.headers()]
    assert len(seqs) == 2 and (seqs[1] - seqs[0]) & 0xFFFF == 1
    late = slot(p, (OPUS,))
    send(p, [red(15, 15 * 960)])  # 14 lost: the first packet a new slot gets recovers nothing
    assert len(late.rtp) == 1


def test_a_red_subscriber_with_other_payload_types_gets_its_own_inside_the_blocks() -> None:
    p = publisher()
    out = slot(p, (RED_109, OPUS_109))
    send(p, [red(seq, seq * 960) for seq in range(10, 13)])
    assert {h.payload_type for h in out.headers()} == {100}
    for data in out.rtp:
        blocks = parse_red(data, parse_rtp(data))
        assert [b.payload_type for b in blocks] == [109, 109]


def test_plain_opus_from_a_publisher_without_red_reaches_every_subscriber() -> None:
    p = publisher((OPUS,))
    with_red, without = slot(p, (RED, OPUS)), slot(p, (OPUS,))
    send(p, [opus(seq, seq * 960) for seq in range(3)])
    for out in (with_red, without):
        assert {h.payload_type for h in out.headers()} == {111}
        assert len(out.rtp) == 3


def test_malformed_red_is_dropped_for_everyone_and_counted() -> None:
    p = publisher()
    outs = [slot(p, (RED, OPUS)), slot(p, (OPUS,))]
    hostile = build_rtp(
        payload_type=63,
        sequence=20,
        timestamp=960,
        ssrc=6000,
        payload=red_payload([(111, 960, b"x" * 30)], 111, b"")[:-10],
    )
    send(p, [hostile, red(21, 2 * 960)])
    assert [len(out.rtp) for out in outs] == [1, 1]
    assert p.counters is not None and p.counters.bad_red == 1


def test_the_audio_level_of_red_packets_still_reaches_the_speaker_detector() -> None:
    p = publisher()
    levels: list[tuple[str, int, bool]] = []
    p.level_sink = lambda owner, level, voice, now: levels.append((owner, level, voice))
    send(p, [red(1, 960, level=12)])
    assert levels == [("alice", 12, True)]


def test_a_red_publisher_relayed_to_another_worker_is_keyed_the_same_there() -> None:
    """The relay describes the codecs with their fmtp, so the other worker's
    producer matches its subscribers' RED (and strips it for the others) alike."""
    there = codecs_of(describe(publisher()))
    assert [c.key for c in there] == ["red/111", "opus"]
