"""docs/examples/integrator.py runs: it schedules a visit on a real server, its patient
token knocks, and its receiver takes signed events once and refuses unsigned ones."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from tests.conftest import API_KEY, API_SECRET, Connect, Peer, token
from tests.servers import ROOT, ServerProcess, free_port
from visitroom.client import SIGNATURE_HEADER, TIMESTAMP_HEADER, TokenMinter, sign_webhook

EXAMPLE = ROOT / "docs" / "examples" / "integrator.py"
SECRET = "h" * 40
SAMPLE = {
    "id": "evt_01",
    "event": "participant_knocked",
    "created_at": "2026-12-06T10:00:00Z",
    "room_id": "visit-1",
    "participant_id": "p_G7",
    "identity": "pt-1042",
    "role": "guest",
    "data": {},
}


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("integrator_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def signed(body: bytes, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    sent = int(time.time() if at is None else at)
    return {SIGNATURE_HEADER: sign_webhook(secret, body), TIMESTAMP_HEADER: str(sent)}


async def test_it_schedules_a_visit_whose_patient_token_knocks(
    client: TestClient[Any, Any], connect: Connect
) -> None:
    module = example()
    minter = TokenMinter(API_KEY, API_SECRET)
    base = str(client.make_url("")).rstrip("/")
    async with module.VisitroomClient(base, lambda: minter.admin("ehr-backend")) as api:
        room = await module.schedule_visit(api, starts_in_min=0)
    access = module.patient_access(minter, room, "pt-1042")
    assert access["link"].endswith(f"/r/{room['room_id']}") and "token" not in access["link"]
    patient = await connect(room["room_id"], {"token": access["token"]})
    assert (await patient.next("welcome"))["status"] == "waiting"


async def test_its_receiver_takes_each_signed_event_once(aiohttp_client: Any) -> None:
    got: list[dict[str, Any]] = []
    receiver: TestClient[Any, Any] = await aiohttp_client(example().receiver(SECRET, got.append))
    body = json.dumps(SAMPLE).encode()
    for _ in range(2):  # at least once: the repeat is answered 2xx and not handed on
        assert (
            await receiver.post("/visitroom-events", data=body, headers=signed(body))
        ).status == 204
    assert got == [SAMPLE]
    for headers in (signed(body, "x" * 40), signed(body, at=time.time() - 600), {}):
        response = await receiver.post("/visitroom-events", data=body, headers=headers)
        assert response.status == 401
    other = json.dumps({**SAMPLE, "id": "evt_02"}).encode()
    tampered = signed(body)  # the signature of another body
    assert (await receiver.post("/visitroom-events", data=other, headers=tampered)).status == 401
    assert got == [SAMPLE]


async def test_the_script_runs_and_prints_a_signed_event(client: TestClient[Any, Any]) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VISITROOM_URL": str(client.make_url("")).rstrip("/"),
        "VISITROOM_API_KEY": API_KEY,
        "VISITROOM_API_SECRET": API_SECRET,
        "VISITROOM_WEBHOOK_SECRET": SECRET,
        "VISITROOM_RECEIVER_PORT": str(port),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        async with asyncio.timeout(30):
            while not lines or not lines[-1].startswith("listening on"):
                line = (await proc.stdout.readline()).decode()
                assert line, (await proc.stderr.read()).decode() if proc.stderr else "no output"
                lines.append(line.strip())
        assert lines[0].startswith("visit ") and lines[1].startswith("patient link: http")
        body = json.dumps(SAMPLE).encode()
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/visitroom-events"
            async with session.post(url, data=body, headers=signed(body)) as response:
                assert response.status == 204
        async with asyncio.timeout(10):
            printed = (await proc.stdout.readline()).decode()
        assert "participant_knocked room=visit-1 pt-1042" in printed
    finally:
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            code = await proc.wait()
    assert code == 0


async def test_the_script_prints_a_real_visits_events(tmp_path: Path) -> None:
    """The example against a real server that sends its webhooks to the example's receiver:
    the visit it scheduled starts, a patient knocks, and the events are printed."""
    port = free_port()
    server = ServerProcess(
        tmp_path / "data",
        {
            "VISITROOM_API_KEY": API_KEY,
            "VISITROOM_API_SECRET": API_SECRET,
            "VISITROOM_WEBHOOK_URLS": f"http://127.0.0.1:{port}/visitroom-events",
            "VISITROOM_WEBHOOK_SECRET": SECRET,
            "VISITROOM_REDIS_URL": None,
            "VISITROOM_WORKERS": "0",  # no media: the SFU in-process spares worker starts
        },
    )
    await server.start()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VISITROOM_URL": server.url,
        "VISITROOM_API_KEY": API_KEY,
        "VISITROOM_API_SECRET": API_SECRET,
        "VISITROOM_WEBHOOK_SECRET": SECRET,
        "VISITROOM_RECEIVER_PORT": str(port),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), env=env, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        room = first.split()[1].rstrip(":")  # "visit ROOM: ..."
        async with aiohttp.ClientSession() as session:
            ws_url = f"{server.url.replace('http', 'ws', 1)}/v1/rooms/{room}/ws"
            host = Peer(await session.ws_connect(ws_url))
            await host.send({"type": "hello", "token": token(room)})
            await host.next("welcome")
            guest = Peer(await session.ws_connect(ws_url))
            await guest.send({"type": "hello", "name": "Pat"})
            await guest.next("welcome")
            printed: list[str] = []
            async with asyncio.timeout(30):
                while not any("participant_knocked" in line for line in printed):
                    printed.append((await proc.stdout.readline()).decode())
        started = [line for line in printed if f"room_started room={room} dr-smith" in line]
        assert started, printed
        assert any(f"participant_knocked room={room}" in line for line in printed)
    finally:
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            await proc.wait()
        await server.stop()
