"""The webhook outbox: events and their deliveries in `webhooks.sqlite3` in the data directory.

One row per event (its exact body, signed on each attempt) and one row per
event and endpoint (its delivery: pending, sent or failed). A delivery is
due when it is the earliest pending one of its endpoint and order key (a
room) and its time has come: a room's later event waits while an earlier one
is retried. Writes run in `BEGIN IMMEDIATE` transactions on one thread
(common/sqlite_thread.py), so the server and `visitroom webhooks` can share
the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from common.sqlite_db import SqliteDatabase

T = TypeVar("T")
PENDING, SENT, FAILED = "pending", "sent", "failed"

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    order_key TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    seq INTEGER NOT NULL REFERENCES webhook_events (seq) ON DELETE CASCADE,
    endpoint TEXT NOT NULL,
    order_key TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    give_up_at REAL NOT NULL,
    last_error TEXT,
    done_at REAL,
    PRIMARY KEY (seq, endpoint)
);
CREATE INDEX IF NOT EXISTS webhook_queue ON webhook_deliveries (state, endpoint, order_key, seq);
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    url TEXT PRIMARY KEY,
    disabled_at REAL,
    reason TEXT
);
"""

HEADS = """
SELECT d.seq, d.endpoint, d.order_key, d.attempts, d.next_at, d.give_up_at,
       e.event_id, e.body, e.created_at
FROM (SELECT endpoint, order_key, MIN(seq) AS seq FROM webhook_deliveries
      WHERE state = 'pending' AND endpoint NOT IN (SELECT url FROM webhook_endpoints)
      GROUP BY endpoint, order_key) AS h
JOIN webhook_deliveries d ON d.seq = h.seq AND d.endpoint = h.endpoint
JOIN webhook_events e ON e.seq = d.seq
ORDER BY d.next_at, d.seq
"""

LISTING = """
SELECT e.event_id, e.event, e.order_key, d.endpoint, d.state, d.attempts, e.created_at,
       d.next_at, d.done_at, d.last_error
FROM webhook_deliveries d JOIN webhook_events e ON e.seq = d.seq
WHERE d.state IN ({states}) ORDER BY d.seq, d.endpoint LIMIT ?
"""


@dataclass(frozen=True)
class NewEvent:
    event_id: str
    event: str
    order_key: str
    body: bytes
    created_at: float


@dataclass(frozen=True)
class Head:
    """The next delivery of one endpoint and order key."""

    seq: int
    endpoint: str
    order_key: str
    attempts: int
    next_at: float
    give_up_at: float
    event_id: str
    body: bytes
    created_at: float


@dataclass(frozen=True)
class Listed:
    event_id: str
    event: str
    order_key: str
    endpoint: str
    state: str
    attempts: int
    created_at: float
    next_at: float
    done_at: float | None
    last_error: str | None


class WebhookStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        # the portal's SQLite plumbing (one thread, WAL, IMMEDIATE writes, a private file)
        self._db = SqliteDatabase(path, _schema, "webhooks")

    async def start(self) -> None:
        await self._db.start()

    async def close(self) -> None:
        await self._db.close()

    async def add(
        self, events: Sequence[NewEvent], endpoints: Sequence[str], give_up_s: float
    ) -> None:
        """Store `events`, each with a pending delivery to every endpoint not disabled."""

        def insert(db: sqlite3.Connection) -> None:
            off = _disabled(db)
            for item in events:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO webhook_events"
                    " (event_id, event, order_key, body, created_at) VALUES (?, ?, ?, ?, ?)",
                    (item.event_id, item.event, item.order_key, item.body, item.created_at),
                )
                rows = [
                    (cursor.lastrowid, url, item.order_key, PENDING, item.created_at,
                     item.created_at + give_up_s)
                    for url in endpoints if url not in off and cursor.rowcount
                ]  # fmt: skip
                db.executemany(
                    "INSERT INTO webhook_deliveries"
                    " (seq, endpoint, order_key, state, next_at, give_up_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )

        await self._write(insert)

    async def heads(self) -> list[Head]:
        """The earliest pending delivery of every endpoint and order key."""
        rows = await self._read(lambda db: db.execute(HEADS).fetchall())
        return [Head(*row) for row in rows]

    async def mark_sent(self, seq: int, endpoint: str, at: float) -> None:
        await self._finish(seq, endpoint, SENT, at, None)

    async def mark_failed(self, seq: int, endpoint: str, at: float, error: str) -> None:
        await self._finish(seq, endpoint, FAILED, at, error)

    async def mark_retry(self, seq: int, endpoint: str, next_at: float, error: str) -> None:
        await self._write(
            lambda db: db.execute(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, next_at = ?,"
                " last_error = ? WHERE seq = ? AND endpoint = ? AND state = 'pending'",
                (next_at, error, seq, endpoint),
            )
        )

    async def _finish(
        self, seq: int, endpoint: str, state: str, at: float, error: str | None
    ) -> None:
        await self._write(
            lambda db: db.execute(
                "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, done_at = ?,"
                " last_error = ? WHERE seq = ? AND endpoint = ? AND state = 'pending'",
                (state, at, error, seq, endpoint),
            )
        )

    async def disable(self, endpoint: str, at: float, reason: str) -> int:
        """The endpoint takes no more events; its pending deliveries fail. Returns how many."""

        def run(db: sqlite3.Connection) -> int:
            db.execute(
                "INSERT OR REPLACE INTO webhook_endpoints (url, disabled_at, reason)"
                " VALUES (?, ?, ?)",
                (endpoint, at, reason),
            )
            cursor = db.execute(
                "UPDATE webhook_deliveries SET state = 'failed', done_at = ?, last_error = ?"
                " WHERE endpoint = ? AND state = 'pending'",
                (at, reason, endpoint),
            )
            return cursor.rowcount

        return await self._write(run)

    async def enable(self, endpoint: str) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            cursor = db.execute("DELETE FROM webhook_endpoints WHERE url = ?", (endpoint,))
            return cursor.rowcount > 0

        return await self._write(run)

    async def disabled(self) -> dict[str, str]:
        return await self._read(_disabled)

    async def listing(self, states: Iterable[str], limit: int) -> list[Listed]:
        chosen = list(states)
        sql = LISTING.format(states=",".join("?" * len(chosen)))
        rows = await self._read(lambda db: db.execute(sql, (*chosen, limit)).fetchall())
        return [Listed(*row) for row in rows]

    async def replay(self, event_ids: Sequence[str] | None, now: float, give_up_s: float) -> int:
        """Failed deliveries (of `event_ids`, or all) become pending and due now, with a
        fresh give-up time. Returns how many."""

        def run(db: sqlite3.Connection) -> int:
            sql = (
                "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_at = ?,"
                " give_up_at = ?, done_at = NULL WHERE state = 'failed'"
            )
            args: list[object] = [now, now + give_up_s]
            if event_ids is not None:
                marks = ",".join("?" * len(event_ids))
                sql += f" AND seq IN (SELECT seq FROM webhook_events WHERE event_id IN ({marks}))"
                args.extend(event_ids)
            return db.execute(sql, args).rowcount

        return await self._write(run)

    async def oldest_pending(self) -> tuple[int, float | None]:
        """How many deliveries are pending, and when the oldest one's event happened."""
        row = await self._read(
            lambda db: db.execute(
                "SELECT COUNT(*), MIN(e.created_at) FROM webhook_deliveries d"
                " JOIN webhook_events e ON e.seq = d.seq WHERE d.state = 'pending'"
            ).fetchall()[0]  # fetchone would leave the statement open: an old snapshot
        )
        return int(row[0]), row[1]

    async def prune(self, sent_before: float, failed_before: float) -> int:
        """Forget sent deliveries done before `sent_before` and failed ones before
        `failed_before`, then events with no delivery left."""

        def run(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "DELETE FROM webhook_deliveries WHERE (state = 'sent' AND done_at < ?)"
                " OR (state = 'failed' AND done_at < ?)",
                (sent_before, failed_before),
            )
            db.execute(
                "DELETE FROM webhook_events WHERE seq NOT IN"
                " (SELECT DISTINCT seq FROM webhook_deliveries)"
            )
            return cursor.rowcount

        return await self._write(run)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._db.read(fn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._db.write(fn)


def _schema(db: sqlite3.Connection) -> int:
    db.executescript(SCHEMA)
    return 1


def _disabled(db: sqlite3.Connection) -> dict[str, str]:
    rows = db.execute("SELECT url, reason FROM webhook_endpoints").fetchall()
    return {url: reason or "" for url, reason in rows}
