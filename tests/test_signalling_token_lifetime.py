"""Token lifetime: `exp - iat` within the server's maximum, both required, 2 s of leeway at most."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from common.config import ConfigError
from common.keys import AUDIT
from common.tokens import TokenError, TokenVerifier, mint
from signalling import cli
from signalling.app import create_app
from signalling.config import from_env
from tests.conftest import API_KEY, API_SECRET, CLUSTER_SECRET, Peer, make_config

DAY = 86400


def signed(**claims: Any) -> str:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": API_KEY,
        "sub": "dr-smith",
        "name": "Dr Smith",
        "room": "visit-1",
        "role": "host",
        "iat": now,
        "exp": now + 600,
    }
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, API_SECRET, "HS256")


def verifier(max_lifetime_s: float = DAY) -> TokenVerifier:
    return TokenVerifier({API_KEY: API_SECRET}, max_lifetime_s=max_lifetime_s)


def test_a_token_living_longer_than_the_maximum_is_refused() -> None:
    now = int(time.time())
    assert verifier().verify(signed(iat=now, exp=now + DAY)).identity == "dr-smith"
    with pytest.raises(TokenError, match="lifetime"):
        verifier().verify(signed(iat=now, exp=now + DAY + 1))
    with pytest.raises(TokenError, match="lifetime"):
        verifier(3600).verify(signed(iat=now, exp=now + 3601))
    year = mint(API_KEY, API_SECRET, room="r", identity="a", name="A", role="host", ttl_s=365 * DAY)
    with pytest.raises(TokenError):
        verifier().verify(year)


@pytest.mark.parametrize("missing", ["iat", "exp"])
def test_a_token_without_iat_or_exp_is_refused(missing: str) -> None:
    with pytest.raises(TokenError):
        verifier().verify(signed(**{missing: None}))


def test_a_backdated_iat_cannot_stretch_the_lifetime() -> None:
    now = int(time.time())
    with pytest.raises(TokenError):
        verifier().verify(signed(iat=now - 2 * DAY, exp=now + 600))


def test_clock_leeway_is_two_seconds_at_most() -> None:
    now = int(time.time())
    assert verifier().verify(signed(iat=now - 600, exp=now - 1)), "1 s late is forgiven"
    with pytest.raises(TokenError):
        verifier().verify(signed(iat=now - 600, exp=now - 4))
    with pytest.raises(TokenError):  # issued in the future
        verifier().verify(signed(iat=now + 4, exp=now + 600))
    with pytest.raises(ValueError, match="leeway"):
        TokenVerifier({API_KEY: API_SECRET}, leeway_s=5)


def test_the_maximum_comes_from_the_environment() -> None:
    keys = {"VISITROOM_API_KEY": API_KEY, "VISITROOM_API_SECRET": API_SECRET}
    assert from_env(keys).token_max_lifetime_s == DAY
    assert from_env({**keys, "VISITROOM_TOKEN_MAX_LIFETIME_S": "3600"}).token_max_lifetime_s == 3600
    assert from_env({**keys, "VISITROOM_TOKEN_MAX_LIFETIME_S": "2h"}).token_max_lifetime_s == 7200
    for bad in ("0", "-5", "soon"):
        with pytest.raises(ConfigError):
            from_env({**keys, "VISITROOM_TOKEN_MAX_LIFETIME_S": bad})


async def test_the_server_refuses_an_overlong_token_at_hello_and_audits_it(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path, token_max_lifetime_s=3600)))
    now = int(time.time())
    peer = Peer(await client.ws_connect("/v1/rooms/visit-1/ws"))
    await peer.send({"type": "hello", "token": signed(iat=now, exp=now + 7200)})
    assert (await peer.next("error"))["code"] == "unauthorized"
    await peer.wait_closed()
    await peer.close()
    entries = await client.app[AUDIT].query("visit-1")
    assert [(e["action"], e["outcome"]) for e in entries] == [("hello", "unauthorized")]


def test_the_token_command_will_not_mint_past_the_maximum(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("VISITROOM_API_KEY", API_KEY)
    monkeypatch.setenv("VISITROOM_API_SECRET", API_SECRET)
    monkeypatch.setenv("VISITROOM_CLUSTER_SECRET", CLUSTER_SECRET)
    monkeypatch.setenv("VISITROOM_TOKEN_MAX_LIFETIME_S", "1h")
    base = ["token", "--identity", "ops", "--admin", "--data-dir", str(tmp_path)]
    assert cli.main([*base, "--ttl", "2h"]) == 2
    assert "maximum" in capsys.readouterr().err
    assert cli.main([*base, "--ttl", "1h"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), API_SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 3600
