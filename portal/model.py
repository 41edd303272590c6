"""Portal records and the derived per-patient status (docs/portal.md, Status).

Statuses are computed from stored facts, never stored themselves.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from portal.validate import Email

PENDING = "Pending"
NEVER = "Never"


class InvitationKind(enum.Enum):
    INVITE = "invite"
    REINVITE = "reinvite"


class InvitationState(enum.Enum):
    OPEN = "open"  # its link may be used (until it expires)
    USED = "used"  # the patient activated with it
    SUPERSEDED = "superseded"  # a reinvite replaced it
    CANCELLED = "cancelled"  # the patient opted out before using it


class Delivery(enum.Enum):
    """An outbox message's state: pending -> sending -> sent, or back to pending to retry."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"  # refused for good (5xx) or out of attempts
    CANCELLED = "cancelled"  # superseded or opted out before it was sent


@dataclass(frozen=True)
class Patient:
    patient_id: str
    practice: str
    first_name: str
    last_name: str
    date_of_birth: str
    email: str | None
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id,
            "practice": self.practice,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "date_of_birth": self.date_of_birth,
            "email": self.email,
        }


@dataclass(frozen=True)
class NewPatient:
    practice: str
    first_name: str
    last_name: str
    date_of_birth: str
    email: Email | None


@dataclass(frozen=True)
class ProfileChanges:
    """A PATCH: only the fields given; `email` may be set to None (removed)."""

    first_name: str | None = None
    last_name: str | None = None
    date_of_birth: str | None = None
    email: Email | None = None
    remove_email: bool = False

    @property
    def fields(self) -> list[str]:
        named = [
            n for n in ("first_name", "last_name", "date_of_birth", "email") if getattr(self, n)
        ]
        return [*named, "email"] if self.remove_email else named


@dataclass(frozen=True)
class InvitationRequest:
    """What the store needs to write an invitation and its outbox message atomically."""

    patient_id: str
    kind: InvitationKind
    email: Email | None  # given on the request: this invitation only, never the profile
    token_seed: str
    smtp_message_id: str
    at: float
    actor: str


@dataclass(frozen=True)
class StatusFacts:
    """Everything the status is derived from, read in one transaction."""

    opted_out: bool
    open_invitation: bool  # an invitation whose link may still be used (sent or not)
    any_invitation: bool  # an invitation was ever written (a reinvite needs one)
    first_sent_at: float | None
    registered_at: float | None
    last_login_at: float | None
    last_reinvited_at: float | None
    account_email: str | None
    delivery: Delivery | None  # of the latest invitation's message


def day(at: float, zone: tzinfo) -> str:
    return datetime.fromtimestamp(at, zone).date().isoformat()


def status_json(facts: StatusFacts, zone: tzinfo) -> dict[str, Any]:
    """The exact status object of docs/portal.md; dates are days in the practice's time zone."""

    def dated(at: float | None, otherwise: str | None) -> str | None:
        return day(at, zone) if at is not None else otherwise

    # Only an open invitation is waiting for anything: one voided by an opt-out (or by a
    # reinvite, which opens the next) can never register the patient.
    waiting = PENDING if facts.open_invitation else None
    return {
        "opted_out": facts.opted_out,
        "activated_on": dated(facts.first_sent_at, waiting),
        "registered_on": dated(facts.registered_at, waiting),
        "last_login_on": dated(facts.last_login_at, NEVER),
        "last_reinvited_on": dated(facts.last_reinvited_at, NEVER),
        "account_email": facts.account_email if facts.registered_at is not None else None,
        **may_invite(facts),
    }


def may_invite(facts: StatusFacts) -> dict[str, bool]:
    """Which of invite / reinvite the rules (portal/rules.py) would accept now, an address aside."""
    allowed = facts.registered_at is None and not facts.opted_out
    return {
        "can_invite": allowed and not facts.open_invitation,
        "can_reinvite": allowed and facts.any_invitation,
    }
