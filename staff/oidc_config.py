"""OpenID Connect settings, from the environment (docs/operations.md, OpenID Connect sign-in).

Off unless VISITROOM_OIDC_ISSUER is set; then the client id and secret are
required. The secret comes from VISITROOM_OIDC_CLIENT_SECRET_FILE (a file, read
once) or VISITROOM_OIDC_CLIENT_SECRET, and never appears in repr() or a log.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from common.config import ConfigError
from staff.oidc import ClaimMap, parse_role_values

CALLBACK_PATH = "/auth/oidc/callback"


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    claims: ClaimMap = field(default_factory=ClaimMap)
    display_name: str = ""  # the button says "Sign in with <display_name>"

    @property
    def label(self) -> str:
        return self.display_name or urlsplit(self.issuer).netloc

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OidcConfig | None:
        issuer = env.get("VISITROOM_OIDC_ISSUER", "").strip()
        if not issuer:
            return None
        parts = urlsplit(issuer)
        loopback = _loopback(parts.hostname)
        if (parts.scheme != "https" and not (parts.scheme == "http" and loopback)) or parts.query:
            raise ConfigError(
                "VISITROOM_OIDC_ISSUER must be the provider's https:// issuer URL"
                " (http:// only for a provider on this machine's loopback)"
            )
        client_id = env.get("VISITROOM_OIDC_CLIENT_ID", "").strip()
        if not client_id:
            raise ConfigError("VISITROOM_OIDC_ISSUER is set: set VISITROOM_OIDC_CLIENT_ID too")
        return cls(
            issuer, client_id, _secret(env), _claims(env),
            env.get("VISITROOM_OIDC_DISPLAY_NAME", "").strip(),
        )  # fmt: skip


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _secret(env: Mapping[str, str]) -> str:
    path = env.get("VISITROOM_OIDC_CLIENT_SECRET_FILE", "").strip()
    if path:
        try:
            secret = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"VISITROOM_OIDC_CLIENT_SECRET_FILE: {exc.strerror}") from None
    else:
        secret = env.get("VISITROOM_OIDC_CLIENT_SECRET", "").strip()
    if not secret:
        raise ConfigError(
            "VISITROOM_OIDC_ISSUER is set: set VISITROOM_OIDC_CLIENT_SECRET_FILE"
            " (or VISITROOM_OIDC_CLIENT_SECRET)"
        )
    return secret


def _claims(env: Mapping[str, str]) -> ClaimMap:
    try:
        values = parse_role_values(env.get("VISITROOM_OIDC_ROLE_VALUES", ""))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    practice = env.get("VISITROOM_OIDC_PRACTICE_CLAIM", "practice").strip()
    if not practice:
        raise ConfigError("VISITROOM_OIDC_PRACTICE_CLAIM must name a claim")
    role = env.get("VISITROOM_OIDC_ROLE_CLAIM", "visitroom_role").strip()
    return ClaimMap(practice, role, values or None)
