"""The invitation and activation rules: pure decisions over facts read in one transaction.

The store reads the facts inside its write transaction, asks these functions,
and writes only when they say yes, so a rule and the write it guards are atomic.
"""

from __future__ import annotations

from dataclasses import dataclass

from portal.errors import (
    ALREADY_REGISTERED,
    BAD_REQUEST,
    EMAIL_IN_USE,
    EMAIL_REQUIRED,
    NOT_REGISTERED,
    OPTED_OUT,
    PortalError,
)
from portal.model import InvitationKind, InvitationState
from portal.validate import Email


@dataclass(frozen=True)
class InviteFacts:
    opted_out: bool
    registered: bool
    has_open_invitation: bool
    has_any_invitation: bool
    profile_email: Email | None


@dataclass(frozen=True)
class TokenFacts:
    """The invitation a token hash points at (None: no such token)."""

    patient_id: str
    state: InvitationState
    expires_at: float | None
    registered: bool


def invitation_address(facts: InviteFacts, kind: InvitationKind, given: Email | None) -> Email:
    """The address to invite, or the reason not to (PortalError)."""
    if facts.registered:
        raise PortalError(ALREADY_REGISTERED, "this patient already activated a portal account")
    if facts.opted_out:
        raise PortalError(
            OPTED_OUT, "the patient does not want access to health information (opted out)"
        )
    if kind is InvitationKind.INVITE and facts.has_open_invitation:
        raise PortalError(BAD_REQUEST, "an invitation is already out: use reinvite", 409)
    if kind is InvitationKind.REINVITE and not facts.has_any_invitation:
        raise PortalError(BAD_REQUEST, "this patient was never invited: use invite", 409)
    address = given or facts.profile_email
    if address is None:
        raise PortalError(
            EMAIL_REQUIRED, "add an email to the patient's profile first, then invite"
        )
    return address


def email_taken() -> PortalError:
    return PortalError(
        EMAIL_IN_USE,
        "this email is another patient's portal login or pending invitation; "
        "invite this patient with an `email` of their own",
    )


def require_registered(registered: bool) -> None:
    if not registered:
        raise PortalError(NOT_REGISTERED, "this patient has no activated portal account")


def activation_problem(facts: TokenFacts | None, now: float) -> str | None:
    """Why a token cannot activate an account (for the audit trail only), or None."""
    if facts is None:
        return "unknown"
    if facts.state is not InvitationState.OPEN:
        return str(facts.state.value)
    if facts.registered:
        return "registered"
    if facts.expires_at is None or now >= facts.expires_at:
        return "expired"
    return None
