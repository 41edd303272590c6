"""sfu.transport.watched: an attribute whose every assignment is told to its owner."""

from __future__ import annotations

import pytest

from sfu.routing.participant import Participant
from sfu.transport.ice import IceConnection
from sfu.transport.udpmux import SharedEndpoint
from sfu.transport.watched import Watched
from sfu.transport.webrtc import WebRtcTransport


class Owner:
    def __init__(self) -> None:
        self.told: list[object] = []
        self.size = 3

    def _changed(self) -> None:
        self.told.append(self.size)

    size = Watched[int](_changed, "How big.")


def test_each_assignment_stores_the_value_then_tells_the_owner() -> None:
    owner = Owner()
    assert owner.size == 3
    owner.size = 5
    owner.size = 5  # the same value again is still an assignment
    assert owner.size == 5
    assert owner.told == [3, 5, 5]  # the hook sees the new value


def test_owners_do_not_share_values() -> None:
    a, b = Owner(), Owner()
    a.size = 9
    assert (a.size, b.size) == (9, 3)
    assert b.told == [3]


def test_an_attribute_never_assigned_reads_as_an_error_not_as_none() -> None:
    class Bare:
        x = Watched[int](lambda _owner: None)

    with pytest.raises(AttributeError):
        _ = Bare().x


def test_the_class_sees_the_descriptor_and_its_doc() -> None:
    assert isinstance(Owner.size, Watched)
    assert Owner.size.__doc__ == "How big."


@pytest.mark.parametrize(
    ("cls", "names"),
    [
        (Participant, ["by_ssrc", "by_rtx_ssrc", "twcc_id", "receive_log", "opened_at"]),
        (WebRtcTransport, ["_rx", "_rx_direct", "_sink", "inbound_ssrcs", "counters"]),
        (IceConnection, ["selected", "on_srtp"]),
        (SharedEndpoint, ["ice"]),
    ],
)
def test_what_the_compiled_paths_remember_is_watched(cls: type, names: list[str]) -> None:
    # sfu.native._ingress remembers these; a plain attribute would leave its memo stale.
    for name in names:
        assert isinstance(cls.__dict__[name], Watched), (cls.__name__, name)
