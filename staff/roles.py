"""What each staff role may do, as the same scopes a token carries (common/scopes.py). Pure.

- provider:       rooms:admin rooms:host, for their practice: sees and schedules
                  the practice's visits, joins them as host;
- front_desk:     rooms:admin rooms:host portal:staff: the practice's visits and
                  patients; joins a visit as *staff*, which on the wire is the
                  `host` role (lets patients in, ends the visit), under the
                  user's own name;
- practice_admin: rooms:admin, and manages the practice's users (add, disable,
                  change roles); no host rights, no patients.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from common.scopes import PORTAL_STAFF, ROOMS_ADMIN, ROOMS_HOST, Grant, render
from common.tokens import Claims

IDENTITY_PREFIX = "staff:"


class Role(enum.Enum):
    PROVIDER = "provider"
    FRONT_DESK = "front_desk"
    PRACTICE_ADMIN = "practice_admin"

    @classmethod
    def parse(cls, text: object) -> Role:
        for role in cls:
            if role.value == text:
                return role
        names = ", ".join(r.value for r in cls)
        raise ValueError(f"the role must be one of {names}")


SCOPES: dict[Role, frozenset[str]] = {
    Role.PROVIDER: frozenset({ROOMS_ADMIN, ROOMS_HOST}),
    Role.FRONT_DESK: frozenset({ROOMS_ADMIN, ROOMS_HOST, PORTAL_STAFF}),
    Role.PRACTICE_ADMIN: frozenset({ROOMS_ADMIN}),
}


@dataclass(frozen=True)
class User:
    user_id: str
    practice: str
    email: str
    display_name: str
    role: Role
    disabled: bool = False
    totp: bool = False  # a second factor is set up
    has_password: bool = False

    @property
    def identity(self) -> str:
        """Who the user is in tokens and the audit trail: never the email or name."""
        return IDENTITY_PREFIX + self.user_id

    @property
    def manages_users(self) -> bool:
        return self.role is Role.PRACTICE_ADMIN

    @property
    def offered_host(self) -> bool:
        """Whether opening a visit's link offers to join as host (providers only)."""
        return self.role is Role.PROVIDER

    def public(self) -> dict[str, object]:
        return {
            "user_id": self.user_id,
            "practice": self.practice,
            "email": self.email,
            "display_name": self.display_name,
            "role": self.role.value,
            "disabled": self.disabled,
            "totp": self.totp,
        }


def grant_for(user: User, expires_at: float) -> Grant:
    """The authority of a signed-in user: the Grant its role's token would give."""
    scopes = SCOPES[user.role]
    claims = Claims(
        identity=user.identity,
        name=user.display_name,
        room="*",
        role="host" if ROOMS_HOST in scopes else "guest",
        admin=True,
        practice=user.practice,
        scope=render(scopes),
        expires_at=expires_at,
    )
    return Grant.of(claims)
