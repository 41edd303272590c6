"""The `visitroom` command: credentials, refusal of weak secrets, TLS, and restarts."""

from __future__ import annotations

import datetime
import json
import os
import ssl
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jwt
import psutil
import pytest

from common.config import ConfigError
from signalling.cli import main
from signalling.config import Config, from_env
from tests.servers import METRICS_HEADERS, ROOT, ServerProcess, run_cli, self_signed_cert

pytestmark = pytest.mark.slow


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    unset: dict[str, str | None] = {"VISITROOM_API_KEY": None, "VISITROOM_API_SECRET": None}
    # no media in these tests: the SFU in-process spares starting and stopping workers
    proc = ServerProcess(tmp_path / "data", unset, "--workers", "0")
    yield proc
    proc.kill()


async def test_first_start_generates_credentials_with_mode_0600(server: ServerProcess) -> None:
    await server.start()
    path = server.data_dir / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(path) in server.output()
    stored = json.loads(path.read_text())
    assert len(stored["api_secret"]) >= 32
    assert stored["api_secret"] not in server.output()
    assert await server.stop() == 0


async def test_the_token_command_signs_with_the_stored_credentials(
    server: ServerProcess,
) -> None:
    await server.start()
    result = run_cli(
        "token", "--room", "visit-1", "--identity", "dr-smith", "--name", "Dr Smith",
        "--role", "host", "--ttl", "15m", "--data-dir", str(server.data_dir),
        env={"VISITROOM_API_KEY": None, "VISITROOM_API_SECRET": None},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    stored = json.loads((server.data_dir / "credentials.json").read_text())
    claims = jwt.decode(result.stdout.strip(), stored["api_secret"], algorithms=["HS256"])
    assert claims["iss"] == stored["api_key"]
    assert (claims["sub"], claims["role"], claims["room"]) == ("dr-smith", "host", "visit-1")
    assert 890 <= claims["exp"] - claims["iat"] <= 900


@pytest.mark.parametrize("secret", ["", "short-secret"])
def test_a_short_or_empty_secret_refuses_to_start(tmp_path: Path, secret: str) -> None:
    result = run_cli(
        "serve", "--port", "1", "--data-dir", str(tmp_path),
        env={"VISITROOM_API_KEY": "k", "VISITROOM_API_SECRET": secret},
    )  # fmt: skip
    assert result.returncode == 2
    assert "at least 32 bytes" in result.stderr


def test_a_bad_portal_setting_stops_serve_but_not_the_token_command(tmp_path: Path) -> None:
    env: dict[str, str | None] = {
        "VISITROOM_PORTAL_PRACTICES": "[1]",
        "VISITROOM_API_KEY": "k",
        "VISITROOM_API_SECRET": "s" * 40,
        "VISITROOM_WORKERS": "0",
    }
    data = str(tmp_path / "data")
    served = run_cli("serve", "--port", "1", "--data-dir", data, env=env)
    assert served.returncode == 2
    assert "VISITROOM_PORTAL_PRACTICES must map practice ids to names" in served.stderr
    listed = run_cli("portal", "outbox", "--data-dir", data, env=env)
    assert listed.returncode == 2 and "VISITROOM_PORTAL_PRACTICES" in listed.stderr
    minted = run_cli(
        "token", "--room", "visit-1", "--identity", "dr-smith", "--data-dir", data, env=env
    )
    assert minted.returncode == 0, minted.stderr


def test_only_loopback_addresses_count_as_local() -> None:
    assert Config(host="127.0.0.1").is_loopback and Config(host="::1").is_loopback
    assert not Config(host="0.0.0.0").is_loopback


async def test_the_audit_trail_survives_a_restart(server: ServerProcess) -> None:
    await server.start()
    stored = json.loads((server.data_dir / "credentials.json").read_text())
    admin = jwt.encode(
        {
            "iss": stored["api_key"], "sub": "ops", "name": "Ops", "room": "*",
            "role": "host", "admin": True, "iat": int(datetime.datetime.now().timestamp()),
            "exp": int(datetime.datetime.now().timestamp()) + 600,
        },
        stored["api_secret"], "HS256",
    )  # fmt: skip
    host = jwt.encode(
        {
            "iss": stored["api_key"], "sub": "dr-smith", "name": "Dr", "room": "visit-1",
            "role": "host", "exp": int(datetime.datetime.now().timestamp()) + 600,
            "iat": int(datetime.datetime.now().timestamp()),
        },
        stored["api_secret"], "HS256",
    )  # fmt: skip
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{server.url}/v1/rooms/visit-1/ws") as ws,
    ):
        await ws.send_json({"type": "hello", "token": host})
        assert (await ws.receive_json())["type"] == "welcome"
        await ws.send_json({"type": "leave"})
        await ws.receive_json()
    assert await server.stop() == 0
    await server.start()
    headers = {"Authorization": f"Bearer {admin}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/v1/rooms/visit-1/audit", headers=headers) as response,
    ):
        entries = (await response.json())["entries"]
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("join", "dr-smith"),
        ("leave", "dr-smith"),
    ]


async def test_tls_serves_https_and_wss(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    env: dict[str, str | None] = {"VISITROOM_API_KEY": "k", "VISITROOM_API_SECRET": "z" * 40}
    tls = ("--tls-cert", str(cert), "--tls-key", str(key))
    server = ServerProcess(tmp_path / "data", env, *tls, "--workers", "0")
    try:
        await server.start()
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/healthz", ssl=context) as response:
                assert response.status == 200
            assert main(["health", "--port", str(server.port), "--tls"]) == 0
            assert main(["health", "--port", str(server.port)]) == 1  # HTTP to an HTTPS port
            wss = f"wss://127.0.0.1:{server.port}/v1/rooms/visit-1/ws"
            async with session.ws_connect(wss, ssl=context) as ws:
                await ws.send_json({"type": "hello", "name": "Pat"})
                assert (await ws.receive_json())["code"] == "not_found"
    finally:
        server.kill()


def test_workers_default_to_one_per_core_and_follow_the_flag_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from signalling.cli import build_parser, load_config

    base = {"VISITROOM_API_KEY": "k", "VISITROOM_API_SECRET": "z" * 40}
    assert from_env(base).workers == len(os.sched_getaffinity(0))
    assert from_env({**base, "VISITROOM_WORKERS": "0"}).workers == 0
    limits = {"VISITROOM_WORKER_MAX_PARTICIPANTS": "50", "VISITROOM_WORKER_CPU_BUDGET": "0.5"}
    config = from_env({**base, **limits}, workers=3)
    assert (config.workers, config.worker_max_participants) == (3, 50)
    assert config.worker_cpu_budget == 0.5
    for bad in ({"VISITROOM_WORKERS": "-1"}, {"VISITROOM_WORKER_PPS_BUDGET": "x"}):
        with pytest.raises(ConfigError):
            from_env({**base, **bad})
    for name, value in {**base, "VISITROOM_WORKERS": "2"}.items():
        monkeypatch.setenv(name, value)
    assert load_config(build_parser().parse_args(["serve", "--workers", "4"]))[0].workers == 4
    assert load_config(build_parser().parse_args(["serve"]))[0].workers == 2
    assert Config().workers == 0, "built in code (tests, embedding): the SFU stays in-process"


async def test_serve_with_workers_0_runs_the_sfu_in_process(tmp_path: Path) -> None:
    env: dict[str, str | None] = {"VISITROOM_API_KEY": "k", "VISITROOM_API_SECRET": "z" * 40}
    server = ServerProcess(tmp_path / "data", env, "--workers", "0")
    try:
        await server.start()
        assert server.proc is not None
        assert not psutil.Process(server.proc.pid).children()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.url}/metrics", headers=METRICS_HEADERS) as response,
        ):
            text = await response.text()
        assert "visitroom_media_transports" in text and "visitroom_media_workers" not in text
    finally:
        server.kill()


def test_a_part_that_fails_to_import_stops_the_server_with_a_clear_message(
    tmp_path: Path,
) -> None:
    """A broken portal must not silently turn every portal route into a 404."""
    shadow = tmp_path / "shadow" / "portal"
    shadow.mkdir(parents=True)
    # The real portal package, except that portal.routes is broken.
    (shadow / "__init__.py").write_text(f"__path__ = [{str(shadow)!r}, {str(ROOT / 'portal')!r}]\n")
    (shadow / "routes.py").write_text("raise ImportError('portal.routes is broken on purpose')\n")
    data = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "signalling", "serve", "--port", "0", "--data-dir", str(data)],
        cwd=shadow.parent,  # first on sys.path with -m: the shadow package wins
        env={**os.environ, "PYTHONPATH": str(ROOT), "VISITROOM_WORKERS": "0"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 3, result.stderr
    assert "cannot start" in result.stderr
    assert "portal.routes is broken on purpose" in result.stderr


def test_the_single_port_comes_from_the_environment_and_reaches_the_media_settings() -> None:
    from signalling.media import media_settings

    base = {"VISITROOM_API_KEY": "k", "VISITROOM_API_SECRET": "z" * 40}
    config = from_env({**base, "VISITROOM_RTC_UDP_PORT": "40000"}, workers=2)
    assert media_settings(config).rtc_udp_port == 40000
    assert media_settings(config).shared_socket
    assert not media_settings(
        from_env({**base, "VISITROOM_RTC_PORTS": "41000-41999"})
    ).shared_socket
    for bad in ("x", "80", "70000"):
        with pytest.raises(ConfigError, match="VISITROOM_RTC_UDP_PORT"):
            from_env({**base, "VISITROOM_RTC_UDP_PORT": bad})
    with pytest.raises(ConfigError, match="number of workers"):
        from_env({**base, "VISITROOM_RTC_UDP_PORT": "65535"}, workers=2)


async def test_visitroom_health_probes_the_bound_port_and_fails_when_nobody_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env: dict[str, str | None] = {"VISITROOM_API_KEY": "k", "VISITROOM_API_SECRET": "z" * 40}
    server = ServerProcess(tmp_path / "data", env, "--workers", "0")
    try:
        await server.start()
        monkeypatch.setenv("VISITROOM_HOST", "0.0.0.0")  # a wildcard bind is probed on loopback
        monkeypatch.setenv("VISITROOM_PORT", str(server.port))
        assert main(["health"]) == 0
        assert main(["health", "--ready"]) == 0
        assert "healthy: http://127.0.0.1:" in capsys.readouterr().out
    finally:
        server.kill()
    assert main(["health", "--port", str(server.port), "--timeout", "1"]) == 1
    assert "unhealthy" in capsys.readouterr().err
