"""TURN REST API credentials (common/turn.py) handed out in `welcome`, and a real
coturn accepting them (aiortc gathers relay candidates through it), or refusing
them once expired. The browser paths through coturn are in test_lab_turn.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aioice import Candidate, Connection

from common import turn
from common.config import ConfigError
from signalling.config import from_env
from tests.conftest import Connect, make_config, token
from tests.coturn import SECRET, Coturn

TURN_URLS = ("turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:5349?transport=tcp")


def test_a_credential_names_its_expiry_and_user_and_signs_both() -> None:
    username, password = turn.credentials(SECRET, "dr:smith", 1_900_000_000.7)
    assert username == "1900000000:dr_smith"  # coturn reads the expiry before the first ':'
    other_user = turn.credentials(SECRET, "dr-jones", 1_900_000_000)[1]
    later = turn.credentials(SECRET, "dr:smith", 1_900_000_001)[1]
    other_secret = turn.credentials(SECRET + "x", "dr:smith", 1_900_000_000)[1]
    assert len({password, other_user, later, other_secret}) == 4


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VISITROOM_TURN_URLS": "turn:a:3478"}, "needs VISITROOM_TURN_SECRET"),
        ({"VISITROOM_TURN_URLS": "turn:a:3478", "VISITROOM_TURN_SECRET": "short"}, "32 bytes"),
        ({"VISITROOM_TURN_URLS": "stun:a:3478", "VISITROOM_TURN_SECRET": SECRET}, "not a turn:"),
        ({"VISITROOM_TURN_SECRET": SECRET, "VISITROOM_TURN_TTL_S": "soon"}, "TTL"),
    ],
)
def test_unusable_turn_settings_stop_the_server(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_env(env)


@pytest.fixture
def config(tmp_path: Path) -> Any:
    return make_config(
        tmp_path,
        ice_servers=({"urls": "stun:stun.example.test:3478"},),
        turn_urls=TURN_URLS,
        turn_secret=SECRET,
        turn_ttl_s=3600.0,
    )


def turn_entry(welcome: dict[str, Any]) -> dict[str, Any]:
    servers: list[dict[str, Any]] = welcome["ice_servers"]
    assert servers[0] == {"urls": "stun:stun.example.test:3478"}  # the static list stays
    assert len(servers) == 2
    entry: dict[str, Any] = servers[1]
    assert entry["urls"] == list(TURN_URLS)
    return entry


async def test_each_participant_gets_its_own_short_lived_credential(connect: Connect) -> None:
    host = await join_host_welcome(connect)
    host_turn = turn_entry(host)
    expiry, user = host_turn["username"].split(":", 1)
    assert user == "dr-smith"  # a token holder is named by its identity
    assert abs(int(expiry) - (time.time() + 3600)) < 60
    assert host_turn["credential"] == turn.credentials(SECRET, "dr-smith", int(expiry))[1]

    guest = await connect("visit-1", {"name": "Pat"})
    welcome = await guest.next("welcome")
    guest_user = turn_entry(welcome)["username"].split(":", 1)[1]
    assert guest_user == welcome["participant_id"]  # a guest has no identity: its id


async def join_host_welcome(connect: Connect) -> dict[str, Any]:
    peer = await connect("visit-1", {"token": token()})
    welcome: dict[str, Any] = await peer.next("welcome")
    return welcome


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    server = Coturn(tmp_path)
    server.start()
    yield server
    server.stop()


async def relay_candidates(
    coturn: Coturn, transport: str, username: str, credential: str
) -> list[Candidate]:
    """What an ICE agent gathers through coturn with this credential (relay only)."""
    connection = Connection(
        ice_controlling=True,
        components=1,
        turn_server=(coturn.address, coturn.port),
        turn_username=username,
        turn_password=credential,
        turn_transport=transport,
        use_ipv6=False,
    )
    try:
        async with asyncio.timeout(20):
            await connection.gather_candidates()
        return [c for c in connection.local_candidates if c.type == "relay"]
    finally:
        await connection.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_coturn_relays_for_a_fresh_credential_only(coturn: Coturn, transport: str) -> None:
    username, credential = turn.credentials(SECRET, "dr-smith", time.time() + 600)
    relayed = await relay_candidates(coturn, transport, username, credential)
    assert relayed, coturn.output()
    assert relayed[0].host == "127.0.0.1"

    stale_user, stale = turn.credentials(SECRET, "dr-smith", time.time() - 5)
    assert await relay_candidates(coturn, transport, stale_user, stale) == []  # expired
    forged_user = f"{int(time.time()) + 86400 * 365}:dr-smith"  # stretched, old password
    assert await relay_candidates(coturn, transport, forged_user, credential) == []
