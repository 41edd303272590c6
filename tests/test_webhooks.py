"""Webhooks end to end, in process: real WebSocket clients drive a visit, a real aiohttp
receiver on loopback checks every signature (tests/webhook_receiver.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from common.keys import AUDIT
from signalling.app import create_app, portal_config
from signalling.config import Config
from signalling.keys import CONFIG, WEBHOOKS
from signalling.webhook_config import WebhookSettings
from signalling.webhook_events import Hook
from tests.conftest import Connect, Peer, join_host, knock_guest, make_config, token
from tests.portal_support import (  # noqa: F401  (the *_fixture names are fixtures)
    BASE_URL,
    Mailbox,
    Portal,
    mailbox_fixture,
)
from tests.servers import METRICS_HEADERS, METRICS_TOKEN, run_cli
from tests.waiting import eventually
from tests.webhook_receiver import SECRET, Receiver

QUICK = {"timeout_s": 2.0, "retry_base_s": 0.05, "retry_max_s": 0.2}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = Receiver()
    await hooks.start()
    yield hooks
    await hooks.stop()


def hook_settings(receiver: Receiver, **overrides: Any) -> WebhookSettings:
    return WebhookSettings((receiver.url,), SECRET, **{**QUICK, **overrides})


@pytest.fixture
def config(tmp_path: Path, receiver: Receiver) -> Config:
    return make_config(tmp_path, webhooks=hook_settings(receiver), metrics_token=METRICS_TOKEN)


async def visit(connect: Connect) -> tuple[Peer, Peer, str, str]:
    """A host, a guest who knocks, is held and admitted, and one who is rejected."""
    host = await join_host(connect)
    guest, gid = await knock_guest(connect, "Pat Patient")
    await host.next("knock")
    assert (await host.request({"type": "hold", "participant_id": gid, "message": "Soon"}))[
        "type"
    ] == "ack"
    assert (await host.request({"type": "admit", "participant_ids": [gid]}))["admitted"] == [gid]
    await guest.next("admitted")
    _, other = await knock_guest(connect, "Someone Else")
    await host.request({"type": "reject", "participant_id": other})
    return host, guest, gid, other


EXPECTED = [
    "room_started",
    "participant_joined",
    "participant_knocked",
    "participant_held",
    "participant_admitted",
    "participant_joined",
    "participant_knocked",
    "participant_rejected",
    "participant_left",
    "participant_left",
    "room_ended",
]


async def test_a_visit_sends_exactly_its_events_in_order_signed(
    connect: Connect, receiver: Receiver, client: TestClient[Any, Any]
) -> None:
    host, guest, gid, other = await visit(connect)
    assert (await host.request({"type": "remove", "participant_id": gid}))["type"] == "ack"
    await guest.wait_closed()
    await host.request({"type": "end"})
    events = await receiver.wait_for(len(EXPECTED))
    assert [e["event"] for e in events] == EXPECTED
    host_id = events[0]["participant_id"]
    people = [(e.get("participant_id"), e.get("identity"), e.get("role")) for e in events]
    assert people == [
        (host_id, "dr-smith", "host"),
        (host_id, "dr-smith", "host"),
        *[(gid, None, "guest")] * 4,
        *[(other, None, "guest")] * 2,
        (gid, None, "guest"),
        (host_id, "dr-smith", "host"),
        (None, None, None),
    ]
    assert events[8]["data"] == {"reason": "removed", "was_joined": True}
    assert events[9]["data"] == {"reason": "ended", "was_joined": True}
    ended = events[10]["data"]
    assert ended["reason"] == "ended" and ended["duration_s"] >= 0
    assert {k: ended[k] for k in ("knocks", "admitted", "rejected", "removed", "joined")} == {
        "knocks": 2, "admitted": 1, "rejected": 1, "removed": 1, "joined": 2,
    }  # fmt: skip
    assert all(e["room_id"] == "visit-1" and e["created_at"].endswith("Z") for e in events)
    assert len({e["id"] for e in events}) == len(events)
    assert receiver.bad_signatures == 0
    for delivery in receiver.accepted:
        assert abs(int(delivery.headers["X-Visitroom-Timestamp"]) - time.time()) < 60
        assert delivery.headers["X-Visitroom-Signature"].startswith("sha256=")
        assert b"Pat Patient" not in delivery.body and b"Soon" not in delivery.body
    await eventually(lambda: receiver_metrics_settled(client), 5, "metrics count deliveries")


async def receiver_metrics_settled(client: TestClient[Any, Any]) -> bool:
    response = await client.get("/metrics", headers=METRICS_HEADERS)
    text = await response.text()
    return (
        f"visitroom_webhook_deliveries_total {float(len(EXPECTED))}" in text
        and "visitroom_webhook_lag_seconds 0.0" in text
        and "visitroom_webhook_pending 0.0" in text
    )


async def test_a_slow_receiver_does_not_delay_admitted_for_the_guest(
    tmp_path: Path, receiver: Receiver, aiohttp_client: Any
) -> None:
    receiver.delay_s = 5.0
    config = make_config(tmp_path, webhooks=hook_settings(receiver, timeout_s=10.0))
    client = await aiohttp_client(create_app(config))
    peers: list[Peer] = []

    async def connect(room: str = "visit-1", hello: dict[str, Any] | None = None) -> Peer:
        peer = Peer(await client.ws_connect(f"/v1/rooms/{room}/ws"))
        peers.append(peer)
        if hello is not None:
            await peer.send({"type": "hello", **hello})
        return peer

    host = await join_host(connect)
    guest, gid = await knock_guest(connect, "Pat")
    await host.next("knock")
    await eventually(lambda: len(receiver.attempts) == 1, 5, "the receiver holds an event")
    started = time.perf_counter()
    await host.send({"type": "admit", "participant_ids": [gid]})
    await guest.next("admitted")
    took = time.perf_counter() - started
    assert not receiver.accepted, "admitted came while the receiver still held its first event"
    assert took < 2.5, f"admitted took {took:.2f} s behind a 5 s receiver"
    receiver.delay_s = 0.0
    events = await receiver.wait_for(5, timeout=30)
    assert [e["event"] for e in events] == EXPECTED[:3] + EXPECTED[4:6]
    for peer in peers:
        await peer.close()


async def test_a_failing_receiver_gets_every_event_once_in_order_when_it_recovers(
    connect: Connect, receiver: Receiver
) -> None:
    receiver.status = 500
    host = await join_host(connect)
    _, gid = await knock_guest(connect, "Pat")
    await eventually(lambda: len(receiver.attempts) >= 3, 5, "500s are retried")
    await receiver.stop()  # connection refused
    await host.request({"type": "hold", "participant_id": gid, "message": "Soon"})
    await host.request({"type": "admit", "participant_ids": [gid]})
    await asyncio.sleep(1.0)  # the scenario: a while of refused connections
    receiver.status, receiver.delay_s = 200, 3.0  # answers after the server's 2 s timeout
    await receiver.start()
    await eventually(lambda: len(receiver.accepted) >= 1, 10, "a late answer is taken")
    await host.request({"type": "remove", "participant_id": gid})
    await asyncio.sleep(2.5)  # more timeouts: each is retried, so the receiver sees repeats
    receiver.delay_s = 0.0
    await host.request({"type": "end"})
    events = await receiver.wait_for(9, timeout=40)
    assert [e["event"] for e in events] == [
        "room_started",
        "participant_joined",
        "participant_knocked",
        "participant_held",
        "participant_admitted",
        "participant_joined",
        "participant_left",
        "participant_left",
        "room_ended",
    ]
    repeats = len(receiver.attempts) - len(receiver.accepted)
    assert repeats > 3, "failures and timeouts were retried"
    late = [a.body for a in receiver.attempts if a.late]
    assert any(sum(a.body == body for a in receiver.attempts) > 1 for body in late), (
        "an attempt the server gave up waiting for (timeout) was sent again"
    )
    bodies: dict[str, set[bytes]] = {}
    for attempt in receiver.attempts:
        event_id = attempt.body.split(b'"id":"', 1)[1].split(b'"', 1)[0]
        bodies.setdefault(event_id.decode(), set()).add(attempt.body)
    assert all(len(b) == 1 for b in bodies.values()), "a retry sends the same bytes, same id"
    assert set(bodies) == {e["id"] for e in events}
    assert receiver.bad_signatures == 0


async def test_a_410_disables_the_endpoint_and_is_audited(
    connect: Connect, receiver: Receiver, app: web.Application
) -> None:
    receiver.status = 410
    host = await join_host(connect)
    await eventually(lambda: len(receiver.attempts) >= 1, 5, "one attempt")

    async def audited() -> bool:
        rows = await app[AUDIT].query(None)
        return any(r["action"] == "webhook_endpoint" for r in rows)

    await eventually(audited, 5, "the disabled endpoint is in the audit trail")
    rows = [r for r in await app[AUDIT].query(None) if r["action"] == "webhook_endpoint"]
    assert rows[0]["outcome"] == "disabled"
    assert rows[0]["endpoint"] == f"http://127.0.0.1:{receiver.port}"
    tried = len(receiver.attempts)
    assert tried == 1, "the 410 answered the first event; the second is not tried"
    receiver.status = 200
    await knock_guest(connect, "Pat")
    await host.next("knock")
    await asyncio.sleep(0.5)  # nothing to wait for: an endpoint that is never called again
    assert len(receiver.attempts) == tried
    assert app[WEBHOOKS].stats.failed == 2
    data = str(app[CONFIG].data_dir)
    done = await asyncio.to_thread(run_cli, "webhooks", "enable", receiver.url, "--data-dir", data)
    assert done.returncode == 0 and "enabled" in done.stdout
    _, late = await knock_guest(connect, "Late")
    knocked = await receiver.wait_event("participant_knocked")
    assert knocked["participant_id"] == late, "events made after `enable` are sent again"


async def test_failed_deliveries_are_listed_and_replayed_by_the_cli(
    tmp_path: Path, receiver: Receiver, aiohttp_client: Any
) -> None:
    receiver.status = 503
    config = make_config(tmp_path, webhooks=hook_settings(receiver, give_up_s=1.0))
    client = await aiohttp_client(create_app(config))
    host = Peer(await client.ws_connect("/v1/rooms/visit-1/ws"))
    await host.send({"type": "hello", "token": token()})
    await host.next("welcome")
    data = str(config.data_dir)

    async def listed(state: str) -> str:
        done = await asyncio.to_thread(run_cli, "webhooks", "list", "--state", state,
                                       "--data-dir", data)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    stats = client.app[WEBHOOKS].stats
    await eventually(lambda: stats.failed == 2, 10, "both events fail after the give-up time")
    failed = await listed("failed")
    assert failed.count(" failed ") == 2
    assert "room_started" in failed and "participant_joined" in failed and "HTTP 503" in failed
    assert "/hooks" not in failed, "an endpoint is named by its origin only"
    receiver.status = 200
    done = await asyncio.to_thread(run_cli, "webhooks", "replay", "--all", "--data-dir", data)
    assert done.returncode == 0 and "2 failed deliveries" in done.stdout
    events = await receiver.wait_for(2, timeout=15)
    assert [e["event"] for e in events] == ["room_started", "participant_joined"]
    assert "no open deliveries" in await listed("open")
    missing = await asyncio.to_thread(run_cli, "webhooks", "replay", "--data-dir", data)
    assert missing.returncode == 2 and "event ids, or --all" in missing.stderr
    await host.close()


async def test_portal_events_name_the_patient_only(
    tmp_path: Path, receiver: Receiver, mailbox: Mailbox, aiohttp_client: Any
) -> None:
    config = make_config(tmp_path, public_base_url=BASE_URL, webhooks=hook_settings(receiver))
    settings = replace(portal_config(config, {}), retry_base_s=0.1, smtp_url=mailbox.url)
    portal = Portal(await aiohttp_client(create_app(config, portal=settings)))
    patient_id = await portal.create(email="ann@example.com")
    assert (await portal.invite(patient_id))[0] == 202
    [mail] = await mailbox.wait_for(1)
    assert (await portal.activate(mail.token))[0] == 200
    code, _ = await portal.call(
        "PUT", f"/v1/portal/patients/{patient_id}/opt-out", {"opted_out": True}
    )
    assert code == 200
    events = await receiver.wait_for(3)
    assert [(e["event"], e["data"]) for e in events] == [
        ("portal_invitation_sent", {"patient_id": patient_id}),
        ("portal_account_activated", {"patient_id": patient_id}),
        ("portal_opted_out", {"patient_id": patient_id}),
    ]
    assert all(e["room_id"] is None and "identity" not in e for e in events)
    sent = b"".join(d.body for d in receiver.accepted)
    assert b"ann@example.com" not in sent and b"Ann" not in sent


async def test_a_healthy_receiver_gets_each_of_many_events_once_in_order_per_room(
    app: web.Application, client: TestClient[Any, Any], receiver: Receiver
) -> None:
    hooks = app[WEBHOOKS]
    for n in range(20):
        hooks.emit([Hook("participant_knocked", f"room-{r}", None, {"n": n}) for r in range(10)])
        await asyncio.sleep(0.01)  # the scenario: events spread over a moment, as in visits
    events = await receiver.wait_for(200, timeout=60)
    assert len(receiver.attempts) == 200, "no delivery was started twice"
    for room in range(10):
        sent = [e["data"]["n"] for e in events if e["room_id"] == f"room-{room}"]
        assert sent == list(range(20))
