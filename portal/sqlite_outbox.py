"""The SQLite OutboxStore: claims, outcomes and listings of invitation emails (see outbox.py)."""

from __future__ import annotations

import sqlite3

from common.sqlite_db import SqliteDatabase
from portal.model import Delivery
from portal.store import Claimed, OutboxRow, TokenHasher

# Invitation messages reach their patient and address through the invitation; visit-link
# messages (no invitation) carry both themselves.
DUE = """
    SELECT o.message_id, o.invitation_id, p.patient_id, COALESCE(i.email, o.recipient),
           p.first_name, p.practice, COALESCE(o.token_seed, ''), o.smtp_message_id,
           o.attempts, o.created_at, o.kind, o.room_id, o.starts_at
    FROM outbox o
    LEFT JOIN invitations i ON i.invitation_id = o.invitation_id
    JOIN patients p ON p.patient_id = COALESCE(i.patient_id, o.patient_id)
    WHERE o.state = 'pending' AND o.next_attempt_at <= ?
    ORDER BY o.next_attempt_at, o.message_id
    LIMIT 1
"""


class OutboxTable:
    """The send attempts' bookkeeping on one outbox table (`table`, keyed by `key`), shared
    by the portal's invitations and the staff's password links (staff/mail.py)."""

    def __init__(self, database: SqliteDatabase, table: str, key: str) -> None:
        self._db = database
        self._table = table
        self._key = key

    async def mark_sent(self, message_id: int, owner: str, at: float) -> None:
        await self._finish(
            "state = 'sent', sent_at = ?, token_seed = NULL, last_error = NULL",
            (at,),
            message_id,
            owner,
        )

    async def mark_retry(self, message_id: int, owner: str, next_at: float, error: str) -> None:
        await self._finish(
            "state = 'pending', next_attempt_at = ?, last_error = ?",
            (next_at, error),
            message_id,
            owner,
        )

    async def mark_failed(self, message_id: int, owner: str, error: str) -> None:
        await self._finish(
            "state = 'failed', token_seed = NULL, last_error = ?", (error,), message_id, owner
        )

    async def _finish(
        self, assignments: str, args: tuple[object, ...], message_id: int, owner: str
    ) -> None:
        sql = (
            f"UPDATE {self._table} SET {assignments}, claimed_by = NULL"
            f" WHERE {self._key} = ? AND state = 'sending' AND claimed_by = ?"
        )
        await self._db.write(lambda db: db.execute(sql, (*args, message_id, owner)))

    async def requeue_orphans(self, at: float) -> int:
        def requeue(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                f"UPDATE {self._table} SET state = 'pending', claimed_by = NULL,"
                " next_attempt_at = ? WHERE state = 'sending'",
                (at,),
            )
            return cursor.rowcount

        return await self._db.write(requeue)

    async def next_due(self) -> float | None:
        row = await self._db.read(
            lambda db: db.execute(
                f"SELECT MIN(next_attempt_at) FROM {self._table} WHERE state = 'pending'"
            ).fetchone()
        )
        due: float | None = row[0]
        return due


class SqliteOutbox(OutboxTable):
    """Implements store.OutboxStore on a SqliteDatabase."""

    def __init__(self, database: SqliteDatabase) -> None:
        super().__init__(database, "outbox", "message_id")

    async def claim_next(
        self, now: float, owner: str, token_hash: TokenHasher, expires_at: float
    ) -> Claimed | None:
        def claim(db: sqlite3.Connection) -> Claimed | None:
            row = db.execute(DUE, (now,)).fetchone()
            if row is None:
                return None
            message_id, invitation_id, patient_id, recipient, first_name, practice, seed = row[:7]
            smtp_message_id, attempts, created_at, kind, room_id, starts_at = row[7:]
            db.execute(
                "UPDATE outbox SET state = 'sending', attempts = attempts + 1, claimed_by = ?,"
                " claimed_at = ? WHERE message_id = ?",
                (owner, now, message_id),
            )
            if invitation_id is not None:
                # The link is armed (its hash stored) before the email can exist anywhere.
                db.execute(
                    "UPDATE invitations SET token_hash = ?, expires_at = ?"
                    " WHERE invitation_id = ? AND state = 'open'",
                    (token_hash(seed), expires_at, invitation_id),
                )
            return Claimed(
                message_id, patient_id, recipient, first_name, practice, seed, smtp_message_id,
                attempts + 1, created_at, kind, room_id, starts_at,
            )  # fmt: skip

        return await self._db.write(claim)

    async def make_due(self, at: float) -> int:
        """Pending messages waiting for a retry become due now."""
        cursor = await self._db.write(
            lambda db: db.execute(
                "UPDATE outbox SET next_attempt_at = ? WHERE state = 'pending'"
                " AND next_attempt_at > ?",
                (at, at),
            )
        )
        count: int = cursor.rowcount
        return count

    async def list_outbox(self, limit: int) -> list[OutboxRow]:
        rows = await self._db.read(
            lambda db: db.execute(
                "SELECT o.message_id, o.state, o.attempts, COALESCE(i.email, o.recipient),"
                " o.created_at, o.sent_at, o.next_attempt_at, o.last_error FROM outbox o"
                " LEFT JOIN invitations i ON i.invitation_id = o.invitation_id"
                " ORDER BY o.message_id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [OutboxRow(r[0], Delivery(r[1]), *r[2:]) for r in rows]
