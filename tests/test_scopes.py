"""Token scopes (pure): parsing, the scopes of tokens without a scope claim (docs/protocol.md),
and which practice's rooms a token may use."""

from __future__ import annotations

import pytest

from common.scopes import (
    PORTAL_STAFF,
    PORTAL_SUPPORT,
    ROOMS_ADMIN,
    ROOMS_GUEST,
    ROOMS_HOST,
    Grant,
    ScopeError,
    parse,
    render,
    scopes_of,
)
from common.tokens import Claims


def claims(
    room: str = "*",
    role: str = "host",
    admin: bool = True,
    practice: str | None = None,
    scope: str | None = None,
) -> Claims:
    return Claims("frontdesk-1", "Front Desk", room, role, admin, practice, scope)


def test_a_scope_claim_is_a_space_separated_list() -> None:
    assert parse("rooms:admin  rooms:host") == {ROOMS_ADMIN, ROOMS_HOST}
    assert render({ROOMS_HOST, ROOMS_ADMIN}) == "rooms:admin rooms:host"


@pytest.mark.parametrize("text", ["", "   ", "rooms:owner", "rooms:admin billing", "ROOMS:ADMIN"])
def test_an_unknown_or_empty_scope_is_an_error_not_ignored(text: str) -> None:
    with pytest.raises(ScopeError):
        parse(text)


def test_the_old_support_scope_means_portal_support_only() -> None:
    assert scopes_of(claims(scope="support")) == {PORTAL_SUPPORT}


@pytest.mark.parametrize(
    ("token", "scopes"),
    [
        (claims(practice="p1"), {PORTAL_STAFF}),  # the front-desk token of the issue
        (claims(), {ROOMS_ADMIN, ROOMS_HOST}),
        (claims(role="guest"), {ROOMS_ADMIN, ROOMS_GUEST}),
        (claims(room="visit-1", admin=False), {ROOMS_HOST}),
        (claims(room="visit-1", role="guest", admin=False), {ROOMS_GUEST}),
        (claims(room="visit-1", admin=False, practice="p1"), {ROOMS_HOST}),
    ],
)
def test_a_token_without_a_scope_claim_gets_what_its_claims_always_meant(
    token: Claims, scopes: set[str]
) -> None:
    assert scopes_of(token) == scopes


@pytest.mark.parametrize("practice", ["", "p" * 65])
def test_a_practice_claim_must_be_1_to_64_characters(practice: str) -> None:
    with pytest.raises(ScopeError):
        scopes_of(claims(practice=practice, scope="rooms:admin"))


def test_a_portal_token_has_no_rooms_scope_and_a_rooms_token_no_portal_scope() -> None:
    portal = Grant.of(claims(practice="p1"))
    rooms = Grant.of(claims(scope="rooms:admin rooms:host"))
    assert portal.missing(ROOMS_ADMIN) == ROOMS_ADMIN and portal.join_role_scope() == ROOMS_HOST
    assert not rooms.has(PORTAL_STAFF) and not rooms.has(PORTAL_SUPPORT)


def test_a_guest_token_joins_with_rooms_guest_or_rooms_host() -> None:
    assert Grant.of(claims(role="guest", scope="rooms:guest")).join_role_scope() is None
    assert Grant.of(claims(role="guest", scope="rooms:host")).join_role_scope() is None
    assert Grant.of(claims(role="guest", scope="portal:staff")).join_role_scope() == ROOMS_GUEST
    assert Grant.of(claims(role="host", scope="rooms:guest")).join_role_scope() == ROOMS_HOST


def test_a_practice_token_uses_only_its_practice_s_scheduled_rooms() -> None:
    p1 = Grant.of(claims(practice="p1", scope="rooms:admin"))
    assert p1.may_use_room("a", scheduled=True, room_practice="p1")
    assert not p1.may_use_room("a", scheduled=True, room_practice="p2")
    assert not p1.may_use_room("a", scheduled=True, room_practice=None)
    assert not p1.may_use_room("a", scheduled=False, room_practice=None)  # '*' + ad hoc


def test_a_practice_token_named_for_an_unscheduled_room_may_use_it() -> None:
    named = Grant.of(claims(room="adhoc", admin=False, practice="p1", scope="rooms:host"))
    assert named.may_use_room("adhoc", scheduled=False, room_practice=None)
    assert not named.may_use_room("other", scheduled=False, room_practice=None)


def test_an_operator_token_without_a_practice_uses_every_room() -> None:
    operator = Grant.of(claims(scope="rooms:admin"))
    assert operator.may_use_room("a", scheduled=True, room_practice="p2")
    assert operator.may_use_room("b", scheduled=False, room_practice=None)
    single = Grant.of(claims(room="a", scope="rooms:admin"))
    assert not single.may_use_room("b", scheduled=True, room_practice=None)
