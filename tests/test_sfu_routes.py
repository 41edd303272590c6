"""The pool's route book: which stream goes to which worker, who leads each group."""

from __future__ import annotations

from collections.abc import Sequence

from sfu.relay.routes import RelayOut, RemoteAdd, RemoteRemove, Role, RouteBook

CAM = {"kind": "video", "source": "camera"}
MIC = {"kind": "audio", "source": "audio"}


def kinds(commands: Sequence[object]) -> list[str]:
    return [type(c).__name__ for c in commands]


def test_a_group_on_one_worker_relays_nothing_and_leads_itself() -> None:
    book = RouteBook()
    assert book.place("a", "r", "main", 0) == [Role(0, "r", "main", True, False, 1)]
    assert book.set_streams("a", 0, {1: CAM}) == []
    assert book.place("b", "r", "main", 0) == [Role(0, "r", "main", True, False, 2)]
    assert book.leader_of(("r", "main")) == 0 and book.serving(("r", "main")) == {0}


def test_a_second_worker_gets_every_stream_once_and_announces_before_packets() -> None:
    book = RouteBook()
    book.place("a", "r", "main", 0)
    book.set_streams("a", 0, {1: CAM, 2: MIC})
    commands = book.place("b", "r", "main", 1)
    assert commands == [
        Role(0, "r", "main", True, True, 2),
        Role(1, "r", "main", False, True, 2),
        RemoteAdd(1, 0, 1, "r", "main", "a", CAM),
        RemoteAdd(1, 0, 2, "r", "main", "a", MIC),
        RelayOut(0, 1, (1,)),
        RelayOut(0, 2, (1,)),
    ]
    assert book.set_streams("b", 1, {1: CAM}) == [
        RemoteAdd(0, 1, 1, "r", "main", "b", CAM),
        RelayOut(1, 1, (0,)),
    ]
    assert book.place("c", "r", "main", 1) == [
        Role(0, "r", "main", True, True, 3),
        Role(1, "r", "main", False, True, 3),
    ], "a third member on a serving worker adds no relay"


def test_unpublishing_and_leaving_stop_the_relay_and_remove_the_copies() -> None:
    book = RouteBook()
    book.place("a", "r", "main", 0)
    book.set_streams("a", 0, {1: CAM, 2: MIC})
    book.place("b", "r", "main", 1)
    assert book.set_streams("a", 0, {2: MIC}) == [RemoteRemove(1, 0, 1), RelayOut(0, 1, ())]
    assert book.remove("b") == [RemoteRemove(1, 0, 2), Role(0, "r", "main", True, False, 1),
                                RelayOut(0, 2, ())]  # fmt: skip
    assert book.remove("b") == []


def test_a_breakout_move_takes_the_streams_along_to_the_new_groups_workers() -> None:
    book = RouteBook()
    book.place("a", "r", "main", 0)
    book.place("b", "r", "main", 1)
    book.set_streams("a", 0, {1: CAM})
    book.place("c", "r", "b1", 1)
    commands = book.place("a", "r", "b1", 0)
    assert RemoteRemove(1, 0, 1) in commands
    assert RemoteAdd(1, 0, 1, "r", "b1", "a", CAM) in commands
    assert kinds(commands).index("RemoteRemove") < kinds(commands).index("RemoteAdd")
    assert book.serving(("r", "main")) == {1} and book.serving(("r", "b1")) == {0, 1}
    assert RelayOut(0, 1, (1,)) not in commands, "same destination worker, only the group changed"


def test_the_leader_stays_while_it_serves_and_is_re_elected_when_it_stops() -> None:
    book = RouteBook()
    book.place("a", "r", "main", 1)
    book.place("b", "r", "main", 0)
    assert book.leader_of(("r", "main")) == 1, "the first worker keeps leading"
    commands = book.place("a", "r", "main", 2)  # a's worker was lost: a is on worker 2 now
    assert book.leader_of(("r", "main")) == 0
    assert Role(0, "r", "main", True, True, 2) in commands
    assert Role(2, "r", "main", False, True, 2) in commands


def test_a_member_on_a_new_worker_starts_with_no_streams() -> None:
    book = RouteBook()
    book.place("a", "r", "main", 0)
    book.place("b", "r", "main", 1)
    book.set_streams("a", 0, {1: CAM})
    commands = book.place("a", "r", "main", 1)
    assert commands == [RemoteRemove(1, 0, 1), Role(1, "r", "main", True, False, 2),
                        RelayOut(0, 1, ())]  # fmt: skip
    assert book.set_streams("a", 0, {5: CAM}) == [], "a report from its old worker is stale"


def test_an_unplaced_member_is_counted_but_serves_nothing() -> None:
    book = RouteBook()
    book.place("a", "r", "main", 0)
    assert book.place("b", "r", "main", None) == [Role(0, "r", "main", True, False, 2)]
    assert book.set_streams("b", 0, {1: CAM}) == []
    assert book.remove("a") == []
    assert book.plans == {} and book.leader_of(("r", "main")) is None
