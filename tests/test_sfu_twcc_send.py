"""transport-cc on the send side: every packet a subscriber transport sends is numbered.

Real parts: `Consumer.forward` into real `WebRtcTransport` send sides (keyed
libsrtp sessions, the shared-socket send batch) to UDP sockets on loopback;
what arrives is decrypted with the receiver's session and read back, and the
feedback a receiver would send is parsed against the send history.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from pylibsrtp import Policy, Session

from sfu.packet.counters import Counters
from sfu.packet.rtcp import TransportCc, parse_rtcp
from sfu.packet.rtp import RtpHeader, build_rtp, extensions, parse_rtp
from sfu.packet.twcc import (
    build_feedback,
    transport_seq_at,
    transport_seq_offset,
    with_transport_seq,
)
from sfu.routing.consumer import Consumer
from sfu.routing.producer import Producer
from sfu.sdp.negotiate import MID_URI, TWCC_URI
from sfu.transport import mmsg, srtp
from sfu.transport.sendhistory import SendHistory
from sfu.transport.udpmux import Egress, Route
from sfu.transport.webrtc import WebRtcTransport
from tests.sfu_fakes import VP8, Capture

if TYPE_CHECKING:
    from sfu.routing.participant import Participant

GCM = Policy.SRTP_PROFILE_AEAD_AES_256_GCM
PUBLISHER_IDS = {TWCC_URI: 3, MID_URI: 4}


class Link:
    """A subscriber transport's keyed send side and the socket its packets reach."""

    def __init__(self, egress: Egress, twcc_id: int | None) -> None:
        lib = srtp.load()
        assert lib is not None
        key = os.urandom(44)
        self.receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.receiver.bind(("127.0.0.1", 0))
        self.receiver.settimeout(2)
        self.rx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=GCM))
        t = self.transport = WebRtcTransport.__new__(WebRtcTransport)
        # The send side only, with what the DTLS handshake would hand over.
        t.counters = Counters()
        t.inbound_ssrcs = set()
        t.history = SendHistory()
        t._tx = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=GCM))
        destination = egress.destination(self.receiver.getsockname())
        t._route = Route(egress, destination)
        t._set_direct((egress, destination, lib.outbound(key, GCM)))
        t.set_transport_cc(twcc_id)

    def received(self, n: int) -> list[bytes]:
        return [self.rx.unprotect(self.receiver.recv(2048)) for _ in range(n)]


class Links:
    """The shared egress and the subscriber links on it (closed after the test)."""

    def __init__(self, egress: Egress) -> None:
        self.egress = egress
        self.made: list[Link] = []

    def __call__(self, twcc_id: int | None) -> Link:
        link = Link(self.egress, twcc_id)
        self.made.append(link)
        return link

    def flush(self) -> None:
        self.egress.flush()


@pytest.fixture
def links(native_path: str) -> Iterator[Links]:
    binding = mmsg.load()
    assert binding is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    egress = Egress(sock, binding)
    egress.hold()  # as inside a read batch: flushed by the test, no event loop needed
    made = Links(egress)
    yield made
    for link in made.made:
        link.receiver.close()
    sock.close()


def publisher(ext_ids: dict[str, int]) -> Producer:
    return Producer(
        owner="pub",
        mid="0",
        kind="video",
        source="camera",
        codecs=(VP8,),
        ssrc=5000,
        rtx_ssrc=5001,
        ext_ids=ext_ids,
        output=Capture(),
    )


def consumer(link: Link, ext_ids: dict[str, int], ssrc: int) -> Consumer:
    return Consumer(
        owner="sub",
        mid="1",
        kind="video",
        ssrc=ssrc,
        rtx_ssrc=ssrc + 1,
        codecs=(VP8,),
        ext_ids=ext_ids,
        output=link.transport,
    )


def media(seq: int, ext_ids: dict[str, int], key: bool = False) -> tuple[bytes, RtpHeader]:
    exts = {ext_ids[MID_URI]: b"0"}
    if TWCC_URI in ext_ids:
        exts[ext_ids[TWCC_URI]] = (seq * 7 & 0xFFFF).to_bytes(2, "big")  # the publisher's own
    payload = (b"\x10\x00\x00\x00\x9d\x01\x2a" if key else b"\x10\x01\x00\x00") + bytes(900)
    data = build_rtp(
        payload_type=96,
        sequence=seq,
        timestamp=seq * 3000,
        ssrc=5000,
        payload=payload,
        extensions=exts,
    )
    return data, parse_rtp(data)


def forward(producer: Producer, ext_ids: dict[str, int], seqs: range) -> None:
    for seq in seqs:
        data, h = media(seq, ext_ids, key=seq == seqs[0])
        # What Participant.on_rtp does once per received packet.
        producer.twcc_at = (
            transport_seq_offset(data, h, ext_ids[TWCC_URI]) if TWCC_URI in ext_ids else -1
        )
        producer.on_rtp(data, h, 1.0)


def transport_seqs(packets: list[bytes], ext_id: int) -> list[int]:
    return [int.from_bytes(extensions(p, parse_rtp(p))[ext_id], "big") for p in packets]


def test_each_transport_numbers_its_copies_in_place_or_by_inserting(links: Links) -> None:
    same = links(3)  # same ids as the publisher: the fast path writes in the batch
    remapped = links(9)  # another id: remapped, then written
    plain = links(None)  # no transport-cc: not numbered (id 3 means nothing to it)
    producer = publisher(PUBLISHER_IDS)
    consumers = [
        consumer(same, PUBLISHER_IDS, 100),
        consumer(remapped, {TWCC_URI: 9, MID_URI: 4}, 200),
        consumer(plain, {MID_URI: 4}, 300),
    ]
    for c in consumers:
        c.switch(producer)
    forward(producer, PUBLISHER_IDS, range(10, 15))
    links.flush()
    assert transport_seqs(same.received(5), 3) == [0, 1, 2, 3, 4]
    assert transport_seqs(remapped.received(5), 9) == [0, 1, 2, 3, 4]
    # The publisher's own numbers pass untouched (extension_map: a receiver ignores ids
    # it did not negotiate, and the copy stays on the fast path).
    assert sorted(transport_seqs(plain.received(5), 3)) == [seq * 7 for seq in range(10, 15)]
    assert same.transport.history.next == 5 and plain.transport.history.next == 0


def test_a_publisher_without_the_extension_still_gets_numbered_copies(links: Links) -> None:
    link = links(3)
    ids = {MID_URI: 4}
    producer = publisher(ids)
    c = consumer(link, {TWCC_URI: 3, MID_URI: 4}, 100)
    c.switch(producer)
    forward(producer, ids, range(1, 4))
    links.flush()
    got = link.received(3)
    assert transport_seqs(got, 3) == [0, 1, 2]
    assert [parse_rtp(p).sequence for p in got] == sorted(parse_rtp(p).sequence for p in got)
    assert all(p.endswith(bytes(900)) for p in got), "payload untouched"


def test_feedback_becomes_packet_results_for_what_was_sent(links: Links) -> None:
    link = links(3)
    producer = publisher(PUBLISHER_IDS)
    c = consumer(link, PUBLISHER_IDS, 100)
    c.switch(producer)
    forward(producer, PUBLISHER_IDS, range(1, 5))
    links.flush()
    sent = link.received(4)
    assert c.retransmit([parse_rtp(sent[0]).sequence], 1.0) == 1
    links.flush()
    (rtx_packet,) = link.received(1)
    assert transport_seqs([*sent, rtx_packet], 3) == [0, 1, 2, 3, 4]
    rtx = parse_rtp(rtx_packet)
    assert rtx.ssrc == 101 and rtx.payload_type == 97
    # The receiver saw 0, 1, 3, 4 (2 was lost), 5 ms apart.
    arrivals: list[int | None] = [1_000_000, 1_005_000, None, 1_015_000, 1_020_000]
    (data,) = build_feedback(0xFEED, 100, 0, arrivals)
    (fb,) = parse_rtcp(data)
    assert isinstance(fb, TransportCc)
    results = link.transport.history.results(fb, now=2.0)
    assert [r.sequence for r in results] == [0, 1, 2, 3, 4]
    assert [r.arrival for r in results] == [1.0, 1.005, None, 1.015, 1.02]
    assert all(r.size > 900 and r.probe == -1 for r in results)
    assert results[0].send_time <= results[-1].send_time
    # A repeated report of received packets yields nothing new; the lost one stays.
    assert [r.sequence for r in link.transport.history.results(fb, now=2.0)] == [2]
    # Entries older than the history's age are not reported.
    assert link.transport.history.results(fb, now=results[-1].send_time + 60) == []


def test_padding_probes_go_on_the_rtx_stream_numbered_with_their_probe_id(links: Links) -> None:
    link = links(3)
    producer = publisher(PUBLISHER_IDS)
    c = consumer(link, PUBLISHER_IDS, 100)
    link.transport.padding_sources = (c,)
    assert link.transport.send_padding(1000, probe_id=7) == 0, "nothing sent on the slot yet"
    c.switch(producer)
    forward(producer, PUBLISHER_IDS, range(1, 2))
    sent = link.transport.send_padding(1000, probe_id=7)
    links.flush()
    media_packet, *padding = link.received(5)
    assert 1000 <= sent < 1000 + 300
    assert transport_seqs([media_packet, *padding], 3) == [0, 1, 2, 3, 4]
    for p in padding:
        h = parse_rtp(p)
        assert (h.ssrc, h.payload_type, h.payload_length) == (101, 97, 0)
        assert h.padding_length > 0
    seqs = [parse_rtp(p).sequence for p in padding]
    assert seqs == [(seqs[0] + k) & 0xFFFF for k in range(4)]
    history = link.transport.history
    arrivals: list[int | None] = [k * 1000 for k in range(5)]
    (data,) = build_feedback(1, 100, 0, arrivals)
    (fb,) = parse_rtcp(data)
    assert isinstance(fb, TransportCc)
    assert [r.probe for r in history.results(fb, now=1.0)] == [-1, 7, 7, 7, 7]
    assert link.transport.counters.padding_out == 4
    # While a cluster is in progress, media copies are tagged with it too.
    link.transport.probe_id = 8
    forward(producer, PUBLISHER_IDS, range(2, 4))
    link.transport.probe_id = -1
    forward(producer, PUBLISHER_IDS, range(4, 5))
    links.flush()
    assert transport_seqs(link.received(3), 3) == [5, 6, 7]
    (data,) = build_feedback(1, 100, 5, [5000, 6000, 7000])
    (fb,) = parse_rtcp(data)
    assert isinstance(fb, TransportCc)
    assert [r.probe for r in history.results(fb, now=1.0)] == [8, 8, -1]


def test_no_padding_without_transport_cc(links: Links) -> None:
    link = links(None)
    c = consumer(link, PUBLISHER_IDS, 100)
    link.transport.padding_sources = (c,)
    c.packets_sent = 1
    assert link.transport.send_padding(1000, probe_id=1) == 0


def test_a_feedback_claiming_more_packets_than_the_history_holds_costs_nothing() -> None:
    history = SendHistory(size=1024)
    for _ in range(10):
        history.add(history.take(), 1.0, 1200)
    # 9 run-length chunks claim 65535 packets "not received" in 18 bytes.
    body = struct.pack("!IIHHI", 1, 2, 0, 0xFFFF, 0) + struct.pack("!9H", *[0x1FFF] * 9) + bytes(2)
    (fb,) = parse_rtcp(struct.pack("!BBH", 0x8F, 205, len(body) // 4) + body)
    assert isinstance(fb, TransportCc)
    assert history.results(fb, 1.5) == [] and history.unknown == 0xFFFF
    # A plausible one about what was sent is read.
    (data,) = build_feedback(1, 2, 0, [1000 * k for k in range(10)])
    (fb,) = parse_rtcp(data)
    assert isinstance(fb, TransportCc)
    assert [r.sequence for r in history.results(fb, 1.5)] == list(range(10))


def test_a_packet_relayed_from_another_worker_is_numbered_on_the_fast_path(links: Links) -> None:
    from sfu.relay.endpoint import RelayEndpoint
    from sfu.relay.remote import RemoteStream, describe
    from sfu.settings import MediaSettings

    remote = RemoteStream(
        RelayEndpoint(2),
        1,
        9,
        "pub",
        describe(publisher(PUBLISHER_IDS)),
        MediaSettings(),
        Counters(),
    )
    link = links(3)
    c = consumer(link, PUBLISHER_IDS, 100)
    c.switch(remote.producer)
    for seq in range(1, 4):
        data, _ = media(seq, PUBLISHER_IDS, key=seq == 1)
        assert remote.on_relay_rtp(data, 1.0)
        assert remote.producer.twcc_at == transport_seq_offset(data, parse_rtp(data), 3) > 0
    links.flush()
    assert transport_seqs(link.received(3), 3) == [0, 1, 2]


def twcc_subscriber(link: Link) -> Participant:
    """A subscriber that negotiated transport-cc, bound to `link`'s transport."""
    from sfu.routing.group import Group
    from sfu.routing.participant import Participant
    from sfu.settings import MediaSettings
    from tests.sfu_fakes import media_plans
    from tests.test_sfu_twcc_feedback import with_transport_cc

    sub = Participant(
        "sub",
        "r",
        Group("r", "main"),
        precall=False,
        settings=MediaSettings(),
        on_transport_lost=lambda participant, reason: None,
    )
    sub.apply(with_transport_cc(media_plans(ssrc=1000)))
    sub.transport = link.transport
    sub.apply(sub.plans)  # binds the transport: transport-cc id, padding sources
    return sub


def test_the_clock_pads_probe_clusters_and_tags_what_is_sent_meanwhile(links: Links) -> None:
    from sfu.routing.probing import PROBE_STEP, Probing
    from tests.test_sfu_twcc_feedback import TWCC_ID

    link = links(TWCC_ID)
    sub = twcc_subscriber(link)
    assert sub.estimator is not None and sub.prober is not None
    ids = {MID_URI: 3, TWCC_URI: TWCC_ID}
    pub = publisher(ids)
    sub.consumers["rv0"].switch(pub)
    forward(pub, ids, range(1, 3))
    probing = Probing()
    probing.plan([sub], 10.0)
    assert not probing.pump([sub], 10.0), "nothing wanted beyond the estimate"
    sub.desired_bps = 3_000_000  # the allocation would like a stage layer
    probing.plan([sub], 10.1)
    now = 10.1
    assert probing.pump([sub], now)
    media_while_probing = link.transport.probe_id
    forward(pub, ids, range(3, 4))
    stepping = []  # (when, whether the beat must step on)
    while now < 10.5:
        now += PROBE_STEP
        stepping.append((now, probing.pump([sub], now)))
    assert link.transport.probe_id == -1, "the clusters are over"
    assert sub.prober.probing, "the attempt awaits its result"
    # Two clusters of 100 ms back to back from 10.1: the beat steps until they are over,
    # not while the attempt only awaits its result.
    assert all(busy for when, busy in stepping if when < 10.3 - 1e-9), stepping
    assert not any(busy for when, busy in stepping if when > 10.3 + 1e-9), stepping
    links.flush()
    padded = link.transport.counters.padding_out
    # Clusters at 1.5 and 2 x the 1 Mbit/s start estimate, 100 ms each, minus the media,
    # each padding at most 100 ms of the estimate (12.5 kB; the media here is nearly nil),
    # plus the padding packets' headers.
    assert 30 < padded < 200 and 20_000 < link.transport.padding_bytes <= 25_000 + 40 * padded
    history = link.transport.history
    (data,) = build_feedback(1, 2, 0, [k * 100 for k in range(history.next)])
    (fb,) = parse_rtcp(data)
    assert isinstance(fb, TransportCc)
    columns = history.columns(fb, now)
    assert columns is not None
    results = columns.results()
    assert len(results) == history.next == padded + 3
    assert [r.probe for r in results[:2]] == [-1, -1]
    assert results[2].probe == media_while_probing >= 0, "media sent in a cluster is tagged"
    assert {r.probe for r in results[3:]} == {0, 1}
    sub.on_packet_results(columns, now)
    assert sub.packet_results == results


def test_the_clock_tells_the_allocation_whether_the_estimate_was_measured_lately(
    links: Links,
) -> None:
    """`Participant.estimate_fresh` is its Prober's `fresh` (sfu.policy.probe), set on
    each `Probing.plan`: an estimate nothing has filled nor probed for over a second is
    stale, and the allocation steps nobody up on it; without transport-cc, always fresh."""
    from sfu.policy.probe import FRESH_S
    from sfu.routing.probing import Probing
    from tests.sfu_fakes import media_plans
    from tests.test_sfu_twcc_feedback import TWCC_ID

    sub = twcc_subscriber(links(TWCC_ID))
    assert sub.prober is not None
    probing = Probing()
    probing.plan([sub], 10.0)  # nothing sent: app-limited from now
    assert sub.estimate_fresh
    probing.plan([sub], 10.0 + FRESH_S / 2)
    assert sub.estimate_fresh
    probing.plan([sub], 10.0 + FRESH_S + 0.1)
    assert not sub.estimate_fresh
    sub.apply(media_plans(ssrc=1000))  # renegotiated without transport-cc: no Prober
    assert sub.prober is None and sub.estimate_fresh


@pytest.mark.parametrize("direct", [True, False])
def test_a_packet_sent_whole_is_numbered_in_place_as_with_transport_seq_did(
    links: Links, direct: bool
) -> None:
    """`send_rtp` (copies with rewritten payloads, retransmissions, padding) numbers a
    packet that has the element in the copy it sends, without parsing it again: the
    bytes on the wire are exactly what `with_transport_seq` made; one without the
    element gets it inserted, as before."""
    link = links(3)
    if not direct:
        link.transport._set_direct(None)  # the pylibsrtp route (no in-place SRTP)
    sent = [media(40, PUBLISHER_IDS)[0], media(41, {MID_URI: 4})[0], media(42, PUBLISHER_IDS)[0]]
    sent.append(media(43, PUBLISHER_IDS)[0])
    for packet in sent[:3]:
        link.transport.send_rtp(packet)
    # the offset given by the caller (a consumer's copy: the producer's `twcc_at`)
    link.transport.send_rtp(sent[3], transport_seq_at(sent[3], 3))
    links.flush()
    got = link.received(4)
    expected = [with_transport_seq(p, parse_rtp(p), 3, seq) for seq, p in enumerate(sent)]
    assert got == expected
    assert [entry is not None for entry in link.transport.history.entries()[:5]] == [
        True,
        True,
        True,
        True,
        False,
    ]
