"""The portal's own settings, from the environment (docs/operations.md, Patient portal).

The three it shares with the server (data directory, public base URL, API keys)
are handed in by whoever mounts the portal; the rest are VISITROOM_SMTP_* and
VISITROOM_PORTAL_* variables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.config import ConfigError, RateLimit, parse_duration

PUBLIC_RATE_LIMIT = RateLimit(20, 60.0)
ACCOUNT_RATE_LIMIT = RateLimit(10, 900.0)
INVITE_RATE_LIMIT = RateLimit(200, 3600.0)
LOGIN_ADDRESS_LIMIT = RateLimit(10, 900.0)

DURATIONS = {
    "smtp_timeout_s": "VISITROOM_SMTP_TIMEOUT",
    "invite_ttl_s": "VISITROOM_PORTAL_INVITE_TTL",
    "retry_base_s": "VISITROOM_PORTAL_RETRY_BASE",
    "login_delay_cap_s": "VISITROOM_PORTAL_LOGIN_DELAY_CAP",
}
LIMITS = {
    "public_rate_limit": "VISITROOM_PORTAL_PUBLIC_RATE_LIMIT",
    "account_rate_limit": "VISITROOM_PORTAL_ACCOUNT_RATE_LIMIT",
    "invite_rate_limit": "VISITROOM_PORTAL_INVITE_RATE_LIMIT",
    "login_address_limit": "VISITROOM_PORTAL_LOGIN_ADDRESS_LIMIT",
}


@dataclass(frozen=True)
class PortalConfig:
    # shared with the server: where state is kept, the public URL, the API keys
    data_dir: Path = Path("data")
    base_url: str = "http://127.0.0.1:8080"
    api_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    # SMTP (None: invitations wait in the outbox); the password never appears in repr()
    smtp_url: str | None = None
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str | None = None
    smtp_timeout_s: float = 30.0
    invite_ttl_s: float = 7 * 86400.0
    retry_base_s: float = 30.0
    timezone: str = "UTC"
    practices: Mapping[str, str] = field(default_factory=dict)
    public_rate_limit: RateLimit = PUBLIC_RATE_LIMIT
    account_rate_limit: RateLimit = ACCOUNT_RATE_LIMIT
    invite_rate_limit: RateLimit = INVITE_RATE_LIMIT
    # failed logins: the longest wait an account is slowed to, and the hard cap per address
    login_delay_cap_s: float = 60.0
    login_address_limit: RateLimit = LOGIN_ADDRESS_LIMIT

    @classmethod
    def from_env(cls, env: Mapping[str, str], **shared: Any) -> PortalConfig:
        """The portal's settings from `env`; `shared`: data_dir, base_url, api_keys."""
        values: dict[str, Any] = {
            "smtp_url": env.get("VISITROOM_SMTP_URL") or None,
            "smtp_username": env.get("VISITROOM_SMTP_USERNAME") or None,
            "smtp_password": env.get("VISITROOM_SMTP_PASSWORD") or None,
            "smtp_from": env.get("VISITROOM_SMTP_FROM") or None,
            "timezone": env.get("VISITROOM_PORTAL_TIMEZONE") or "UTC",
            "practices": parse_practices(env.get("VISITROOM_PORTAL_PRACTICES")),
        }
        for name, var in DURATIONS.items():
            if env.get(var):
                values[name] = parse_duration(var, env[var])
        for name, var in LIMITS.items():
            if env.get(var):
                values[name] = RateLimit.parse(env[var])
        return cls(**values, **shared)


def parse_practices(text: str | None) -> dict[str, str]:
    """`VISITROOM_PORTAL_PRACTICES`: a JSON object of practice id -> display name."""
    if not text:
        return {}
    try:
        names = json.loads(text)
    except ValueError:
        raise ConfigError("VISITROOM_PORTAL_PRACTICES must be a JSON object") from None
    if not isinstance(names, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in names.items()
    ):
        raise ConfigError("VISITROOM_PORTAL_PRACTICES must map practice ids to names")
    return names
