"""Staff sign-in and user management: the rules, over the store, the hasher and the audit trail.

`start_session(user)` is the one way a session begins: after a password (and
second factor) here, and later after an OpenID Connect login. Audit rows name
the user by identity (`staff:<id>`), never by email, and never hold a password,
code, token or session id.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace

from common.audit import AuditEntry, AuditLog
from common.clock import Clock
from portal.passwords import Passwords
from portal.throttle import LoginThrottle
from staff import totp
from staff.config import StaffConfig
from staff.mail import link_problem, queue_link, use_link
from staff.roles import Role, User
from staff.sessions import Lifetimes, Session, digest
from staff.store import StaffError, StaffStore, new_user_id

MIN_PASSWORD = 10
MAX_PASSWORD = 256
MAX_NAME = 100
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]+$")


class SignInError(Exception):
    """A refused sign-in. `code`: unauthorized, totp_required or throttled."""

    def __init__(self, code: str, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Started:
    session_id: str  # for the cookie only
    session: Session
    user: User


def check_password(password: object) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise StaffError(f"the password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters")
    return password


def check_email(email: object) -> str:
    if not isinstance(email, str) or not EMAIL.match(email.strip()):
        raise StaffError("that is not an email address")
    return email.strip()


def check_name(name: object) -> str:
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME:
        raise StaffError(f"the display name must be 1-{MAX_NAME} characters")
    return name.strip()


class StaffService:
    def __init__(
        self,
        config: StaffConfig,
        store: StaffStore,
        passwords: Passwords,
        audit: AuditLog,
        clock: Clock,
        mail_domain: str = "localhost",
    ) -> None:
        self.config = config
        self.store = store
        self.passwords = passwords
        self.audit = audit
        self.clock = clock
        self.lifetimes = Lifetimes(config.idle_timeout_s, config.session_lifetime_s)
        self.throttle = LoginThrottle(clock, config.login_delay_cap_s, config.login_address_limit)
        self.mail_domain = mail_domain
        self.on_queued: list[Callable[[], None]] = []  # the mail sender's wake

    def _audit(self, action: str, outcome: str, actor: str | None, **details: str) -> None:
        self.audit.record(AuditEntry(action, outcome, None, actor, None, dict(details)))

    # --- sign-in ------------------------------------------------------------------------

    async def sign_in(self, email: str, password: str, code: str | None, address: str) -> Started:
        account = email.strip().lower()
        wait = self.throttle.begin(account, address)
        if wait > 0:
            self._audit("staff_sign_in", "throttled", None)
            raise SignInError("throttled", "too many failed sign-ins: wait and try again", wait)
        found = await self.store.credentials(email)
        ok = await self.passwords.verify(found.password_hash if found else None, password)
        if found is None or not ok or found.user.disabled:
            reason = "disabled" if found is not None and ok else "password"
            self._audit("staff_sign_in", "unauthorized", found.user.identity if found else None,
                        reason=reason)  # fmt: skip
            raise SignInError("unauthorized", "the email or password is not right")
        if found.totp_secret is not None:
            await self._second_factor(found.user, found.totp_secret, found.totp_last_step, code)
        self.throttle.succeeded(account, address)
        return await self.start_session(found.user, "password")

    async def _second_factor(
        self, user: User, secret: str, last_step: int | None, code: str | None
    ) -> None:
        if not code:
            raise SignInError("totp_required", "enter the code from your authenticator app")
        step = totp.accept(secret, code, self.clock(), last_step)
        if step is None or not await self.store.use_totp_step(user.user_id, step):
            self._audit("staff_sign_in", "unauthorized", user.identity, reason="totp")
            raise SignInError("unauthorized", "that code is not right (or was used already)")

    async def start_session(self, user: User, method: str) -> Started:
        """The one entry point that signs a user in (password now; OpenID Connect later)."""
        session_id, session = self.lifetimes.new(user.user_id, self.clock())
        await self.store.add_session(session)
        self._audit("staff_sign_in", "ok", user.identity, method=method)
        return Started(session_id, session, user)

    async def resume(self, session_id: str, touch: bool = True) -> tuple[Session, User] | None:
        """The live session of a cookie, touched (unless `touch` is False: a page's own
        background refresh is not the user at work); None (and ended) when it is over."""
        if not session_id or len(session_id) > 128:
            return None
        key = digest(session_id)
        found = await self.store.session(key)
        if found is None:
            return None
        session, user = found
        now = self.clock()
        ended = "disabled" if user.disabled else self.lifetimes.ended(session, now)
        if ended is not None:
            await self.store.end_session(key)
            self._audit("staff_session_end", ended, user.identity)
            return None
        if touch and self.lifetimes.needs_touch(session, now):
            await self.store.touch_session(key, now)
        return session, user

    async def sign_out(self, session: Session, user: User) -> None:
        await self.store.end_session(session.digest)
        self._audit("staff_sign_out", "ok", user.identity)

    # --- second factor ------------------------------------------------------------------

    async def totp_begin(self, user: User) -> tuple[str, str]:
        """A new secret waiting for its first code: (secret, otpauth URI)."""
        secret = totp.new_secret()
        await self.store.update_user(user.user_id, self.clock(), totp_pending=secret)
        return secret, totp.provisioning_uri(secret, user.email)

    async def totp_confirm(self, user: User, code: str) -> bool:
        _, pending, _ = await self.store.totp_state(user.user_id)
        step = totp.accept(pending, code, self.clock(), None) if pending else None
        if pending is None or step is None:
            self._audit("staff_totp_enable", "refused", user.identity)
            return False
        await self.store.update_user(
            user.user_id, self.clock(), totp_secret=pending, totp_pending=None,
            totp_last_step=step,
        )  # fmt: skip
        self._audit("staff_totp_enable", "ok", user.identity)
        return True

    async def totp_disable(self, user: User, code: str, address: str) -> bool:
        """Needs a current code; wrong ones are throttled like sign-ins (a stolen session
        must not guess its way to turning the second factor off)."""
        account = "totp:" + user.user_id
        if self.throttle.begin(account, address) > 0:
            self._audit("staff_totp_disable", "throttled", user.identity)
            return False
        secret, _, last = await self.store.totp_state(user.user_id)
        step = totp.accept(secret, code, self.clock(), last) if secret else None
        if step is None or not await self.store.use_totp_step(user.user_id, step):
            self._audit("staff_totp_disable", "refused", user.identity)
            return False
        await self.store.update_user(
            user.user_id, self.clock(), totp_secret=None, totp_pending=None, totp_last_step=None
        )
        self.throttle.succeeded(account, address)
        self._audit("staff_totp_disable", "ok", user.identity)
        return True

    # --- users --------------------------------------------------------------------------

    async def add_user(
        self, actor: str, practice: str, email: object, name: object, role: object,
        password: str | None = None,
    ) -> User:  # fmt: skip
        """A new user; without a password, a link to choose one is mailed."""
        try:
            parsed = Role.parse(role)
        except ValueError as exc:
            raise StaffError(str(exc)) from None
        user = User(new_user_id(), practice, check_email(email), check_name(name), parsed)
        hashed = await self.passwords.hash(check_password(password)) if password else None
        await self.store.add_user(user, hashed, self.clock())
        self.audit.record(
            AuditEntry("staff_user_add", "ok", None, actor, user.identity, {"role": parsed.value})
        )
        if password is None:
            await self._queue(user, "welcome")
        return user

    async def change_user(
        self, actor: User, target: User, role: Role | None, disabled: bool | None
    ) -> User:
        if target.user_id == actor.user_id and (disabled or role not in (None, actor.role)):
            raise StaffError("you cannot disable yourself or change your own role")
        now = self.clock()
        if role is not None and role is not target.role:
            await self.store.update_user(target.user_id, now, role=role.value)
            details = {"from": target.role.value, "to": role.value}
            entry = AuditEntry("staff_role_change", "ok", None, actor.identity, target.identity)
            self.audit.record(replace(entry, details=details))
            await self.store.end_sessions_of(target.user_id)  # the new role starts afresh
        if disabled is not None and disabled != target.disabled:
            await self.store.update_user(target.user_id, now, disabled=int(disabled))
            if disabled:
                await self.store.end_sessions_of(target.user_id)
            action = "staff_user_disable" if disabled else "staff_user_enable"
            self.audit.record(AuditEntry(action, "ok", None, actor.identity, target.identity))
        changed = await self.store.user(target.user_id)
        assert changed is not None
        return changed

    # --- password links -----------------------------------------------------------------

    async def request_reset(self, email: str, address: str) -> None:
        """Mail a link when the address is an enabled user's; the caller learns nothing."""
        wait = self.throttle.begin("reset:" + email.strip().lower(), address)
        if wait > 0:
            self._audit("staff_reset_request", "throttled", None)
            return
        user = await self.store.user_by_email(email)
        if user is None or user.disabled:
            self._audit("staff_reset_request", "unknown", None)
            return
        await self._queue(user, "reset")
        self._audit("staff_reset_request", "ok", user.identity)

    async def _queue(self, user: User, kind: str) -> None:
        now, domain = self.clock(), self.mail_domain
        await self.store.db.write(lambda db: queue_link(db, user.user_id, kind, now, domain))
        for wake in self.on_queued:
            wake()

    async def complete_reset(self, token: str, password: object) -> bool:
        """Set a new password with a link's token; every session of the user ends."""
        new_password = check_password(password)
        now = self.clock()
        # Checked before hashing, so a made-up token costs no argon2 work; then again
        # in the transaction that uses it up.
        user_id, problem, _ = await self.store.db.read(lambda db: link_problem(db, token, now))
        if problem is None:
            hashed = await self.passwords.hash(new_password)
            user_id, problem = await self.store.db.write(
                lambda db: self._use_link(db, token, hashed, now)
            )
        actor = f"staff:{user_id}" if user_id else None
        if problem is not None:
            self._audit("staff_reset", "refused", actor, reason=problem)
            return False
        assert user_id is not None
        await self.store.end_sessions_of(user_id)
        self._audit("staff_reset", "ok", actor)
        return True

    @staticmethod
    def _use_link(
        db: sqlite3.Connection, token: str, hashed: str, now: float
    ) -> tuple[str | None, str | None]:
        user_id, problem = use_link(db, token, now)
        if problem is None and user_id is not None:
            db.execute(
                "UPDATE users SET password_hash = ?, updated_at = ? WHERE user_id = ?",
                (hashed, now, user_id),
            )
        return user_id, problem
