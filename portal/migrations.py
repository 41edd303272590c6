"""The portal schema, versioned in code: each migration runs once, in order, in a transaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from common.sqlite_db import SqliteDatabase

V1 = (
    """CREATE TABLE patients (
        patient_id TEXT PRIMARY KEY,
        practice TEXT NOT NULL,
        first_name TEXT NOT NULL,
        last_name TEXT NOT NULL,
        first_key TEXT NOT NULL,
        last_key TEXT NOT NULL,
        date_of_birth TEXT NOT NULL,
        email TEXT,
        email_key TEXT,
        opted_out INTEGER NOT NULL DEFAULT 0 CHECK (opted_out IN (0, 1)),
        last_reinvited_at REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX patients_first ON patients (practice, first_key)",
    "CREATE INDEX patients_last ON patients (practice, last_key)",
    "CREATE INDEX patients_born ON patients (practice, date_of_birth)",
    "CREATE INDEX patients_email ON patients (email_key)",
    """CREATE TABLE invitations (
        invitation_id INTEGER PRIMARY KEY,
        patient_id TEXT NOT NULL REFERENCES patients (patient_id),
        kind TEXT NOT NULL CHECK (kind IN ('invite', 'reinvite')),
        email TEXT NOT NULL,
        email_key TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'used', 'superseded', 'cancelled')),
        token_hash TEXT UNIQUE,
        expires_at REAL,
        created_at REAL NOT NULL,
        created_by TEXT NOT NULL,
        used_at REAL
    )""",
    "CREATE INDEX invitations_patient ON invitations (patient_id, invitation_id)",
    # One open invitation per patient, and an open invitation's address is nobody else's.
    "CREATE UNIQUE INDEX invitations_one_open ON invitations (patient_id) WHERE state = 'open'",
    "CREATE UNIQUE INDEX invitations_open_email ON invitations (email_key) WHERE state = 'open'",
    """CREATE TABLE accounts (
        patient_id TEXT PRIMARY KEY REFERENCES patients (patient_id),
        email TEXT NOT NULL,
        email_key TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        invitation_id INTEGER NOT NULL REFERENCES invitations (invitation_id),
        registered_at REAL NOT NULL,
        last_login_at REAL
    )""",
    """CREATE TABLE outbox (
        message_id INTEGER PRIMARY KEY,
        invitation_id INTEGER NOT NULL UNIQUE REFERENCES invitations (invitation_id),
        smtp_message_id TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL
            CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'cancelled')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        claimed_by TEXT,
        claimed_at REAL,
        token_seed TEXT,
        last_error TEXT,
        created_at REAL NOT NULL,
        sent_at REAL
    )""",
    "CREATE INDEX outbox_due ON outbox (state, next_attempt_at)",
)

OUTBOX_COLUMNS = (
    "message_id, invitation_id, smtp_message_id, state, attempts, next_attempt_at,"
    " claimed_by, claimed_at, token_seed, last_error, created_at, sent_at"
)
# V2: the outbox also carries visit-link emails (kind 'visit': a patient, an address and a
# room, no invitation and no token); patients who signed in get a session.
V2 = (
    """CREATE TABLE outbox_v2 (
        message_id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL DEFAULT 'invitation' CHECK (kind IN ('invitation', 'visit')),
        invitation_id INTEGER UNIQUE REFERENCES invitations (invitation_id),
        patient_id TEXT REFERENCES patients (patient_id),
        recipient TEXT,
        room_id TEXT,
        starts_at REAL,
        smtp_message_id TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL
            CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'cancelled')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        claimed_by TEXT,
        claimed_at REAL,
        token_seed TEXT,
        last_error TEXT,
        created_at REAL NOT NULL,
        sent_at REAL,
        CHECK ((kind = 'invitation') = (invitation_id IS NOT NULL)),
        CHECK ((kind = 'visit') = (patient_id IS NOT NULL AND recipient IS NOT NULL
                                   AND room_id IS NOT NULL))
    )""",
    f"INSERT INTO outbox_v2 ({OUTBOX_COLUMNS}) SELECT {OUTBOX_COLUMNS} FROM outbox",
    "DROP TABLE outbox",
    "ALTER TABLE outbox_v2 RENAME TO outbox",
    "CREATE INDEX outbox_due ON outbox (state, next_attempt_at)",
    """CREATE TABLE patient_sessions (
        session_hash TEXT PRIMARY KEY,
        patient_id TEXT NOT NULL REFERENCES patients (patient_id),
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    )""",
    "CREATE INDEX patient_sessions_patient ON patient_sessions (patient_id)",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (V1, V2)


def migrate(
    db: sqlite3.Connection,
    migrations: tuple[tuple[str, ...], ...] = MIGRATIONS,
    what: str = "portal",
) -> int:
    """Bring the schema up to date; returns the version. `db` is in autocommit mode.

    `migrations` and `what` let another store (staff) keep its own schema the same way."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    db.execute("BEGIN IMMEDIATE")
    try:
        current = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        if current > len(migrations):
            raise RuntimeError(
                f"the {what} database is at schema {current}, newer than this code "
                f"({len(migrations)}): upgrade visitroom"
            )
        for version, statements in enumerate(migrations[current:], start=current + 1):
            for statement in statements:
                db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return len(migrations)


def portal_database(path: Path) -> SqliteDatabase:
    """The portal's database at `path`, brought up to date by `migrate` when started."""
    return SqliteDatabase(path, migrate, "portal-db")
