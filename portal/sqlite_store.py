"""The SQLite PatientStore: patients, invitations and accounts (see store.py)."""

from __future__ import annotations

import secrets
import sqlite3
from typing import Any

from common.sqlite_db import SqliteDatabase
from portal import rules
from portal.errors import NOT_FOUND, PortalError
from portal.model import (
    Delivery,
    InvitationKind,
    InvitationRequest,
    InvitationState,
    NewPatient,
    Patient,
    ProfileChanges,
    StatusFacts,
)
from portal.store import Account, Activation, PatientSession, VisitEmail
from portal.validate import Email, Query, name_key

PATIENT_COLUMNS = "patient_id, practice, first_name, last_name, date_of_birth, email, created_at"
# Login addresses that belong to another patient: account emails and the
# addresses of open invitations (docs/portal.md). Profile emails may repeat
# (families share one): they are contact details, not logins, and hold nothing.
EMAIL_HELD_ELSEWHERE = """
    SELECT 1 FROM accounts WHERE email_key = :key AND patient_id <> :patient
    UNION ALL SELECT 1 FROM invitations
        WHERE email_key = :key AND state = 'open' AND patient_id <> :patient
    LIMIT 1
"""
# Unsent messages of invitations that can no longer be used are never sent.
CANCEL_DEAD_MESSAGES = """
    UPDATE outbox SET state = 'cancelled', token_seed = NULL
    WHERE state IN ('pending', 'failed') AND invitation_id IN (
        SELECT invitation_id FROM invitations WHERE patient_id = ? AND state <> 'open')
"""
MAX_SEARCH = 50


def new_patient_id() -> str:
    return "pt_" + secrets.token_hex(8)


def _patient(row: tuple[Any, ...]) -> Patient:
    return Patient(*row)


def _load_patient(db: sqlite3.Connection, patient_id: str) -> Patient:
    row = db.execute(
        f"SELECT {PATIENT_COLUMNS} FROM patients WHERE patient_id = ?", (patient_id,)
    ).fetchone()
    if row is None:
        raise PortalError(NOT_FOUND, "no such patient")
    return _patient(row)


def _is_registered(db: sqlite3.Connection, patient_id: str) -> bool:
    found = db.execute("SELECT 1 FROM accounts WHERE patient_id = ?", (patient_id,)).fetchone()
    return found is not None


def _check_email_free(db: sqlite3.Connection, email: Email, patient_id: str) -> None:
    if db.execute(EMAIL_HELD_ELSEWHERE, {"key": email.key, "patient": patient_id}).fetchone():
        raise rules.email_taken()


def _invite_facts(db: sqlite3.Connection, patient_id: str) -> rules.InviteFacts:
    row = db.execute(
        "SELECT opted_out, email, email_key FROM patients WHERE patient_id = ?", (patient_id,)
    ).fetchone()
    if row is None:
        raise PortalError(NOT_FOUND, "no such patient")
    opted_out, email, email_key = row
    states = {
        state
        for (state,) in db.execute(
            "SELECT DISTINCT state FROM invitations WHERE patient_id = ?", (patient_id,)
        )
    }
    return rules.InviteFacts(
        opted_out=bool(opted_out),
        registered=_is_registered(db, patient_id),
        has_open_invitation=InvitationState.OPEN.value in states,
        has_any_invitation=bool(states),
        profile_email=Email(email, email_key) if email else None,
    )


class SqlitePortalStore:
    """Implements store.PatientStore on a SqliteDatabase."""

    def __init__(self, database: SqliteDatabase) -> None:
        self._db = database

    async def create_patient(self, new: NewPatient, at: float) -> Patient:
        patient_id = new_patient_id()

        def insert(db: sqlite3.Connection) -> Patient:
            db.execute(
                "INSERT INTO patients (patient_id, practice, first_name, last_name, first_key,"
                " last_key, date_of_birth, email, email_key, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    patient_id, new.practice, new.first_name, new.last_name,
                    name_key(new.first_name), name_key(new.last_name), new.date_of_birth,
                    new.email.address if new.email else None,
                    new.email.key if new.email else None, at, at,
                ),
            )  # fmt: skip
            return _load_patient(db, patient_id)

        return await self._db.write(insert)

    async def get_patient(self, patient_id: str) -> Patient | None:
        def select(db: sqlite3.Connection) -> Patient | None:
            row = db.execute(
                f"SELECT {PATIENT_COLUMNS} FROM patients WHERE patient_id = ?", (patient_id,)
            ).fetchone()
            return _patient(row) if row else None

        return await self._db.read(select)

    async def search(self, practice: str, query: Query, limit: int = MAX_SEARCH) -> list[Patient]:
        if query.date_of_birth is not None:
            where, args = "date_of_birth = ?", [query.date_of_birth]
        else:
            # A prefix range on the case-folded names uses the indexes; U+10FFFF sorts last.
            low = query.name_prefix or ""
            high = low + "\U0010ffff"
            where = "((first_key >= ? AND first_key < ?) OR (last_key >= ? AND last_key < ?))"
            args = [low, high, low, high]
        sql = (
            f"SELECT {PATIENT_COLUMNS} FROM patients WHERE practice = ? AND {where}"
            " ORDER BY last_key, first_key, date_of_birth LIMIT ?"
        )
        rows = await self._db.read(lambda db: db.execute(sql, [practice, *args, limit]).fetchall())
        return [_patient(row) for row in rows]

    async def update_patient(self, patient_id: str, changes: ProfileChanges, at: float) -> Patient:
        def update(db: sqlite3.Connection) -> Patient:
            _load_patient(db, patient_id)
            columns: dict[str, Any] = {"updated_at": at}
            for field in ("first_name", "last_name"):
                value = getattr(changes, field)
                if value is not None:
                    columns[field] = value
                    columns[field.replace("name", "key")] = name_key(value)
            if changes.date_of_birth is not None:
                columns["date_of_birth"] = changes.date_of_birth
            if changes.email is not None or changes.remove_email:
                columns["email"] = changes.email.address if changes.email else None
                columns["email_key"] = changes.email.key if changes.email else None
            assignments = ", ".join(f"{column} = ?" for column in columns)
            db.execute(
                f"UPDATE patients SET {assignments} WHERE patient_id = ?",
                [*columns.values(), patient_id],
            )
            return _load_patient(db, patient_id)

        return await self._db.write(update)

    async def set_opt_out(self, patient_id: str, opted_out: bool, at: float) -> None:
        def update(db: sqlite3.Connection) -> None:
            _load_patient(db, patient_id)
            db.execute(
                "UPDATE patients SET opted_out = ?, updated_at = ? WHERE patient_id = ?",
                (int(opted_out), at, patient_id),
            )
            if opted_out:
                db.execute(
                    "UPDATE invitations SET state = 'cancelled'"
                    " WHERE patient_id = ? AND state = 'open'",
                    (patient_id,),
                )
                db.execute(CANCEL_DEAD_MESSAGES, (patient_id,))

        await self._db.write(update)

    async def invite(self, request: InvitationRequest) -> None:
        def write(db: sqlite3.Connection) -> None:
            facts = _invite_facts(db, request.patient_id)
            address = rules.invitation_address(facts, request.kind, request.email)
            _check_email_free(db, address, request.patient_id)
            db.execute(
                "UPDATE invitations SET state = 'superseded'"
                " WHERE patient_id = ? AND state = 'open'",
                (request.patient_id,),
            )
            db.execute(CANCEL_DEAD_MESSAGES, (request.patient_id,))
            try:
                self._insert_invitation(db, request, address)
            except sqlite3.IntegrityError:
                raise rules.email_taken() from None  # the unique index caught a race
            if request.kind is InvitationKind.REINVITE:
                db.execute(
                    "UPDATE patients SET last_reinvited_at = ? WHERE patient_id = ?",
                    (request.at, request.patient_id),
                )

        await self._db.write(write)

    @staticmethod
    def _insert_invitation(
        db: sqlite3.Connection, request: InvitationRequest, address: Email
    ) -> None:
        cursor = db.execute(
            "INSERT INTO invitations (patient_id, kind, email, email_key, state, created_at,"
            " created_by) VALUES (?,?,?,?,'open',?,?)",
            (
                request.patient_id, request.kind.value, address.address, address.key,
                request.at, request.actor,
            ),
        )  # fmt: skip
        db.execute(
            "INSERT INTO outbox (invitation_id, smtp_message_id, state, next_attempt_at,"
            " token_seed, created_at) VALUES (?,?,'pending',?,?,?)",
            (
                cursor.lastrowid, request.smtp_message_id, request.at, request.token_seed,
                request.at,
            ),
        )  # fmt: skip

    async def status(self, patient_id: str) -> StatusFacts:
        return await self._db.read(lambda db: _status_facts(db, patient_id))

    async def change_account_email(self, patient_id: str, email: Email, at: float) -> None:
        def update(db: sqlite3.Connection) -> None:
            _load_patient(db, patient_id)
            rules.require_registered(_is_registered(db, patient_id))
            _check_email_free(db, email, patient_id)
            db.execute(
                "UPDATE accounts SET email = ?, email_key = ? WHERE patient_id = ?",
                (email.address, email.key, patient_id),
            )

        await self._db.write(update)

    async def activate(self, token_hash: str, password_hash: str, at: float) -> Activation:
        def write(db: sqlite3.Connection) -> Activation:
            row = db.execute(
                "SELECT invitation_id, patient_id, state, expires_at, email, email_key"
                " FROM invitations WHERE token_hash = ?",
                (token_hash,),
            ).fetchone()
            facts = None
            if row is not None:
                registered = _is_registered(db, row[1])
                facts = rules.TokenFacts(row[1], InvitationState(row[2]), row[3], registered)
            problem = rules.activation_problem(facts, at)
            if row is None or problem is not None:
                return Activation(row[1] if row else None, problem)
            invitation_id, patient_id, _, _, email, email_key = row
            db.execute(
                "UPDATE invitations SET state = 'used', used_at = ? WHERE invitation_id = ?",
                (at, invitation_id),
            )
            db.execute(
                "INSERT INTO accounts (patient_id, email, email_key, password_hash,"
                " invitation_id, registered_at) VALUES (?,?,?,?,?,?)",
                (patient_id, email, email_key, password_hash, invitation_id, at),
            )
            return Activation(patient_id, None)

        try:
            return await self._db.write(write)
        except sqlite3.IntegrityError:
            return Activation(None, "email_in_use")

    async def account_for_login(self, email_key: str) -> Account | None:
        row = await self._db.read(
            lambda db: db.execute(
                "SELECT patient_id, password_hash FROM accounts WHERE email_key = ?", (email_key,)
            ).fetchone()
        )
        return Account(*row) if row else None

    async def record_login(self, patient_id: str, at: float) -> None:
        await self._db.write(
            lambda db: db.execute(
                "UPDATE accounts SET last_login_at = ? WHERE patient_id = ?", (at, patient_id)
            )
        )

    async def invitation_practice(self, token_hash: str, at: float) -> tuple[str | None, str]:
        def read(db: sqlite3.Connection) -> tuple[str | None, str]:
            row = db.execute(
                "SELECT i.patient_id, i.state, i.expires_at, p.practice FROM invitations i"
                " JOIN patients p ON p.patient_id = i.patient_id WHERE i.token_hash = ?",
                (token_hash,),
            ).fetchone()
            facts = None
            if row is not None:
                state = InvitationState(row[1])
                facts = rules.TokenFacts(row[0], state, row[2], _is_registered(db, row[0]))
            problem = rules.activation_problem(facts, at)
            if problem is not None or row is None:
                return None, problem or "unknown"
            return row[3], ""

        return await self._db.read(read)

    async def queue_visit_email(self, email: VisitEmail) -> None:
        await self._db.write(
            lambda db: db.execute(
                "INSERT INTO outbox (kind, patient_id, recipient, room_id, starts_at,"
                " smtp_message_id, state, next_attempt_at, created_at)"
                " VALUES ('visit',?,?,?,?,?,'pending',?,?)",
                (
                    email.patient_id,
                    email.recipient,
                    email.room_id,
                    email.starts_at,
                    email.smtp_message_id,
                    email.at,
                    email.at,
                ),
            )
        )

    async def start_session(
        self, session_hash: str, patient_id: str, at: float, ttl: float
    ) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM patient_sessions WHERE expires_at <= ?", (at,))
            db.execute(
                "INSERT INTO patient_sessions (session_hash, patient_id, created_at, expires_at)"
                " VALUES (?,?,?,?)",
                (session_hash, patient_id, at, at + ttl),
            )

        await self._db.write(write)

    async def session(self, session_hash: str, at: float, ttl: float) -> PatientSession | None:
        def touch(db: sqlite3.Connection) -> PatientSession | None:
            row = db.execute(
                "SELECT s.patient_id, p.first_name, p.practice, a.last_login_at"
                " FROM patient_sessions s JOIN patients p ON p.patient_id = s.patient_id"
                " LEFT JOIN accounts a ON a.patient_id = s.patient_id"
                " WHERE s.session_hash = ? AND s.expires_at > ?",
                (session_hash, at),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE patient_sessions SET expires_at = ? WHERE session_hash = ?",
                (at + ttl, session_hash),
            )
            return PatientSession(*row)

        return await self._db.write(touch)

    async def end_session(self, session_hash: str) -> None:
        await self._db.write(
            lambda db: db.execute(
                "DELETE FROM patient_sessions WHERE session_hash = ?", (session_hash,)
            )
        )


def _status_facts(db: sqlite3.Connection, patient_id: str) -> StatusFacts:
    row = db.execute(
        "SELECT opted_out, last_reinvited_at FROM patients WHERE patient_id = ?", (patient_id,)
    ).fetchone()
    if row is None:
        raise PortalError(NOT_FOUND, "no such patient")
    first_sent, open_count, total = db.execute(
        "SELECT MIN(o.sent_at), SUM(i.state = 'open'), COUNT(i.invitation_id) FROM invitations i"
        " LEFT JOIN outbox o ON o.invitation_id = i.invitation_id AND o.state = 'sent'"
        " WHERE i.patient_id = ?",
        (patient_id,),
    ).fetchone()
    account = db.execute(
        "SELECT email, registered_at, last_login_at FROM accounts WHERE patient_id = ?",
        (patient_id,),
    ).fetchone()
    latest = db.execute(
        "SELECT o.state FROM invitations i JOIN outbox o ON o.invitation_id = i.invitation_id"
        " WHERE i.patient_id = ? ORDER BY i.invitation_id DESC LIMIT 1",
        (patient_id,),
    ).fetchone()
    return StatusFacts(
        opted_out=bool(row[0]),
        open_invitation=bool(open_count),
        any_invitation=bool(total),
        first_sent_at=first_sent,
        registered_at=account[1] if account else None,
        last_login_at=account[2] if account else None,
        last_reinvited_at=row[1],
        account_email=account[0] if account else None,
        delivery=Delivery(latest[0]) if latest else None,
    )
