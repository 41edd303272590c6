"""Tokens: only a verified HS256 token gives identity and role; refusals are audited."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from common.keys import AUDIT
from common.tokens import TokenError, TokenVerifier, mint, parse_ttl
from tests.conftest import API_KEY, API_SECRET, Connect, join_host, knock_guest, token


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": API_KEY,
        "sub": "dr-smith",
        "name": "Dr Smith",
        "room": "visit-1",
        "role": "host",
        "exp": now + 600,
        "nbf": now - 5,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


BAD_TOKENS = {
    "expired": jwt.encode(claims(exp=int(time.time()) - 60), API_SECRET, "HS256"),
    "not yet valid": jwt.encode(claims(nbf=int(time.time()) + 600), API_SECRET, "HS256"),
    "wrong room": jwt.encode(claims(room="other"), API_SECRET, "HS256"),
    "unknown key": jwt.encode(claims(iss="nobody"), API_SECRET, "HS256"),
    "wrong secret": jwt.encode(claims(), "x" * 48, "HS256"),
    "alg none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims()) + ".",
    "HS512": jwt.encode(claims(), API_SECRET, "HS512"),
    "no exp": jwt.encode(claims(exp=None), API_SECRET, "HS256"),
    "no role": jwt.encode(claims(role=None), API_SECRET, "HS256"),
    "bad role": jwt.encode(claims(role="admin"), API_SECRET, "HS256"),
    "star room without admin": jwt.encode(claims(room="*"), API_SECRET, "HS256"),
    "garbage": "not.a.token",
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
async def test_bad_tokens_are_refused_as_unauthorized(
    connect: Connect, client: Any, name: str
) -> None:
    peer = await connect("visit-1", {"token": BAD_TOKENS[name]})
    error = await peer.next("error")
    assert error["code"] == "unauthorized"
    await peer.wait_closed()
    entries = await client.app[AUDIT].query("visit-1")
    assert [(e["action"], e["actor"], e["outcome"]) for e in entries] == [
        ("hello", None, "unauthorized")
    ]
    assert BAD_TOKENS[name] not in json.dumps(entries)


def test_a_token_signed_with_a_public_key_as_hmac_secret_is_refused() -> None:
    verifier = TokenVerifier({API_KEY: API_SECRET})
    forged = _b64({"alg": "RS256", "typ": "JWT"}) + "." + _b64(claims()) + ".c2ln"
    with pytest.raises(TokenError):
        verifier.verify(forged)


def test_an_admin_token_may_name_any_room() -> None:
    verifier = TokenVerifier({API_KEY: API_SECRET})
    admin = mint(API_KEY, API_SECRET, room="*", identity="a", name="A", role="host", admin=True)
    assert verifier.verify_for_room(admin, "anything").admin


def test_ttl_parsing() -> None:
    assert [parse_ttl(t) for t in ("90s", "15m", "2h", "7d", "30")] == [90, 900, 7200, 604800, 30]
    with pytest.raises(ValueError):
        parse_ttl("soon")


async def test_identity_comes_from_the_token_not_the_hello(connect: Connect) -> None:
    host = await join_host(connect)
    guest = await connect(
        "visit-1", {"token": token(identity="pat", role="guest", name="Pat"), "name": "Dr Evil"}
    )
    welcome = await guest.next("welcome")
    assert welcome["role"] == "guest"
    assert (await host.next("knock"))["participant"]["name"] == "Pat"


async def test_an_anonymous_guest_cannot_create_a_room(connect: Connect) -> None:
    peer = await connect("nowhere", {"name": "Pat"})
    assert (await peer.next("error"))["code"] == "not_found"


async def test_a_guest_sending_host_commands_is_forbidden_and_audited(
    connect: Connect, client: Any
) -> None:
    host = await join_host(connect)
    guest, gid = await knock_guest(connect, "Pat")
    other, oid = await knock_guest(connect, "Sam")
    await host.request({"type": "admit", "participant_ids": [gid]})
    await guest.next("admitted")
    for command in (
        {"type": "admit", "all": True},
        {"type": "hold", "participant_id": oid, "message": "x"},
        {"type": "remove", "participant_id": gid},
        {"type": "breakout_move", "participant_id": gid, "to": None},
    ):
        assert (await guest.request(command))["code"] == "forbidden"
        assert (await other.request(command))["code"] == "forbidden", "role is checked first"
    assert not other.of_type("admitted")
    entries = await client.app[AUDIT].query("visit-1")
    refused = [(e["action"], e["actor"]) for e in entries if e["outcome"] == "forbidden"]
    assert ("admit", gid) in refused and ("remove", oid) in refused
    assert len(refused) == 8
