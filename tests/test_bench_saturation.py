"""The pure parts of the saturation benchmark (bench/saturation.py, bench/bulk_receive.py)
and the bench's sendmmsg/recvmmsg binding (bench/mmsg.py) over real loopback sockets.

Nothing here starts a server.
"""

from __future__ import annotations

import math
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import bulk_receive as br  # noqa: E402
import mmsg  # noqa: E402
import saturation_rig  # noqa: E402
from saturation import (  # noqa: E402
    Limits,
    Load,
    Point,
    bracket,
    ladder,
    next_load,
    saturated,
    sustained,
)

from sfu.packet.rtp import build_rtp  # noqa: E402

STEPS = ladder([50, 100, 200], 3)


def point(p: int, s: int, passed: bool) -> Point:
    return Point(Load(p, s), 205.0 * p * s, passed)


# -- the ladder and the search ------------------------------------------------


def test_ladder_raises_subscribers_then_publishers() -> None:
    assert [Load(1, 50), Load(1, 100), Load(1, 200), Load(2, 200), Load(3, 200)] == STEPS
    assert ladder([100, 50, 50], 1) == [Load(1, 50), Load(1, 100)]
    with pytest.raises(ValueError):
        ladder([], 2)
    with pytest.raises(ValueError):
        ladder([10], 0)


def test_the_search_walks_up_while_every_point_passes() -> None:
    history: list[Point] = []
    seen = []
    while (load := next_load(history, STEPS, refine=3)) is not None:
        seen.append(load)
        history.append(point(load.publishers, load.subscribers, True))
    assert seen == STEPS
    assert not saturated(history)
    best = sustained(history)
    assert best is not None and best.load == Load(3, 200)


def test_a_failure_in_the_subscriber_phase_is_bisected() -> None:
    history = [point(1, 50, True), point(1, 100, True), point(1, 200, False)]
    assert next_load(history, STEPS, refine=3) == Load(1, 150)
    history.append(point(1, 150, True))
    assert next_load(history, STEPS, refine=3) == Load(1, 175)
    history.append(point(1, 175, False))
    assert next_load(history, STEPS, refine=3) == Load(1, 160)
    history.append(point(1, 160, True))
    # three refinements done: one more publisher at the most subscribers that passed
    assert next_load(history, STEPS, refine=3) == Load(2, 160)
    assert saturated(history)
    best = sustained(history)
    assert best is not None and best.load == Load(1, 160)


def test_after_the_subscriber_phase_the_publishers_rise_and_a_failure_there_is_bisected() -> None:
    history = [point(1, 50, True), point(1, 100, True), point(1, 200, False), point(1, 150, True)]
    assert next_load(history, STEPS, refine=1) == Load(2, 150)
    history.append(point(2, 150, True))  # 300 streams: more packets than 1 x 150
    assert next_load(history, STEPS, refine=1) == Load(3, 150)
    history.append(point(3, 150, False))
    # 2 x 150 streams passed: at 3 publishers that is 100 subscribers; 150 failed.
    assert bracket(history, 3) == (100, 150)
    assert next_load(history, STEPS, refine=1) == Load(3, 125)
    history.append(point(3, 125, True))
    assert next_load(history, STEPS, refine=1) is None  # the ladder's most publishers, refined
    best = sustained(history)
    assert best is not None and best.load == Load(3, 125)


def test_a_phase_with_no_passing_point_ends_the_search() -> None:
    history = [point(1, 50, True), point(1, 100, True), point(1, 200, True), point(2, 200, False)]
    assert next_load(history, STEPS, refine=1) == Load(2, 150)  # 1 x 200 carried over: 100
    history.append(point(2, 150, False))
    assert next_load(history, STEPS, refine=1) is None


def test_a_failure_in_the_publisher_phase_bisects_subscribers_at_that_publisher_count() -> None:
    history = [point(1, 50, True), point(1, 100, True), point(1, 200, True), point(2, 200, True)]
    history.append(point(3, 200, False))
    # 2 x 200 streams passed: at 3 publishers that is 133 subscribers; 200 failed.
    assert bracket(history, 3) == (133, 200)
    assert next_load(history, STEPS, refine=2) == Load(3, 165)


def test_the_search_stops_when_the_bracket_is_closed() -> None:
    history = [point(1, 5, True), point(1, 10, False)]
    assert next_load(history, ladder([5, 10], 1), refine=5, granularity=5) is None


def test_a_failure_at_the_first_point_leaves_nothing_sustained() -> None:
    history = [point(1, 50, False)]
    assert next_load(history, STEPS, refine=1) == Load(1, 25)
    history.append(point(1, 25, False))
    assert next_load(history, STEPS, refine=1) is None  # no subscriber count passed
    assert sustained(history) is None and saturated(history)


def test_limits() -> None:
    limits = Limits(1.0, 50.0)
    assert limits.passes(0.0, 3.0)
    assert limits.passes(1.0, 50.0)
    assert not limits.passes(1.01, 3.0)
    assert not limits.passes(0.0, 50.1)
    assert not limits.passes(0.0, math.nan)  # no latency sample is not a pass


# -- bulk classification ----------------------------------------------------------


def batch_of(packets: list[bytes], size: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    data = np.zeros((len(packets), size), dtype=np.uint8)
    lengths = np.zeros(len(packets), dtype=np.uint32)
    for i, p in enumerate(packets):
        data[i, : len(p)] = np.frombuffer(p, dtype=np.uint8)
        lengths[i] = len(p)
    return data, lengths


def rtp(ssrc: int, seq: int, pt: int = 96, marker: bool = False) -> bytes:
    return build_rtp(
        payload_type=pt, sequence=seq, timestamp=0, ssrc=ssrc, payload=b"x" * 20, marker=marker
    )


STUN = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12)
RTCP_SR = bytes([0x80, 200, 0, 6]) + bytes(24)
DTLS = bytes([22, 0xFE, 0xFD]) + bytes(10)


def test_classify_counts_rtp_and_leaves_stun_dtls_rtcp_to_the_protocol() -> None:
    packets = [rtp(7, 1), STUN, rtp(9, 65535, pt=111, marker=True), RTCP_SR, DTLS, rtp(7, 2)]
    data, lengths = batch_of(packets)
    is_rtp, ssrc, seq = br.classify(data, lengths, len(packets))
    assert is_rtp.tolist() == [True, False, True, False, False, True]
    assert ssrc.tolist() == [7, 9, 7]
    assert seq.tolist() == [1, 65535, 2]
    # Only the first n rows count.
    is_rtp, ssrc, _ = br.classify(data, lengths, 2)
    assert is_rtp.tolist() == [True, False] and ssrc.tolist() == [7]


def test_sequence_gaps_across_batches_and_the_wrap() -> None:
    stream = br.SsrcCount()
    br.count_sequences(stream, np.array([65533, 65534, 0, 3], dtype=np.int64))
    assert (stream.packets, stream.lost, stream.last_seq) == (4, 3, 3)  # 65535, 1, 2 missing
    br.count_sequences(stream, np.array([5, 5, 6], dtype=np.int64))  # 4 missing, 5 duplicated
    assert (stream.packets, stream.lost, stream.last_seq) == (7, 4, 6)
    br.count_sequences(stream, np.array([], dtype=np.int64))
    assert stream.packets == 7


def test_add_batch_keeps_each_ssrc_apart() -> None:
    packets = [rtp(1, 10), rtp(2, 500), rtp(1, 12), STUN, rtp(2, 501)]
    data, lengths = batch_of(packets)
    count = br.SocketCount()
    br.add_batch(count, *br.classify(data, lengths, len(packets)))
    assert (count.packets, count.lost, count.other) == (4, 1, 1)
    assert {k: (v.packets, v.lost) for k, v in count.ssrcs.items()} == {1: (2, 1), 2: (2, 0)}
    assert count.flowing(threshold=1) == 2 and count.flowing(threshold=2) == 0


def test_group_sequences_counts_each_key_as_count_sequences_does() -> None:
    rng = np.random.default_rng(5)
    streams = {
        key: np.cumsum(rng.choice([1, 1, 1, 2, 4], size=40)) + int(rng.integers(0, 65535))
        for key in (3, (1 << 32) | 3, (2 << 32) | 9)
    }
    order = rng.permutation([k for k, v in streams.items() for _ in v])  # interleaved arrivals
    cursor = dict.fromkeys(streams, 0)
    keys, seqs = [], []
    for key in order:
        keys.append(int(key))
        seqs.append(int(streams[int(key)][cursor[int(key)]]) & 0xFFFF)
        cursor[int(key)] += 1
    got = br.group_sequences(np.array(keys, dtype=np.int64), np.array(seqs, dtype=np.int64))
    for key, packets, first, last, lost in zip(*got, strict=True):
        expected = br.SsrcCount()
        values = streams[int(key)] & 0xFFFF
        br.count_sequences(expected, values.astype(np.int64))
        assert (packets, lost) == (expected.packets, expected.lost)
        assert (first, last) == (values[0], values[-1])
    assert len(got[0]) == 3
    nothing = np.zeros(0, np.int64)
    assert all(len(a) == 0 for a in br.group_sequences(nothing, nothing))


HEADER = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
ROW = "  {n}: 0200007F:{port} 00000000:0000 07 00000000:00000000 00:00000000 00000000     0"
TAIL = "        0 {inode} 2 00000000da5657cf {drops}       "
PROC_UDP = "\n".join(
    [HEADER + "  timeout inode ref pointer drops"]
    + [
        (ROW + TAIL).format(n=n, port=port, inode=inode, drops=drops)
        for n, port, inode, drops in ((101, "9C40", 1001, 0), (102, "9C41", 1002, 17),
                                      (103, "0035", 1003, 5))
    ]
)  # fmt: skip


def test_parse_proc_udp_reads_the_drops_of_our_ports_only() -> None:
    assert br.parse_proc_udp(PROC_UDP, {40000, 40001}) == {40000: 0, 40001: 17}
    assert br.parse_proc_udp(PROC_UDP, {1}) == {}
    assert br.parse_proc_udp_inodes(PROC_UDP, {1002, 1003, 9}) == {1002: 17, 1003: 5}


def test_backlog_drops_sum_the_second_column_of_softnet_stat(tmp_path: Path) -> None:
    stat = tmp_path / "softnet_stat"
    stat.write_text("02760d3d 00000979 00000007\n00b8e281 0000000e 00000005\n")
    assert br.backlog_drops(str(stat)) == 0x979 + 0x0E
    assert br.backlog_drops(str(tmp_path / "missing")) == 0


def test_a_process_socket_drops_are_read_from_its_own_sockets() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mine:
        mine.bind(("127.0.0.1", 0))
        assert br.process_socket_drops(os.getpid()) == 0


# -- the binding, on real sockets -------------------------------------------------------


def test_sendmmsg_and_recvmmsg_round_trip_on_loopback() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        receiver.bind(("127.0.0.1", 0))
        sender.bind(("127.0.0.1", 0))
        out = mmsg.Batch(5, 1)
        address = mmsg.sockaddr_in(*receiver.getsockname())
        payloads = [rtp(3, n) for n in range(5)]
        for i, payload in enumerate(payloads):
            out.set_destination(i, address)
            out.set_payload(i, payload)
        assert out.send(sender.fileno(), 5) == 5
        into = mmsg.Batch(3)
        got: list[bytes] = []
        for _ in range(100):
            n = into.receive(receiver.fileno())
            got += [into.message(i)[0] for i in range(n)]
            if len(got) == 5:
                break
        assert got == payloads
        assert into.message(0)[1] == sender.getsockname()
        assert into.receive(receiver.fileno()) == 0  # nothing left: no wait, no error


def test_core_ticks_reads_one_cpus_softirq_and_idle(tmp_path: Path) -> None:
    from saturation_rig import core_ticks

    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  10 0 20 300 4 0 50 0 0 0\n"
        "cpu0 5 0 10 100 2 0 40 0 0 0\n"
        "cpu1 5 0 10 200 2 0 10 0 0 0\n"
    )
    assert core_ticks(0, str(stat)) == (40, 102)
    assert core_ticks(1, str(stat)) == (10, 202)
    assert core_ticks(2, str(stat)) == (0, 0)
    assert core_ticks(0, str(tmp_path / "missing")) == (0, 0)
    assert sum(core_ticks(0)) > 0  # this machine's


def test_the_saturation_summary_gives_the_median_of_each_search_pair_s_ratio() -> None:
    def search(pps: float) -> dict[str, object]:
        return {"saturation_pps": pps, "saturated": True, "at_saturation": None, "points": []}

    summary = saturation_rig.summarize(
        {
            "visitroom": [search(300.0), search(100.0), search(200.0)],
            "janus": [search(100.0), search(100.0), search(50.0)],
        }
    )
    assert summary["saturation_ratio"] == pytest.approx(2.0)  # 200 / 100
    assert summary["saturation_ratio_paired_median"] == pytest.approx(3.0)  # 3, 1, 4
    assert summary["saturation_ratio_paired_min"] == pytest.approx(1.0)
    assert summary["saturation_ratio_paired_max"] == pytest.approx(4.0)


def test_a_window_reports_the_server_s_traffic_and_only_the_drops_that_moved() -> None:
    before = {"rtp_in": 100.0, "rtp_out": 1000.0, "send_errors": 5.0, "srtp_errors": 2.0}
    after = {"rtp_in": 300.0, "rtp_out": 9000.0, "send_errors": 45.0, "srtp_errors": 2.0}
    assert saturation_rig.window_counters(before, after) == {
        "rtp_in": 200.0,
        "rtp_out": 8000.0,
        "send_errors": 40.0,
    }
    assert saturation_rig.window_counters({}, {}) == {}  # Janus: nothing counted


def test_window_loss_counts_gaps_and_stalled_subscribers_not_packets_in_flight() -> None:
    before = [(1000, 0), (1000, 0), (1000, 0)]
    # 500 sent in the window: the first subscriber got all but 2 still in flight
    # (no gap), the second 490 with 10 holes, the third stopped after 100.
    after = [(1498, 0), (1490, 10), (1100, 0)]
    gap_pct, stalled_pct, stalled = saturation_rig.window_loss(before, after, sent=500)
    assert gap_pct == pytest.approx(100 * 10 / (498 + 500 + 100))
    assert stalled == 1
    assert stalled_pct == pytest.approx(100 * 400 / 1500)
    # everyone on time, nothing lost
    assert saturation_rig.window_loss(before, [(1500, 0)] * 3, sent=500) == (0.0, 0.0, 0)
