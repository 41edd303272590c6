"""Live room state in the data directory, for one machine (the embedded default).

The same contract as the cluster's room state on Redis (cluster/roomstate.py):
the owner writes what a command changed before any client hears of it, so a
restart -- SIGTERM or kill -9 -- finds the lobby with its hold messages, the
roster, the breakouts and the resume tokens (as digests) as clients last saw
them. Writes queued while one is committed go in the next transaction together
(group commit): a knock storm costs a few commits, not one per guest. A
heartbeat row says when the server was last alive: after a crash,
everyone restored may resume within the resume window counted from then.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cluster.bus import BusUnavailable
from cluster.roomstate import Change, rebuild
from common.sqlite_thread import SqliteThread
from waiting_room.clock import Clock
from waiting_room.room import Room

log = logging.getLogger(__name__)

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], None]

SCHEMA = """
CREATE TABLE IF NOT EXISTS live_rooms (
    room_id TEXT PRIMARY KEY,
    meta BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS live_people (
    room_id TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (room_id, participant_id)
);
CREATE TABLE IF NOT EXISTS live_resume (
    digest TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    participant_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alive (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    at REAL NOT NULL
);
"""


TABLES = ("live_rooms", "live_people", "live_resume")


def _sql(sql: str, *rows: tuple[Any, ...]) -> Op:
    def run(db: sqlite3.Connection) -> None:
        db.executemany(sql, rows)

    return run


def _write(db: sqlite3.Connection, change: Change, replace_all: bool = False) -> None:
    room_id = change.room_id
    gone = [(room_id, pid) for pid in change.gone]
    if replace_all:
        db.execute("DELETE FROM live_people WHERE room_id = ?", (room_id,))
    db.executemany(
        "INSERT OR REPLACE INTO live_people VALUES (?, ?, ?)",
        [(room_id, pid, record) for pid, record in change.present.items()],
    )
    db.executemany("DELETE FROM live_people WHERE room_id = ? AND participant_id = ?", gone)
    db.executemany("DELETE FROM live_resume WHERE room_id = ? AND participant_id = ?", gone)
    db.execute("INSERT OR REPLACE INTO live_rooms VALUES (?, ?)", (room_id, change.meta))


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # a crashed process loses no commit
    db.executescript(SCHEMA)
    return db


def _settle(batch: list[tuple[Op, asyncio.Future[None]]], error: Exception | None) -> None:
    for _, done in batch:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


class FileRoomState:
    """`RoomState` in one SQLite file, written on one thread, in call order."""

    def __init__(
        self, path: Path, clock: Clock, prepare: Callable[[Path], None] | None = None
    ) -> None:
        """`prepare(path)`: run before each open (the caller's rules for data files)."""
        self._path = path
        self._clock = clock
        self._prepare = prepare
        self._thread = SqliteThread("room-state")
        self._db: sqlite3.Connection | None = None
        self._queue: list[tuple[Op, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._stored: set[str] = set()  # rooms in the file: no rooms, no need to beat

    async def start(self) -> None:
        await self._run(self._open)

    async def close(self) -> None:
        if self._db is not None:
            await self.beat()
            await self._run(self._close)
        self._thread.stop()

    async def beat(self) -> None:
        """Note that the server is alive now (the resume window after a crash starts here)."""
        if self._stored:
            await self._commit(self._alive())

    def _alive(self) -> Op:
        return _sql("INSERT OR REPLACE INTO alive VALUES (1, ?)", (self._clock(),))

    async def restore(self) -> list[Room]:
        """Every room stored, its people marked as interrupted when the server was last alive."""
        rooms: list[Room] = await self._run(self._load_all)
        self._stored.update(room.id for room in rooms)
        return rooms

    # --- RoomState ---------------------------------------------------------------------

    async def write(self, change: Change) -> None:
        await self._commit(*self._first(change.room_id), lambda db: _write(db, change))

    async def save_all(self, room: Room) -> None:
        change = Change(room, [p.id for p in room.participants])
        ops = self._first(room.id)
        await self._commit(*ops, lambda db: _write(db, change, replace_all=True))

    def _first(self, room_id: str) -> list[Op]:
        """The first room after an idle spell also says we are alive (beats were skipped)."""
        first = not self._stored
        self._stored.add(room_id)
        return [self._alive()] if first else []

    async def load(self, room_id: str, clock: Clock) -> Room | None:
        rooms: list[Room] = await self._run(self._load_all, room_id)
        return rooms[0] if rooms else None

    async def remember_resume(self, room_id: str, digest: str, participant_id: str) -> None:
        sql = "INSERT OR REPLACE INTO live_resume VALUES (?, ?, ?)"
        await self._commit(_sql(sql, (digest, room_id, participant_id)))

    async def forget_resume(self, room_id: str, *digests: str) -> None:
        sql = "DELETE FROM live_resume WHERE room_id = ? AND digest = ?"
        await self._commit(_sql(sql, *((room_id, d) for d in digests)))

    async def find_resume(self, room_id: str, digest: str) -> str | None:
        found: str | None = await self._run(self._find_resume, room_id, digest)
        return found

    async def forget_room(self, room_id: str) -> None:
        self._stored.discard(room_id)
        statements = [f"DELETE FROM {t} WHERE room_id = ?" for t in TABLES]
        await self._commit(*(_sql(sql, (room_id,)) for sql in statements))

    async def _commit(self, *ops: Op) -> None:
        """Run `ops` in a transaction shared with the writes queued meanwhile; returns
        once it is committed (or raises BusUnavailable)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.extend((op, done) for op in ops)
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_queued(), name="room-state-commit")
        await done

    async def _commit_queued(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._run(self._transaction, [op for op, _ in batch])
                except BusUnavailable as exc:
                    _settle(batch, exc)
                except RuntimeError as exc:  # closed: the thread takes no more work
                    _settle(batch, BusUnavailable(str(exc)))
                else:
                    _settle(batch, None)
        finally:
            self._committer = None

    # --- on the state thread -----------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self._thread.run(fn, *args)
        except sqlite3.Error as exc:
            log.error("the room state file could not be written: %s", exc)
            raise BusUnavailable(str(exc)) from exc

    def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            # Serve without the old rooms (clients knock again) rather than not at all.
            aside = self._path.with_name(f"{self._path.name}.unreadable-{int(self._clock())}")
            log.error("the room state file is unreadable (%s); moved to %s", exc, aside.name)
            self._path.rename(aside)
            for sidecar in ("-wal", "-shm"):
                self._path.with_name(self._path.name + sidecar).unlink(missing_ok=True)
            self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        if self._prepare is not None:
            self._prepare(self._path)
        db = _connect(self._path)
        if self._prepare is not None:
            self._prepare(self._path)  # the -wal and -shm files made just now
        return db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.OperationalError("the room state file is closed")
        return self._db

    def _transaction(self, ops: list[Op]) -> None:
        db = self._conn()
        with db:
            for op in ops:
                op(db)

    def _find_resume(self, room_id: str, digest: str) -> str | None:
        row = (
            self._conn()
            .execute(
                "SELECT participant_id FROM live_resume WHERE digest = ? AND room_id = ?",
                (digest, room_id),
            )
            .fetchone()
        )
        return str(row[0]) if row is not None else None

    def _load_all(self, only: str | None = None) -> list[Room]:
        db = self._conn()
        alive = db.execute("SELECT at FROM alive WHERE one = 1").fetchone()
        stopped_at = float(alive[0]) if alive is not None else self._clock()
        people: dict[str, list[bytes]] = defaultdict(list)
        for room_id, record in db.execute("SELECT room_id, record FROM live_people"):
            people[room_id].append(record)
        rooms = []
        for room_id, meta in db.execute("SELECT room_id, meta FROM live_rooms"):
            if only is not None and room_id != only:
                continue
            try:
                room = rebuild(meta, people[room_id], self._clock)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("a stored room could not be read back, left out: %r", exc)
                continue
            room.interrupt(stopped_at)
            rooms.append(room)
        return rooms
