"""What the compiled fan-out keeps as C numbers follows every change Python makes.

The plain path keeps a consumer's numeric fields and its payload type as C
numbers (sfu.native._fanout.Memo), each checked against the consumer's field
by identity (and the payload-type dict by its version tag), and reads the
transport's `twcc_id` and `probe_id` from its compiled route (`Direct`), which
the transport's properties keep up to date.  Here Python changes all of them
between packets in every way it can (new values, equal values in new objects,
the payload-type dict changed in place, emptied, replaced; a probe cluster
starting and ending; transport-cc turned off and on) and the compiled world
must keep doing exactly what the Python world does: the same bytes on the wire
and the same state, send histories included (tests/test_native_fanout_path.py's
two worlds).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sfu import native
from sfu.routing.consumer import Consumer
from sfu.transport.webrtc import WebRtcTransport
from tests.test_native_fanout_path import STATES, World, vp8_packet

PLAIN = [STATES.index("plain"), STATES.index("plain-twcc")]
FIELDS = ("_seq_offset", "_ts_offset", "_first_in", "_seq", "ssrc", "packets_sent", "octets_sent")


def fresh_int(value: int) -> int:
    """`value` as an int object of its own (equal, not identical, above the small-int cache)."""
    return int(str(value))


def change(consumer: Consumer, op: tuple[Any, ...]) -> None:
    what = op[0]
    if what == "field":
        _, name, value = op
        setattr(consumer, name, fresh_int(value))
    elif what == "same":  # the same value in another object
        name = op[1]
        setattr(consumer, name, fresh_int(getattr(consumer, name)))
    elif what == "pt-in-place":
        consumer.pt_by_codec["vp8"] = fresh_int(op[1])
    elif what == "pt-removed":
        consumer.pt_by_codec.pop("vp8", None)
    elif what == "pt-other-key":  # a change of the dict that leaves vp8 as it is
        consumer.pt_by_codec[f"x{op[1]}"] = op[1]
    elif what == "pt-new-dict":
        consumer.pt_by_codec = {"vp8": fresh_int(op[1])}
    elif what == "probe":  # the clock starts or ends a probe cluster on the transport
        transport = consumer.output
        assert isinstance(transport, WebRtcTransport)
        transport.probe_id = op[1]
    elif what == "twcc":  # a renegotiation turns transport-cc off or on
        transport = consumer.output
        assert isinstance(transport, WebRtcTransport)
        transport.set_transport_cc(op[1])


changes = st.one_of(
    st.tuples(
        st.just("field"), st.sampled_from(FIELDS[:4]), st.integers(0, 0xFFFF) | st.just(70000)
    ),
    st.tuples(st.just("field"), st.just("ssrc"), st.integers(0, 0xFFFFFFFF)),
    st.tuples(st.just("field"), st.sampled_from(FIELDS[5:]), st.integers(0, 2**40) | st.just(300)),
    st.tuples(st.just("same"), st.sampled_from(FIELDS)),
    st.tuples(st.just("pt-in-place"), st.integers(96, 127)),
    st.tuples(st.just("pt-removed")),
    st.tuples(st.just("pt-other-key"), st.integers(0, 5)),
    st.tuples(st.just("pt-new-dict"), st.integers(96, 127)),
    st.tuples(st.just("probe"), st.integers(-1, 3)),
    st.tuples(st.just("twcc"), st.sampled_from([None, 3])),
)
# Each step: a packet (sequence step, kind, size) and maybe a change to one plain consumer.
steps = st.tuples(
    st.integers(-2, 3),
    st.sampled_from([1, 2]),
    st.integers(0, 400),
    st.none() | st.tuples(st.sampled_from(PLAIN), changes),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, min_size=1, max_size=30), st.booleans())
@example([(1, 2, 100, (PLAIN[1], ("probe", 2))), (1, 2, 100, None)], True)
@example([(1, 2, 100, (PLAIN[1], ("twcc", None))), (1, 2, 100, (PLAIN[1], ("twcc", 3)))], True)
@example([(1, 2, 100, (PLAIN[0], ("pt-in-place", 100))), (1, 2, 100, None)], False)
def test_the_compiled_path_sees_every_change_python_makes_to_a_consumer(
    script: list[tuple[int, int, int, tuple[int, tuple[Any, ...]] | None]], twcc_ext: bool
) -> None:
    assert native.load("_fanout") is not None, "run `python -m sfu.native.build` first"
    worlds = [World(False, twcc_ext), World(True, twcc_ext)]
    try:
        seq = 100
        for world in worlds:  # a key frame: every slot begins its segment
            world.feed(vp8_packet(seq, 0, 0, 100, twcc_ext, 0), 100.0)
        for n, (dseq, kind, size, edit) in enumerate(script, start=1):
            if edit is not None:
                index, op = edit
                for world in worlds:
                    change(world.consumers[index], op)
            seq += dseq
            data = vp8_packet(seq, 3000 * n, kind, size, twcc_ext, n)
            for world in worlds:
                world.feed(data, 100.0 + n / 30)
            assert worlds[0].state() == worlds[1].state(), n
            assert [c.pt_by_codec for c in worlds[0].consumers] == [
                c.pt_by_codec for c in worlds[1].consumers
            ]
        python, compiled = (w.wire() for w in worlds)
        assert python == compiled
    finally:
        for world in worlds:
            world.close()


def test_a_plain_consumer_keeps_a_memo_and_python_leaves_it_alone() -> None:
    compiled = native.load("_fanout")
    assert compiled is not None
    world = World(True, True)
    try:
        for n in range(3):
            world.feed(vp8_packet(1 + n, 0, 0 if n == 0 else 2, 100, True, n), 1.0 + n / 30)
        plain = world.consumers[PLAIN[0]]
        memo = plain._memo
        assert isinstance(memo, compiled.Memo)
        assert memo.cells == len(FIELDS)  # each field it reads, held
        thumbnail = world.consumers[STATES.index("thumbnail")]
        assert thumbnail._memo is None, "a consumer served in Python gets none"
        before = plain.packets_sent
        plain.packets_sent = fresh_int(before + 1000)
        world.feed(vp8_packet(4, 0, 2, 100, True, 4), 1.2)
        assert plain.packets_sent == before + 1001
    finally:
        world.close()
