"""Simulcast layers: producers per layer, spatial switches, temporal thinning, NACKs after both."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from sfu.packet.counters import Counters
from sfu.packet.rtcp import Pli, parse_rtcp
from sfu.packet.rtp import build_rtp, parse_rtp
from sfu.packet.rtx import build_rtx, parse_rtx
from sfu.packet.vp8 import Vp8Descriptor, parse_vp8, vp8_frame_size
from sfu.policy.allocation import LayerChoice, SlotDemand, allocate
from sfu.policy.resend import ResendBudget
from sfu.relay.endpoint import RelayEndpoint, RelayTap
from sfu.relay.remote import RemotePublisher, RemoteStream, describe
from sfu.routing.consumer import Consumer
from sfu.routing.layering import layer_info
from sfu.routing.layers import order_layers
from sfu.routing.producer import Producer, link_layers
from sfu.settings import MediaSettings
from tests.sfu_fakes import EXT_IDS, VP8, Capture, producer
from tests.sfu_live import eventually

TEMPORAL = (0, 2, 1, 2)  # L1T3: the TID of frame n is TEMPORAL[n % 4]
SIZES = ((320, 180), (640, 360), (1280, 720))


def vp8x(
    seq: int,
    ts: int,
    *,
    ssrc: int,
    pic: int,
    tl0: int,
    tid: int,
    sync: bool = False,
    keyidx: int = 0,
    keyframe: bool = False,
    start: bool = True,
    size: tuple[int, int] = (320, 180),
    tag: int = 0,
) -> bytes:
    """A VP8 packet with a full descriptor (I, L, T, K); `tag` marks the payload."""
    descriptor = bytes(
        [
            0x90 if start else 0x80,
            0xF0,
            0x80 | (pic >> 8) & 0x7F,
            pic & 0xFF,
            tl0 & 0xFF,
            (tid << 6) | (0x20 if sync else 0) | (keyidx & 0x1F),
        ]
    )
    body = b""
    if start:
        body = bytes([0x00 if keyframe else 0x01, 0, 0])
        if keyframe:
            w, h = size
            body += b"\x9d\x01\x2a" + bytes([w & 0xFF, w >> 8, h & 0xFF, h >> 8])
    return build_rtp(
        payload_type=96,
        sequence=seq & 0xFFFF,
        timestamp=ts & 0xFFFFFFFF,
        ssrc=ssrc,
        payload=descriptor + body + tag.to_bytes(4, "big") + bytes(40),
        extensions={3: b"0"},
    )


@dataclass
class Layer:
    """A fake encoder of one layer: frames of one packet, L1T3, at 30 fps."""

    producer: Producer
    size: tuple[int, int]
    seq: int = 1000
    frame: int = 0
    pic: int = 0
    tl0: int = 0
    keyidx: int = 0
    ts0: int = 0
    sent: list[int] = field(default_factory=list)  # tags

    def send(
        self, now: float, *, keyframe: bool = False, packets: int = 1, late: float = 0.0
    ) -> None:
        """One frame captured at `now`, arriving `late` seconds after."""
        p = self.producer
        assert p.ssrc is not None
        tid = 0 if keyframe else TEMPORAL[self.frame % 4]
        if keyframe:
            self.frame = 0
            self.keyidx += 1
        if tid == 0:
            self.tl0 += 1
        self.pic += 1
        ts = self.ts0 + int(now * 90000)
        for i in range(packets):
            tag = p.ssrc * 100000 + self.seq
            data = vp8x(
                self.seq,
                ts,
                ssrc=p.ssrc,
                pic=self.pic,
                tl0=self.tl0,
                tid=tid,
                sync=tid > 0 and self.frame % 4 in (1, 2),
                keyidx=self.keyidx,
                keyframe=keyframe,
                start=i == 0,
                size=self.size,
                tag=tag,
            )
            p.on_rtp(data, parse_rtp(data), now + late)
            self.sent.append(tag)
            self.seq += 1
        self.frame += 1


def track(
    order: tuple[int, ...] = (0, 1, 2), ts0: tuple[int, ...] = (0, 0, 0)
) -> tuple[Producer, list[Layer]]:
    """A track of three layers listed in the offer in `order` (indexes into SIZES)."""
    out = Capture()
    layers = []
    for index, size_index in enumerate(order):
        p = producer(ssrc=1000 * (index + 1), output=out, rid="qhf"[size_index])
        p.offer_index = index
        layers.append(
            Layer(
                p,
                SIZES[size_index],
                seq=100 * (index + 1),
                pic=1000 * index,
                tl0=50 * index,
                keyidx=3 * index,
                ts0=ts0[index],
            )
        )
    link_layers(tuple(layer.producer for layer in layers))
    return layers[0].producer, layers


class Counting(Capture):
    def __init__(self) -> None:
        super().__init__()
        self.fast = 0

    def send_rewritten(
        self,
        packet: bytes,
        *,
        ssrc: int,
        sequence: int,
        timestamp: int,
        payload_type: int,
        twcc_at: int = -1,
    ) -> None:
        self.fast += 1
        super().send_rewritten(
            packet, ssrc=ssrc, sequence=sequence, timestamp=timestamp, payload_type=payload_type
        )


def consumer() -> tuple[Consumer, Counting]:
    out = Counting()
    c = Consumer(
        owner="bob",
        mid="5",
        kind="video",
        ssrc=777,
        rtx_ssrc=778,
        codecs=(VP8,),
        ext_ids=EXT_IDS,
        output=out,
    )
    return c, out


def descriptor_of(data: bytes) -> Vp8Descriptor:
    h = parse_rtp(data)
    return parse_vp8(data[h.payload_offset : h.payload_offset + h.payload_length])


def received(out: Capture) -> list[tuple[int, int, Vp8Descriptor, int]]:
    """(seq, timestamp, descriptor, tag) of every packet the subscriber got."""
    result = []
    for data in out.rtp:
        h = parse_rtp(data)
        desc = descriptor_of(data)
        body = h.payload_offset + 6 + (10 if desc.keyframe else 3 if desc.frame_start else 0)
        result.append((h.sequence, h.timestamp, desc, int.from_bytes(data[body : body + 4], "big")))
    return result


def continuous(values: list[int], modulo: int) -> bool:
    return all((b - a) % modulo == 1 for a, b in itertools.pairwise(values))


def frames(rx: list[tuple[int, int, Vp8Descriptor, int]]) -> list[Vp8Descriptor]:
    return [d for _, _, d, _ in rx if d.frame_start]


# producers


def test_the_fake_layers_carry_full_descriptors_and_key_frame_sizes() -> None:
    data = vp8x(1, 0, ssrc=1, pic=300, tl0=7, tid=2, sync=True, keyidx=5, keyframe=True)
    desc = descriptor_of(data)
    assert (desc.picture_id, desc.tl0picidx, desc.tid, desc.sync, desc.keyidx) == (
        300,
        7,
        2,
        True,
        5,
    )
    assert desc.frame_start and desc.keyframe
    h = parse_rtp(data)
    assert vp8_frame_size(data[h.payload_offset :]) == (320, 180)


def test_layers_are_ordered_by_their_key_frame_sizes_not_by_the_offer() -> None:
    base, layers = track(order=(2, 0, 1))  # the offer lists f, q, h
    assert [p.rid for p in base.layers] == ["f", "q", "h"]  # offer order while unknown
    layers[0].send(0.0, keyframe=True)  # f: 1280x720 known; its place is kept
    assert [p.rid for p in base.layers] == ["f", "q", "h"]
    layers[1].send(0.0, keyframe=True)  # q: 320x180 -> sorted among the known
    assert [p.rid for p in base.layers] == ["q", "f", "h"]
    layers[2].send(0.0, keyframe=True)
    assert [p.rid for p in base.layers] == ["q", "h", "f"]
    assert [p.spatial for p in base.layers] == [0, 1, 2]
    assert all(p.track is base and p.layers == base.layers for p in base.layers)
    assert base.layers[2].frame_size == (1280, 720)
    assert order_layers(base.layers) == base.layers


def test_layer_measurements_are_cumulative_per_temporal_layer_and_activity_follows_media() -> None:
    base, layers = track()
    for n in range(60):  # two seconds at 30 fps
        layers[0].send(n / 30, keyframe=n == 0)
    now = 59 / 30
    rates = base.temporal_bitrates(now)
    assert len(rates) == 3 and rates[0] < rates[1] < rates[2]
    assert rates[2] == base.bitrate_bps(now)
    packet_bits = len(vp8x(1, 0, ssrc=1, pic=1, tl0=1, tid=1)) * 8
    assert 0.7 * 30 * packet_bits <= rates[2] <= 1.3 * 30 * packet_bits
    assert 0.15 <= rates[0] / rates[2] <= 0.35  # TID 0: a quarter of the frames
    assert 0.4 <= rates[1] / rates[2] <= 0.6  # TID <= 1: half
    assert base.active(now) and not base.active(now + 1.5)
    assert base.temporal_bitrates(now + 5.0) == (0, 0, 0)


def test_a_layer_that_stops_is_worth_what_it_sent_until_it_is_no_longer_active() -> None:
    # The network lab's 300 kbit/s viewer on q's TID 1: h had flowed for the hold after
    # its last need, then its publisher stopped it.  Read every 0.2 s tick, h's meter
    # showed a falling share of its rate for up to a second, and at its half h "fitted"
    # the viewer's budget (its whole rate + 12 % over q's): a step up that froze 4.8 s.
    base, layers = track()
    h = layers[1].producer
    frame = 0
    flowing: tuple[int, ...] = ()
    for tick in range(11):  # ticks at 0.2 s; h sends 30 frames a second until 1.0 s
        now = tick * 0.2
        while frame / 30 <= min(now, 1.0):
            for layer in layers[:2]:
                layer.send(frame / 30, keyframe=frame == 0, packets=4 if layer is layers[1] else 1)
            frame += 1
        if now <= 1.0:
            flowing = h.temporal_bitrates(now)
    meter_after, choices, held = [], [], []
    for tick in range(1, 10):  # after the stop, until h is no longer active
        now = 1.0 + tick * 0.1
        while frame / 30 <= now:  # q goes on
            layers[0].send(frame / 30)
            frame += 1
        meter_after.append(h.meter.rates(now)[-1])
        budget = int(3.2 * base.temporal_bitrates(now)[-1])  # h (4 x q) does not fit whole
        info = (layer_info(base, now), layer_info(h, now))
        slot = SlotDemand("1", True, 1280, 720, info)
        choices.append(allocate([slot], budget, {"1": LayerChoice(0, 1)})["1"])
        held.append(h.temporal_bitrates(now))
    assert choices == [LayerChoice(0, 2)] * 9  # q's TID 2, never h
    assert held == [flowing] * 9
    assert min(meter_after) < 0.6 * flowing[-1]  # what the emptying meter said
    assert not h.active(2.1)
    assert h.temporal_bitrates(2.1) == (0, 0, 0)  # paused: nothing flows


# consumers: spatial switches


def test_the_default_layer_is_the_highest_active_and_a_switch_waits_for_the_key_frame() -> None:
    base, layers = track()
    c, out = consumer()
    assert c.switch(base) is True
    assert c.pending is layers[2].producer  # the highest active layer
    for n in range(3):
        for layer in layers:
            layer.send(n / 30, keyframe=n == 0)
    assert c.layers_now == (2, 2)
    assert c.set_layers(0, 2, 2 / 30) is layers[0].producer  # ask q for a key frame
    assert c.layers_now == (2, 2)
    for n in range(3, 6):
        for layer in layers:
            layer.send(n / 30)  # no key frame of q yet: f keeps playing
    layers[0].send(6 / 30, keyframe=True)
    layers[2].send(6 / 30)
    assert c.layers_now == (0, 2)
    rx = received(out)
    tags = [t for *_, t in rx]
    assert tags == [*layers[2].sent[:6], layers[0].sent[-1]]
    assert continuous([s for s, *_ in rx], 0x10000)
    assert continuous([d.picture_id for d in frames(rx)], 0x8000)
    assert continuous([d.tl0picidx for d in frames(rx) if d.tid == 0], 0x100)
    assert out.fast == 6  # before the switch: no payload rewrite


def on_the_top_layer(packets: int) -> tuple[list[Layer], Consumer, Counting]:
    """A consumer of a three-layer track, forwarding f after three frames of every layer."""
    base, layers = track()
    c, out = consumer()
    c.switch(base)
    for n in range(3):
        for layer in layers:
            layer.send(n / 30, keyframe=n == 0, packets=packets)
    return layers, c, out


def test_a_down_switch_for_bandwidth_stops_the_old_layer_at_its_next_frame() -> None:
    # On a full link the lower layer's key frame must not queue behind the old layer.
    layers, c, out = on_the_top_layer(packets=2)
    assert c.set_layers(0, 2, 2 / 30, cut=True) is layers[0].producer
    sent_f = len(received(out))
    for n in range(3, 7):
        layers[2].send(n / 30, packets=2)  # f goes on: nothing of it is forwarded
        layers[1].send(n / 30)
    assert len(received(out)) == sent_f
    assert c.layers_now == (2, 2)  # still f until q's key frame
    layers[0].send(7 / 30, keyframe=True)
    assert c.layers_now == (0, 2)
    rx = received(out)
    assert rx[-1][3] == layers[0].sent[-1]
    assert continuous([s for s, *_ in rx], 0x10000)  # no gap for the frames left out
    assert continuous([d.picture_id for d in frames(rx)], 0x8000)


def test_after_a_cut_the_old_layers_packets_are_not_resent_but_the_key_frames_are() -> None:
    # A cut means the link cannot carry the old layer: its packets lost on the way are
    # NACKed until the lower layer's key frame is complete, and resending them would put
    # the old layer back on the full link, ahead of (or between) that key frame's packets.
    layers, c, out = on_the_top_layer(packets=3)
    old = [seq for seq, *_ in received(out)]  # f's packets, before the cut
    c.set_layers(0, 2, 2 / 30, cut=True)
    layers[2].send(3 / 30, packets=3)  # cut: not forwarded
    assert c.retransmit(old, 3 / 30) == 0  # waiting for q's key frame: none of f again
    layers[0].send(4 / 30, keyframe=True, packets=3)
    layers[0].send(5 / 30)
    new = [seq for seq, *_ in received(out)][len(old) :]
    assert len(new) == 4
    out.rtp.clear()
    assert c.retransmit(old + new, 5 / 30) == 4  # q's key frame and the frame after it
    assert [parse_rtx(p, parse_rtp(p), ssrc=777, payload_type=96)[0] for p in out.rtp] == new


def test_a_cut_done_before_the_old_layers_next_frame_does_not_resend_it_either() -> None:
    # The lab's trace: h cut at 2.43 s, q's key frame at 2.63 s before h's next frame.
    layers, c, out = on_the_top_layer(packets=3)
    old = [seq for seq, *_ in received(out)]
    c.set_layers(0, 2, 2 / 30, cut=True)
    layers[0].send(3 / 30, keyframe=True, packets=3)
    new = [seq for seq, *_ in received(out)][len(old) :]
    assert len(new) == 3 and c.layers_now[0] == 0
    out.rtp.clear()
    assert c.retransmit(old + new, 3 / 30) == 3


def test_a_switch_without_a_cut_still_resends_the_old_layer() -> None:
    base, layers = track()
    c, out = consumer()
    c.switch(base)
    for layer in layers:
        layer.send(0.0, keyframe=True, packets=2)
    old = [seq for seq, *_ in received(out)]
    c.set_layers(1, 2, 0.0)  # a smaller tile, the link is fine
    layers[1].send(1 / 30, keyframe=True)
    assert c.retransmit(old, 1 / 30) == 2


def test_a_down_switch_for_bandwidth_ends_the_frame_being_sent() -> None:
    base, layers = track()
    c, out = consumer()
    c.switch(base)
    layers[2].send(0.0, keyframe=True, packets=3)
    before = len(received(out))
    c.set_layers(0, 2, 0.0, cut=True)
    # The rest of the frame under way still goes (same timestamp), then nothing.
    ts = layers[2].ts0
    data = vp8x(layers[2].seq, ts, ssrc=3000, pic=layers[2].pic, tl0=1, tid=0, start=False)
    layers[2].producer.on_rtp(data, parse_rtp(data), 0.01)
    layers[2].seq += 1
    assert len(received(out)) == before + 1
    layers[2].send(1 / 30, packets=2)
    assert len(received(out)) == before + 1


def test_without_cut_the_old_layer_plays_on_and_a_cancelled_cut_waits_for_a_key_frame() -> None:
    base, layers = track()
    c, out = consumer()
    c.switch(base)
    for layer in layers:
        layer.send(0.0, keyframe=True)
    c.set_layers(1, 2, 0.0)  # a smaller tile: no cut
    layers[2].send(1 / 30)
    assert received(out)[-1][3] == layers[2].sent[-1]
    c.set_layers(1, 2, 1 / 30, cut=True)  # now the link: f stops from its next frame
    layers[2].send(2 / 30)
    count = len(received(out))
    assert received(out)[-1][3] != layers[2].sent[-1]
    # The estimate comes back before h's key frame: f again, but from a key frame of f.
    assert c.set_layers(2, 2, 3 / 30) is layers[2].producer
    layers[2].send(3 / 30)
    assert len(received(out)) == count
    layers[2].send(4 / 30, keyframe=True)
    rx = received(out)
    assert rx[-1][3] == layers[2].sent[-1] and rx[-1][2].keyframe
    assert continuous([s for s, *_ in rx], 0x10000)
    assert c.layers_now == (2, 2)


def test_timestamps_are_aligned_through_both_layers_sender_reports() -> None:
    # Different RTP timestamp bases per layer, one NTP clock (the publisher's).
    base, layers = track(ts0=(5_000_000, 90_000_000, 1_234_567))
    c, out = consumer()
    c.switch(base)
    c.set_layers(2, 2, 0.0)
    ntp0 = 3_900_000_000 << 32
    for layer in layers:
        layer.producer.on_sender_report(ntp0, layer.ts0, 0.0)
    for n in range(10):
        for layer in layers:
            layer.send(n / 30, keyframe=n == 0)
    c.set_layers(1, 2, 9 / 30)
    layers[1].send(10 / 30, keyframe=True, late=0.2)  # the key frame took longer
    rx = received(out)
    step = (rx[-1][1] - rx[-2][1]) & 0xFFFFFFFF
    assert step == 3000  # exactly one frame later: aligned on the capture clock, not arrival


def test_without_sender_reports_the_wall_clock_rule_moves_time_forward() -> None:
    base, layers = track(ts0=(5_000_000, 90_000_000, 1_234_567))
    c, out = consumer()
    c.switch(base)
    for n in range(5):
        for layer in layers:
            layer.send(n / 30, keyframe=n == 0)
    c.set_layers(0, 2, 4 / 30)
    layers[0].send(0.5, keyframe=True)
    rx = received(out)
    step = (rx[-1][1] - rx[-2][1]) & 0xFFFFFFFF
    assert 0.3 * 90000 <= step <= 0.4 * 90000  # 0.5 s minus the last frame's 4/30 s


def test_a_paused_layer_is_skipped_for_the_next_active_one() -> None:
    base, layers = track()
    c, _ = consumer()
    c.switch(base)
    for n in range(40):
        for layer in layers[:2]:  # f is paused by the publisher
            layer.send(n / 30, keyframe=n == 0)
    layers[2].producer.last_media = -10.0
    assert c.set_layers(2, 2, 39 / 30) is layers[1].producer
    assert c.set_layers(None, 2, 39 / 30) is None and c.target is None and c.track is base
    assert c.set_layers(0, 2, 39 / 30) is layers[0].producer


# consumers: temporal thinning


def test_temporal_thinning_drops_frames_without_sequence_or_picture_id_gaps() -> None:
    base, layers = track()
    q = layers[0]
    c, out = consumer()
    c.switch(base)
    c.set_layers(0, 0, 0.0)  # base frame rate only
    for n in range(16):
        q.send(n / 30, keyframe=n == 0, packets=2, late=0.05 if n == 1 else 0.0)
    rx = received(out)
    assert {d.tid for d in frames(rx)} == {0}
    assert len(frames(rx)) == 4  # frames 0, 4, 8, 12
    heads = [ts for _, ts, d, _ in rx if d.frame_start]
    assert [(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(heads)] == [12000] * 3  # as sent
    assert continuous([s for s, *_ in rx], 0x10000)
    assert continuous([d.picture_id for d in frames(rx)], 0x8000)
    assert continuous([d.tl0picidx for d in frames(rx)], 0x100)
    assert c.layers_now == (0, 0)


def test_temporal_up_switch_waits_for_a_tl0_or_sync_frame_and_down_switch_is_immediate() -> None:
    base, layers = track()
    q = layers[0]
    c, out = consumer()
    c.switch(base)
    c.set_layers(0, 0, 0.0)
    for n in range(4):
        q.send(n / 30, keyframe=n == 0)
    assert c.set_layers(0, 2, 3 / 30) is None  # a temporal change needs no key frame
    q.send(4 / 30)  # frame 4: TID 0 -> up to 2 at once
    q.send(5 / 30)  # TID 2 forwarded
    assert c.layers_now == (0, 2)
    c.set_layers(0, 1, 5 / 30)
    q.send(6 / 30)  # TID 1: forwarded
    q.send(7 / 30)  # TID 2: dropped
    rx = received(out)
    assert [d.tid for d in frames(rx)] == [0, 0, 2, 1]
    assert continuous([s for s, *_ in rx], 0x10000)
    assert continuous([d.picture_id for d in frames(rx)], 0x8000)


# NACKs


def test_nacks_after_a_switch_and_drops_resend_the_right_packets_rewritten() -> None:
    base, layers = track()
    c, out = consumer()
    c.switch(base)
    c.set_layers(2, 0, 0.0)
    for n in range(8):
        for layer in layers:
            layer.send(n / 30, keyframe=n == 0, packets=2)
    c.set_layers(1, 2, 7 / 30)
    for n in range(8, 12):
        for layer in layers:
            layer.send(n / 30, keyframe=n == 8, packets=2)
    rx = received(out)
    assert continuous([s for s, *_ in rx], 0x10000)
    assert [t // 100000 for *_, t in rx] == [3000] * 4 + [2000] * 8  # f thinned, then h
    sent = dict(zip([seq for seq, *_ in rx], out.rtp, strict=True))
    out.rtp.clear()
    # The thinned f frames before the switch: f's first frame (plain path) and every h
    # packet are resent; f's later thinned frame is superseded by h's key frame (Vp8Map
    # resends only the current source's frames).
    wanted = [seq for seq, *_ in rx]
    assert c.retransmit(wanted, 12 / 30) == 10
    resent_seqs = []
    for resent in out.rtp:
        h = parse_rtp(resent)
        assert h.ssrc == 778  # RTX
        seq, inner = parse_rtx(resent, h, ssrc=777, payload_type=96)
        resent_seqs.append(seq)
        assert inner[12:] == sent[seq][12:] and inner[2:4] == sent[seq][2:4]
    assert resent_seqs == wanted[:2] + wanted[4:]


# across workers


async def test_a_relayed_simulcast_track_keeps_its_layers_and_their_feedback() -> None:
    origin, receiver = RelayEndpoint(1), RelayEndpoint(2)
    peers = {1: await origin.bind("127.0.0.1"), 2: await receiver.bind("127.0.0.1")}
    origin.set_peers(peers)
    receiver.set_peers(peers)
    try:
        base, layers = track(order=(2, 0, 1))  # the offer lists f, q, h
        publisher = RemotePublisher("alice")
        remotes: dict[str | None, RemoteStream] = {}
        for stream, layer in enumerate(layers, start=10):
            origin.streams[stream] = layer.producer
            tap = RelayTap(origin, stream)
            tap.targets = [(origin.peers[2], None)]
            layer.producer.relay = tap
            desc = describe(layer.producer)
            assert (desc["rid"], desc["layer"]) == (layer.producer.rid, stream - 10)
            remote = RemoteStream(receiver, 1, stream, "alice", desc, MediaSettings(), Counters())
            receiver.sources[(1, stream)] = remote
            remotes[layer.producer.rid] = remote
            publisher.add(remote)
        [remote_track] = publisher.producers.values()
        assert [p.rid for p in remote_track.layers] == ["f", "q", "h"]  # offer order so far
        now = time.monotonic()
        for n in range(3):
            for layer in layers:
                layer.send(now + n / 30, keyframe=n == 0)
        await eventually(
            lambda: all(p.frame_size for p in remote_track.layers), 2, "key frames relayed"
        )
        assert [p.rid for p in remote_track.layers] == ["q", "h", "f"]  # learned, as the origin
        assert [p.ssrc for p in remote_track.layers] == [p.ssrc for p in base.layers]

        c, out = consumer()
        c.switch(remote_track)
        wanted = c.set_layers(1, 2, time.monotonic())
        assert wanted is remote_track.layers[1] and wanted.rid == "h"
        wanted.request_keyframe(time.monotonic())
        publisher_side = layers[0].producer.output
        assert isinstance(publisher_side, Capture)
        await eventually(lambda: publisher_side.rtcp, 2, "the PLI reached the publisher")
        [pli] = parse_rtcp(publisher_side.rtcp[0])
        assert isinstance(pli, Pli) and pli.media_ssrc == layers[2].producer.ssrc  # h's SSRC
        layers[2].send(time.monotonic(), keyframe=True)
        await eventually(lambda: c.layers_now[0] == 1, 2, "the remote consumer on h")
        assert received(out)[-1][3] == layers[2].sent[-1]

        # Only what this worker's subscribers need crosses: f is paused, q (lowest) is not.
        now = time.monotonic()
        demands = {rid: r.demand(now) for rid, r in remotes.items()}
        assert demands == {"f": False, "q": True, "h": True}
        for stream, layer in enumerate(layers, start=10):
            demand = demands[layer.producer.rid or ""]
            assert demand is not None
            receiver.send_demand(1, stream, demand)
        f_tap = layers[0].producer.relay
        assert isinstance(f_tap, RelayTap)
        await eventually(lambda: f_tap.paused, 2, "f paused at the origin")
        assert not layers[0].producer.in_use() and layers[2].producer.in_use()
        assert remotes["f"].demand(now + 0.1) is None
        f_remote = remotes["f"].producer
        before = f_remote.stats.received
        for n in range(3):
            for layer in layers:
                layer.send(time.monotonic() + n / 30)
        h_remote = remote_track.layers[1]
        await eventually(lambda: h_remote.stats.received >= 5, 2, "h still relayed")
        assert f_remote.stats.received == before
        c.set_layers(2, 2, time.monotonic())  # a subscriber wants f again
        assert remotes["f"].demand(time.monotonic()) is True
        receiver.send_demand(1, 10, True)
        await eventually(lambda: not f_tap.paused, 2, "f resumed")
    finally:
        origin.close()
        receiver.close()


def test_padding_while_thinning_leaves_no_sequence_gap() -> None:
    base, layers = track()
    q = layers[0]
    c, out = consumer()
    c.switch(base)
    c.set_layers(0, 1, 0.0)
    for n in range(6):
        q.send(n / 30, keyframe=n == 0)
        if n == 2:  # a padding-only packet (a bandwidth probe) on the media SSRC
            assert q.producer.ssrc is not None
            padding = build_rtp(
                payload_type=96, sequence=q.seq, timestamp=0, ssrc=q.producer.ssrc, payload=b""
            )
            q.seq += 1
            q.producer.on_rtp(padding, parse_rtp(padding), n / 30)
    rx = received(out)
    assert [d.tid for d in frames(rx)] == [0, 1, 0]  # frames 0, 2, 4: TID 2 dropped
    assert continuous([s for s, *_ in rx], 0x10000)


def test_an_old_key_frame_sent_again_does_not_complete_a_switch() -> None:
    # Chromium probes bandwidth by sending old packets again over RTX ("payload
    # padding"), preferring big ones: a layer's last key frame.  Switching back
    # to that layer on such a copy would continue from an old picture: the
    # frames after it reference frames the subscriber never gets (a sequence,
    # picture id and TL0PICIDX jump that freezes its decoder until a new key frame).
    base, layers = track()
    q = layers[0]
    c, out = consumer()
    c.switch(base)
    c.set_layers(0, 2, 0.0)
    for n in range(5):
        for layer in layers:
            layer.send(n / 30, keyframe=n == 0)
    old_key = q.producer.cached(100, 5 / 30)  # q's key frame, its first (and only) packet
    assert old_key is not None and descriptor_of(old_key).keyframe
    c.set_layers(1, 2, 5 / 30)
    for n in range(5, 10):
        for layer in layers:
            layer.send(n / 30, keyframe=n == 5 and layer is layers[1])
    assert c.layers_now == (1, 2)
    assert c.set_layers(0, 2, 10 / 30) is q.producer  # ask q for a key frame
    assert q.producer.rtx_ssrc is not None
    rtx = build_rtx(
        old_key,
        parse_rtp(old_key),
        rtx_ssrc=q.producer.rtx_ssrc,
        rtx_payload_type=97,
        rtx_sequence=1,
    )
    assert q.producer.on_rtx(rtx, parse_rtp(rtx), 10 / 30)
    for n in range(10, 13):
        for layer in layers:
            layer.send(n / 30, keyframe=n == 12 and layer is q)
    assert c.layers_now == (0, 2)
    rx = received(out)
    tags = [t for *_, t in rx]
    assert tags == [*q.sent[:6], *layers[1].sent[5:12], q.sent[-1]]  # h until q's new key frame
    assert continuous([s for s, *_ in rx], 0x10000)
    assert continuous([d.picture_id for d in frames(rx)], 0x8000)
    assert continuous([d.tl0picidx for d in frames(rx) if d.tid == 0], 0x100)


def test_copies_rewritten_after_a_switch_say_where_their_transport_cc_element_is() -> None:
    """A copy whose VP8 descriptor is rewritten goes whole (`send_rtp`); with the
    publisher's extension ids it has the original's layout, so the consumer passes the
    producer's `twcc_at` and the transport numbers it without looking it up."""
    base, layers = track()
    for layer in layers:
        layer.producer.twcc_at = 21  # as Participant.on_rtp found it in each packet
    c, out = consumer()
    c.switch(base)
    for n in range(3):
        for layer in layers:
            layer.send(n / 30, keyframe=n == 0)
    c.set_layers(0, 2, 2 / 30)
    layers[0].send(3 / 30, keyframe=True)
    layers[0].send(4 / 30)
    assert c.layers_now == (0, 2) and out.fast == 3, "f's frames before the switch"
    assert out.whole_twcc_at == [21, 21], "q's, rewritten, sent whole"


def on_q(frames: int) -> tuple[list[Layer], Consumer, Counting]:
    """A consumer forwarding q: its key frame at 0 s, then `frames` frames (L1T3)."""
    base, layers = track()
    c, out = consumer()
    c.switch(base)
    c.set_layers(0, 2, 0.0)
    for n in range(frames + 1):
        layers[0].send(n / 30, keyframe=n == 0)
    assert c.layers_now == (0, 2) and len(received(out)) == frames + 1
    return layers, c, out


def keyframe_requests(layers: list[Layer]) -> int:
    upstream = layers[0].producer.output
    assert isinstance(upstream, Capture)
    return sum(isinstance(i, Pli) for p in upstream.rtcp for i in parse_rtcp(p))


def nacked_until(c: Consumer, seq: int, times: list[float]) -> list[int]:
    """What each NACK of `seq` at `times` resent (the receiver NACKs a packet until it
    comes, 10 times at most)."""
    return [c.retransmit([seq], t) for t in times]


NACKS = [0.2, 0.35, 0.5, 0.65, 0.8, 0.95]  # resent each time, lost for good at 0.9 (0.7 s)


def test_a_base_layer_packet_still_nacked_after_its_resends_gets_a_key_frame() -> None:
    # The lab's room viewer (sfu.policy.resend): q's switch key frame lost in a full
    # queue, its resends lost too; the receiver cannot decode anything until a key
    # frame, and asks for one itself only after 3 s without a decodable frame.
    layers, c, out = on_q(frames=8)
    tids = [d.tid for _, _, d, _ in received(out)]
    assert tids == [0, 2, 1, 2, 0, 2, 1, 2, 0]
    seq = received(out)[4][0]  # frame 4: TID 0, the next frames refer to it
    asked = keyframe_requests(layers)  # (the switch's)
    assert nacked_until(c, seq, NACKS[:5]) == [1, 1, 1, 1, 1]
    assert keyframe_requests(layers) == asked
    assert nacked_until(c, seq, NACKS[5:]) == [1]  # its sixth copy, and a key frame
    assert keyframe_requests(layers) == asked + 1
    # It forwards on meanwhile: a copy on its way may yet repair the frame.
    assert c.pending is None
    layers[0].send(1.0)
    assert received(out)[-1][3] == layers[0].sent[-1]


def test_a_higher_tid_packet_lost_for_good_costs_only_its_frame() -> None:
    layers, c, out = on_q(frames=8)
    seq = received(out)[1][0]  # frame 1: TID 2, nothing refers to it
    asked = keyframe_requests(layers)
    assert nacked_until(c, seq, NACKS) == [1, 1, 1, 1, 1, 1]
    assert keyframe_requests(layers) == asked


def test_a_packet_lost_for_good_just_after_a_switch_needs_no_key_frame_of_its_own() -> None:
    # The switch's key frame (h's, at 0.8 s) starts the picture again, and another one
    # now would go into the queue that is still full of it.
    layers, c, out = on_q(frames=8)
    seq = received(out)[4][0]
    assert nacked_until(c, seq, NACKS[:3]) == [1, 1, 1]
    c.set_layers(1, 2, 0.75)
    layers[1].send(0.8, keyframe=True)
    assert c.layers_now[0] == 1
    asked = keyframe_requests(layers)
    assert nacked_until(c, seq, [0.95, 1.1]) == [1, 1]  # q's copies: a step up cuts nothing
    assert keyframe_requests(layers) == asked


def test_packets_lost_for_good_ask_for_a_key_frame_at_most_every_half_second() -> None:
    layers, c, out = on_q(frames=12)
    first, second = received(out)[4][0], received(out)[8][0]
    asked = keyframe_requests(layers)
    assert nacked_until(c, first, NACKS) == [1, 1, 1, 1, 1, 1]  # asked at 0.95
    assert nacked_until(c, second, [0.3, 0.45, 0.6, 1.0, 1.2]) == [1, 1, 1, 1, 1]
    assert keyframe_requests(layers) == asked + 1  # 1.0 and 1.2: too soon after 0.95
    assert nacked_until(c, second, [1.45]) == [0]  # older than the cache keeps (1 s)
    assert keyframe_requests(layers) == asked + 2


def test_an_ask_the_source_turns_down_is_made_again_once_the_source_takes_it() -> None:
    # The source asks at most once a half second (keyframe_min_interval_s): a request of
    # another slot at 0.8 s (its key frame may yet be lost) turns down this slot's at 0.95,
    # which then neither counts as asked nor holds the next one back for half a second.
    layers, c, out = on_q(frames=8)
    seq = received(out)[4][0]
    budget = ResendBudget()

    def nack(at: float) -> int:
        budget.refill(at, 10_000_000)
        return c.retransmit([seq], at, budget)

    assert layers[0].producer.request_keyframe(0.8)
    asked = keyframe_requests(layers)
    assert [nack(t) for t in NACKS] == [1, 1, 1, 1, 1, 1]
    assert keyframe_requests(layers) == asked and budget.lost == 0  # 0.95: turned down
    assert nack(1.35) == 0  # (no seventh copy)
    assert keyframe_requests(layers) == asked + 1 and budget.lost == 1


def test_a_packet_lost_for_good_is_timed_from_its_first_nack_not_its_first_resend() -> None:
    # The budget kept back its first resends: the receiver has nearly given up on it by
    # the time a copy went out (the lab's room viewer, head4-18).
    layers, c, out = on_q(frames=8)
    seq = received(out)[4][0]
    empty = ResendBudget()
    empty.refill(0.0, 1_000)
    assert empty.take(int(empty.level))
    asked = keyframe_requests(layers)
    assert [c.retransmit([seq], t, empty) for t in (0.2, 0.35, 0.5)] == [0, 0, 0]
    assert nacked_until(c, seq, [0.65, 0.7]) == [1, 0]  # the first copy, then its wait
    assert keyframe_requests(layers) == asked
    assert nacked_until(c, seq, [0.95]) == [1]  # 0.75 s after its first NACK, 0.3 s after
    # its first copy: a key frame, and the copy too (it may yet repair the frame)
    assert keyframe_requests(layers) == asked + 1
