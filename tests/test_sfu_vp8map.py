"""sfu.routing.vp8map + seqmap: one continuous VP8 stream out of switched, thinned, lossy inputs.

The property tests play streams of VP8 frames (1-3 sources, temporal layers
L1T3 with layer sync bits, or none; 7- or 15-bit picture ids) through the
two maps the way a consumer does (parse, `Vp8Map.packet`, then
`SeqMap.forward`/`drop`, then `Vp8Map.write`), with switches at key
frames, TID limits changing at any time, loss, reordering and duplicated
(retransmitted) packets, and check what the subscriber would receive.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from sfu.packet.vp8 import parse_vp8, read_vp8, vp8_frame_size
from sfu.routing.seqmap import SeqMap
from sfu.routing.vp8map import DROP, KEEP, REWRITE, Vp8Map

RUNS = settings(max_examples=300, deadline=None)

# L1T3 as libwebrtc sends it: TID per frame in a group of 4 and the layer
# sync bit.  References: TL0 the previous TL0 (buffer "last"); the first TL2
# and the TL1 only the group's TL0 (sync); the second TL2 the TL0, the TL1
# and the first TL2 (golden and altref).
PATTERN = ((0, False), (2, True), (1, True), (2, False))


@dataclass
class Source:
    """One publisher stream (a simulcast layer)."""

    number: int
    bits: int  # picture id width, 7 or 15
    temporal: bool  # L1T3 with TL0PICIDX/TID/KEYIDX, or picture ids only
    seq: int
    ts: int
    pid: int
    tl0: int
    keyidx: int
    index: int = 0  # frame index in the pattern
    frames: int = 0

    def advance(self, rng: random.Random) -> None:
        """Time passes while nobody forwards this source."""
        for _ in range(rng.randrange(0, 20)):
            self.seq = (self.seq + rng.randrange(1, 4)) & 0xFFFF
            self.ts = (self.ts + 3000) & 0xFFFFFFFF
            self.pid = (self.pid + 1) % (1 << self.bits)
            self.tl0 = (self.tl0 + 1) & 0xFF


@dataclass
class Packet:
    source: int
    frame: tuple[int, int]  # (source, frame number)
    seq: int
    ts: int
    marker: bool
    payload: bytes
    tid: int
    first: bool  # the frame's first packet
    refs: tuple[tuple[int, int], ...]  # frames this frame's decoding needs


def descriptor(src: Source, start: bool, tid: int, sync: bool) -> bytes:
    x = 0x80 | (0x70 if src.temporal else 0)
    out = bytearray([0x90 if start else 0x80, x])
    if src.bits == 15:
        out += bytes([0x80 | (src.pid >> 8), src.pid & 0xFF])
    else:
        out.append(src.pid)
    if src.temporal:
        out.append(src.tl0)
        out.append((tid << 6) | (0x20 if sync else 0) | src.keyidx)
    return bytes(out)


def make_frame(
    src: Source, rng: random.Random, key: bool, groups: dict[int, list[int]]
) -> list[Packet]:
    """The packets of the next frame of `src`; `groups` tracks references."""
    if key:
        src.index = 0
        src.keyidx = (src.keyidx + 1) & 0x1F
    tid, sync = PATTERN[src.index] if src.temporal else (-1, False)
    if src.temporal and src.index == 0:
        src.tl0 = (src.tl0 + 1) & 0xFF
    number = src.frames
    group = groups.setdefault(src.number, [])
    if key:
        refs: tuple[tuple[int, int], ...] = ()
        group[:] = [number]
    elif not src.temporal:
        refs = ((src.number, number - 1),)
    elif src.index == 0:
        refs = ((src.number, group[0]),) if group else ()
        group[:] = [number]
    elif src.index == 3 and len(group) >= 3:
        refs = tuple((src.number, n) for n in group[:3])
    else:
        refs = ((src.number, group[0]),) if group else ()
    if src.temporal and not key and src.index:
        group.append(number)
    count = rng.randrange(1, 4)
    packets = []
    for i in range(count):
        vp8 = (
            (b"\x50\x02\x00\x9d\x01\x2a\x80\x02\x68\x01" if key else b"\x51\x02\x00")
            if i == 0
            else b"\x00\x00"
        )
        packets.append(
            Packet(
                source=src.number,
                frame=(src.number, number),
                seq=src.seq,
                ts=src.ts,
                marker=i == count - 1,
                payload=descriptor(src, i == 0, tid, sync) + vp8 + bytes(8),
                tid=tid,
                first=i == 0,
                refs=refs,
            )
        )
        src.seq = (src.seq + 1) & 0xFFFF
    src.frames += 1
    src.ts = (src.ts + 3000) & 0xFFFFFFFF
    src.pid = (src.pid + 1) % (1 << src.bits)
    src.index = (src.index + 1) % 4
    return packets


@dataclass
class Sent:
    """What the subscriber received for one input packet."""

    packet: Packet
    segment: int
    seq: int
    pid: int
    bits: int
    tl0: int
    keyidx: int
    tid: int


@dataclass
class Run:
    """The consumer's side: the two maps, and what happened."""

    vmap: Vp8Map = field(default_factory=Vp8Map)
    smap: SeqMap[tuple[int, int]] = field(default_factory=lambda: SeqMap(first=65500))
    segment: int = -1
    sent: list[Sent] = field(default_factory=list)
    dropped: set[tuple[int, int]] = field(default_factory=set)  # frames the map dropped
    judged: dict[tuple[int, int], tuple[int, bool]] = field(default_factory=dict)  # limit, in order
    newest: dict[int, int] = field(default_factory=dict)  # segment -> newest frame number
    late_dropped: set[tuple[int, int, int]] = field(default_factory=set)  # (segment, source, seq)
    delivered: dict[tuple[int, int, int], tuple[int, int]] = field(default_factory=dict)
    impaired: bool = False
    max_seq: int = -1  # newest input sequence number in this segment
    passed: dict[tuple[int, int], int] = field(default_factory=dict)  # frame -> limit then

    def begin(self, source: int) -> None:
        self.segment += 1
        self.vmap.begin()
        self.max_seq = -1
        self.smap.begin((self.segment, source))

    def feed(self, p: Packet) -> None:
        self.delivered[(self.segment, p.source, p.seq)] = p.frame
        d = parse_vp8(p.payload)
        number = p.frame[1]
        newest = self.newest.get(self.segment, -1)
        if p.frame not in self.judged:
            # A frame first seen late is judged by the limit when its place passed.
            limit = self.passed.get(p.frame, self.vmap.max_temporal)
            self.judged[p.frame] = (limit, number > newest)
        if number > newest:
            for n in range(newest + 1, number):
                self.passed[(p.source, n)] = self.vmap.max_temporal
        self.newest[self.segment] = max(newest, number)
        verdict = self.vmap.packet(d, p.ts, p.marker)
        if self.max_seq < 0 or 0 < (p.seq - self.max_seq) & 0xFFFF < 0x8000:
            self.max_seq = p.seq
        if verdict == DROP:
            self.dropped.add(p.frame)
            if (p.seq - self.max_seq) & 0xFFFF >= 0x8000:  # older than the newest packet
                self.late_dropped.add((self.segment, p.source, p.seq))
            self.smap.drop(p.seq, self.vmap.gap_dropped)
            return
        assert p.frame not in self.dropped, "a frame both dropped and forwarded"
        seq = self.smap.forward(p.seq, self.vmap.gap_dropped)
        if seq is None:
            return
        buf = bytearray(p.payload)
        if verdict == REWRITE:
            self.vmap.write(buf, 0, d)
        else:
            assert verdict == KEEP
        out = parse_vp8(buf)
        assert buf[out.header_size :] == p.payload[d.header_size :]
        self.sent.append(
            Sent(
                p,
                self.segment,
                seq,
                out.picture_id,
                out.picture_id_bits,
                out.tl0picidx,
                out.keyidx,
                out.tid,
            )
        )


def play(
    rng: random.Random,
    sources: list[Source],
    events: list[tuple[str, int]],
    loss: float,
    reorder: float,
    duplicate: float,
) -> tuple[Run, list[Packet]]:
    run = Run(impaired=bool(loss or reorder or duplicate))
    groups: dict[int, list[int]] = {}
    current = sources[0]
    held: list[tuple[int, Packet]] = []  # (deliver after this many more packets, packet)
    sent_all: list[Packet] = []

    def deliver(p: Packet, impair: bool) -> None:
        sent_all.append(p)
        if impair and rng.random() < loss:
            return
        if impair and rng.random() < reorder:
            held.append((rng.randrange(1, 6), p))
        else:
            run.feed(p)
        if impair and rng.random() < duplicate:
            held.append((rng.randrange(1, 12), p))
        due = [p for n, p in held if n <= 0]
        held[:] = [(n - 1, p) for n, p in held if n > 0]
        for late in due:
            run.feed(late)

    def switch(to: Source) -> None:
        held.clear()  # the old source's stragglers never reach the maps
        to.advance(rng)
        packets = make_frame(to, rng, True, groups)
        run.begin(to.number)
        deliver(packets[0], impair=False)
        for p in packets[1:]:
            deliver(p, impair=True)

    switch(current)
    for kind, value in events:
        if kind == "frames":
            for _ in range(value):
                for p in make_frame(current, rng, False, groups):
                    deliver(p, impair=True)
        elif kind == "key":
            for p in make_frame(current, rng, True, groups):
                deliver(p, impair=True)
        elif kind == "limit":
            run.vmap.set_max_temporal(value)
        else:
            current = sources[value % len(sources)]
            switch(current)
    for _n, p in held:
        run.feed(p)
    return run, sent_all


def sources_strategy() -> st.SearchStrategy[list[Source]]:
    one = st.builds(
        Source,
        number=st.just(0),
        bits=st.sampled_from([7, 15]),
        temporal=st.booleans(),
        seq=st.integers(0, 0xFFFF),
        ts=st.integers(0, 0xFFFFFFFF),
        pid=st.integers(0, 127),
        tl0=st.integers(0, 255),
        keyidx=st.integers(0, 31),
    )
    return st.lists(one, min_size=1, max_size=3)


EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("frames"), st.integers(1, 16)),
        st.tuples(st.just("limit"), st.integers(0, 2)),
        st.tuples(st.just("switch"), st.integers(0, 2)),
        st.tuples(st.just("key"), st.just(0)),
    ),
    max_size=24,
)


def mod_diff(a: int, b: int, bits: int) -> int:
    return (a - b) % (1 << bits)


def check(run: Run, everything: list[Packet]) -> None:
    sent = run.sent
    assert sent, "the first key frame is always forwarded"
    # One verdict and one set of values per frame, however often it arrives.
    per_frame: dict[tuple[int, int], Sent] = {}
    per_packet: dict[tuple[int, int, int], int] = {}
    for s in sent:
        first = per_frame.setdefault(s.packet.frame, s)
        assert (s.pid, s.tl0, s.keyidx) == (first.pid, first.tl0, first.keyidx)
        key = (s.segment, s.packet.source, s.packet.seq)
        assert per_packet.setdefault(key, s.seq) == s.seq, "a packet mapped twice differently"
    assert not set(per_frame) & run.dropped
    # Every packet that arrived of a forwarded frame was sent.
    for key, frame in run.delivered.items():
        if frame in per_frame:
            assert key in per_packet, f"packet {key} of forwarded frame {frame} not sent"
    # Every forwarded frame was within the TID limit when it was judged,
    # and everything it references reached the subscriber's decoder path.
    for frame, s in per_frame.items():
        limit, _in_order = run.judged[frame]
        assert s.packet.tid <= limit
        for ref in s.packet.refs:
            assert ref not in run.dropped, (
                f"frame {frame} forwarded but its reference {ref} dropped"
            )
    # Frames in stream order: picture ids close up over dropped frames and
    # keep gaps only for frames lost (or dropped when they came late);
    # TL0PICIDX and KEYIDX keep the source's steps.
    frames = sorted(per_frame.values(), key=lambda s: (s.segment, s.packet.frame[1]))
    all_frames = {p.frame for p in everything}
    for a, b in itertools.pairwise(frames):
        if a.segment != b.segment:
            continue
        src = a.packet.source
        if a.pid >= 0:
            bits = 7 if 7 in (a.bits, b.bits) else 15
            between = [(src, n) for n in range(a.packet.frame[1] + 1, b.packet.frame[1])]
            holes = sum(
                1
                for f in between
                if f not in all_frames or f not in run.dropped or not run.judged[f][1]
            )
            assert mod_diff(b.pid, a.pid, bits) == 1 + holes, (a, b, holes)
        da, db = parse_vp8(a.packet.payload), parse_vp8(b.packet.payload)
        assert (b.tl0 - a.tl0) & 0xFF == (db.tl0picidx - da.tl0picidx) & 0xFF
        assert (b.keyidx - a.keyidx) & 0x1F == (db.keyidx - da.keyidx) & 0x1F
    # At each switch the new source's key frame continues the numbering.
    newest_of: dict[int, Sent] = {}
    firsts: dict[int, Sent] = {}
    for s in frames:
        newest_of[s.segment] = s
        firsts.setdefault(s.segment, s)
    for segment, first in firsts.items():
        before = newest_of.get(segment - 1)
        if before is None:
            continue
        assert first.packet.first and parse_vp8(first.packet.payload).keyframe
        if first.pid >= 0 and before.pid >= 0:
            bits = 7 if 7 in (first.bits, before.bits) else 15
            assert mod_diff(first.pid, before.pid, bits) == 1
        if first.tl0 >= 0 and before.tl0 >= 0:
            assert (first.tl0 - before.tl0) & 0xFF == 1
        if first.keyidx >= 0 and before.keyidx >= 0:
            assert (first.keyidx - before.keyidx) & 0x1F == 1
    # Sequence numbers: distinct and in input order per segment; every hole
    # is a packet that never reached the maps (loss) or a slot kept for a
    # packet that came late and was dropped.
    assert len(set(per_packet.values())) == len(per_packet)
    start = sent[0].seq
    rel = {k: (q - start) & 0xFFFF for k, q in per_packet.items()}
    ordered = sorted(rel.items(), key=lambda kv: kv[1])
    for (ka, _), (kb, _) in itertools.pairwise(ordered):
        if ka[0] == kb[0]:
            assert (kb[2] - ka[2]) & 0xFFFF < 0x8000, "out of input order"
    span = max(rel.values())
    got = set(rel.values())
    recent = min(rel[k] for k in rel if k[0] >= run.segment - 3)  # segments remembered
    unknown = 0
    for offset in range(recent, span + 1):
        if offset in got:
            continue
        found = run.smap.lookup((start + offset) & 0xFFFF)
        if found is None:
            unknown += 1
            continue
        (segment, source), in_seq = found
        assert (segment, source, in_seq) not in run.delivered or (
            (segment, source, in_seq) in run.late_dropped
        ), f"hole at {offset} for a packet that arrived"
    assert unknown <= len(run.late_dropped)
    if not run.impaired:
        assert len(got) == span + 1, "a gap without loss"
    # NACKs: the packets sent map back to their source packets.
    for s in sent[-60:]:
        if s.segment >= run.segment - 3:
            assert run.smap.lookup(s.seq) == ((s.segment, s.packet.source), s.packet.seq)


@RUNS
@given(
    sources_strategy(),
    EVENTS,
    st.randoms(use_true_random=False),
    st.sampled_from([0.0, 0.02, 0.1]),
    st.sampled_from([0.0, 0.05, 0.2]),
    st.sampled_from([0.0, 0.05]),
)
def test_switched_thinned_lossy_streams_stay_one_stream(
    sources: list[Source],
    events: list[tuple[str, int]],
    rng: random.Random,
    loss: float,
    reorder: float,
    duplicate: float,
) -> None:
    for i, src in enumerate(sources):
        src.number = i
    run, everything = play(rng, sources, events, loss, reorder, duplicate)
    check(run, everything)


@RUNS
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("frames"), st.integers(1, 6)),
            st.tuples(st.just("limit"), st.integers(0, 2)),
        ),
        max_size=40,
    ),
    st.randoms(use_true_random=False),
    st.sampled_from([0.0, 0.1]),
)
def test_temporal_limits_changing_often_never_break_a_reference(
    events: list[tuple[str, int]], rng: random.Random, reorder: float
) -> None:
    source = Source(0, 15, True, 65000, 0, 32700, 250, 30)
    run, everything = play(rng, [source], events, 0.0, reorder, 0.0)
    check(run, everything)


# --- plain cases ---------------------------------------------------------------


def vp8(
    pid: int,
    tid: int,
    sync: bool,
    tl0: int,
    keyidx: int = 0,
    *,
    key: bool = False,
    start: bool = True,
) -> bytes:
    """A 15-bit-picture-id L1T3 packet."""
    src = Source(0, 15, True, 0, 0, pid, tl0, keyidx)
    frame = (b"\x50\x02\x00\x9d\x01\x2a" if key else b"\x51\x02\x00") if start else b"\x00"
    return descriptor(src, start, tid, sync) + frame


def judge(m: Vp8Map, payload: bytes, ts: int, marker: bool = True) -> tuple[int, int, int, int]:
    """(verdict, out picture id, TL0PICIDX, KEYIDX) for one packet."""
    d = parse_vp8(payload)
    verdict = m.packet(d, ts, marker)
    if verdict == DROP:
        return DROP, -1, -1, -1
    buf = bytearray(payload)
    m.write(buf, 0, d)
    out = parse_vp8(buf)
    return verdict, out.picture_id, out.tl0picidx, out.keyidx


def l1t3(
    m: Vp8Map, first_pid: int, count: int, tl0: int = 10, ts: int = 0
) -> list[tuple[int, int, int, int]]:
    """Feed `count` frames (the first a key frame) of the 0 2 1 2 pattern."""
    out = []
    for i in range(count):
        tid, sync = PATTERN[i % 4]
        t = tl0 + i // 4
        out.append(judge(m, vp8(first_pid + i, tid, sync, t, key=i == 0), ts + 3000 * i))
    return out


def test_an_unthinned_first_stream_passes_as_it_is() -> None:
    m = Vp8Map()
    m.begin()
    assert [v for v, *_ in l1t3(m, 100, 8)] == [KEEP] * 8


def test_tid_above_the_limit_is_dropped_and_picture_ids_close_up() -> None:
    m = Vp8Map(max_temporal=1)
    m.begin()
    got = l1t3(m, 100, 8)
    kept = [(pid, tl0) for v, pid, tl0, _k in got if v != DROP]
    assert [v == DROP for v, *_ in got] == [False, True, False, True] * 2
    assert kept == [(100, 10), (101, 10), (102, 11), (103, 11)]


def test_raising_the_limit_waits_for_a_layer_sync_frame() -> None:
    m = Vp8Map(max_temporal=0)
    m.begin()
    l1t3(m, 0, 3)  # key, TL2 (dropped), TL1 (dropped)
    m.set_max_temporal(2)
    # The next TL2 has no Y bit: it references the dropped TL2 of its group.
    assert judge(m, vp8(3, 2, False, 10), 9000)[0] == DROP
    assert judge(m, vp8(4, 0, False, 11), 12000)[1] == 1
    assert judge(m, vp8(5, 2, True, 11), 15000)[1] == 2  # sync: layer 2 from here
    assert judge(m, vp8(6, 1, True, 11), 18000)[1] == 3
    assert judge(m, vp8(7, 2, False, 11), 21000)[1] == 4
    assert m.temporal == 2


def test_lowering_the_limit_never_cuts_a_frame() -> None:
    m = Vp8Map()
    m.begin()
    judge(m, vp8(0, 0, False, 5, key=True), 0)
    assert judge(m, vp8(1, 2, True, 5), 3000, marker=False)[0] != DROP
    m.set_max_temporal(0)
    assert judge(m, vp8(1, 2, True, 5, start=False), 3000)[0] != DROP  # the rest of that frame
    assert judge(m, vp8(2, 1, True, 5), 6000)[0] == DROP  # the next frame
    assert judge(m, vp8(3, 2, False, 5), 9000)[0] == DROP
    assert judge(m, vp8(4, 0, False, 6), 12000)[1:3] == (2, 6)


def test_a_switch_continues_picture_id_tl0picidx_and_keyidx() -> None:
    m = Vp8Map()
    m.begin()
    l1t3(m, 500, 5, tl0=40)  # last out: picture id 504, TL0PICIDX 41, KEYIDX 0
    m.begin()
    v, pid, tl0, key = judge(m, vp8(9000, 0, False, 200, keyidx=7, key=True), 777)
    assert (v, pid, tl0, key) == (REWRITE, 505, 42, 1)
    assert judge(m, vp8(9001, 2, True, 200, keyidx=7), 3777)[1:] == (506, 42, 1)
    assert judge(m, vp8(8999, 0, False, 199, keyidx=7), 1)[0] == DROP  # before the key frame


def test_a_7_bit_picture_id_is_written_modulo_128() -> None:
    m = Vp8Map()
    m.begin()
    judge(m, vp8(32767, 0, False, 0, key=True), 0)  # 15-bit, out 32767
    m.begin()
    src = Source(0, 7, False, 0, 0, 5, 0, 0)
    d7 = descriptor(src, True, -1, False) + b"\x50\x02\x00\x9d\x01\x2a"
    assert judge(m, d7, 50)[1] == 0  # 32768 modulo 128


def test_retransmitted_and_reordered_packets_get_the_same_values() -> None:
    m = Vp8Map(max_temporal=1)
    m.begin()
    first = judge(m, vp8(10, 0, False, 3, key=True), 0, marker=False)
    judge(m, vp8(11, 2, True, 3), 3000)  # dropped
    second = judge(m, vp8(12, 1, True, 3), 6000)
    assert judge(m, vp8(10, 0, False, 3, start=False), 0) == (first[0], *first[1:])
    assert judge(m, vp8(12, 1, True, 3), 6000) == second
    d = parse_vp8(vp8(12, 1, True, 3))
    assert m.resend(d, 6000) == second[0] and m.picture_id == second[1]
    assert m.resend(parse_vp8(vp8(11, 2, True, 3)), 3000) == DROP
    assert m.resend(parse_vp8(vp8(13, 2, True, 3)), 9000) == DROP  # never seen


def test_a_frame_missing_then_late_keeps_its_picture_id() -> None:
    m = Vp8Map()
    m.begin()
    judge(m, vp8(0, 0, False, 1, key=True), 0)
    assert judge(m, vp8(2, 1, True, 1), 6000)[1] == 2  # frame 1 missing: a gap
    assert judge(m, vp8(1, 2, True, 1), 3000)[1] == 1  # it came late: its place


def test_a_late_frame_from_before_a_key_frame_is_judged_by_the_layer_then() -> None:
    # Found by hypothesis in CI: limit 0 drops a TL2; the limit goes up to 2 and a
    # key frame comes; then a TL2 from before that key frame arrives late. It
    # references the dropped TL2: it must be dropped too (the key frame's reset
    # to the new limit applies from the key frame on, not to frames before it).
    m = Vp8Map(max_temporal=0)
    m.begin()
    judge(m, vp8(40, 0, False, 1, key=True), 0)
    assert judge(m, vp8(41, 2, True, 1), 3000)[0] == DROP
    m.set_max_temporal(2)
    assert judge(m, vp8(44, 0, False, 2, key=True), 12000)[0] != DROP  # 42, 43 missing
    assert judge(m, vp8(43, 2, False, 1), 9000)[0] == DROP  # late, refs the dropped 41
    assert judge(m, vp8(45, 2, True, 2), 15000)[0] != DROP  # after the key frame: layer 2


def test_seqmap_loss_stays_a_gap_and_drops_close_up() -> None:
    s: SeqMap[str] = SeqMap(first=100)
    s.begin("a")
    assert s.forward(7000) == 100
    assert s.forward(7002) == 102  # 7001 lost: a gap
    s.drop(7003)
    s.drop(7004)
    assert s.forward(7005) == 103  # dropped packets leave none
    assert s.forward(7001) == 101  # the lost one came late: its place
    assert s.forward(7001) == 101  # and again (a retransmission)
    assert s.forward(7003) is None  # a dropped one stays dropped
    assert [s.lookup(n) for n in (100, 101, 102, 103, 104)] == [
        ("a", 7000),
        ("a", 7001),
        ("a", 7002),
        ("a", 7005),
        None,
    ]


def test_seqmap_absorbs_a_gap_of_dropped_packets() -> None:
    s: SeqMap[str] = SeqMap(first=0xFFFE)
    s.begin("a")
    assert s.forward(10) == 0xFFFE
    s.drop(13, absorb_gap=True)  # 11-12 belonged to the dropped frame
    assert s.forward(16, absorb_gap=True) == 0xFFFF
    assert s.forward(17) == 0
    assert s.lookup(0) == ("a", 17) and s.lookup(0xFFFF) == ("a", 16)


def test_seqmap_a_late_drop_into_a_kept_slot_leaves_a_hole_nacks_cannot_fill() -> None:
    s: SeqMap[str] = SeqMap(first=0)
    s.begin("a")
    s.forward(1)
    s.forward(3)  # 2 missing: slot 1 kept
    s.drop(2)  # it came late, and was dropped
    assert s.lookup(1) is None and s.lookup(2) == ("a", 3)


def test_seqmap_a_late_copy_of_a_packet_already_sent_leaves_no_hole() -> None:
    """Found by hypothesis: dropping a late duplicate of a sent packet made its number
    a hole, so the next NACK of it found nothing to resend."""
    s: SeqMap[str] = SeqMap(first=0)
    s.begin("a")
    assert s.forward(0) == 0
    assert s.forward(1) == 1
    s.drop(0)  # an unreadable late copy of 0, already sent
    assert s.forward(0) == 0
    assert s.lookup(0) == ("a", 0)


def test_seqmap_segments_continue_and_map_back_to_their_source() -> None:
    s: SeqMap[str] = SeqMap(first=65534)
    s.begin("a")
    assert s.forward(500) == 65534
    assert s.forward(501) == 65535
    s.begin("b")
    assert s.forward(40000) == 0
    assert s.forward(39999) is None  # older than b's first packet
    assert s.forward(40001) == 1
    assert s.lookup(65535) == ("a", 501) and s.lookup(0) == ("b", 40000)
    assert s.lookup(2) is None  # not sent yet


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.binary(min_size=1, max_size=10),
            st.integers(0, 0xFFFFFFFF),
            st.booleans(),
            st.integers(0, 0xFFFF),
            st.integers(-1, 3),
        ),
        max_size=60,
    )
)
def test_garbage_descriptors_never_break_the_maps(
    packets: list[tuple[bytes, int, bool, int, int]],
) -> None:
    vmap = Vp8Map()
    smap: SeqMap[str] = SeqMap()
    smap.begin("x")
    vmap.begin()
    for payload, ts, marker, seq, action in packets:
        d = read_vp8(payload)
        if d is None:
            smap.drop(seq)  # what a consumer does with a packet it cannot read (padding)
            continue
        if action == -1:
            vmap.begin()
            smap.begin("y")
        elif action == 3:
            vmap.resend(d, ts)
            continue
        else:
            vmap.set_max_temporal(action)
        verdict = vmap.packet(d, ts, marker)
        assert verdict in (DROP, KEEP, REWRITE)
        if verdict == DROP:
            smap.drop(seq, vmap.gap_dropped)
            continue
        out = smap.forward(seq, vmap.gap_dropped)
        assert out is None or 0 <= out <= 0xFFFF
        buf = bytearray(payload)
        vmap.write(buf, 0, d)
        assert read_vp8(buf) is not None
        if out is not None:
            assert smap.lookup(out) in (("x", seq), ("y", seq))


# --- a real VP8 stream ----------------------------------------------------------


def test_switching_between_two_real_vp8_encoders_decodes_as_one_stream() -> None:
    """Two libvpx encoders (160x120 and 320x240, as two simulcast layers); the
    slot switches at forced key frames; the rewritten stream decodes with
    libvpx, with continuous picture ids and sequence numbers."""
    import fractions

    import av
    from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
    from aiortc.jitterbuffer import JitterFrame

    noise = random.Random(7)
    layers = {160: Vp8Encoder(), 320: Vp8Encoder()}
    seqs = {160: 1000, 320: 50000}
    plan = [160] * 5 + [320] * 4 + [160] * 3
    vmap = Vp8Map()
    smap: SeqMap[int] = SeqMap(first=65530)
    decoder = Vp8Decoder()
    decoded: list[tuple[int, int]] = []
    out_pids: list[int] = []
    out_seqs: list[int] = []
    current = 0
    for i, width in enumerate(plan):
        switch = width != current
        for w, encoder in layers.items():  # every layer encodes every frame
            frame = av.VideoFrame(width=w, height=w * 3 // 4, format="yuv420p")
            for plane in frame.planes:
                plane.update(noise.randbytes(plane.buffer_size))
            frame.pts = i * 3000
            frame.time_base = fractions.Fraction(1, 90000)
            payloads, ts = encoder.encode(frame, switch and w == width)
            packets = []
            for n, payload in enumerate(payloads):
                packets.append((seqs[w], payload, n == len(payloads) - 1))
                seqs[w] = (seqs[w] + 1) & 0xFFFF
            if w != width:
                continue  # not forwarded: the consumer never feeds it
            if switch:
                assert parse_vp8(payloads[0]).keyframe
                assert vp8_frame_size(payloads[0]) == (w, w * 3 // 4)
                vmap.begin()
                smap.begin(w)
                current = width
            data = b""
            for seq, payload, marker in packets:
                d = parse_vp8(payload)
                verdict = vmap.packet(d, ts, marker)
                assert verdict != DROP
                out = smap.forward(seq, vmap.gap_dropped)
                assert out is not None
                buf = bytearray(payload)
                if verdict == REWRITE:
                    vmap.write(buf, 0, d)
                rewritten = parse_vp8(buf)
                if rewritten.frame_start:
                    out_pids.append(rewritten.picture_id)
                out_seqs.append(out)
                assert smap.lookup(out) == (w, seq)
                data += vp8_depayload(bytes(buf))
            for picture in decoder.decode(JitterFrame(data=data, timestamp=ts)):
                assert isinstance(picture, av.VideoFrame)
                decoded.append((picture.width, picture.height))
    assert decoded == [(w, w * 3 // 4) for w in plan]
    assert all((b - a) & 0x7FFF == 1 for a, b in itertools.pairwise(out_pids))
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(out_seqs))
    assert len(out_seqs) > len(plan)  # the 320 frames took several packets


def test_write_touches_only_the_fields_this_packet_has() -> None:
    m = Vp8Map()
    m.begin()
    judge(m, vp8(100, 0, False, 1, keyidx=4, key=True), 0)
    m.begin()
    assert judge(m, vp8(5000, 0, False, 90, keyidx=9, key=True), 7, marker=False)[0] == REWRITE
    # A later packet of the same frame with a 7-bit picture id and no L/T/K.
    bare = bytes([0x80, 0x80, 0x05]) + b"\x00" * 4
    packet = bytearray(b"\xaa" + bare)
    d = parse_vp8(bare)
    assert m.packet(d, 7, True) == REWRITE
    m.write(packet, 1, d)
    assert packet[0] == 0xAA and packet[1:3] == bare[:2]
    assert packet[3] == 101 & 0x7F and packet[4:] == bare[3:]
