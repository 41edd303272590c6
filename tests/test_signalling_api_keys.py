"""Several API keys at once (rotation), and a cluster secret kept apart from them."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestClient

from cluster.hop import HOP_HEADER, sign
from cluster.kdf import derive
from common.config import ConfigError
from common.keys import AUDIT
from common.tokens import mint
from sfu.relay.crypto import SecurePair
from sfu.workers.rpcauth import HelloChecker, answer, answer_ok, hello
from signalling import cli
from signalling.app import create_app
from signalling.config import from_env
from signalling.keys import CONFIG, HOP_KEY, ROOMS
from tests.conftest import CLUSTER_SECRET, Peer, make_config

OLD = ("key-2025", "o" * 48)
NEW = ("key-2026", "n" * 48)
RTP = 1


def host_token(key: tuple[str, str], identity: str = "dr-smith", **headers: Any) -> str:
    token = mint(*key, room="visit-1", identity=identity, name=identity, role="host")
    if not headers:
        return token
    claims = jwt.decode(token, key[1], algorithms=["HS256"])
    return jwt.encode(claims, key[1], "HS256", headers=headers)


async def say_hello(client: TestClient[Any, Any], token: str) -> dict[str, Any]:
    peer = Peer(await client.ws_connect("/v1/rooms/visit-1/ws"))
    await peer.send({"type": "hello", "token": token})
    first = await peer.first()
    await peer.close()
    return first


async def test_a_token_signed_by_either_of_two_configured_keys_is_accepted(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path, api_keys=dict([OLD, NEW]))))
    assert (await say_hello(client, host_token(OLD, "dr-old")))["type"] == "welcome"
    assert (await say_hello(client, host_token(NEW, "dr-new")))["type"] == "welcome"
    stranger = host_token(("key-2024", "x" * 48), "dr-gone")
    assert (await say_hello(client, stranger))["code"] == "unauthorized"


async def test_the_kid_header_names_the_key_whatever_the_issuer(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(make_config(tmp_path, api_keys=dict([OLD, NEW]))))
    assert jwt.get_unverified_header(host_token(NEW))["kid"] == NEW[0], "mint names its key"
    claims = jwt.decode(host_token(NEW), NEW[1], algorithms=["HS256"])
    claims["iss"] = "clinic-front-end"
    by_kid = jwt.encode(claims, NEW[1], "HS256", headers={"kid": NEW[0]})
    assert (await say_hello(client, by_kid))["type"] == "welcome"
    other_secret = jwt.encode(claims, OLD[1], "HS256", headers={"kid": NEW[0]})
    assert (await say_hello(client, other_secret))["code"] == "unauthorized"


def test_api_keys_come_from_the_list_and_the_single_pair_the_single_pair_first() -> None:
    env = {
        "VISITROOM_API_KEY": NEW[0],
        "VISITROOM_API_SECRET": NEW[1],
        "VISITROOM_API_KEYS": f"{OLD[0]}:{OLD[1]}, {NEW[0]}:{NEW[1]}",
    }
    assert list(from_env(env).api_keys.items()) == [NEW, OLD]
    only_list = {"VISITROOM_API_KEYS": f"{OLD[0]}:{OLD[1]},{NEW[0]}:{NEW[1]}"}
    assert list(from_env(only_list).api_keys) == [OLD[0], NEW[0]], "the first one signs"
    assert OLD[1] not in repr(from_env(only_list)), "secrets stay out of logs"


@pytest.mark.parametrize(
    "listed",
    [
        f"{OLD[0]}:short",
        f"{OLD[0]}:{OLD[1]},{OLD[0]}:{NEW[1]}",
        f"no-colon-{OLD[1]}",
        f":{OLD[1]}",
        " , ",
    ],
)
def test_a_bad_api_key_list_refuses_to_start(listed: str) -> None:
    with pytest.raises(ConfigError):
        from_env({"VISITROOM_API_KEYS": listed})


def test_one_key_id_with_two_secrets_is_refused() -> None:
    env = {
        "VISITROOM_API_KEY": OLD[0],
        "VISITROOM_API_SECRET": OLD[1],
        "VISITROOM_API_KEYS": f"{OLD[0]}:{NEW[1]}",
    }
    with pytest.raises(ConfigError, match="two secrets"):
        from_env(env)


def test_rotating_api_keys_does_not_change_the_cluster_keys(tmp_path: Path) -> None:
    before = create_app(make_config(tmp_path, api_keys=dict([OLD]), cluster_secret=CLUSTER_SECRET))
    after = create_app(make_config(tmp_path, api_keys=dict([NEW]), cluster_secret=CLUSTER_SECRET))
    assert before[HOP_KEY] == after[HOP_KEY] == derive(CLUSTER_SECRET, "hop")
    env = {"VISITROOM_CLUSTER_SECRET": CLUSTER_SECRET}
    old = from_env({**env, "VISITROOM_API_KEY": OLD[0], "VISITROOM_API_SECRET": OLD[1]})
    new = from_env({**env, "VISITROOM_API_KEYS": f"{NEW[0]}:{NEW[1]}"})
    assert old.cluster_secret == new.cluster_secret == CLUSTER_SECRET
    # a worker keyed before the rotation still takes a pool's hello after it
    checker = HelloChecker(old.cluster_secret or "")
    assert checker.check(hello(new.cluster_secret or "", "node-b")) == "node-b"


def test_no_api_secret_keys_the_cluster(tmp_path: Path) -> None:
    app = create_app(make_config(tmp_path, api_keys=dict([OLD]), cluster_secret=CLUSTER_SECRET))
    assert app[HOP_KEY] not in {derive(OLD[1], "hop"), derive(OLD[0], "hop")}
    assert HelloChecker(OLD[1]).check(hello(CLUSTER_SECRET, "node-b")) is None


def test_redis_needs_a_cluster_secret_of_32_bytes() -> None:
    keys = {"VISITROOM_API_KEY": OLD[0], "VISITROOM_API_SECRET": OLD[1]}
    with pytest.raises(ConfigError, match="VISITROOM_CLUSTER_SECRET"):
        from_env(keys, redis_url="redis://127.0.0.1:1")
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        from_env({**keys, "VISITROOM_CLUSTER_SECRET": "short"})
    config = from_env({**keys, "VISITROOM_CLUSTER_SECRET": CLUSTER_SECRET}, redis_url="redis://x")
    assert CLUSTER_SECRET not in repr(config)


def test_one_machine_keeps_a_generated_cluster_secret_in_its_data_dir(tmp_path: Path) -> None:
    first = create_app(make_config(tmp_path))[CONFIG].cluster_secret
    path = tmp_path / "data" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"cluster_secret": first}
    assert first is not None and len(first) >= 32
    assert create_app(make_config(tmp_path))[CONFIG].cluster_secret == first, "kept on restart"


def test_credentials_from_an_older_version_gain_a_cluster_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    path = data / "credentials.json"
    path.write_text(json.dumps({"api_key": OLD[0], "api_secret": OLD[1]}))
    path.chmod(0o600)
    for name in ("VISITROOM_API_KEY", "VISITROOM_API_SECRET", "VISITROOM_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("VISITROOM_CLUSTER_SECRET", raising=False)
    config, created = cli.load_config(
        cli.build_parser().parse_args(["serve", "--data-dir", str(data)])
    )
    assert created == path
    stored = json.loads(path.read_text())
    assert dict(config.api_keys) == {OLD[0]: OLD[1]}, "the API key is kept"
    assert config.cluster_secret == stored["cluster_secret"] != OLD[1]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_token_command_signs_with_the_key_asked_for(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("VISITROOM_API_KEYS", f"{OLD[0]}:{OLD[1]},{NEW[0]}:{NEW[1]}")
    monkeypatch.setenv("VISITROOM_CLUSTER_SECRET", CLUSTER_SECRET)
    base = ["token", "--identity", "ops", "--admin", "--data-dir", str(tmp_path)]
    assert cli.main(base) == 0
    first = capsys.readouterr().out.strip()
    assert jwt.get_unverified_header(first)["kid"] == OLD[0], "the first key by default"
    assert cli.main([*base, "--key", NEW[0]]) == 0
    chosen = capsys.readouterr().out.strip()
    assert jwt.get_unverified_header(chosen)["kid"] == NEW[0]
    assert jwt.decode(chosen, NEW[1], algorithms=["HS256"])["sub"] == "ops"
    assert cli.main([*base, "--key", "key-1999"]) == 2
    assert "no API key" in capsys.readouterr().err


async def test_nodes_with_different_cluster_secrets_cannot_talk(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = make_config(tmp_path, cluster_secret=CLUSTER_SECRET)
    client = await aiohttp_client(create_app(config))
    path = "/internal/audit/visit-1"
    stranger = derive("d" * 48, "hop")
    refused = await client.get(path, headers={HOP_HEADER: sign(stranger, "node-x", path, "")})
    assert refused.status == 401
    ours = sign(client.app[HOP_KEY], "node-b", path, "")
    assert (await client.get(path, headers={HOP_HEADER: ours})).status == 200
    socket_path = "/v1/rooms/visit-1/ws"
    forged = {HOP_HEADER: sign(stranger, "node-x", socket_path, "10.0.0.9")}
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect(socket_path, headers=forged)
    assert caught.value.status == 403
    assert client.app[ROOMS].live("visit-1") is None
    entries = await client.app[AUDIT].query("visit-1")
    assert [(e["action"], e["outcome"]) for e in entries] == [
        ("hop", "unauthorized"),
        ("ws_upgrade", "forbidden"),
    ]
    assert entries[1]["reason"] == "hop"
    # the worker RPC: a pool keyed with another secret gets no further than hello
    worker = HelloChecker(CLUSTER_SECRET)
    assert worker.check(hello("d" * 48, "node-x")) is None
    params = hello(CLUSTER_SECRET, "node-b")
    assert worker.check(params) == "node-b"
    assert not answer_ok("d" * 48, 7, params[2], answer(CLUSTER_SECRET, 7, params[2]))
    # the relay: SRTP keyed from another secret opens nothing
    packet = bytes(range(40))
    sealed = SecurePair(CLUSTER_SECRET, 1, 2).seal(RTP, 9, packet)
    assert SecurePair("d" * 48, 2, 1).open(sealed) is None
    assert SecurePair(CLUSTER_SECRET, 2, 1).open(sealed) == (RTP, 9, packet)
