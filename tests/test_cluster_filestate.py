"""One machine keeps its live rooms in the data directory: a real `visitroom serve`
killed (kill -9) or stopped (SIGTERM) and started again brings everyone back by
resume, without a new knock and without admitting anyone; who does not come back
within the resume window leaves the audit trail as `interrupted`."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cluster.bus import BusUnavailable
from cluster.filestate import FileRoomState
from cluster.roomstate import Change
from tests.conftest import API_KEY, API_SECRET, Peer, admin_token, host_admits_guest
from tests.servers import ServerProcess, room_audit
from waiting_room.clock import FakeClock
from waiting_room.participant import Role
from waiting_room.room import Room

ROOM = "visit-1"
HOLD_TEXT = "The doctor is finishing another visit"
ANSWER_S = 15.0  # a server just started on a loaded machine may be slow at first


def server_env(resume_window_s: float) -> dict[str, str | None]:
    return {
        "VISITROOM_API_KEY": API_KEY,
        "VISITROOM_API_SECRET": API_SECRET,
        "VISITROOM_KNOCK_RATE_LIMIT": "0",
        "VISITROOM_REDIS_URL": None,
        "VISITROOM_WORKERS": "0",
        "VISITROOM_RESUME_WINDOW_S": str(resume_window_s),
    }


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


@dataclass
class Visit:
    """A host, an admitted guest, a guest on hold and a guest still waiting."""

    host: Peer
    joined: Peer
    held: Peer
    waiting: Peer
    ids: dict[str, str]

    def peers(self) -> dict[str, Peer]:
        return {
            "host": self.host,
            "joined": self.joined,
            "held": self.held,
            "waiting": self.waiting,
        }

    def audit_ids(self) -> set[str]:
        """How the audit trail names them: the host by its token identity."""
        return {"dr-smith", *(pid for k, pid in self.ids.items() if k != "host")}

    def resume_tokens(self) -> dict[str, str]:
        return {k: p.of_type("welcome")[-1]["resume_token"] for k, p in self.peers().items()}


def ws_url(server: ServerProcess) -> str:
    return server.url.replace("http", "ws", 1) + f"/v1/rooms/{ROOM}/ws"


async def hello(session: aiohttp.ClientSession, server: ServerProcess, **body: Any) -> Peer:
    peer = Peer(await session.ws_connect(ws_url(server)))
    await peer.send({"type": "hello", **body})
    return peer


async def open_visit(session: aiohttp.ClientSession, server: ServerProcess) -> Visit:
    host, joined, _ = await host_admits_guest(session, ws_url(server))
    held = await hello(session, server, name="Held Guest")
    waiting = await hello(session, server, name="Waiting Guest")
    ids = {"host": host.of_type("welcome")[0]["participant_id"]}
    ids["joined"] = joined.of_type("welcome")[0]["participant_id"]
    ids["held"] = (await held.next("welcome"))["participant_id"]
    ids["waiting"] = (await waiting.next("welcome"))["participant_id"]
    ack = await host.request({"type": "hold", "participant_id": ids["held"], "message": HOLD_TEXT})
    assert ack["type"] == "ack"
    await held.next("lobby_status", status="on_hold")
    return Visit(host, joined, held, waiting, ids)


async def audit(session: aiohttp.ClientSession, server: ServerProcess) -> list[dict[str, Any]]:
    return await room_audit(session, server, ROOM, admin_token())


async def interrupted_rows(
    session: aiohttp.ClientSession, server: ServerProcess, subjects: set[str], timeout: float
) -> list[dict[str, Any]]:
    """Wait until every subject has its `interrupted` row; return all such rows."""
    async with asyncio.timeout(timeout):
        while True:
            rows = [e for e in await audit(session, server) if e["outcome"] == "interrupted"]
            if subjects <= {e["subject"] for e in rows}:
                return rows
            await asyncio.sleep(0.2)


async def visit_then_restart(
    session: aiohttp.ClientSession, server: ServerProcess, how: signal.Signals
) -> tuple[Visit, dict[str, str]]:
    """A visit in full swing, then a restart; returns the visit and its resume tokens."""
    visit = await open_visit(session, server)
    assert {e["subject"] for e in await audit(session, server)} >= visit.audit_ids()
    tokens = visit.resume_tokens()
    await restart(server, how, list(visit.peers().values()))
    return visit, tokens


async def restart(server: ServerProcess, how: signal.Signals, peers: list[Peer]) -> None:
    """Stop the server the given way, see every socket end, start it on the same port."""
    if how is signal.SIGKILL:
        server.kill()
    else:
        assert await server.stop(how) == 0
    for peer in peers:
        await peer.wait_closed(ANSWER_S)
        await peer.close()
    await server.start()


async def opened(tmp_path: Path, clock: FakeClock) -> tuple[FileRoomState, Room]:
    """A started store and a room with a host in it (not written yet)."""
    state = FileRoomState(tmp_path / "live.sqlite3", clock)
    await state.start()
    room = Room(ROOM, clock)
    room.enter("h1", "Dr", Role.HOST, "dr")
    return state, room


async def test_a_room_is_restored_as_last_written_with_everyone_interrupted(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    state, room = await opened(tmp_path, clock)
    room.enter("g1", "Pat", Role.GUEST, None)
    room.enter("g2", "Sam", Role.GUEST, None)
    room.hold("h1", "g1", HOLD_TEXT)
    await state.write(Change(room, ["h1", "g1", "g2"]))
    await state.remember_resume(ROOM, "digest-g2", "g2")
    room.reject("h1", "g2")
    await state.write(Change(room, ["g2"]))
    clock.advance(5)
    await state.close()  # the last sign of life

    clock.advance(60)
    again = FileRoomState(tmp_path / "live.sqlite3", clock)
    await again.start()
    [restored] = await again.restore()
    assert [(p.id, p.status.value, p.hold_message) for p in restored.participants] == [
        ("h1", "joined", None),
        ("g1", "on_hold", HOLD_TEXT),
    ]
    assert all(p.interrupted and p.disconnected_at == clock.now - 60 for p in restored.participants)
    assert await again.find_resume(ROOM, "digest-g2") is None, "a rejected guest's token goes"
    await again.forget_room(ROOM)
    assert await again.restore() == []
    await again.close()


async def test_the_first_room_after_an_idle_spell_counts_from_its_own_write(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    state, room = await opened(tmp_path, clock)
    await state.beat()  # no rooms written: nothing to keep alive
    clock.advance(3600)
    await state.write(Change(room, ["h1"]))
    written_at = clock.now
    clock.advance(5)  # the process dies before its next beat
    crashed = FileRoomState(tmp_path / "live.sqlite3", clock)
    await crashed.start()
    [restored] = await crashed.restore()
    assert restored.get("h1").disconnected_at == written_at
    await crashed.close()
    await state.close()


async def test_a_write_after_close_fails_instead_of_waiting_forever(tmp_path: Path) -> None:
    state = FileRoomState(tmp_path / "live.sqlite3", FakeClock())
    await state.start()
    await state.close()
    with pytest.raises(BusUnavailable):
        await asyncio.wait_for(state.remember_resume(ROOM, "digest", "p1"), 5)


async def test_an_unreadable_file_is_moved_aside_and_the_server_starts_without_rooms(
    tmp_path: Path,
) -> None:
    path = tmp_path / "live.sqlite3"
    path.write_bytes(b"not a database, " * 64)
    state = FileRoomState(tmp_path / "live.sqlite3", FakeClock())
    await state.start()
    assert await state.restore() == []
    assert path.with_name(f"live.sqlite3.unreadable-{int(FakeClock().now)}").exists()
    await state.close()


async def test_writes_made_at_once_finish_in_the_order_they_were_made(tmp_path: Path) -> None:
    state, room = await opened(tmp_path, FakeClock())
    finished: list[int] = []

    async def knock(n: int) -> None:
        room.enter(f"g{n}", f"Guest {n}", Role.GUEST, None)
        await state.write(Change(room, [f"g{n}"]))
        finished.append(n)

    await asyncio.gather(*(knock(n) for n in range(100)))
    assert finished == list(range(100))
    [restored] = await state.restore()
    assert len(restored.waiting) == 100
    await state.close()


@contextlib.asynccontextmanager
async def running(tmp_path: Path, resume_window_s: float) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", server_env(resume_window_s))
    await server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    async with running(tmp_path, 30.0) as started:
        yield started


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_everyone_resumes_after_a_restart_and_nobody_knocks_again(
    session: aiohttp.ClientSession, server: ServerProcess, how: signal.Signals
) -> None:
    visit, tokens = await visit_then_restart(session, server, how)

    host = await hello(session, server, resume=tokens["host"])
    welcome = await host.next("welcome", ANSWER_S)
    assert (welcome["participant_id"], welcome["role"], welcome["status"]) == (
        visit.ids["host"],
        "host",
        "joined",
    )
    lobby = (await host.next("lobby", ANSWER_S))["waiting"]
    assert [(w["id"], w["status"], w.get("message")) for w in lobby] == [
        (visit.ids["held"], "on_hold", HOLD_TEXT),
        (visit.ids["waiting"], "waiting", None),
    ]
    roster = (await host.next("roster", ANSWER_S))["participants"]
    assert {p["id"] for p in roster} == {visit.ids["host"], visit.ids["joined"]}

    joined = await hello(session, server, resume=tokens["joined"])
    assert (await joined.next("welcome", ANSWER_S))["status"] == "joined"
    assert len((await joined.next("roster", ANSWER_S))["participants"]) == 2
    assert (await joined.next("media_closed", ANSWER_S))["reason"] == "moved", "offer again"

    held = await hello(session, server, resume=tokens["held"])
    assert (await held.next("welcome", ANSWER_S))["status"] == "waiting"
    status = await held.next("lobby_status", ANSWER_S)
    assert (status["status"], status["message"]) == ("on_hold", HOLD_TEXT)

    waiting = await hello(session, server, resume=tokens["waiting"])
    assert (await waiting.next("welcome", ANSWER_S))["status"] == "waiting"
    assert (await waiting.next("lobby_status", ANSWER_S))["status"] == "waiting"

    refused = await waiting.request({"type": "pin", "participant_id": None}, ANSWER_S)
    assert refused["code"] == "not_admitted", "a guest never let in is not let in by a restart"
    assert (await host.request({"type": "lobby"}, ANSWER_S))["type"] == "ack"
    assert host.of_type("knock") == [] and waiting.of_type("admitted") == []
    ack = await host.request({"type": "admit", "participant_ids": [visit.ids["waiting"]]})
    assert ack["admitted"] == [visit.ids["waiting"]]
    await waiting.next("admitted", ANSWER_S)
    for peer in (host, joined, held, waiting):
        await peer.close()


@pytest.mark.slow
async def test_an_old_resume_token_is_spent_once_it_was_used_after_a_restart(
    session: aiohttp.ClientSession, server: ServerProcess
) -> None:
    _, tokens = await visit_then_restart(session, server, signal.SIGKILL)
    token = tokens["joined"]
    first = await hello(session, server, resume=token)
    await first.next("welcome", ANSWER_S)
    await first.close()
    again = await hello(session, server, resume=token)
    assert (await again.next("error", ANSWER_S))["code"] == "unauthorized"
    await again.close()


@pytest.mark.slow
async def test_after_a_crash_who_does_not_come_back_leaves_the_audit_as_interrupted(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with running(tmp_path, 8.0) as server:
        visit, tokens = await visit_then_restart(session, server, signal.SIGKILL)
        host = await hello(session, server, resume=tokens["host"])
        await host.next("welcome", ANSWER_S)

        gone = {visit.ids[k] for k in ("joined", "held", "waiting")}
        rows = await interrupted_rows(session, server, gone, timeout=30.0)
        assert sorted((e["action"], e["subject"]) for e in rows) == sorted(
            ("leave", pid) for pid in gone
        ), "one row per participant open at the crash; none for the host who resumed"
        await host.next("participant_left", ANSWER_S, participant_id=visit.ids["joined"])
        for key in ("held", "waiting"):
            await host.next("lobby_left", ANSWER_S, participant_id=visit.ids[key])
        assert (await host.request({"type": "lobby"}))["type"] == "ack"
        assert host.of_type("lobby")[-1]["waiting"] == []
        await host.close()


@pytest.mark.slow
async def test_a_restart_after_the_resume_window_resumes_nobody(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with running(tmp_path, 1.0) as server:
        visit, tokens = await visit_then_restart(session, server, signal.SIGKILL)
        rows = await interrupted_rows(session, server, visit.audit_ids(), timeout=30.0)
        assert {e["subject"] for e in rows} == visit.audit_ids()
        for token in tokens.values():
            peer = await hello(session, server, resume=token)
            assert (await peer.next("error", ANSWER_S))["code"] == "unauthorized"
            await peer.close()
