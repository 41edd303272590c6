"""Sessions and the CSRF check, without sockets: lifetimes, cookies, origins and tokens."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from common.session import CSRF_HEADER, SignedIn, csrf_problem
from staff.roles import Role, User, grant_for
from staff.sessions import (
    COOKIE,
    SECURE_COOKIE,
    Lifetimes,
    cookie_attributes,
    cookie_name,
    digest,
)

ORIGIN = "https://clinic.example"


def test_a_session_lasts_while_used_and_ends_idle_or_at_its_lifetime() -> None:
    lifetimes = Lifetimes(idle_s=60.0, lifetime_s=300.0)
    session_id, session = lifetimes.new("u_1", 1000.0)
    assert session.digest == digest(session_id) != session_id
    assert len(session_id) >= 43 and session.csrf_token != session_id
    assert lifetimes.ended(session, 1059.0) is None
    assert lifetimes.ended(session, 1060.0) == "idle"
    busy = type(session)(**{**session.__dict__, "last_seen_at": 1299.0})
    assert lifetimes.ended(busy, 1299.5) is None
    assert lifetimes.ended(busy, 1300.0) == "lifetime"


def test_two_sessions_never_share_an_id_or_a_csrf_token() -> None:
    lifetimes = Lifetimes(60.0, 300.0)
    made = [lifetimes.new("u_1", 0.0) for _ in range(50)]
    assert len({sid for sid, _ in made}) == 50
    assert len({s.csrf_token for _, s in made}) == 50


def test_last_seen_is_written_at_most_every_quarter_of_the_idle_timeout() -> None:
    lifetimes = Lifetimes(idle_s=8.0, lifetime_s=300.0)
    _, session = lifetimes.new("u_1", 0.0)
    assert not lifetimes.needs_touch(session, 1.9)
    assert lifetimes.needs_touch(session, 2.0)


def test_bad_timeouts_are_refused() -> None:
    with pytest.raises(ValueError):
        Lifetimes(0.0, 10.0)


def test_the_cookie_is_http_only_lax_site_wide_and_secure_under_tls() -> None:
    assert cookie_name(True) == SECURE_COOKIE and cookie_name(False) == COOKIE
    secure = cookie_attributes(True, 3600.0)
    assert secure == {
        "httponly": True, "samesite": "Lax", "path": "/", "secure": True, "max_age": 3600,
    }  # fmt: skip
    assert "secure" not in cookie_attributes(False, None)


def signed_in() -> SignedIn:
    user = User("u_1", "p1", "a@b.test", "Dr A", Role.PROVIDER)
    return SignedIn(grant_for(user, 0.0), "u_1", "provider", "the-token", frozenset({ORIGIN}))


@pytest.mark.parametrize(
    ("method", "headers", "problem"),
    [
        ("GET", {}, None),
        ("HEAD", {}, None),
        ("POST", {"Origin": ORIGIN, CSRF_HEADER: "the-token"}, None),
        ("DELETE", {"Origin": ORIGIN, CSRF_HEADER: "the-token"}, None),
        ("POST", {"Origin": ORIGIN}, "token"),
        ("PATCH", {"Origin": ORIGIN, CSRF_HEADER: "the-tokeN"}, "token"),
        ("POST", {CSRF_HEADER: "the-token"}, "origin"),
        ("POST", {"Origin": "https://evil.example", CSRF_HEADER: "the-token"}, "origin"),
        ("PUT", {"Origin": "null", CSRF_HEADER: "the-token"}, "origin"),
    ],
)
def test_a_change_needs_the_session_token_and_an_origin_of_this_site(
    method: str, headers: dict[str, str], problem: str | None
) -> None:
    request = make_mocked_request(method, "/v1/rooms", headers=headers)
    assert csrf_problem(request, signed_in()) == problem


def test_each_role_gets_the_scopes_a_token_would_carry() -> None:
    def scopes(role: Role) -> list[str]:
        return sorted(grant_for(User("u_1", "p1", "a@b.test", "N", role), 0.0).scopes)

    assert scopes(Role.PROVIDER) == ["rooms:admin", "rooms:host"]
    assert scopes(Role.FRONT_DESK) == ["portal:staff", "rooms:admin", "rooms:host"]
    assert scopes(Role.PRACTICE_ADMIN) == ["rooms:admin"]
    grant = grant_for(User("u_1", "p1", "a@b.test", "Dr N", Role.PROVIDER), 0.0)
    assert (grant.identity, grant.practice, grant.claims.name) == ("staff:u_1", "p1", "Dr N")
    assert grant.may_use_room("r1", True, "p1") and not grant.may_use_room("r1", True, "p2")
