"""Who may do what: practice staff act on their own practice's patients; support on any.

Staff tokens carry the `portal:staff` scope and a `practice` claim; support
tokens the `portal:support` scope (common/scopes.py; a plain token
without a `scope` claim that is an admin token with a `practice` counts as
`portal:staff`, and `scope: support` as `portal:support`).
"""

from __future__ import annotations

from dataclasses import dataclass

from common.scopes import PORTAL_STAFF, PORTAL_SUPPORT, Grant
from portal.errors import CONTACT_SUPPORT, NOT_FOUND, NOT_REGISTERED, UNAUTHORIZED, PortalError
from portal.model import Patient

PORTAL_SCOPES = (PORTAL_STAFF, PORTAL_SUPPORT)


@dataclass(frozen=True)
class Staff:
    identity: str
    practice: str | None
    support: bool

    def home_practice(self) -> str:
        """The practice new patients and searches belong to."""
        if self.practice is None:
            raise PortalError(UNAUTHORIZED, "this call needs a token with a `practice` claim")
        return self.practice

    def may_see(self, patient: Patient) -> bool:
        return self.support or patient.practice == self.practice

    @staticmethod
    def refusal_for_account_email(registered: bool) -> PortalError:
        """Why staff (not support) may not change this patient's account email."""
        if not registered:
            return PortalError(NOT_REGISTERED, "this patient has no activated portal account")
        return PortalError(
            CONTACT_SUPPORT,
            "the email of an activated portal account can only be changed by support:"
            " please contact support",
        )


def is_portal_token(grant: Grant) -> bool:
    return any(grant.has(scope) for scope in PORTAL_SCOPES)


def staff_of(grant: Grant) -> Staff:
    """A `portal:staff` token of a practice, or a `portal:support` token
    (Grant.of has already refused a `practice` claim that is not 1-64 characters)."""
    practice = grant.practice
    support = grant.has(PORTAL_SUPPORT)
    if practice is None and not support:
        raise PortalError(UNAUTHORIZED, "a staff token needs a `practice` claim")
    return Staff(grant.identity, practice, support)


def visible(staff: Staff, patient: Patient | None) -> Patient:
    """Another practice's patient is answered exactly like a missing one."""
    if patient is None or not staff.may_see(patient):
        raise PortalError(NOT_FOUND, "no such patient")
    return patient
