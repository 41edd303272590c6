"""The audit trail: append-only, hash-chained rows in SQLite (WAL) in the data dir.

Entries hold identities, actions and outcomes only: never names, message
bodies, emails or tokens.  `record()` never blocks the event loop; a writer
task commits batches on one dedicated thread, and `close()` flushes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

Detail = str | int | float | bool | None

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    room_id TEXT,
    actor TEXT,
    subject TEXT,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    node TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_room ON audit (room_id, seq);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""


@dataclass(frozen=True)
class AuditEntry:
    action: str
    outcome: str
    room_id: str | None = None
    actor: str | None = None
    subject: str | None = None
    details: Mapping[str, Detail] = field(default_factory=dict)
    at: float = field(default_factory=time.time)


class AuditLog(Protocol):
    def record(self, entry: AuditEntry) -> None: ...


class MemoryAuditLog:
    """An in-memory trail for pure tests of the shells."""

    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    def record(self, entry: AuditEntry) -> None:
        self.entries.append(entry)


def _row_hash(prev_hash: str, row: tuple[Any, ...]) -> str:
    blob = json.dumps([prev_hash, *row], separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SqliteAuditLog:
    def __init__(self, path: Path, node: str = "local") -> None:
        self._path = path
        self._node = node
        self._pending: list[AuditEntry] = []
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")
        self._db: sqlite3.Connection | None = None
        self._last_hash = ""
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        await self._run(self._open)
        self._writer = asyncio.create_task(self._write_loop(), name="audit-writer")

    def record(self, entry: AuditEntry) -> None:
        if self._closed:
            raise RuntimeError("audit log is closed")
        self._pending.append(entry)
        self._wake.set()

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            await self._run(self._insert, batch)

    async def query(
        self, room_id: str | None, after_seq: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        await self.flush()
        rows: list[dict[str, Any]] = await self._run(self._select, room_id, after_seq, limit)
        return rows

    async def verify_chain(self) -> bool:
        await self.flush()
        ok: bool = await self._run(self._verify)
        return ok

    async def prune(self, older_than: float) -> int:
        """Delete entries older than `older_than` (retention); the chain restarts there."""
        count: int = await self._run(self._delete_before, older_than)
        return count

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        await self.flush()
        await self._run(self._close_db)
        self._executor.shutdown(wait=True)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # --- on the audit thread ---------------------------------------------------------

    def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        row = db.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        self._last_hash = row[0] if row else ""
        self._db = db

    def _insert(self, batch: list[AuditEntry]) -> None:
        assert self._db is not None
        rows = []
        for entry in batch:
            row = (
                entry.at,
                entry.room_id,
                entry.actor,
                entry.subject,
                entry.action,
                entry.outcome,
                self._node,
                json.dumps(dict(entry.details), sort_keys=True),
            )
            digest = _row_hash(self._last_hash, row)
            rows.append((*row, self._last_hash, digest))
            self._last_hash = digest
        with self._db:
            self._db.executemany(
                "INSERT INTO audit (at, room_id, actor, subject, action, outcome, node, details,"
                " prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows,
            )

    def _select(self, room_id: str | None, after_seq: int, limit: int) -> list[dict[str, Any]]:
        assert self._db is not None
        sql = (
            "SELECT seq, at, room_id, actor, subject, action, outcome, node, details FROM audit"
            " WHERE seq > ?"
        )
        args: list[Any] = [after_seq]
        if room_id is not None:
            sql += " AND room_id = ?"
            args.append(room_id)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        out = []
        for seq, at, room, actor, subject, action, outcome, node, details in self._db.execute(
            sql, args
        ):
            entry = {
                **json.loads(details),
                "seq": seq,
                "at": iso(at),
                "room_id": room,
                "actor": actor,
                "subject": subject,
                "action": action,
                "outcome": outcome,
                "node": node,
            }
            out.append(entry)
        return out

    def _verify(self) -> bool:
        assert self._db is not None
        prev: str | None = None
        for *row, prev_hash, digest in self._db.execute(
            "SELECT at, room_id, actor, subject, action, outcome, node, details, prev_hash, hash"
            " FROM audit ORDER BY seq"
        ):
            if prev is not None and prev_hash != prev:
                return False
            if _row_hash(prev_hash, tuple(row)) != digest:
                return False
            prev = digest
        return True

    def _delete_before(self, older_than: float) -> int:
        assert self._db is not None
        with self._db:
            cursor = self._db.execute("DELETE FROM audit WHERE at < ?", (older_than,))
        return cursor.rowcount

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
