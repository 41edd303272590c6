"""`visitroom webhooks list|replay|enable`: the outbox on disk, while the server runs or not."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from common.audit import iso
from signalling.config import from_env
from signalling.webhook_store import FAILED, PENDING, SENT, Listed, WebhookStore
from signalling.webhooks import WEBHOOKS_FILE, origin

T = TypeVar("T")
STATES = {"pending": (PENDING,), "failed": (FAILED,), "sent": (SENT,), "open": (PENDING, FAILED)}


def add_commands(sub: Any) -> None:
    hooks = sub.add_parser("webhooks", help="the webhook outbox: list, replay, enable")
    commands = hooks.add_subparsers(dest="webhooks_command", required=True)
    listing = commands.add_parser("list", help="pending and failed deliveries, oldest first")
    listing.add_argument("--state", choices=sorted(STATES), default="open")
    listing.add_argument("--limit", type=int, default=100)
    replay = commands.add_parser("replay", help="send failed deliveries again")
    replay.add_argument("event_ids", nargs="*", help="event ids (evt_...)")
    replay.add_argument("--all", action="store_true", help="every failed delivery")
    enable = commands.add_parser("enable", help="take back an endpoint disabled by a 410")
    enable.add_argument("url")
    for command in (listing, replay, enable):
        command.add_argument("--data-dir", help="where state is kept (VISITROOM_DATA_DIR, ./data)")
    listing.set_defaults(func=cmd_list)
    replay.set_defaults(func=cmd_replay)
    enable.set_defaults(func=cmd_enable)


def _with_store(args: argparse.Namespace, work: Callable[[WebhookStore], Awaitable[T]]) -> T | None:
    path = from_env(os.environ, data_dir=args.data_dir).data_dir / WEBHOOKS_FILE
    if not path.exists():
        print(f"error: no webhook outbox ({path}); set VISITROOM_WEBHOOK_URLS", file=sys.stderr)
        return None
    return asyncio.run(_run(path, work))


async def _run(path: Path, work: Callable[[WebhookStore], Awaitable[T]]) -> T:
    store = WebhookStore(path)
    await store.start()
    try:
        return await work(store)
    finally:
        await store.close()


def _line(row: Listed) -> str:
    when = f"next {iso(row.next_at)}" if row.state == PENDING else f"at {iso(row.done_at or 0)}"
    error = f"  ({row.last_error})" if row.last_error else ""
    return (
        f"{row.event_id}  {row.state:<7} {row.event:<26} {row.order_key:<20} "
        f"{origin(row.endpoint)}  tries {row.attempts}  created {iso(row.created_at)}  "
        f"{when}{error}"
    )


def cmd_list(args: argparse.Namespace) -> int:
    rows = _with_store(args, lambda store: store.listing(STATES[args.state], args.limit))
    if rows is None:
        return 2
    for row in rows:
        print(_line(row))
    disabled = _with_store(args, lambda store: store.disabled())
    for url, reason in (disabled or {}).items():
        print(f"disabled endpoint {origin(url)}: {reason}")
    if not rows:
        print(f"no {args.state} deliveries")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    if bool(args.all) == bool(args.event_ids):
        print("error: name event ids, or --all", file=sys.stderr)
        return 2
    give_up = from_env(os.environ, data_dir=args.data_dir).webhooks.give_up_s
    ids = None if args.all else list(args.event_ids)
    count = _with_store(args, lambda store: store.replay(ids, time.time(), give_up))
    if count is None:
        return 2
    print(f"{count} failed deliveries are pending again (a running server sends them within 5 s)")
    return 0 if count or args.all else 1


def cmd_enable(args: argparse.Namespace) -> int:
    found = _with_store(args, lambda store: store.enable(args.url))
    if found is None:
        return 2
    print("enabled" if found else "that endpoint was not disabled")
    return 0
