"""The audit trail: append-only rows in SQLite (WAL) in the data dir, chained by HMAC.

Entries hold identities, actions and outcomes only: never names, message
bodies, emails or tokens.  `record()` never blocks the event loop; a writer
task commits batches on one dedicated thread, and `close()` flushes.  The
chain is keyed with a key kept outside the database (audit_chain.py): the
`audit.key` file, or VISITROOM_AUDIT_KEY.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from common.audit_chain import (
    KEYED,
    PRUNED,
    Anchor,
    AuditKey,
    AuditKeyError,
    Report,
    load_or_create_key,
    verify_rows,
)
from common.datadir import private_sqlite
from common.sqlite_thread import SqliteThread

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
CREATE TABLE IF NOT EXISTS audit_anchor (
    anchor_id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    keyed_from INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    first_prev TEXT NOT NULL,
    legacy_tip TEXT NOT NULL,
    key_id TEXT NOT NULL,
    mac TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_anchor_no_update BEFORE UPDATE ON audit_anchor
BEGIN SELECT RAISE(ABORT, 'audit anchors are append-only'); END;
"""
ROW_COLUMNS = "seq, at, room_id, actor, subject, action, outcome, node, details, prev_hash, hash"


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


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SqliteAuditLog:
    """The trail in `path`; `key` is VISITROOM_AUDIT_KEY's value, or None for the
    `audit.key` file beside the database (generated, 0600, on first start)."""

    def __init__(self, path: Path, node: str = "local", key: str | None = None) -> None:
        self._path = path
        self._node = node
        self._env_key = key
        self._key: AuditKey | None = None
        self._pending: list[AuditEntry] = []
        self._wake = asyncio.Event()
        self._thread = SqliteThread("audit")
        self._db: sqlite3.Connection | None = None
        self._last_hash = ""
        self._next_seq = 1
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        await self._thread.run(self._open)
        self._writer = asyncio.create_task(self._write_loop(), name="audit-writer")

    def record(self, entry: AuditEntry) -> None:
        if self._closed:
            raise RuntimeError("audit log is closed")
        self._pending.append(entry)
        self._wake.set()

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            await self._thread.run(self._insert, batch)

    async def query(
        self, room_id: str | None, after_seq: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        await self.flush()
        rows: list[dict[str, Any]] = await self._thread.run(self._select, room_id, after_seq, limit)
        return rows

    async def verify_chain(self) -> bool:
        return (await self.verify()).intact

    async def verify(self) -> Report:
        """The whole trail checked against the key: the first problem, if any."""
        await self.flush()
        report: Report = await self._thread.run(self._verify)
        return report

    async def prune(self, older_than: float) -> int:
        """Delete the oldest entries, older than `older_than` (retention); an anchor
        records where the trail now starts."""
        await self.flush()
        count: int = await self._thread.run(self._delete_before, older_than)
        return count

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        await self.flush()
        await self._thread.run(self._close_db)
        self._thread.stop()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    # --- on the audit thread ---------------------------------------------------------

    def _open(self) -> None:
        private_sqlite(self._path)
        db = sqlite3.connect(self._path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        private_sqlite(self._path)
        self._key, _ = load_or_create_key(self._path.parent, self._env_key)
        row = db.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        self._last_hash = row[0] if row else ""
        self._next_seq = last_assigned(db, "audit") + 1
        self._db = db
        self._check_or_anchor(db, self._key)

    def _check_or_anchor(self, db: sqlite3.Connection, key: AuditKey) -> None:
        """The first start with a key anchors the chain: rows from here on are keyed."""
        latest = db.execute("SELECT * FROM audit_anchor ORDER BY anchor_id DESC LIMIT 1").fetchone()
        if latest is not None:
            if Anchor(*latest).key_id != key.key_id:
                db.close()
                self._db = None
                raise AuditKeyError(
                    f"{self._path} is chained under audit key {Anchor(*latest).key_id}, but "
                    f"the key in use is {key.key_id}: restore the data dir's audit.key (or "
                    "VISITROOM_AUDIT_KEY) that this trail was written with"
                )
            return
        with db:
            self._add_anchor(db, KEYED, keyed_from=self._next_seq)

    def _add_anchor(self, db: sqlite3.Connection, kind: str, keyed_from: int) -> None:
        assert self._key is not None
        first = db.execute("SELECT seq, prev_hash FROM audit ORDER BY seq LIMIT 1").fetchone()
        tip = db.execute("SELECT hash FROM audit WHERE seq = ?", (keyed_from - 1,)).fetchone()
        anchor = Anchor(
            anchor_id=last_assigned(db, "audit_anchor") + 1,
            at=time.time(),
            kind=kind,
            keyed_from=keyed_from,
            first_seq=first[0] if first else self._next_seq,
            first_prev=first[1] if first else self._last_hash,
            legacy_tip=tip[0] if tip else "",
            key_id=self._key.key_id,
        ).signed(self._key)
        db.execute("INSERT INTO audit_anchor VALUES (?,?,?,?,?,?,?,?,?)", anchor.as_row())

    def _insert(self, batch: list[AuditEntry]) -> None:
        assert self._db is not None and self._key is not None
        rows = []
        seq, last_hash = self._next_seq, self._last_hash
        for entry in batch:
            fields = (
                float(entry.at),  # as SQLite gives it back: an int would not verify
                entry.room_id,
                entry.actor,
                entry.subject,
                entry.action,
                entry.outcome,
                self._node,
                json.dumps(dict(entry.details), sort_keys=True),
            )
            digest = self._key.row_mac(seq, last_hash, fields)
            rows.append((seq, *fields, last_hash, digest))
            seq, last_hash = seq + 1, digest
        with self._db:
            self._db.executemany(f"INSERT INTO audit ({ROW_COLUMNS}) VALUES ({_MARKS})", rows)
        self._next_seq, self._last_hash = seq, last_hash

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

    def _verify(self) -> Report:
        assert self._db is not None and self._key is not None
        return verify_db(self._db, self._key)

    def _delete_before(self, older_than: float) -> int:
        """Only a prefix goes (rows are in time order but for stragglers), so the
        chain from the new first row on stays whole."""
        db = self._db
        assert db is not None
        with db:
            cursor = db.execute(
                "DELETE FROM audit WHERE at < ? AND seq < COALESCE("
                "(SELECT MIN(seq) FROM audit WHERE at >= ?), ?)",
                (older_than, older_than, self._next_seq),
            )
            if cursor.rowcount:
                latest = db.execute(
                    "SELECT keyed_from FROM audit_anchor ORDER BY anchor_id DESC LIMIT 1"
                ).fetchone()
                self._add_anchor(db, PRUNED, keyed_from=latest[0])
        return cursor.rowcount

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


_MARKS = ",".join("?" * len(ROW_COLUMNS.split(",")))


def last_assigned(db: sqlite3.Connection, table: str) -> int:
    """The highest id ever given in `table` (AUTOINCREMENT never reuses one)."""
    used = db.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    key = "seq" if table == "audit" else "anchor_id"
    highest: int = db.execute(f"SELECT COALESCE(MAX({key}), 0) FROM {table}").fetchone()[0]
    return max(int(used[0]) if used else 0, highest)


def verify_db(db: sqlite3.Connection, key: AuditKey) -> Report:
    anchors = [Anchor(*row) for row in db.execute("SELECT * FROM audit_anchor ORDER BY anchor_id")]
    rows = db.execute(f"SELECT {ROW_COLUMNS} FROM audit ORDER BY seq")
    return verify_rows(key, anchors, rows, last_assigned(db, "audit"))


def verify_file(path: Path, key: AuditKey) -> Report:
    """Check a trail on disk without changing it (`visitroom audit verify`)."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        db.execute("BEGIN")  # one snapshot while a running server goes on writing
        return verify_db(db, key)
    finally:
        db.close()
