"""Staff sign-in settings, from the environment (docs/operations.md, Practice users and sign-in).

The data directory, public base URL and API keys are the server's, handed in by
whoever builds the staff part; mail goes through the portal's SMTP settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common.config import ConfigError, RateLimit, parse_duration
from staff.oidc_config import OidcConfig

DURATIONS = {
    "idle_timeout_s": "VISITROOM_STAFF_IDLE_TIMEOUT",
    "session_lifetime_s": "VISITROOM_STAFF_SESSION_LIFETIME",
    "reset_ttl_s": "VISITROOM_STAFF_RESET_TTL",
}
LOGIN_ADDRESS_LIMIT = RateLimit(20, 900.0)


@dataclass(frozen=True)
class StaffConfig:
    data_dir: Path = Path("data")
    base_url: str = "http://127.0.0.1:8080"
    api_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    # the session cookie gets `Secure` (and the __Host- name) when this is on
    tls: bool = False
    idle_timeout_s: float = 30 * 60.0
    session_lifetime_s: float = 12 * 3600.0
    reset_ttl_s: float = 3600.0
    login_address_limit: RateLimit = LOGIN_ADDRESS_LIMIT
    login_delay_cap_s: float = 60.0
    retry_base_s: float = 30.0
    oidc: OidcConfig | None = None  # OpenID Connect sign-in, when VISITROOM_OIDC_ISSUER is set

    @property
    def origin(self) -> str:
        parts = urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    @classmethod
    def from_env(cls, env: Mapping[str, str], **shared: Any) -> StaffConfig:
        """`shared`: data_dir, base_url, api_keys and tls, from the server's configuration."""
        values: dict[str, Any] = {}
        for name, var in DURATIONS.items():
            if env.get(var):
                values[name] = parse_duration(var, env[var])
        if env.get("VISITROOM_STAFF_LOGIN_ADDRESS_LIMIT"):
            values["login_address_limit"] = RateLimit.parse(
                env["VISITROOM_STAFF_LOGIN_ADDRESS_LIMIT"]
            )
        values["oidc"] = OidcConfig.from_env(env)
        config = cls(**values, **shared)
        if config.idle_timeout_s > config.session_lifetime_s:
            raise ConfigError(
                "VISITROOM_STAFF_IDLE_TIMEOUT must not be longer than"
                " VISITROOM_STAFF_SESSION_LIFETIME"
            )
        return config
