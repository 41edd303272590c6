"""The staff service seen through OIDC sign-in's `StaffSignIn` protocol (staff.oidc_routes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.audit import AuditEntry
from staff.roles import Role, User
from staff.service import StaffService
from staff.sessions import cookie_attributes, cookie_name


class ServiceSignIn:
    def __init__(self, service: StaffService) -> None:
        self.service = service
        self.secure = service.config.tls

    async def user_by_email(self, email: str) -> User | None:
        return await self.service.store.user_by_email(email)

    async def set_role(self, user: User, role: Role, actor: str) -> User:
        """The identity provider's role wins; like any role change, other sessions end."""
        service = self.service
        await service.store.update_user(user.user_id, service.clock(), role=role.value)
        details = {"from": user.role.value, "to": role.value}
        service.audit.record(
            AuditEntry("staff_role_change", "ok", None, actor, user.identity, details)
        )
        await service.store.end_sessions_of(user.user_id)
        changed = await service.store.user(user.user_id)
        assert changed is not None
        return changed

    async def start_session(
        self, user: User, cookies: Mapping[str, str]
    ) -> tuple[str, str, dict[str, Any]]:
        """A new session; the browser's older one ends (one cookie, one session), as with
        the password sign-in."""
        secure = self.secure
        older = await self.service.resume(cookies.get(cookie_name(secure), ""), touch=False)
        started = await self.service.start_session(user, "oidc")
        if older is not None:
            await self.service.sign_out(*older)
        attributes = cookie_attributes(secure, self.service.config.session_lifetime_s)
        return cookie_name(secure), started.session_id, attributes
