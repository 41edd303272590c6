"""An EHR backend's side of visitroom, end to end: schedule a visit, give the patient a
way in, and print what happens in the visit as the server's webhooks arrive.

    export VISITROOM_URL=http://127.0.0.1:8080
    export VISITROOM_API_KEY=... VISITROOM_API_SECRET=...   # the server's key (docs/tokens.md)
    export VISITROOM_WEBHOOK_SECRET=...                     # the server's, at least 32 bytes
    python docs/examples/integrator.py    # visitroom installed (from a checkout: PYTHONPATH=.)

The server sends its events to the receiver this starts when it runs with
`VISITROOM_WEBHOOK_URLS=http://127.0.0.1:8099/visitroom-events` and the same
`VISITROOM_WEBHOOK_SECRET` (`VISITROOM_RECEIVER_PORT` changes the port). Each
delivery is one JSON event, signed (`X-Visitroom-Signature`, `X-Visitroom-Timestamp`);
the receiver checks it, drops repeats by event id (delivery is at least once),
prints it and answers 204. Stop it with Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from visitroom.client import SignatureError, TokenMinter, VisitroomClient, verify_webhook

EVENTS_PATH = "/visitroom-events"
Event = dict[str, Any]


async def schedule_visit(api: VisitroomClient, starts_in_min: int = 5) -> dict[str, Any]:
    """A 30-minute visit starting soon (the room's id is generated)."""
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=starts_in_min)
    return await api.create_room(starts, starts + timedelta(minutes=30), max_waiting=5)


def patient_access(minter: TokenMinter, room: dict[str, Any], patient_id: str) -> dict[str, str]:
    """How a patient gets in: the visit's link, and a guest token for a patient app.

    The link (`join_url`) carries no token: the patient types a name and knocks.
    A patient app that embeds `/embed/{room_id}?role=guest` instead hands the frame
    the token by `postMessage({type: "visitroom:join", token})` (docs/sdk.md), so the
    patient knocks under the name you know. Mint it when the patient opens the visit:
    it only has to last until the frame says `hello`.
    """
    token = minter.mint(
        identity=patient_id,
        name="Pat Doe",  # the name the host sees in the waiting room
        scopes="rooms:guest",
        room=room["room_id"],
        ttl_s=15 * 60,
    )
    return {"link": room["join_url"], "token": token}


def receiver(
    secret: str, on_event: Callable[[Event], None], remember: int = 10_000
) -> web.Application:
    """An aiohttp app that takes signed deliveries at EVENTS_PATH and hands each event on once."""
    seen: OrderedDict[str, None] = OrderedDict()

    async def deliver(request: web.Request) -> web.Response:
        body = await request.read()  # the raw bytes: the signature covers exactly these
        try:
            event = verify_webhook(secret, body, request.headers)
        except SignatureError as exc:
            return web.json_response({"error": str(exc)}, status=401)
        event_id = str(event.get("id"))
        if event_id not in seen:  # a repeat of a delivery already handled: just say 2xx
            seen[event_id] = None
            if len(seen) > remember:
                seen.popitem(last=False)
            on_event(event)
        return web.Response(status=204)

    app = web.Application(client_max_size=64 * 1024)
    app.router.add_post(EVENTS_PATH, deliver)
    return app


def show(event: Event) -> None:
    who = event.get("identity") or event.get("participant_id") or "-"
    when, kind, room = event.get("created_at"), event.get("event"), event.get("room_id")
    print(f"{when} {kind} room={room} {who} {event.get('data', {})}", flush=True)


async def main() -> None:
    base_url = os.environ.get("VISITROOM_URL", "http://127.0.0.1:8080")
    minter = TokenMinter(os.environ["VISITROOM_API_KEY"], os.environ["VISITROOM_API_SECRET"])
    async with VisitroomClient(base_url, lambda: minter.admin("ehr-backend")) as api:
        room = await schedule_visit(api)
    print(f"visit {room['room_id']}: {room['starts_at']} to {room['ends_at']}", flush=True)
    access = patient_access(minter, room, patient_id="pt-1042")
    print(f"patient link: {access['link']}", flush=True)
    print(
        f"patient app token: {len(access['token'])} characters (never put it in a URL)", flush=True
    )
    runner = web.AppRunner(receiver(os.environ["VISITROOM_WEBHOOK_SECRET"], show))
    await runner.setup()
    port = int(os.environ.get("VISITROOM_RECEIVER_PORT", "8099"))
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"listening on http://127.0.0.1:{port}{EVENTS_PATH}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, or a service manager's stop
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
