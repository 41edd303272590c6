"""`visitroom token`: explicit scopes, and the scopes its older flags always meant."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from signalling.cli import main
from tests.conftest import API_KEY, API_SECRET


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISITROOM_API_KEY", API_KEY)
    monkeypatch.setenv("VISITROOM_API_SECRET", API_SECRET)


def minted(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["token", "--identity", "x", *args]) == 0
    claims: dict[str, Any] = jwt.decode(
        capsys.readouterr().out.strip(), API_SECRET, algorithms=["HS256"]
    )
    return claims


@pytest.mark.parametrize(
    ("args", "scope", "role", "admin"),
    [
        (["--admin", "--practice", "lakeside"], "portal:staff", "guest", True),
        (["--admin", "--scope", "support"], "portal:support", "guest", True),
        (["--admin", "--role", "host"], "rooms:admin rooms:host", "host", True),
        (["--admin", "--role", "guest"], "rooms:admin rooms:guest", "guest", True),
        (["--room", "visit-1"], "rooms:host", "host", None),
        (["--room", "visit-1", "--role", "guest"], "rooms:guest", "guest", None),
        (["--scope", "rooms:admin,rooms:host", "--practice", "p1"], "rooms:admin rooms:host",
         "host", True),
        (["--scope", "portal:staff rooms:admin", "--practice", "p1"], "portal:staff rooms:admin",
         "guest", True),
    ],
)  # fmt: skip
def test_every_token_gets_an_explicit_scope_claim(
    capsys: pytest.CaptureFixture[str], args: list[str], scope: str, role: str, admin: bool | None
) -> None:
    claims = minted(capsys, *args)
    assert (claims["scope"], claims["role"], claims.get("admin")) == (scope, role, admin)


def test_the_front_desk_token_of_the_issue_is_a_portal_token_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    claims = minted(capsys, "--admin", "--practice", "lakeside")
    assert "rooms:" not in claims["scope"] and claims["practice"] == "lakeside"


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--scope", "rooms:owner"], "unknown scope 'rooms:owner'"),
        (["--scope", "portal:staff"], "needs --practice"),
        (["--scope", "rooms:guest", "--role", "host", "--room", "r"], "needs the rooms:host"),
        (["--admin", "--practice", "p1", "--role", "host"], "needs the rooms:host"),
        (["--scope", "rooms:host"], "--room is required"),
    ],
)
def test_a_token_that_makes_no_sense_is_refused_with_a_reason(
    capsys: pytest.CaptureFixture[str], args: list[str], problem: str
) -> None:
    assert main(["token", "--identity", "x", *args]) == 2
    out = capsys.readouterr()
    assert problem in out.err and out.out == ""
