"""What a verified token may do: its scopes, and which practice's rooms it may use.

A token's `scope` claim is a space-separated list (as in OAuth 2):

- `rooms:admin`   the rooms REST API: list, schedule, read, end, audit;
- `rooms:host`    join a room as host (and, with `rooms:admin`, mint host tokens);
- `rooms:guest`   join a room with a token as a guest (knock);
- `portal:staff`  the patient-portal staff API for the token's own `practice`;
- `portal:support` the patient-portal API for every practice.

A token without a `scope` claim (a plain token of docs/protocol.md, minted by a front end)
gets the scopes its other claims always meant: an admin token with a
`practice` is a portal front-desk token (`portal:staff` only); otherwise
`admin` means `rooms:admin` and `role` means `rooms:host` or `rooms:guest`.
The old `scope: support` means `portal:support` only. So a portal token never
reaches rooms and a rooms token never reaches patients.

A token with a `practice` claim is confined to that practice's rooms: a
scheduled room of its practice, or an unscheduled (ad-hoc) room named in its
`room` claim. A token without one is the operator's and may use every room.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from common.tokens import Claims

ROOMS_ADMIN = "rooms:admin"
ROOMS_HOST = "rooms:host"
ROOMS_GUEST = "rooms:guest"
PORTAL_STAFF = "portal:staff"
PORTAL_SUPPORT = "portal:support"
KNOWN = frozenset({ROOMS_ADMIN, ROOMS_HOST, ROOMS_GUEST, PORTAL_STAFF, PORTAL_SUPPORT})
# Scopes for the REST APIs: a token carrying one must also be an admin token.
ADMIN_SCOPES = frozenset({ROOMS_ADMIN, PORTAL_STAFF, PORTAL_SUPPORT})
ALIASES = {"support": PORTAL_SUPPORT}
MAX_PRACTICE = 64


class ScopeError(ValueError):
    """A scope claim (or a practice claim) that cannot be understood: the token is refused."""


def parse(text: str) -> frozenset[str]:
    """`"rooms:admin rooms:host"` -> the scopes; unknown names are an error, not ignored."""
    names = [ALIASES.get(name, name) for name in text.split()]
    if not names:
        raise ScopeError("the scope claim is empty")
    unknown = sorted(set(names) - KNOWN)
    if unknown:
        raise ScopeError(f"unknown scope {unknown[0]!r}; known: {', '.join(sorted(KNOWN))}")
    return frozenset(names)


def render(scopes: Iterable[str]) -> str:
    """The claim value for a set of scopes, in a stable order."""
    return " ".join(sorted(scopes))


def legacy(claims: Claims) -> frozenset[str]:
    """The scopes of a token without a `scope` claim (see the module docstring)."""
    if claims.admin and claims.practice is not None:
        return frozenset({PORTAL_STAFF})
    found = {ROOMS_HOST if claims.is_host else ROOMS_GUEST}
    if claims.admin:
        found.add(ROOMS_ADMIN)
    return frozenset(found)


def scopes_of(claims: Claims) -> frozenset[str]:
    """The scopes a verified token carries (raises ScopeError for a claim it cannot read)."""
    practice = claims.practice
    if practice is not None and not 1 <= len(practice) <= MAX_PRACTICE:
        raise ScopeError("the `practice` claim must be 1-64 characters")
    if claims.scope is None:
        return legacy(claims)
    return parse(claims.scope)


@dataclass(frozen=True)
class Grant:
    """A verified token and its scopes: the one thing routes ask "may this caller ...?"."""

    claims: Claims
    scopes: frozenset[str]

    @classmethod
    def of(cls, claims: Claims) -> Grant:
        return cls(claims, scopes_of(claims))

    @property
    def identity(self) -> str:
        return self.claims.identity

    @property
    def practice(self) -> str | None:
        return self.claims.practice

    def has(self, *needed: str) -> bool:
        return all(scope in self.scopes for scope in needed)

    def missing(self, *needed: str) -> str | None:
        """The first needed scope this token lacks, or None."""
        return next((scope for scope in needed if scope not in self.scopes), None)

    def may_use_room(self, room_id: str, scheduled: bool, room_practice: str | None) -> bool:
        """Whether the room is this token's: its room claim, then its practice."""
        if not self.claims.valid_for(room_id):
            return False
        if self.practice is None:
            return True
        if scheduled:
            return room_practice == self.practice
        return self.claims.room == room_id

    def join_role_scope(self) -> str | None:
        """Why this token may not join as its role (the missing scope), or None."""
        if self.claims.is_host:
            return self.missing(ROOMS_HOST)
        if self.has(ROOMS_GUEST) or self.has(ROOMS_HOST):
            return None
        return ROOMS_GUEST
