"""`visitroom token`: explicit scopes, and the scopes its older flags always meant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest

from common.tokens import TokenVerifier
from signalling.cli import main
from signalling.config import ensure_credentials
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


@pytest.fixture
def no_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VISITROOM_API_KEY", "VISITROOM_API_SECRET", "VISITROOM_API_KEYS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("made", [False, True], ids=["no-dir", "a-wrong-dir"])
def test_token_without_the_servers_credentials_fails_and_generates_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_env_keys: None, made: bool
) -> None:
    data = tmp_path / "data"
    if made:
        data.mkdir()
        (data / "notes.txt").write_text("not a visitroom data directory")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = main(["token", "--admin", "--identity", "ops", "--data-dir", str(data)])
    out = capsys.readouterr()
    assert code != 0 and out.out == ""
    assert f"no API credentials in {data}" in out.err and "--data-dir" in out.err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no key, no directory


def test_token_signs_with_the_credentials_the_server_stored(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_env_keys: None
) -> None:
    stored, _ = ensure_credentials(tmp_path / "data")
    assert (
        main(["token", "--admin", "--identity", "ops", "--data-dir", str(tmp_path / "data")]) == 0
    )
    token = capsys.readouterr().out.strip()
    assert TokenVerifier({stored["api_key"]: stored["api_secret"]}).verify_admin(token)
    assert set(json.loads((tmp_path / "data" / "credentials.json").read_text())) == set(stored)


def test_portal_send_pending_without_credentials_fails_and_generates_nothing(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    no_env_keys: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VISITROOM_SMTP_URL", "smtp://127.0.0.1:1")
    code = main(["portal", "send-pending", "--data-dir", str(tmp_path / "data")])
    assert code != 0 and "no API credentials in" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_token_with_an_unreadable_credentials_file_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, no_env_keys: None
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "credentials.json").write_text("{not json")
    (data / "credentials.json").chmod(0o600)
    assert main(["token", "--admin", "--identity", "ops", "--data-dir", str(data)]) == 2
    assert "is not a credentials file" in capsys.readouterr().err
    assert (data / "credentials.json").read_text() == "{not json"
