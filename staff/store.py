"""Practices, users, sessions and password links in `staff.sqlite3` (0600, in the data dir).

Every method is a coroutine run on the database's own thread (portal.sqlite_db).
Emails are matched case-insensitively (`email_key`); session ids and link
tokens are kept only as SHA-256 digests.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import astuple, dataclass
from pathlib import Path

from common.sqlite_db import SqliteDatabase
from portal.migrations import migrate
from staff.roles import Role, User
from staff.sessions import Session

STAFF_FILE = "staff.sqlite3"

V1 = (
    """CREATE TABLE practices (
        practice_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
    """CREATE TABLE users (
        user_id TEXT PRIMARY KEY,
        practice_id TEXT NOT NULL REFERENCES practices (practice_id),
        email TEXT NOT NULL,
        email_key TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('provider', 'front_desk', 'practice_admin')),
        password_hash TEXT,
        disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
        totp_secret TEXT,
        totp_pending TEXT,
        totp_last_step INTEGER,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX users_practice ON users (practice_id)",
    """CREATE TABLE sessions (
        digest TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (user_id),
        csrf_token TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_seen_at REAL NOT NULL,
        expires_at REAL NOT NULL
    )""",
    "CREATE INDEX sessions_user ON sessions (user_id)",
    # A password link and its email in one row: the outbox of staff mail (staff/mail.py).
    """CREATE TABLE links (
        link_id INTEGER PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (user_id),
        kind TEXT NOT NULL CHECK (kind IN ('reset', 'welcome')),
        state TEXT NOT NULL
            CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'used', 'void')),
        token_seed TEXT,
        token_hash TEXT UNIQUE,
        expires_at REAL,
        smtp_message_id TEXT NOT NULL UNIQUE,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        claimed_by TEXT,
        last_error TEXT,
        created_at REAL NOT NULL,
        sent_at REAL,
        used_at REAL
    )""",
    "CREATE INDEX links_due ON links (state, next_attempt_at)",
)
MIGRATIONS = (V1,)
USER_COLUMNS = (
    "u.user_id, u.practice_id, u.email, u.display_name, u.role, u.disabled,"
    " u.totp_secret IS NOT NULL, u.password_hash IS NOT NULL"
)


class StaffError(Exception):
    """A refused change (unknown practice, taken email, ...); the message says why."""


def schema(db: sqlite3.Connection) -> int:
    return migrate(db, MIGRATIONS, "staff")


def open_database(data_dir: Path) -> SqliteDatabase:
    return SqliteDatabase(data_dir / STAFF_FILE, schema, "staff-db")


def email_key(email: str) -> str:
    return email.strip().lower()


def new_user_id() -> str:
    return "u_" + secrets.token_hex(6)


def _user(row: tuple[object, ...]) -> User:
    user_id, practice, email, name, role, disabled, totp, password = row
    return User(
        str(user_id), str(practice), str(email), str(name), Role(role),
        bool(disabled), bool(totp), bool(password),
    )  # fmt: skip


@dataclass(frozen=True)
class Credentials:
    """What a sign-in checks: the user, its password hash and its second factor."""

    user: User
    password_hash: str | None
    totp_secret: str | None
    totp_last_step: int | None


class StaffStore:
    def __init__(self, database: SqliteDatabase) -> None:
        self.db = database

    # --- practices ----------------------------------------------------------------------

    async def create_practice(self, practice_id: str, name: str, at: float) -> None:
        def create(db: sqlite3.Connection) -> None:
            try:
                db.execute("INSERT INTO practices VALUES (?, ?, ?)", (practice_id, name, at))
            except sqlite3.IntegrityError:
                raise StaffError(f"the practice {practice_id!r} exists already") from None

        await self.db.write(create)

    async def practices(self) -> list[tuple[str, str]]:
        rows = await self.db.read(
            lambda db: db.execute("SELECT practice_id, name FROM practices ORDER BY 1").fetchall()
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    async def practice_name(self, practice_id: str) -> str | None:
        row = await self.db.read(
            lambda db: db.execute(
                "SELECT name FROM practices WHERE practice_id = ?", (practice_id,)
            ).fetchone()
        )
        return None if row is None else str(row[0])

    # --- users --------------------------------------------------------------------------

    async def add_user(self, user: User, password_hash: str | None, at: float) -> None:
        def add(db: sqlite3.Connection) -> None:
            known = db.execute(
                "SELECT 1 FROM practices WHERE practice_id = ?", (user.practice,)
            ).fetchone()
            if known is None:
                raise StaffError(f"no practice {user.practice!r}: create it first")
            try:
                db.execute(
                    "INSERT INTO users (user_id, practice_id, email, email_key, display_name,"
                    " role, password_hash, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (user.user_id, user.practice, user.email, email_key(user.email),
                     user.display_name, user.role.value, password_hash, at, at),
                )  # fmt: skip
            except sqlite3.IntegrityError:
                raise StaffError("a user with this email exists already") from None

        await self.db.write(add)

    async def user(self, user_id: str) -> User | None:
        row = await self.db.read(
            lambda db: db.execute(
                f"SELECT {USER_COLUMNS} FROM users u WHERE u.user_id = ?", (user_id,)
            ).fetchone()
        )
        return None if row is None else _user(row)

    async def user_by_email(self, email: str) -> User | None:
        row = await self.db.read(
            lambda db: db.execute(
                f"SELECT {USER_COLUMNS} FROM users u WHERE u.email_key = ?", (email_key(email),)
            ).fetchone()
        )
        return None if row is None else _user(row)

    async def users(self, practice: str | None) -> list[User]:
        where, args = ("WHERE u.practice_id = ?", (practice,)) if practice else ("", ())
        rows = await self.db.read(
            lambda db: db.execute(
                f"SELECT {USER_COLUMNS} FROM users u {where} ORDER BY u.display_name", args
            ).fetchall()
        )
        return [_user(r) for r in rows]

    async def credentials(self, email: str) -> Credentials | None:
        row = await self.db.read(
            lambda db: db.execute(
                f"SELECT {USER_COLUMNS}, u.password_hash, u.totp_secret, u.totp_last_step"
                " FROM users u WHERE u.email_key = ?",
                (email_key(email),),
            ).fetchone()
        )
        if row is None:
            return None
        return Credentials(_user(row[:8]), row[8], row[9], row[10])

    async def update_user(self, user_id: str, at: float, **changes: object) -> None:
        """Set columns (role, disabled, display_name, password_hash, totp_*)."""
        assignments = ", ".join(f"{name} = ?" for name in changes)
        sql = f"UPDATE users SET {assignments}, updated_at = ? WHERE user_id = ?"
        await self.db.write(lambda db: db.execute(sql, (*changes.values(), at, user_id)))

    async def totp_state(self, user_id: str) -> tuple[str | None, str | None, int | None]:
        """(secret, pending secret, last accepted step) of a user."""
        row = await self.db.read(
            lambda db: db.execute(
                "SELECT totp_secret, totp_pending, totp_last_step FROM users WHERE user_id = ?",
                (user_id,),
            ).fetchone()
        )
        return (None, None, None) if row is None else (row[0], row[1], row[2])

    async def begin_totp(self, user_id: str, pending: str, at: float) -> bool:
        """Keep `pending` for its first code; False (nothing changed) while a secret is on."""
        cursor = await self.db.write(
            lambda db: db.execute(
                "UPDATE users SET totp_pending = ?, updated_at = ?"
                " WHERE user_id = ? AND totp_secret IS NULL",
                (pending, at, user_id),
            )
        )
        return bool(cursor.rowcount)

    async def enable_totp(self, user_id: str, pending: str, step: int, at: float) -> bool:
        """Turn `pending` on, in one step with the check that no secret is on and that
        `pending` is still the one waiting; False (nothing changed) otherwise."""
        cursor = await self.db.write(
            lambda db: db.execute(
                "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL,"
                " totp_last_step = ?, updated_at = ?"
                " WHERE user_id = ? AND totp_secret IS NULL AND totp_pending = ?",
                (step, at, user_id, pending),
            )
        )
        return bool(cursor.rowcount)

    async def use_totp_step(self, user_id: str, step: int) -> bool:
        """Record `step` as used; False when it (or a later one) was used already (a replay)."""
        cursor = await self.db.write(
            lambda db: db.execute(
                "UPDATE users SET totp_last_step = ? WHERE user_id = ?"
                " AND (totp_last_step IS NULL OR totp_last_step < ?)",
                (step, user_id, step),
            )
        )
        return bool(cursor.rowcount)

    # --- sessions -----------------------------------------------------------------------

    async def add_session(self, session: Session) -> None:
        await self.db.write(
            lambda db: db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                astuple(session),
            )
        )

    async def session(self, digest: str) -> tuple[Session, User] | None:
        row = await self.db.read(
            lambda db: db.execute(
                "SELECT s.digest, s.user_id, s.csrf_token, s.created_at, s.last_seen_at,"
                f" s.expires_at, {USER_COLUMNS} FROM sessions s"
                " JOIN users u ON u.user_id = s.user_id WHERE s.digest = ?",
                (digest,),
            ).fetchone()
        )
        if row is None:
            return None
        return Session(*row[:6]), _user(row[6:])

    async def touch_session(self, digest: str, at: float) -> None:
        await self.db.write(
            lambda db: db.execute(
                "UPDATE sessions SET last_seen_at = ? WHERE digest = ?", (at, digest)
            )
        )

    async def end_session(self, digest: str) -> None:
        await self.db.write(
            lambda db: db.execute("DELETE FROM sessions WHERE digest = ?", (digest,))
        )

    async def end_sessions_of(self, user_id: str) -> int:
        cursor = await self.db.write(
            lambda db: db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
        )
        return int(cursor.rowcount)

    async def prune_sessions(self, now: float, idle_s: float) -> int:
        cursor = await self.db.write(
            lambda db: db.execute(
                "DELETE FROM sessions WHERE expires_at <= ? OR last_seen_at <= ?",
                (now, now - idle_s),
            )
        )
        return int(cursor.rowcount)
