"""Rooms: scheduled visits kept in SQLite, and the live room objects in memory."""

from __future__ import annotations

import re
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.sqlite_db import SqliteDatabase
from waiting_room.clock import Clock
from waiting_room.errors import CONFLICT, NOT_FOUND, RoomError
from waiting_room.refusals import Refusals
from waiting_room.room import DEFAULT_LOBBY_FACTOR, Room, lobby_cap
from waiting_room.schedule import Schedule

MAX_KEPT_REFUSALS = 10_000  # unloaded rooms whose refused knocks are remembered
ROOM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    room_id TEXT PRIMARY KEY,
    starts_at REAL NOT NULL,
    ends_at REAL NOT NULL,
    max_participants INTEGER NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT,
    practice TEXT
);
"""
# Columns added later, with the defaults rows written before them take.
ADDED_COLUMNS = {
    "practice": "TEXT",  # NULL: the operator's room (rooms stored before practices)
    "max_waiting": "INTEGER",  # NULL: the server's VISITROOM_LOBBY_CAP_FACTOR x capacity
    "allow_reknock": "INTEGER NOT NULL DEFAULT 0",
    "patient_id": "TEXT",  # NULL: no patient named (the portal's patient id, never a name)
}
COLUMNS = "room_id, starts_at, ends_at, max_participants, created_at, created_by, " + ", ".join(
    ADDED_COLUMNS
)


def valid_room_id(room_id: str) -> bool:
    return bool(ROOM_ID.match(room_id))


def new_room_id() -> str:
    return secrets.token_urlsafe(9).replace("_", "x").replace("-", "y")


@dataclass(frozen=True)
class RoomRecord:
    room_id: str
    starts_at: float
    ends_at: float
    max_participants: int
    created_at: float
    created_by: str | None = None
    practice: str | None = None  # the practice the room belongs to; None: the operator's
    max_waiting: int | None = None
    allow_reknock: bool = False
    patient_id: str | None = None  # the portal's patient the visit is for

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.starts_at, self.ends_at)


class RoomStore:
    """Scheduled rooms survive restarts; live state (lobby, roster) lives in memory."""

    def __init__(
        self,
        path: Path,
        clock: Clock,
        default_capacity: int,
        lobby_factor: float = DEFAULT_LOBBY_FACTOR,
    ) -> None:
        self._path = path
        self._clock = clock
        self._capacity = default_capacity
        self._lobby_factor = lobby_factor
        self._records: dict[str, RoomRecord] = {}
        self._live: dict[str, Room] = {}
        self._refused: dict[str, Refusals] = {}  # rooms unloaded before their visit ended
        self._db = SqliteDatabase(path, _schema, "rooms")

    async def start(self) -> None:
        await self._db.start()
        rows = await self._db.read(lambda db: db.execute(f"SELECT {COLUMNS} FROM rooms").fetchall())
        for row in rows:
            self._records[row[0]] = _record(row)

    async def close(self) -> None:
        await self._db.close()

    async def create(self, record: RoomRecord) -> RoomRecord:
        if record.room_id in self._records:
            raise RoomError(CONFLICT, "a room with this id already exists")
        await self._db.write(lambda db: _insert(db, record))
        self._records[record.room_id] = record
        return record

    def record(self, room_id: str) -> RoomRecord | None:
        return self._records.get(room_id)

    def records_between(self, start: float, end: float, limit: int) -> list[RoomRecord]:
        """Scheduled rooms whose appointment overlaps [start, end], earliest first."""
        found = [r for r in self._records.values() if r.ends_at >= start and r.starts_at <= end]
        return sorted(found, key=lambda r: (r.starts_at, r.room_id))[:limit]

    def live(self, room_id: str) -> Room | None:
        return self._live.get(room_id)

    def live_rooms(self) -> list[Room]:
        return list(self._live.values())

    def open(self, room_id: str, *, create_ad_hoc: bool) -> Room:
        """The live room, loaded from its record or (for a verified token) made ad hoc."""
        room = self._live.get(room_id)
        if room is not None:
            return room
        record = self._records.get(room_id)
        if record is None and not create_ad_hoc:
            raise RoomError(NOT_FOUND, "no such room")
        if record is not None:
            capacity = record.max_participants
            waiting = record.max_waiting or lobby_cap(capacity, self._lobby_factor)
            room = Room(
                room_id, self._clock, record.schedule, capacity, waiting, record.allow_reknock
            )
        else:
            waiting = lobby_cap(self._capacity, self._lobby_factor)
            room = Room(room_id, self._clock, None, self._capacity, waiting)
        room.refusals = self._refused.pop(room_id, room.refusals)
        self._live[room_id] = room
        return room

    def adopt(self, room: Room) -> None:
        """Install a live room rebuilt elsewhere (a takeover from another node)."""
        self._live[room.id] = room

    def drop(self, room_id: str) -> None:
        """Forget a live room (another node owns it now)."""
        self._live.pop(room_id, None)

    def add_record(self, record: RoomRecord) -> None:
        """A scheduled room known from the cluster (created on another node)."""
        self._records.setdefault(record.room_id, record)

    def unload_if_idle(self, room_id: str) -> None:
        room = self._live.get(room_id)
        if room is not None and room.is_empty:
            del self._live[room_id]
            self._keep_refusals(room_id, room.refusals)

    def _keep_refusals(self, room_id: str, refusals: Refusals) -> None:
        """The visit goes on while the room is empty: whoever was turned away stays out."""
        if not len(refusals):
            return
        if len(self._refused) >= MAX_KEPT_REFUSALS:
            del self._refused[next(iter(self._refused))]
        self._refused[room_id] = refusals


def _schema(db: sqlite3.Connection) -> int:
    """Create the rooms table, or bring one from an older version up to date."""
    db.executescript(SCHEMA)
    _add_columns(db)
    return 1


def _insert(db: sqlite3.Connection, record: RoomRecord) -> None:
    db.execute(
        f"INSERT INTO rooms ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            record.room_id,
            record.starts_at,
            record.ends_at,
            record.max_participants,
            record.created_at,
            record.created_by,
            record.practice,
            record.max_waiting,
            int(record.allow_reknock),
            record.patient_id,
        ),
    )


def _add_columns(db: sqlite3.Connection) -> None:
    """Bring a rooms table from an older version up to date (new columns only)."""
    present = {row[1] for row in db.execute("PRAGMA table_info(rooms)")}
    for name, kind in ADDED_COLUMNS.items():
        if name not in present:
            db.execute(f"ALTER TABLE rooms ADD COLUMN {name} {kind}")


def _record(row: tuple[Any, ...]) -> RoomRecord:
    fields = dict(zip((name.strip() for name in COLUMNS.split(",")), row, strict=True))
    fields["allow_reknock"] = bool(fields["allow_reknock"])
    return RoomRecord(**fields)
