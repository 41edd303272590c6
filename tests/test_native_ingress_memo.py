"""The compiled ingress's two memos, and the rules that drop them.

`sfu.native._ingress.Routes` remembers, per source address, the handler the
selected pair gave (`dispatch` then skips the endpoint, agent and selection
reads); it is dropped when `by_addr` changes (its dict version) or when an
agent's `selected` or `on_srtp`, or an endpoint's `ice`, is set (their setters
call `routes_moved`).  `Inlet` remembers the transport's `_rx`, `_rx_direct`,
`_sink`, `inbound_ssrcs` and `counters`; the transport's setters of those call
`Inlet.forget`.  Each test fills a memo with real packets, changes one of
those, and checks that the next packets go where Python (VISITROOM_NATIVE=0)
sends them: a re-routed or re-keyed participant never gets another's packets.
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pylibsrtp import Policy, Session

from sfu import native
from sfu.packet.counters import Counters
from sfu.packet.twcc import ReceiveLog
from sfu.routing.participant import Participant
from sfu.routing.producer import Producer
from sfu.transport import rxtime, srtp
from sfu.transport.udpmux import SharedEndpoint
from sfu.transport.webrtc import WebRtcTransport
from tests.test_native_ingress import (
    AUDIO,
    GCM,
    SELECTED,
    VIDEO,
    Publisher,
    Side,
    close,
    feed,
    key_of,
    new_participant,
    new_sides,
    plans,
    rtx,
    transport_on,
)

OTHER = ("127.0.0.1", 40001)


@pytest.fixture
async def sides(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Side, Side]]:
    assert native.enabled(), "VISITROOM_NATIVE=0 turns the compiled twin off"
    pair = await new_sides(monkeypatch)
    yield pair
    await close(pair)


def media(publisher: Publisher, n: int, addr: tuple[str, int] = SELECTED) -> list[Any]:
    return [
        (publisher.protect(publisher.plain((AUDIO, VIDEO)[k % 2])), addr, 1.0) for k in range(n)
    ]


def endpoint_of(transport: WebRtcTransport) -> SharedEndpoint:
    endpoint = transport._ice._protocols[0]
    assert isinstance(endpoint, SharedEndpoint)
    return endpoint


async def test_both_memos_are_kept_while_nothing_changes(sides: Any) -> None:
    compiled = sides[1]
    publisher = Publisher(key_of(compiled))
    for _ in range(3):
        feed(sides, media(publisher, 10))
    routes = compiled.mux._routes
    assert routes.misses == 1 and routes.hits == 29 and routes.size() == 1
    assert compiled.transport.inlet.reads == 1
    assert compiled.transport.inlet.participant_reads == 1
    assert compiled.transport.inlet.delivered == 30


async def test_a_selection_that_moves_drops_the_routes(sides: Any) -> None:
    """The selection alone changes (by_addr already names both addresses)."""
    publisher = Publisher(key_of(sides[1]))
    for side in sides:
        side.mux.claim(endpoint_of(side.transport), OTHER, selected=True)
    feed(sides, media(publisher, 4))
    for side in sides:
        side.transport._ice.selected = (endpoint_of(side.transport), OTHER)
    # SELECTED is no longer the selected address: foreign media, as Python counts it.
    feed(sides, media(publisher, 4))
    compiled = sides[1]
    assert compiled.transport.counters.foreign_source == 4
    assert compiled.transport.inlet.delivered == 4
    feed(sides, media(publisher, 4, OTHER))
    assert compiled.transport.inlet.delivered == 8


async def test_a_new_on_srtp_drops_the_routes(sides: Any) -> None:
    publisher = Publisher(key_of(sides[1]))
    feed(sides, media(publisher, 4))
    compiled = sides[1]
    got: list[bytes] = []
    compiled.transport._ice.on_srtp = got.append
    batch = media(publisher, 3)
    compiled.mux.dispatch(batch)
    assert got == [data for data, _, _ in batch]
    assert compiled.transport.inlet.delivered == 4


async def test_an_endpoint_given_another_agent_drops_the_routes(sides: Any) -> None:
    publisher = Publisher(key_of(sides[1]))
    feed(sides, media(publisher, 4))
    compiled = sides[1]
    endpoint = endpoint_of(compiled.transport)
    got: list[bytes] = []

    class Agent:  # what dispatch reads of an agent: its selection and its handler
        selected = (endpoint, SELECTED)
        on_srtp = got.append

    endpoint.ice = Agent()
    batch = media(publisher, 3)
    compiled.mux.dispatch(batch)
    endpoint.ice = compiled.transport._ice  # (for the teardown)
    assert got == [data for data, _, _ in batch]


class Second:
    """A second publisher on a side's mux, keyed with its own key, selecting OTHER."""

    def __init__(self, side: Side) -> None:
        self.key = os.urandom(44)
        self.participant = new_participant()
        self.participant.apply(plans())
        self.transport = transport_on(side.mux, self.participant)
        self.participant.transport = self.transport
        self.transport.inbound_ssrcs.update({AUDIO, VIDEO, VIDEO + 1})
        Side._key(self, self.key)  # type: ignore[arg-type]

    async def select(self, side: Side, addr: tuple[str, int]) -> SharedEndpoint:
        await self.transport._ice.gather_candidates()
        endpoint = endpoint_of(self.transport)
        side.mux.claim(endpoint, addr, selected=True)
        self.transport._ice.selected = (endpoint, addr)
        return endpoint


async def test_an_address_taken_by_another_participant_reaches_only_it(sides: Any) -> None:
    """by_addr alone changes (no setter runs): the dict's version drops the routes."""
    compiled = sides[1]
    first = compiled.transport
    second = Second(compiled)
    await second.select(compiled, OTHER)
    theirs, ours = Publisher(second.key), Publisher(key_of(compiled))
    compiled.mux.dispatch(media(ours, 4))  # SELECTED: first's, kept
    assert first.counters.rtp_in == 4
    # The second agent selects SELECTED too (the routes are dropped and refilled with
    # the first's handler, by_addr still names it) ...
    endpoint = endpoint_of(second.transport)
    second.transport._ice.selected = (endpoint, SELECTED)
    compiled.mux.dispatch(media(ours, 2))
    assert first.counters.rtp_in == 6
    # ... then by_addr moves SELECTED to it, and nothing else.
    del compiled.mux.by_addr[SELECTED]
    compiled.mux.by_addr[SELECTED] = endpoint
    compiled.mux.dispatch(media(theirs, 5))
    assert second.transport.counters.rtp_in == 5
    assert first.counters.rtp_in == 6 and first.counters.srtp_errors == 0
    second.transport.close()
    await second.transport.wait_closed()


def rekey(transport: WebRtcTransport, key: bytes) -> None:
    policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=GCM)
    transport._rx = Session(policy)
    lib = srtp.load()
    assert lib is not None
    transport._rx_direct = lib.inbound(key, GCM)


async def test_a_rekeyed_transport_takes_the_new_keys_at_once(sides: Any) -> None:
    feed(sides, media(Publisher(key_of(sides[1])), 4))
    key = os.urandom(44)
    for side in sides:
        rekey(side.transport, key)
    feed(sides, media(Publisher(key), 4))
    compiled = sides[1].transport
    assert compiled.counters.rtp_in == 8 and compiled.counters.srtp_errors == 0
    assert compiled.inlet.reads == 2  # once at first, once after the two setters


@pytest.mark.parametrize("change", ["sink", "ssrcs", "counters", "rx", "rx_direct"])
async def test_each_attribute_the_inlet_remembers_is_read_again_once_set(
    sides: Any, change: str
) -> None:
    publisher = Publisher(key_of(sides[1]))
    feed(sides, media(publisher, 4))
    sinks: list[Participant] = []
    for side in sides:
        transport = side.transport
        if change == "sink":
            sink = new_participant()
            sink.apply(plans())
            sinks.append(sink)
            transport._sink = sink
        elif change == "ssrcs":
            transport.inbound_ssrcs = set()
        elif change == "counters":
            transport.counters = Counters()
        elif change == "rx":
            transport._rx = None
        else:
            transport._rx_direct = None  # pylibsrtp's session unprotects instead
    feed(sides, media(publisher, 4))
    compiled = sides[1].transport
    if change == "sink":
        assert sinks[1].by_ssrc[VIDEO].stats.received == 2
        assert sides[1].participant.by_ssrc[VIDEO].stats.received == 2  # not one more
    elif change == "ssrcs":
        assert compiled.inbound_ssrcs == {AUDIO, VIDEO}  # admitted again, by Python
    elif change == "counters":
        assert compiled.counters.rtp_in == 4
    elif change == "rx":
        assert compiled.counters.not_keyed == 4
    else:
        assert compiled.inlet.delivered == 4 and compiled.counters.rtp_in == 8


def test_the_slots_read_in_place_are_checked_when_configured() -> None:
    """rxtime.Arrival's `at` and Producer's `_receive` and `twcc_at` are read and
    written in their slots; a class without them as __slots__ fields is refused."""
    module = native.load("_ingress")
    assert module is not None

    class Plain:
        at = 0.0
        _receive = None
        twcc_at = -1

    for role in ("arrival", "producer"):
        with pytest.raises(TypeError, match="__slots__"):
            module.configure(role, Plain)
    module.configure("arrival", rxtime.Arrival)  # (as it was)
    module.configure("producer", Producer)


@pytest.mark.parametrize(
    "change", ["by_ssrc", "by_rtx_ssrc", "twcc_id", "receive_log", "opened_at", "in place"]
)
async def test_each_attribute_of_the_participant_the_inlet_remembers_is_read_again(
    sides: Any, change: str
) -> None:
    """Python (the other side) reads them per packet: both must do the same after it."""
    publisher = Publisher(key_of(sides[1]))
    feed(sides, media(publisher, 4))
    for side in sides:
        participant = side.participant
        if change == "by_ssrc":
            participant.by_ssrc = {VIDEO: participant.by_ssrc[VIDEO]}  # audio unknown now
        elif change == "by_rtx_ssrc":
            participant.by_rtx_ssrc = {}
        elif change == "twcc_id":
            participant.twcc_id = 0  # no arrivals recorded any more
        elif change == "receive_log":
            participant.receive_log = ReceiveLog()
        elif change == "opened_at":
            participant.opened_at = 500.0
        else:  # the tables change in place: looked up per packet, no stamp needed
            del participant.by_ssrc[AUDIO]
    batch = media(publisher, 4)
    batch.append((publisher.protect(rtx(publisher.plain(VIDEO), 9)), SELECTED, 1.0))
    feed(sides, batch)
    inlet = sides[1].transport.inlet
    assert inlet.participant_reads == (1 if change == "in place" else 2)


async def test_an_endpoint_that_leaves_the_mux_empties_the_routes(sides: Any) -> None:
    """The memo would keep the departed's handler (its transport) until the next datagram."""
    compiled = sides[1]
    feed(sides, media(Publisher(key_of(compiled)), 4))
    routes = compiled.mux._routes
    assert routes.size() == 1
    endpoint_of(compiled.transport).detach()
    assert routes.size() == 0


async def test_a_wound_down_transport_and_its_inlet_hold_no_cycle(sides: Any) -> None:
    compiled = sides[1]
    feed(sides, media(Publisher(key_of(compiled)), 4))
    inlet = compiled.transport.inlet
    assert compiled.transport in gc.get_referents(inlet)
    compiled.transport.close()
    await compiled.transport.wait_closed()
    assert gc.get_referents(inlet) == []
    inlet(media(Publisher(key_of(compiled)), 1)[0][0])  # what still comes is dropped
