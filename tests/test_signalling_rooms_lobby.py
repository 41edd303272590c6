"""The room store: scheduled rooms in SQLite, their lobby settings, older files upgraded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from signalling.rooms import RoomRecord, RoomStore
from waiting_room.clock import FakeClock

OLD_SCHEMA = """
CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY, starts_at REAL NOT NULL, ends_at REAL NOT NULL,
    max_participants INTEGER NOT NULL, created_at REAL NOT NULL, created_by TEXT
);
INSERT INTO rooms VALUES ('old', 1800000000, 1800003600, 10, 1799990000, 'admin');
"""


async def test_lobby_settings_are_kept_and_a_room_opens_with_them(tmp_path: Path) -> None:
    clock = FakeClock(1_800_000_000.0)
    store = RoomStore(tmp_path / "rooms.sqlite", clock, 200, lobby_factor=3.0)
    await store.start()
    hour = (clock.now, clock.now + 3600, 10, clock.now)
    await store.create(RoomRecord("own", *hour, max_waiting=4, allow_reknock=True))
    await store.create(RoomRecord("plain", *hour))
    await store.close()
    again = RoomStore(tmp_path / "rooms.sqlite", clock, 200, lobby_factor=3.0)
    await again.start()
    own, plain = again.open("own", create_ad_hoc=False), again.open("plain", create_ad_hoc=False)
    assert (own.max_waiting, own.allow_reknock) == (4, True)
    assert (plain.max_waiting, plain.allow_reknock) == (30, False)
    assert again.open("ad-hoc", create_ad_hoc=True).max_waiting == 600
    await again.close()


async def test_a_rooms_file_from_an_older_version_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "rooms.sqlite"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.close()
    store = RoomStore(path, FakeClock(), 200)
    await store.start()
    record = store.record("old")
    assert record is not None and record.created_by == "admin"
    assert record.max_waiting is None and record.allow_reknock is False
    assert store.open("old", create_ad_hoc=False).max_waiting == 20
    await store.close()
