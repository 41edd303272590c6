"""Where each published stream must be relayed, and who leads each group: the pool's book.

Pure and synchronous.  The book knows, for every participant with media, its
(room, group) and its worker, and the streams it publishes there.  From
that it plans each group:

* the workers *serving* the group: those with at least one of its members;
* every stream of a member goes once to every other serving worker (the
  origin fans out to its own members itself);
* the group's *leader*, the worker that decides the speaker orders: the
  current leader while it still serves the group, else the serving worker
  with the lowest index (re-election when a leader's worker is lost or its
  last member leaves).

Every change (`place`, `remove`, `set_streams`) replans the groups it
touches and returns the commands that turn the old plan into the new one,
in an order that is safe to send as is: removals first, then roles, then
additions, then the origins' relay targets, so a receiving worker always
knows a stream before its packets arrive.  The pool sends them; nothing
here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

GroupKey = tuple[str, str]  # (room id, group)
Description = dict[str, Any]


@dataclass(frozen=True)
class RelayOut:
    """Origin `worker` sends its `stream` to workers `to` (empty: to nobody)."""

    worker: int
    stream: int
    to: tuple[int, ...]


@dataclass(frozen=True)
class RemoteAdd:
    """`worker` receives `origin`'s `stream` of `participant` in (room, group)."""

    worker: int
    origin: int
    stream: int
    room: str
    group: str
    participant: str
    description: Description


@dataclass(frozen=True)
class RemoteRemove:
    worker: int
    origin: int
    stream: int


@dataclass(frozen=True)
class Role:
    """`worker` serves (room, group): whether it leads, whether others serve it too."""

    worker: int
    room: str
    group: str
    leader: bool
    shared: bool
    size: int


Command = RelayOut | RemoteAdd | RemoteRemove | Role


@dataclass(frozen=True)
class Member:
    room: str
    group: str
    worker: int | None


@dataclass(frozen=True)
class GroupPlan:
    serving: frozenset[int] = frozenset()
    leader: int | None = None
    size: int = 0
    outs: Mapping[tuple[int, int], frozenset[int]] = field(default_factory=dict)
    remotes: Mapping[tuple[int, int, int], tuple[str, Description]] = field(default_factory=dict)


EMPTY = GroupPlan()


class RouteBook:
    """Members, their streams and the plan of each group (see module doc)."""

    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        self.streams: dict[str, dict[int, Description]] = {}
        self.plans: dict[GroupKey, GroupPlan] = {}
        self._groups: dict[GroupKey, set[str]] = {}

    def place(self, pid: str, room: str, group: str, worker: int | None) -> list[Command]:
        """`pid` is (now) in (room, group) on `worker` (None: on no worker yet)."""
        old = self.members.get(pid)
        if old is not None and old.worker != worker:
            self.streams.pop(pid, None)  # a new worker knows none of its streams
        touched = {(room, group)}
        if old is not None:
            touched.add((old.room, old.group))
            self._groups[(old.room, old.group)].discard(pid)
        self.members[pid] = Member(room, group, worker)
        self._groups.setdefault((room, group), set()).add(pid)
        return self._replan(touched)

    def remove(self, pid: str) -> list[Command]:
        old = self.members.pop(pid, None)
        self.streams.pop(pid, None)
        if old is None:
            return []
        self._groups[(old.room, old.group)].discard(pid)
        return self._replan({(old.room, old.group)})

    def set_streams(
        self, pid: str, worker: int, streams: Mapping[int, Description]
    ) -> list[Command]:
        """What `pid` publishes on `worker`; ignored unless that is where it is."""
        member = self.members.get(pid)
        if member is None or member.worker != worker:
            return []
        self.streams[pid] = dict(streams)
        return self._replan({(member.room, member.group)})

    def leader_of(self, key: GroupKey) -> int | None:
        return self.plans.get(key, EMPTY).leader

    def serving(self, key: GroupKey) -> frozenset[int]:
        return self.plans.get(key, EMPTY).serving

    def groups_of(self, worker: int) -> list[GroupKey]:
        return [key for key, plan in self.plans.items() if worker in plan.serving]

    def _replan(self, keys: set[GroupKey]) -> list[Command]:
        removals: list[Command] = []
        roles: list[Command] = []
        additions: list[Command] = []
        # A stream belongs to one group at a time, but a move touches two:
        # its relay targets are compared across both, once.
        outs_before: dict[tuple[int, int], frozenset[int]] = {}
        outs_after: dict[tuple[int, int], frozenset[int]] = {}
        for key in sorted(keys):
            old = self.plans.get(key, EMPTY)
            new = self._plan(key, old)
            if new.serving:
                self.plans[key] = new
            else:
                self.plans.pop(key, None)
            if not self._groups.get(key):
                self._groups.pop(key, None)
            removals += _removals(old, new)
            roles += _roles(key, old, new)
            additions += _additions(key, old, new)
            outs_before.update(old.outs)
            outs_after.update(new.outs)
        return removals + roles + additions + _outs(outs_before, outs_after)

    def _plan(self, key: GroupKey, old: GroupPlan) -> GroupPlan:
        pids = sorted(self._groups.get(key, ()))
        placed = [(pid, self.members[pid].worker) for pid in pids]
        serving = frozenset(w for _, w in placed if w is not None)
        leader = old.leader if old.leader in serving else min(serving, default=None)
        outs: dict[tuple[int, int], frozenset[int]] = {}
        remotes: dict[tuple[int, int, int], tuple[str, Description]] = {}
        for pid, worker in placed:
            if worker is None:
                continue
            others = serving - {worker}
            for stream, description in self.streams.get(pid, {}).items():
                if others:
                    outs[(worker, stream)] = others
                for dest in others:
                    remotes[(dest, worker, stream)] = (pid, description)
        return GroupPlan(serving, leader, len(pids), outs, remotes)


def _removals(old: GroupPlan, new: GroupPlan) -> list[Command]:
    return [
        RemoteRemove(dest, origin, stream)
        for (dest, origin, stream) in sorted(old.remotes)
        if (dest, origin, stream) not in new.remotes
    ]


def _roles(key: GroupKey, old: GroupPlan, new: GroupPlan) -> list[Command]:
    shared = len(new.serving) > 1
    roles: list[Command] = []
    for worker in sorted(new.serving):
        leader = worker == new.leader
        unchanged = (
            worker in old.serving
            and (worker == old.leader) == leader
            and (len(old.serving) > 1) == shared
            and old.size == new.size
        )
        if not unchanged:
            roles.append(Role(worker, key[0], key[1], leader, shared, new.size))
    return roles


def _additions(key: GroupKey, old: GroupPlan, new: GroupPlan) -> list[Command]:
    return [
        RemoteAdd(dest, origin, stream, key[0], key[1], pid, description)
        for (dest, origin, stream), (pid, description) in sorted(
            new.remotes.items(), key=lambda item: item[0]
        )
        if old.remotes.get((dest, origin, stream)) != (pid, description)
    ]


def _outs(
    old: Mapping[tuple[int, int], frozenset[int]], new: Mapping[tuple[int, int], frozenset[int]]
) -> list[Command]:
    changed: list[Command] = []
    for origin, stream in sorted(set(old) | set(new)):
        before = old.get((origin, stream), frozenset())
        after = new.get((origin, stream), frozenset())
        if before != after:
            changed.append(RelayOut(origin, stream, tuple(sorted(after))))
    return changed
