"""A worker's demand for a relayed layer follows what its subscribers want, not only what they
forward now: a layer the publisher paused can be asked back for a subscriber that wants it."""

from __future__ import annotations

import time

from sfu.packet.counters import Counters
from sfu.relay.endpoint import RelayEndpoint
from sfu.relay.remote import RemotePublisher, RemoteStream, describe
from sfu.settings import MediaSettings
from tests.test_sfu_simulcast import Layer, consumer, track


def test_a_paused_layer_a_subscriber_wants_is_demanded_again() -> None:
    _, layers = track()
    endpoint = RelayEndpoint(2)
    publisher = RemotePublisher("alice")
    remotes = []
    for stream, layer in enumerate(layers, start=10):
        desc = describe(layer.producer)
        remote = RemoteStream(endpoint, 1, stream, "alice", desc, MediaSettings(), Counters())
        publisher.add(remote)
        remotes.append(remote)
    [remote_track] = publisher.producers.values()
    now = time.monotonic()
    fakes = [Layer(r.producer, layer.size) for r, layer in zip(remotes, layers, strict=True)]
    fakes[2].send(now - 5.0, keyframe=True)  # f: its size known, then paused by its publisher
    for fake in fakes[:2]:
        fake.send(now, keyframe=True)
    _, h, f = remote_track.layers
    assert f.frame_size is not None and not f.active(now) and h.active(now)

    c, _ = consumer()
    c.switch(remote_track)
    c.set_layers(2, 2, now)
    assert c.target is h  # f is paused: the best active layer meanwhile
    assert not f.consumers
    demand = {p.rid: r.demand(now) for r in remotes for p in [r.producer]}
    assert demand == {"q": True, "h": True, "f": True}  # f is wanted: ask the origin for it
    c.set_layers(1, 2, now)
    assert remotes[2].demand(now + 2.0) is False  # nobody wants f any more
    endpoint.close()
