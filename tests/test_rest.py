"""REST: create, read and end rooms; the audit trail; admin tokens only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from common.keys import AUDIT
from signalling.app import create_app
from tests.conftest import Peer, admin_token, make_config, token
from waiting_room.clock import FakeClock
from waiting_room.room import MAX_NAME

WINDOW_LOOKUPS_PER_MINUTE = 60


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def visit(start: datetime, minutes: int = 30, **extra: Any) -> dict[str, Any]:
    return {"starts_at": iso(start), "ends_at": iso(start + timedelta(minutes=minutes)), **extra}


async def test_create_and_read_a_room(client: Any) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    response = await client.post(
        "/v1/rooms", json=visit(start, room_id="visit-9"), headers=auth(admin_token())
    )
    assert response.status == 201
    created = await response.json()
    assert created["room_id"] == "visit-9" and created["max_participants"] == 200
    assert created["join_url"].endswith("/r/visit-9")
    response = await client.get("/v1/rooms/visit-9", headers=auth(admin_token()))
    room = await response.json()
    assert room["status"] == "open" and room["waiting"] == 0 and room["joined"] == 0
    assert room["breakouts"] == []


async def test_a_generated_room_id_and_a_capped_capacity(client: Any) -> None:
    start = datetime.now(UTC) + timedelta(days=1)
    response = await client.post(
        "/v1/rooms", json=visit(start, max_participants=5000), headers=auth(admin_token())
    )
    body = await response.json()
    assert response.status == 201 and body["room_id"] and body["max_participants"] == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"starts_at": "tomorrow", "ends_at": "later"},
        {"starts_at": "2026-11-23T10:00:00", "ends_at": "2026-11-23T11:00:00"},
        {"starts_at": "2026-11-23T11:00:00Z", "ends_at": "2026-11-23T10:00:00Z"},
        {
            "starts_at": "2026-11-23T10:00:00Z",
            "ends_at": "2026-11-23T11:00:00Z",
            "room_id": "../x",
        },
        {
            "starts_at": "2026-11-23T10:00:00Z",
            "ends_at": "2026-11-23T11:00:00Z",
            "max_participants": 0,
        },
    ],
)
async def test_bad_room_requests_get_400_with_a_code(client: Any, body: dict[str, Any]) -> None:
    response = await client.post("/v1/rooms", json=body, headers=auth(admin_token()))
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_request"


async def test_a_duplicate_room_id_is_a_conflict(client: Any) -> None:
    body = visit(datetime.now(UTC), room_id="dup")
    assert (await client.post("/v1/rooms", json=body, headers=auth(admin_token()))).status == 201
    response = await client.post("/v1/rooms", json=body, headers=auth(admin_token()))
    assert response.status == 409


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nonsense"},
        auth(token()),  # a host token without admin
        auth(admin_token(room="other-room")),
    ],
)
async def test_rest_needs_an_admin_token_for_the_room(client: Any, headers: dict[str, str]) -> None:
    body = visit(datetime.now(UTC), room_id="visit-1")
    response = await client.post("/v1/rooms", json=body, headers=headers)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"
    assert (await client.get("/v1/rooms/visit-1/audit", headers=headers)).status == 401


async def test_unknown_rooms_are_404(client: Any) -> None:
    response = await client.get("/v1/rooms/nothing-here", headers=auth(admin_token()))
    assert response.status == 404


async def test_delete_ends_the_meeting_for_all(client: Any) -> None:
    host = Peer(await client.ws_connect("/v1/rooms/visit-1/ws"))
    await host.send({"type": "hello", "token": token()})
    await host.next("welcome")
    guest = Peer(await client.ws_connect("/v1/rooms/visit-1/ws"))
    await guest.send({"type": "hello", "name": "Pat"})
    await guest.next("welcome")
    response = await client.delete("/v1/rooms/visit-1", headers=auth(admin_token()))
    assert (await response.json())["count"] == 2
    for peer in (host, guest):
        assert (await peer.next("left"))["reason"] == "ended"
        await peer.close()
    entries = (
        await (await client.get("/v1/rooms/visit-1/audit", headers=auth(admin_token()))).json()
    )["entries"]
    assert ("end", "admin", "ok") in [(e["action"], e["actor"], e["outcome"]) for e in entries]
    for entry in entries:
        assert set(entry) >= {"at", "room_id", "actor", "subject", "action", "outcome"}
        assert "Pat" not in str(entry)


async def test_guests_are_refused_outside_the_join_window_with_its_times(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    clock = FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC).timestamp())
    client = await aiohttp_client(create_app(make_config(tmp_path), clock=clock))
    start = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    await client.post("/v1/rooms", json=visit(start, room_id="later"), headers=auth(admin_token()))
    peer = Peer(await client.ws_connect("/v1/rooms/later/ws"))
    await peer.send({"type": "hello", "name": "Pat"})
    error = await peer.next("error")
    assert error["code"] == "outside_join_window"
    assert error["opens_at"] == "2026-11-23T09:30:00.000Z"
    assert error["closes_at"] == "2026-11-23T12:30:00.000Z"
    await peer.wait_closed()
    clock.now = (start - timedelta(minutes=30)).timestamp()
    peer = Peer(await client.ws_connect("/v1/rooms/later/ws"))
    await peer.send({"type": "hello", "name": "Pat"})
    assert (await peer.next("welcome"))["status"] == "waiting"
    await peer.close()


async def test_metrics_report_rooms_participants_and_messages(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    metrics_token = "t" * 40
    client = await aiohttp_client(create_app(make_config(tmp_path, metrics_token=metrics_token)))
    host = Peer(await client.ws_connect("/v1/rooms/visit-1/ws"))
    await host.send({"type": "hello", "token": token()})
    await host.next("welcome")
    guest = Peer(await client.ws_connect("/v1/rooms/visit-1/ws"))
    await guest.send({"type": "hello", "name": "Pat"})
    await host.next("knock")
    text = await (await client.get("/metrics", headers=auth(metrics_token))).text()
    assert "visitroom_rooms 1.0" in text
    assert 'visitroom_participants{state="waiting"} 1.0' in text
    assert 'visitroom_participants{state="joined"} 1.0' in text
    assert "visitroom_ws_messages_sent_total" in text
    assert "visitroom_event_loop_lag_seconds" in text
    for peer in (host, guest):
        await peer.close()


async def test_the_audit_trail_is_hash_chained_and_pruned_only_past_retention(
    client: Any,
) -> None:
    from common.audit import AuditEntry
    from common.keys import AUDIT

    audit = client.app[AUDIT]
    audit.record(AuditEntry("knock", "ok", "r", "a", "a", at=1_000.0))
    audit.record(AuditEntry("admit", "ok", "r", "h", "a", at=2_000_000_000.0))
    assert await audit.verify_chain()
    assert await audit.prune(older_than=1_500.0) == 1
    assert [e["action"] for e in await audit.query("r")] == ["admit"]


def test_retention_below_six_years_is_refused() -> None:
    from common.config import ConfigError
    from signalling.config import from_env

    with pytest.raises(ConfigError):
        from_env({"VISITROOM_AUDIT_RETENTION_DAYS": "30"})
    assert from_env({}).audit_retention_days >= 6 * 365


async def test_the_join_window_is_public_and_says_only_when(client: Any) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    await client.post("/v1/rooms", json=visit(start, room_id="later"), headers=auth(admin_token()))
    response = await client.get("/v1/rooms/later/window")
    body = await response.json()
    assert body["status"] == "scheduled"
    assert body["opens_at"] == iso(start - timedelta(minutes=30)).replace("Z", ".000Z")
    assert set(body) == {"room_id", "status", "opens_at", "closes_at", "limits"}
    assert body["limits"]["name"] == MAX_NAME  # a guest's page limits the name it asks for
    assert (await client.get("/v1/rooms/nowhere/window")).status == 404


async def test_the_join_window_is_rate_limited_per_address_known_room_or_not(
    client: Any,
) -> None:
    """Room ids cannot be probed fast: past 60 lookups a minute from one address every
    lookup is 429, so a known room and an unknown one answer alike."""
    await client.post(
        "/v1/rooms", json=visit(datetime.now(UTC), room_id="visit-1"), headers=auth(admin_token())
    )
    assert (await client.get("/v1/rooms/visit-1/window")).status == 200
    for n in range(WINDOW_LOOKUPS_PER_MINUTE - 1):
        assert (await client.get(f"/v1/rooms/probe-{n}/window")).status == 404
    for room_id in ("probe-again", "visit-1"):
        response = await client.get(f"/v1/rooms/{room_id}/window")
        assert response.status == 429
        assert (await response.json())["error"]["code"] == "rate_limited"


async def test_an_unsigned_internal_audit_request_is_refused_and_audited(
    client: Any, app: web.Application
) -> None:
    response = await client.get("/internal/audit/visit-1", headers=auth(admin_token()))
    assert response.status == 401
    entries = await app[AUDIT].query("visit-1")
    assert [(e["action"], e["outcome"]) for e in entries] == [("hop", "unauthorized")]


def staff_of(practice: str) -> dict[str, str]:
    return auth(admin_token(practice=practice, scope="rooms:admin portal:staff"))


async def _patient(client: Any, practice: str) -> str:
    body = {"first_name": "Ana", "last_name": "Lee", "date_of_birth": "1980-02-03"}
    staff = staff_of(practice)
    response = await client.post("/v1/portal/patients", json=body, headers=staff)
    assert response.status == 201, await response.text()
    patient_id: str = (await response.json())["patient_id"]
    return patient_id


async def test_a_visit_names_its_patient_and_the_rooms_lists_show_it(client: Any) -> None:
    patient_id = await _patient(client, "clinic-a")
    staff = staff_of("clinic-a")
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    named = await client.post(
        "/v1/rooms", json=visit(start, room_id="pv-1", patient_id=patient_id), headers=staff
    )
    assert named.status == 201, await named.text()
    assert (await named.json())["patient_id"] == patient_id
    plain = await client.post("/v1/rooms", json=visit(start, room_id="pv-2"), headers=staff)
    assert plain.status == 201 and (await plain.json())["patient_id"] is None
    one = await (await client.get("/v1/rooms/pv-1", headers=staff)).json()
    assert one["patient_id"] == patient_id
    span = {"from": iso(start - timedelta(hours=1)), "to": iso(start + timedelta(hours=1))}
    listed = await (await client.get("/v1/rooms", params=span, headers=staff)).json()
    by_id = {room["room_id"]: room["patient_id"] for room in listed["rooms"]}
    assert by_id == {"pv-1": patient_id, "pv-2": None}
    trail = await (await client.get("/v1/rooms/pv-1/audit", headers=staff)).json()
    created = [e for e in trail["entries"] if e["action"] == "room_create"]
    assert created and created[0]["subject"] == patient_id


@pytest.mark.parametrize(
    "bad",
    ["pt_123", "Ana Lee", 42, "pt_" + "A" * 16, "pt_" + "0" * 16, "OTHER_PRACTICE"],
)
async def test_a_bad_patient_id_is_refused_and_nothing_is_stored(client: Any, bad: Any) -> None:
    if bad == "OTHER_PRACTICE":
        bad = await _patient(client, "clinic-b")
    staff = staff_of("clinic-a")
    start = datetime.now(UTC) + timedelta(minutes=10)
    refused = await client.post(
        "/v1/rooms", json=visit(start, room_id="pv-bad", patient_id=bad), headers=staff
    )
    assert refused.status == 400
    assert "patient_id" in (await refused.json())["error"]["message"]
    missing = await client.get("/v1/rooms/pv-bad", headers=staff)
    assert missing.status == 404
