"""The audit trail's chain is keyed: rewriting rows without the key is caught and located."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from common.audit import AuditEntry, SqliteAuditLog
from common.config import ConfigError
from tests.servers import run_cli

KEY = "k" * 40
NO_KEY_ENV: dict[str, str | None] = {"VISITROOM_AUDIT_KEY": None}
FIELDS = "at, room_id, actor, subject, action, outcome, node, details"
OLD_SCHEMA = """
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, room_id TEXT, actor TEXT,
    subject TEXT, action TEXT NOT NULL, outcome TEXT NOT NULL, node TEXT NOT NULL,
    details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""


def plain_hash(prev_hash: str, row: tuple[Any, ...]) -> str:
    """The unkeyed SHA-256 chain of older versions: what anyone can recompute."""
    blob = json.dumps([prev_hash, *row], separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def entry(n: int, at: float | None = None) -> AuditEntry:
    return AuditEntry("admit", "ok", "visit-1", "dr-smith", f"guest-{n}", at=at or 1000.0 + n)


async def write(path: Path, count: int, key: str | None = None, first: int = 1) -> None:
    log = SqliteAuditLog(path, key=key)
    await log.start()
    for n in range(first, first + count):
        log.record(entry(n))
    await log.close()


async def verify_in_process(path: Path, key: str | None = None) -> bool:
    log = SqliteAuditLog(path, key=key)
    await log.start()
    try:
        return await log.verify_chain()
    finally:
        await log.close()


def tamper(path: Path, change: Callable[[sqlite3.Connection], object], rechain: int = 0) -> None:
    """Change rows by hand, then recompute a plain SHA-256 chain from row `rechain` on."""
    db = sqlite3.connect(path)
    with db:
        db.execute("DROP TRIGGER audit_no_update")
        change(db)
        if rechain:
            before = db.execute(
                "SELECT hash FROM audit WHERE seq < ? ORDER BY seq DESC LIMIT 1", (rechain,)
            ).fetchone()
            prev = before[0] if before else ""
            rows = db.execute(
                f"SELECT seq, {FIELDS} FROM audit WHERE seq >= ? ORDER BY seq", (rechain,)
            ).fetchall()
            for seq, *row in rows:
                digest = plain_hash(prev, tuple(row))
                db.execute(
                    "UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq)
                )
                prev = digest
    db.close()


def verify(data_dir: Path, **env: str | None) -> tuple[int, str]:
    result = run_cli("audit", "verify", "--data-dir", str(data_dir), env={**NO_KEY_ENV, **env})
    return result.returncode, result.stdout + result.stderr


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    return tmp_path / "data" / "audit.sqlite3"


async def test_an_intact_trail_verifies_and_the_command_exits_0(trail: Path) -> None:
    await write(trail, 5)
    await write(trail, 2, first=6)  # a restart continues the chain
    assert stat.S_IMODE((trail.parent / "audit.key").stat().st_mode) == 0o600
    code, out = verify(trail.parent)
    assert code == 0, out
    assert "7 rows checked" in out and "intact" in out and "unkeyed" not in out


async def test_a_row_changed_and_rechained_with_plain_sha256_is_reported(trail: Path) -> None:
    await write(trail, 5)
    tamper(trail, lambda db: db.execute("UPDATE audit SET actor = 'x' WHERE seq = 3"), 3)
    assert not await verify_in_process(trail)
    code, out = verify(trail.parent)
    assert code == 1
    assert "BAD: row 3: its MAC does not match" in out


@pytest.mark.parametrize("rechain", [0, 4])
async def test_a_deleted_row_is_reported(trail: Path, rechain: int) -> None:
    await write(trail, 5)
    tamper(trail, lambda db: db.execute("DELETE FROM audit WHERE seq = 3"), rechain)
    assert not await verify_in_process(trail)
    code, out = verify(trail.parent)
    assert code == 1
    assert "BAD: row 4: rows 3..3 before it are missing" in out


@pytest.mark.parametrize(
    ("where", "reported"),
    [("seq >= 4", "row 4: rows 4..5 at the end are missing"), ("seq <= 2", "row 3: rows 1..2")],
)
async def test_rows_cut_from_either_end_are_reported(
    trail: Path, where: str, reported: str
) -> None:
    await write(trail, 5)
    tamper(trail, lambda db: db.execute(f"DELETE FROM audit WHERE {where}"))
    code, out = verify(trail.parent)
    assert code == 1 and reported in out, out


async def test_retention_pruning_keeps_the_trail_verifiable(trail: Path) -> None:
    log = SqliteAuditLog(trail)
    await log.start()
    for n, at in enumerate((1000.0, 2000.0, 3000.0, 2_000_000_000.0)):
        log.record(entry(n, at))
    assert await log.prune(older_than=2500.0) == 2
    log.record(entry(9, 2_000_000_001.0))
    assert await log.verify_chain()
    await log.close()
    assert verify(trail.parent)[0] == 0
    tamper(trail, lambda db: db.execute("DELETE FROM audit WHERE seq = 3"))
    code, out = verify(trail.parent)
    assert code == 1 and "row 4: rows 3..3 are missing" in out, out


async def test_an_older_unkeyed_trail_is_anchored_and_reported_as_unkeyed(trail: Path) -> None:
    trail.parent.mkdir(mode=0o700)
    db = sqlite3.connect(trail)
    db.executescript(OLD_SCHEMA)
    prev = ""
    for n in range(1, 4):
        row = (1000.0 + n, "visit-1", "dr", f"g{n}", "admit", "ok", "local", "{}")
        digest = plain_hash(prev, row)
        db.execute(f"INSERT INTO audit ({FIELDS}, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?)",
                   (*row, prev, digest))  # fmt: skip
        prev = digest
    db.commit()
    db.close()
    await write(trail, 2, first=4)
    code, out = verify(trail.parent)
    assert code == 0, out
    assert "rows 1..3 are unkeyed" in out and "5 rows checked" in out
    # After the upgrade even the unkeyed rows cannot be rewritten unnoticed.
    tamper(trail, lambda db: db.execute("UPDATE audit SET actor = 'x' WHERE seq = 2"), 2)
    code, out = verify(trail.parent)
    assert code == 1 and "BAD: row 3: the last unkeyed row is not the one the key" in out, out


async def test_the_environment_key_wins_and_a_wrong_key_is_refused(trail: Path) -> None:
    await write(trail, 3, key=KEY)
    assert not (trail.parent / "audit.key").exists()
    assert verify(trail.parent, VISITROOM_AUDIT_KEY=KEY)[0] == 0
    code, out = verify(trail.parent)
    assert code == 2 and "no audit key" in out
    code, out = verify(trail.parent, VISITROOM_AUDIT_KEY="w" * 40)
    assert code == 1 and "use the key this trail was written with" in out
    log = SqliteAuditLog(trail, key="w" * 40)
    with pytest.raises(ConfigError, match="restore the data dir's audit"):
        await log.start()
    await log.close()
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        await write(trail, 1, key="short")


@pytest.mark.parametrize(
    ("how", "reported"),
    [
        ("DELETE FROM audit_anchor", "BAD: row 1: no anchor"),
        ("DROP TABLE audit_anchor", "BAD: the trail cannot be read"),
    ],
)
async def test_a_removed_anchor_is_reported(trail: Path, how: str, reported: str) -> None:
    await write(trail, 3)
    tamper(trail, lambda db: db.execute(how))
    code, out = verify(trail.parent)
    assert code == 1 and reported in out, out


async def test_an_entry_stamped_with_a_whole_number_of_seconds_verifies(trail: Path) -> None:
    log = SqliteAuditLog(trail)
    await log.start()
    log.record(AuditEntry("end", "ok", "visit-1", at=1_700_000_000))
    assert await log.verify_chain()  # SQLite hands the time back as 1700000000.0
    await log.close()
