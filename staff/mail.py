"""Password links for staff, mailed through the portal's outbox sender and SMTP settings.

A link row is its own outbox message (table `links`): written with a random
seed, armed (its token's SHA-256 and expiry stored) when the sender claims it,
and sent by `portal.outbox.OutboxSender` with the same at-least-once rules as
patient invitations. The token is HMAC(key, seed) with a key of its own, so a
staff link is never a patient link. A link works once, until it expires, and
only while it is the user's newest.
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from common.sqlite_db import SqliteDatabase
from portal.mail import lifetime
from portal.model import Delivery
from portal.sqlite_outbox import OutboxTable
from portal.store import Claimed, OutboxRow, TokenHasher
from portal.tokens import TokenMaker, new_seed, token_hash

KEY_LABEL = b"visitroom staff password link v1"
LINK_PATH = "/dashboard"

DUE = """
    SELECT l.link_id, l.user_id, u.email, u.display_name, COALESCE(p.name, u.practice_id),
           l.token_seed, l.smtp_message_id, l.attempts, l.created_at
    FROM links l JOIN users u ON u.user_id = l.user_id
    LEFT JOIN practices p ON p.practice_id = u.practice_id
    WHERE l.state = 'pending' AND l.next_attempt_at <= ?
    ORDER BY l.next_attempt_at, l.link_id LIMIT 1
"""

TEXT = """\
Hello {name},

{intro}

{link}

The link works once and expires in {lifetime}. If you did not ask for this,
you can ignore this email: your password stays as it is.
"""


def token_maker(api_keys: Mapping[str, str]) -> TokenMaker:
    secret = api_keys[min(api_keys)]
    return TokenMaker(hmac.new(secret.encode(), KEY_LABEL, hashlib.sha256).digest())


def password_link(base_url: str, token: str) -> str:
    """The token rides in the fragment: never sent to a server, never in a Referer."""
    return f"{base_url.rstrip('/')}{LINK_PATH}#reset={token}"


def password_email(
    claimed: Claimed, token: str, *, sender: str, base_url: str, valid_for_s: float
) -> EmailMessage:
    """`claimed`: a link row (patient_id is the user id, first_name the display name)."""
    practice = claimed.practice
    message = EmailMessage()
    message["From"] = sender
    message["To"] = claimed.recipient
    message["Subject"] = f"Set your visitroom password ({practice})"
    message["Date"] = format_datetime(datetime.fromtimestamp(claimed.created_at, UTC))
    message["Message-ID"] = claimed.smtp_message_id
    message["Auto-Submitted"] = "auto-generated"
    intro = f"To choose a new password for your {practice} visitroom account, open this link:"
    message.set_content(
        TEXT.format(
            name=claimed.first_name,
            intro=intro,
            link=password_link(base_url, token),
            lifetime=lifetime(valid_for_s),
        )
    )
    return message


def queue_link(db: sqlite3.Connection, user_id: str, kind: str, at: float, domain: str) -> None:
    """A new link for the user (in the caller's transaction); older unused ones stop working."""
    db.execute(
        "UPDATE links SET state = 'void', token_seed = NULL"
        " WHERE user_id = ? AND state IN ('pending', 'sent', 'failed')",
        (user_id,),
    )
    db.execute(
        "INSERT INTO links (user_id, kind, state, token_seed, smtp_message_id, next_attempt_at,"
        " created_at) VALUES (?, ?, 'pending', ?, ?, ?, ?)",
        (user_id, kind, new_seed(), make_msgid("staff", domain), at, at),
    )


def link_problem(
    db: sqlite3.Connection, token: str, at: float
) -> tuple[str | None, str | None, int | None]:
    """(user id, why the link cannot be used or None, link id); reads only."""
    row = db.execute(
        "SELECT link_id, user_id, state, expires_at FROM links WHERE token_hash = ?",
        (token_hash(token),),
    ).fetchone()
    if row is None:
        return None, "unknown", None
    link_id, user_id, state, expires_at = row
    if state not in ("sent", "sending"):  # sending: the server took it, the commit is late
        return user_id, "used" if state == "used" else "void", link_id
    if expires_at is None or at >= expires_at:
        return user_id, "expired", link_id
    return user_id, None, link_id


def use_link(db: sqlite3.Connection, token: str, at: float) -> tuple[str | None, str | None]:
    """(user id, None) and the link used up; or (user id or None, why not)."""
    user_id, problem, link_id = link_problem(db, token, at)
    if problem is None:
        db.execute("UPDATE links SET state = 'used', used_at = ? WHERE link_id = ?", (at, link_id))
    return user_id, problem


class StaffOutbox(OutboxTable):
    """portal.store.OutboxStore on the links table, for portal.outbox.OutboxSender."""

    def __init__(self, database: SqliteDatabase) -> None:
        super().__init__(database, "links", "link_id")

    async def claim_next(
        self, now: float, owner: str, token_hash: TokenHasher, expires_at: float
    ) -> Claimed | None:
        def claim(db: sqlite3.Connection) -> Claimed | None:
            row = db.execute(DUE, (now,)).fetchone()
            if row is None:
                return None
            link_id, user_id, email, name, practice, seed, message_id, attempts, created = row
            db.execute(
                "UPDATE links SET state = 'sending', attempts = attempts + 1, claimed_by = ?,"
                " token_hash = ?, expires_at = ? WHERE link_id = ?",
                (owner, token_hash(seed), expires_at, link_id),
            )
            return Claimed(
                link_id, user_id, email, name, practice, seed, message_id, attempts + 1, created
            )

        return await self._db.write(claim)

    async def list_outbox(self, limit: int) -> list[OutboxRow]:
        rows = await self._db.read(
            lambda db: db.execute(
                "SELECT l.link_id, l.state, l.attempts, u.email, l.created_at, l.sent_at,"
                " l.next_attempt_at, l.last_error FROM links l"
                " JOIN users u ON u.user_id = l.user_id"
                " WHERE l.state IN ('pending', 'sending', 'sent', 'failed')"
                " ORDER BY l.link_id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [OutboxRow(r[0], Delivery(r[1]), *r[2:]) for r in rows]
