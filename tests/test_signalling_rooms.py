"""The rooms store: rooms belong to a practice, and stores from before that keep working."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from signalling.rooms import RoomRecord, RoomStore
from waiting_room.clock import FakeClock

OLD_SCHEMA = """
CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    starts_at REAL NOT NULL,
    ends_at REAL NOT NULL,
    max_participants INTEGER NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT
);
"""


async def test_a_store_from_before_practices_gains_the_column_and_keeps_its_rooms(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rooms.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO rooms VALUES ('old', 10.0, 20.0, 50, 5.0, 'ops')")
    db.close()
    store = RoomStore(path, FakeClock(), 200)
    await store.start()
    assert store.record("old") == RoomRecord("old", 10.0, 20.0, 50, 5.0, "ops", None)
    await store.create(RoomRecord("new", 30.0, 40.0, 10, 6.0, "admin-p1", "p1"))
    await store.close()
    again = RoomStore(path, FakeClock(), 200)
    await again.start()
    assert again.record("new") == RoomRecord("new", 30.0, 40.0, 10, 6.0, "admin-p1", "p1")
    assert again.record("old") == RoomRecord("old", 10.0, 20.0, 50, 5.0, "ops", None)
    await again.close()


PATIENT_SCHEMA_BEFORE = """
CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    starts_at REAL NOT NULL,
    ends_at REAL NOT NULL,
    max_participants INTEGER NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT,
    practice TEXT,
    max_waiting INTEGER,
    allow_reknock INTEGER NOT NULL DEFAULT 0
);
"""


async def test_a_store_from_before_patients_gains_the_column_and_keeps_its_rooms(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rooms.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(PATIENT_SCHEMA_BEFORE)
        db.execute("INSERT INTO rooms VALUES ('old', 10.0, 20.0, 50, 5.0, 'ops', 'p1', 7, 1)")
    db.close()
    old = RoomRecord("old", 10.0, 20.0, 50, 5.0, "ops", "p1", 7, True)
    store = RoomStore(path, FakeClock(), 200)
    await store.start()
    assert store.record("old") == old and old.patient_id is None
    named = RoomRecord("new", 30.0, 40.0, 10, 6.0, "admin-p1", "p1", patient_id="pt_" + "a" * 16)
    await store.create(named)
    await store.close()
    again = RoomStore(path, FakeClock(), 200)
    await again.start()
    assert again.record("new") == named and again.record("old") == old
    await again.close()
