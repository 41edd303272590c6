"""Patient data at rest: the data dir is 0700, every file in it 0600, an open dir refused."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from cluster.filestate import FileRoomState
from common.audit import AuditEntry, SqliteAuditLog
from common.datadir import private_sqlite
from portal.migrations import portal_database
from signalling.rooms import RoomStore
from tests.conftest import API_KEY, API_SECRET, admin_token, token
from tests.servers import ServerProcess, run_cli
from waiting_room.clock import FakeClock

pytestmark = pytest.mark.slow

ENV: dict[str, str | None] = {
    "VISITROOM_API_KEY": API_KEY,
    "VISITROOM_API_SECRET": API_SECRET,
    "VISITROOM_ALLOW_OPEN_DATA_DIR": None,
    "VISITROOM_AUDIT_KEY": None,
    # the SFU in-process: what is written to the data dir does not depend on worker
    # processes (sfu/ never touches it), and each one costs a start and a stop
    "VISITROOM_WORKERS": "0",
}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(directory: Path) -> dict[str, int]:
    return {path.name: mode(path) for path in directory.iterdir()}


@pytest.fixture
def everyday_umask() -> Iterator[None]:
    """The usual 022, under which files a program creates are 0644 unless it says otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
async def server(tmp_path: Path, everyday_umask: None) -> AsyncIterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data", ENV)
    yield proc
    proc.kill()


async def write_patient_data(url: str) -> None:
    """A visit (rooms + audit) and a portal patient (patients, invitation, outbox)."""
    staff = {"Authorization": f"Bearer {admin_token(practice='p1')}"}
    patient = {
        "first_name": "Ann", "last_name": "Lee", "date_of_birth": "1980-02-03",
        "email": "ann@example.com",
    }  # fmt: skip
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url}/v1/rooms/visit-1/ws") as ws:
            await ws.send_json({"type": "hello", "token": token()})
            assert (await ws.receive_json())["type"] == "welcome"
        async with session.post(f"{url}/v1/portal/patients", json=patient, headers=staff) as r:
            assert r.status == 201
            patient_id = (await r.json())["patient_id"]
        invite = f"{url}/v1/portal/patients/{patient_id}/invite"
        async with session.post(invite, json={}, headers=staff) as r:
            assert r.status == 202


async def test_serve_creates_the_data_dir_0700_and_every_file_in_it_0600(
    server: ServerProcess,
) -> None:
    await server.start()
    await write_patient_data(server.url)
    assert mode(server.data_dir) == 0o700
    files = modes(server.data_dir)
    assert {"portal.sqlite3", "portal.sqlite3-wal", "audit.sqlite3", "audit.key"} <= set(files)
    assert {name: 0o600 for name in files} == files
    assert await server.stop() == 0
    assert {name: 0o600 for name in modes(server.data_dir)} == modes(server.data_dir)


async def test_serve_refuses_a_data_dir_others_can_read_unless_told_to(
    tmp_path: Path, everyday_umask: None
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    refused = run_cli("serve", "--port", "1", "--data-dir", str(data), env=ENV)
    assert refused.returncode == 2
    assert f"chmod 700 {data}" in refused.stderr and "--allow-open-data-dir" in refused.stderr
    assert list(data.iterdir()) == []  # refused before anything was written
    for how in ({"VISITROOM_ALLOW_OPEN_DATA_DIR": "1"}, {}):
        args = () if how else ("--allow-open-data-dir",)
        server = ServerProcess(data, {**ENV, **how}, *args)
        try:
            await server.start()
            assert "open to other users (allowed)" in server.output()
            assert mode(data) == 0o755  # the operator's choice stands
            assert await server.stop() == 0
        finally:
            server.kill()


async def test_the_stores_make_files_of_older_versions_private(
    tmp_path: Path, everyday_umask: None
) -> None:
    data = tmp_path / "data"

    async def use_every_store(dir_mode: int) -> None:
        audit = SqliteAuditLog(data / "audit.sqlite3")
        rooms = RoomStore(data / "visitroom.sqlite3", FakeClock(1000.0), 10)
        portal = portal_database(data / "portal.sqlite3")
        live = FileRoomState(data / "live.sqlite3", FakeClock(1000.0), prepare=private_sqlite)
        for store in (audit, rooms, portal, live):
            await store.start()
        audit.record(AuditEntry("join", "ok", "visit-1", "dr", "dr"))
        await audit.flush()
        assert mode(data) == dir_mode
        assert {name: 0o600 for name in modes(data)} == modes(data)
        for store in (audit, rooms, portal, live):
            await store.close()

    await use_every_store(0o700)
    data.chmod(0o755)  # refused by `visitroom serve` unless allowed, never changed by it
    for path in data.glob("*.sqlite3*"):
        path.chmod(0o644)  # what older versions left (audit.key is new, and always 0600)
    for name in ("audit.sqlite3-shm", "portal.sqlite3-wal", "visitroom.sqlite3-journal"):
        (data / name).touch(mode=0o644)  # left behind by a crash of an older version
    await use_every_store(0o755)


def test_the_cli_creates_what_it_writes_private(tmp_path: Path, everyday_umask: None) -> None:
    # `visitroom token` writes nothing (it never makes up keys); `portal send-pending` opens
    # (creates) the portal database and its lock.
    data = tmp_path / "fresh" / "data"
    env = {**ENV, "VISITROOM_SMTP_URL": "smtp://127.0.0.1:1"}
    result = run_cli("portal", "send-pending", "--data-dir", str(data), env=env)
    assert result.returncode == 0, result.stderr
    assert mode(data) == 0o700
    assert modes(data) == {"portal.sqlite3": 0o600, "portal-outbox.lock": 0o600}
