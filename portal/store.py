"""What the portal needs from storage, as Protocols, so a PostgreSQL store can follow SQLite.

Every method is a coroutine: implementations keep database work off the event
loop. Methods that enforce a rule (invite, activate, change_account_email) do
their reads and writes in one transaction and raise PortalError when refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from portal.model import (
    Delivery,
    InvitationRequest,
    NewPatient,
    Patient,
    ProfileChanges,
    StatusFacts,
)
from portal.validate import Email, Query

# Given an outbox message's token seed, the SHA-256 hex of the activation token.
TokenHasher = Callable[[str], str]


@dataclass(frozen=True)
class Activation:
    """The outcome of a token: `problem` is None on success (for the audit trail only)."""

    patient_id: str | None
    problem: str | None


@dataclass(frozen=True)
class Account:
    patient_id: str
    password_hash: str


INVITATION = "invitation"  # outbox message kinds: an invitation (with a link token)
VISIT = "visit"  # a visit link (no token: the patient link /r/{room})


@dataclass(frozen=True)
class Claimed:
    """An outbox message claimed for one send attempt, with what the email needs."""

    message_id: int
    patient_id: str
    recipient: str
    first_name: str
    practice: str
    token_seed: str  # "" for a visit link
    smtp_message_id: str
    attempts: int
    created_at: float
    kind: str = INVITATION
    room_id: str | None = None
    starts_at: float | None = None


@dataclass(frozen=True)
class VisitEmail:
    """A visit-link email to queue: the patient link of `room_id`, at `recipient`."""

    patient_id: str
    recipient: str
    room_id: str
    starts_at: float
    smtp_message_id: str
    at: float


@dataclass(frozen=True)
class Visit:
    """A scheduled video visit, as the portal needs to know it (from the rooms' store)."""

    room_id: str
    practice: str | None
    starts_at: float
    ends_at: float


class Visits(Protocol):
    """The scheduled visits (signalling's room store, handed in by the composition root)."""

    def visit(self, room_id: str) -> Visit | None: ...


@dataclass(frozen=True)
class PatientSession:
    patient_id: str
    first_name: str
    practice: str
    last_login_at: float | None


@dataclass(frozen=True)
class OutboxRow:
    message_id: int
    state: Delivery
    attempts: int
    recipient: str
    created_at: float
    sent_at: float | None
    next_attempt_at: float
    last_error: str | None


class PatientStore(Protocol):
    async def create_patient(self, new: NewPatient, at: float) -> Patient: ...

    async def get_patient(self, patient_id: str) -> Patient | None: ...

    async def search(self, practice: str, query: Query, limit: int) -> list[Patient]: ...

    async def update_patient(self, patient_id: str, changes: ProfileChanges, at: float) -> Patient:
        """Raises PortalError(not_found)."""
        ...

    async def set_opt_out(self, patient_id: str, opted_out: bool, at: float) -> None:
        """Opting out cancels unsent invitations and voids unused links."""
        ...

    async def invite(self, request: InvitationRequest) -> None:
        """Write the invitation and its outbox message in one transaction (rules.py)."""
        ...

    async def status(self, patient_id: str) -> StatusFacts: ...

    async def change_account_email(self, patient_id: str, email: Email, at: float) -> None: ...

    async def activate(self, token_hash: str, password_hash: str, at: float) -> Activation: ...

    async def account_for_login(self, email_key: str) -> Account | None: ...

    async def record_login(self, patient_id: str, at: float) -> None: ...

    async def invitation_practice(self, token_hash: str, at: float) -> tuple[str | None, str]:
        """(the practice, None) for a usable token, else (None, why): for the landing page."""
        ...

    async def queue_visit_email(self, email: VisitEmail) -> None: ...

    async def start_session(
        self, session_hash: str, patient_id: str, at: float, ttl: float
    ) -> None: ...

    async def session(self, session_hash: str, at: float, ttl: float) -> PatientSession | None:
        """The session's patient (its idle timer restarts), or None when unknown or expired."""
        ...

    async def end_session(self, session_hash: str) -> None: ...


class OutboxStore(Protocol):
    async def claim_next(
        self, now: float, owner: str, token_hash: TokenHasher, expires_at: float
    ) -> Claimed | None:
        """Mark the oldest due message `sending` (attempts + 1) and arm its link."""
        ...

    async def mark_sent(self, message_id: int, owner: str, at: float) -> None: ...

    async def mark_retry(self, message_id: int, owner: str, next_at: float, error: str) -> None: ...

    async def mark_failed(self, message_id: int, owner: str, error: str) -> None: ...

    async def requeue_orphans(self, at: float) -> int:
        """Messages left `sending` by a sender that died go back to `pending`."""
        ...

    async def next_due(self) -> float | None: ...

    async def list_outbox(self, limit: int) -> list[OutboxRow]: ...
