"""Webhook settings: where events go, the signing secret, timeouts and the retry schedule."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from yarl import URL

from common.config import ConfigError, parse_duration

MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class WebhookSettings:
    urls: tuple[str, ...] = ()  # none: no webhooks
    secret: str = field(default="", repr=False)
    timeout_s: float = 10.0  # one attempt, connection to answer
    retry_base_s: float = 1.0  # the first retry comes after 0.5 to 1 times this
    retry_max_s: float = 300.0  # tries are at most this far apart
    give_up_s: float = 24 * 3600.0  # a delivery not accepted by then fails


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(text: str) -> str:
    """An endpoint: https://, or http:// to a loopback address (a receiver on this machine)."""
    try:
        url = URL(text)
    except ValueError:
        raise ConfigError(f"VISITROOM_WEBHOOK_URLS: {text!r} is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"VISITROOM_WEBHOOK_URLS: {text!r} is not an http(s) URL")
    if url.scheme == "http" and not _loopback(url.host):
        raise ConfigError(
            f"VISITROOM_WEBHOOK_URLS: {url.host} needs https (events name patients' "
            "identities; plain http only to a loopback address)"
        )
    if url.user or url.password:
        raise ConfigError("VISITROOM_WEBHOOK_URLS: no credentials in a URL; events are signed")
    return text


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    return parse_duration(name, text) if text else default


def webhooks_from_env(env: Mapping[str, str]) -> WebhookSettings:
    """VISITROOM_WEBHOOK_URLS and _SECRET, and the timing settings; ConfigError: why not."""
    urls = tuple(
        dict.fromkeys(
            check_url(u.strip())
            for u in env.get("VISITROOM_WEBHOOK_URLS", "").split(",")
            if u.strip()
        )
    )
    secret = env.get("VISITROOM_WEBHOOK_SECRET", "")
    if urls and len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"VISITROOM_WEBHOOK_URLS needs VISITROOM_WEBHOOK_SECRET of at least {MIN_SECRET_BYTES} "
            "bytes (a long random value the receivers also know)"
        )
    settings = WebhookSettings(
        urls,
        secret,
        _seconds(env, "VISITROOM_WEBHOOK_TIMEOUT_S", 10.0),
        _seconds(env, "VISITROOM_WEBHOOK_RETRY_BASE_S", 1.0),
        _seconds(env, "VISITROOM_WEBHOOK_RETRY_MAX_S", 300.0),
        _seconds(env, "VISITROOM_WEBHOOK_GIVE_UP_S", 24 * 3600.0),
    )
    if settings.retry_max_s < settings.retry_base_s:
        raise ConfigError("VISITROOM_WEBHOOK_RETRY_MAX_S must not be below _RETRY_BASE_S")
    return settings
