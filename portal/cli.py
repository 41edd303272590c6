"""`visitroom portal outbox` and `visitroom portal send-pending`.

With no SMTP server configured, invitations wait in the outbox; these commands
show them and, once VISITROOM_SMTP_URL is set, send them without the server.
The visitroom CLI adds them with `add_commands(sub, settings)`: `settings`
reads the portal's settings for the parsed arguments (the portal reads no
server configuration itself).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from common.clock import wall_clock
from common.sqlite_db import SqliteDatabase
from portal.app import PORTAL_FILE, build_sender
from portal.config import PortalConfig
from portal.migrations import portal_database
from portal.smtp import SmtpSettings
from portal.sqlite_outbox import SqliteOutbox
from portal.store import OutboxRow

# (args, with_credentials) -> settings; with_credentials: the API keys are needed
# (the ones `visitroom serve` stored when none are configured; never generated here)
Settings = Callable[[argparse.Namespace, bool], PortalConfig]

COLUMNS = ("id", "state", "attempts", "recipient", "created", "sent", "next_attempt", "last_error")


def add_commands(sub: Any, settings: Settings) -> None:
    portal = sub.add_parser("portal", help="patient portal: the invitation outbox")
    commands = portal.add_subparsers(dest="portal_command", required=True)
    outbox = commands.add_parser("outbox", help="list invitation emails and their delivery")
    outbox.add_argument("--data-dir", help="where state is kept (VISITROOM_DATA_DIR, ./data)")
    outbox.add_argument(
        "--show-addresses", action="store_true", help="print recipients in full (PHI!)"
    )
    outbox.add_argument("--limit", type=int, default=100, help="newest N messages (100)")
    outbox.add_argument("--json", action="store_true", help="one JSON object per line")
    outbox.set_defaults(func=functools.partial(cmd_outbox, settings=settings))
    send = commands.add_parser(
        "send-pending", help="send every pending invitation now (when no server is sending)"
    )
    send.add_argument("--data-dir", help="where state is kept (VISITROOM_DATA_DIR, ./data)")
    send.set_defaults(func=functools.partial(cmd_send_pending, settings=settings))


def mask(address: str) -> str:
    """j***@e***.com: enough to tell messages apart, not enough to read the address."""
    local, _, domain = address.rpartition("@")
    name, dot, top = domain.rpartition(".")
    if not dot:
        name, top = domain, ""
    return f"{local[:1]}***@{name[:1]}***{dot}{top}"


def when(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def row_values(row: OutboxRow, show_addresses: bool) -> dict[str, Any]:
    pending = row.state.value == "pending"
    return {
        "id": row.message_id,
        "state": row.state.value,
        "attempts": row.attempts,
        "recipient": row.recipient if show_addresses else mask(row.recipient),
        "created": when(row.created_at),
        "sent": when(row.sent_at),
        "next_attempt": when(row.next_attempt_at) if pending else "-",
        "last_error": row.last_error or "-",
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    cells = [list(COLUMNS)] + [[str(row[c]) for c in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    for line in cells:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def cmd_outbox(args: argparse.Namespace, settings: Settings) -> int:
    config = settings(args, False)
    path = config.data_dir / PORTAL_FILE
    if not path.exists():
        print(f"no portal database in {config.data_dir}: nothing was ever invited", file=sys.stderr)
        return 1
    rows = asyncio.run(_list(portal_database(path), max(args.limit, 1)))
    values = [row_values(row, args.show_addresses) for row in rows]
    if args.json:
        for value in values:
            print(json.dumps(value))
    elif values:
        print_table(values)
    else:
        print("the outbox is empty")
    return 0


async def _list(database: SqliteDatabase, limit: int) -> list[OutboxRow]:
    await database.start()
    try:
        return await SqliteOutbox(database).list_outbox(limit)
    finally:
        await database.close()


def cmd_send_pending(args: argparse.Namespace, settings: Settings) -> int:
    config = settings(args, True)
    if SmtpSettings.from_config(config) is None:
        print("set VISITROOM_SMTP_URL (smtp://host:port or smtps://host) first", file=sys.stderr)
        return 2
    return asyncio.run(_send_pending(config))


async def _send_pending(config: PortalConfig) -> int:
    database = portal_database(config.data_dir / PORTAL_FILE)
    await database.start()
    sender = build_sender(config, database, wall_clock)
    assert sender is not None
    try:
        if not await sender.take_lock():
            print("a running server is sending the outbox already", file=sys.stderr)
            return 1
        await SqliteOutbox(database).make_due(wall_clock())
        counts = await sender.send_due()
    finally:
        sender.close()
        await database.close()
    print(f"sent {counts.sent}, retrying later {counts.retrying}, failed {counts.failed}")
    return 0 if counts.retrying == 0 and counts.failed == 0 else 1
