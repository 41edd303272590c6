"""An attribute whose every assignment is told to its owner.

The compiled fast paths (`sfu.native._ingress`) remember what they read of a
participant, a transport or an ICE agent, and drop the memo when told that one
of those attributes changed.  `Watched(hook)` makes the telling part of the
attribute: every assignment stores the value and then calls `hook(owner)`, so
whoever assigns it cannot leave a memo stale.  Reading costs what a property's
getter costs.  The value lives in the instance under `<name>_now`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class Watched(Generic[T]):
    """A data descriptor: `x = Watched[int](hook, "doc")` in a class body."""

    def __init__(self, hook: Callable[[Any], object], doc: str | None = None) -> None:
        self._hook = hook
        self._slot = ""
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = name + "_now"

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Watched[T]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> Watched[T] | T:
        if obj is None:
            return self
        value: T = getattr(obj, self._slot)
        return value

    def __set__(self, obj: object, value: T) -> None:
        setattr(obj, self._slot, value)
        self._hook(obj)
