"""Server configuration: command-line flags over environment over defaults."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from signalling.auth import parse_ttl

MIN_SECRET_BYTES = 32
CREDENTIALS_FILE = "credentials.json"


class ConfigError(Exception):
    """The configuration cannot be used; the message says why."""


@dataclass(frozen=True)
class RateLimit:
    """At most `count` events per `seconds`; count 0 disables the limit."""

    count: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        text = text.strip()
        if text == "0":
            return cls(0, 1.0)
        count, _, seconds = text.partition("/")
        try:
            parsed = cls(int(count), float(seconds))
        except ValueError:
            raise ConfigError(f"rate limit must look like N/SECONDS or 0, not {text!r}") from None
        if parsed.count < 0 or parsed.seconds <= 0:
            raise ConfigError(f"rate limit must be positive: {text!r}")
        return parsed


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    api_keys: Mapping[str, str] = field(default_factory=dict)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    public_base_url: str | None = None
    allowed_origins: tuple[str, ...] = ()
    knock_rate_limit: RateLimit = RateLimit(20, 10.0)
    max_frame_bytes: int = 64 * 1024
    hello_timeout_s: float = 10.0
    resume_window_s: float = 30.0
    max_participants_cap: int = 200
    default_max_participants: int = 200
    send_queue_limit: int = 1024
    # floods and slow clients (docs/operations.md, "Floods and slow clients")
    send_queue_bytes: int = 8 * 1024 * 1024  # per WebSocket, besides send_queue_limit frames
    header_timeout_s: float = 5.0  # a request's headers must be complete by then
    max_unauthenticated_per_address: int = 500  # connections not yet a verified WebSocket
    trusted_proxies: tuple[str, ...] = ()  # exempt from the per-address cap; X-Forwarded-For
    # media plane
    ice_hosts: tuple[str, ...] = ()
    announced_ip: str | None = None
    rtc_ports: tuple[int, int] | None = None
    ice_servers: tuple[Mapping[str, object], ...] = ()
    # SFU worker processes (0: the SFU runs in the signalling process) and
    # what one worker may take before a room spreads to another
    workers: int = 0
    worker_max_participants: int = 0  # 0: no cap
    worker_pps_budget: float = 40_000.0
    worker_cpu_budget: float = 0.85
    # with --redis: where this node's workers take other nodes' RPC and relay
    # (default: --host, or 127.0.0.1 when that is a wildcard)
    worker_host: str | None = None
    # video slots at full rate per subscriber (0: all); the rest key frames only
    stage_video_slots: int = 0
    thumbnail_refresh_s: float = 1.0
    # portal
    smtp_url: str | None = None
    # cluster
    redis_url: str | None = None
    node_id: str = ""
    node_url: str | None = None  # how other nodes reach this one (default: base URL)
    drain_deadline_s: float = 30.0
    audit_retention_days: int = 6 * 365 + 2  # HIPAA: six years of audit records, at least
    # portal (docs/portal.md); the SMTP password never appears in repr()
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str | None = None
    smtp_timeout_s: float = 30.0
    portal_invite_ttl_s: float = 7 * 86400.0
    portal_retry_base_s: float = 30.0
    portal_timezone: str = "UTC"
    portal_practices: Mapping[str, str] = field(default_factory=dict)
    portal_public_rate_limit: RateLimit = RateLimit(20, 60.0)
    portal_account_rate_limit: RateLimit = RateLimit(10, 900.0)
    portal_invite_rate_limit: RateLimit = RateLimit(200, 3600.0)

    @property
    def is_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"

    @property
    def internal_url(self) -> str:
        """Where other nodes of the cluster reach this node directly."""
        if self.node_url:
            return self.node_url.rstrip("/")
        scheme = "https" if self.tls_cert else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        scheme = "https" if self.tls_cert else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def check_secret(secret: str) -> None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"the API secret must be at least {MIN_SECRET_BYTES} bytes; "
            "set VISITROOM_API_SECRET to a long random value"
        )


def load_or_create_credentials(data_dir: Path) -> tuple[dict[str, str], Path | None]:
    """Read the stored key/secret pair, or generate and store one (mode 0600).

    Returns the keys and the file path when it was created now (else None).
    """
    path = data_dir / CREDENTIALS_FILE
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(f"{path} must not be readable by others (chmod 600)")
        stored = json.loads(path.read_text())
        check_secret(stored["api_secret"])
        return {stored["api_key"]: stored["api_secret"]}, None
    data_dir.mkdir(parents=True, exist_ok=True)
    key = "vr_" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"api_key": key, "api_secret": secret}, handle)
    return {key: secret}, path


def api_keys_from_env(env: Mapping[str, str]) -> dict[str, str] | None:
    key = env.get("VISITROOM_API_KEY")
    secret = env.get("VISITROOM_API_SECRET")
    if key is None and secret is None:
        return None
    if not key:
        raise ConfigError("VISITROOM_API_SECRET is set but VISITROOM_API_KEY is empty")
    check_secret(secret or "")
    return {key: secret or ""}


def parse_ports(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        ports = (int(low), int(high or low))
    except ValueError:
        raise ConfigError(f"VISITROOM_RTC_PORTS must look like 40000-40999, not {text!r}") from None
    if not 1024 <= ports[0] <= ports[1] <= 65535:
        raise ConfigError(f"VISITROOM_RTC_PORTS out of range: {text!r}")
    return ports


def split_list(text: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (text or "").split(",") if item.strip())


def parse_ice_servers(text: str | None) -> tuple[Mapping[str, object], ...]:
    """`VISITROOM_ICE_SERVERS` is a JSON list of RTCIceServer objects or a comma list of URLs."""
    if not text:
        return ()
    if text.lstrip().startswith("["):
        servers = json.loads(text)
        if not isinstance(servers, list) or not all(isinstance(s, dict) for s in servers):
            raise ConfigError("VISITROOM_ICE_SERVERS must be a JSON list of objects")
        return tuple(servers)
    return tuple({"urls": url} for url in split_list(text))


def parse_duration(name: str, text: str) -> float:
    try:
        seconds = parse_ttl(text)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    if seconds <= 0:
        raise ConfigError(f"{name} must be positive")
    return seconds


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


def portal_from_env(env: Mapping[str, str]) -> dict[str, object]:
    """The portal's settings (SMTP credentials, invite expiry, rate limits)."""
    values: dict[str, object] = {
        "smtp_username": env.get("VISITROOM_SMTP_USERNAME") or None,
        "smtp_password": env.get("VISITROOM_SMTP_PASSWORD") or None,
        "smtp_from": env.get("VISITROOM_SMTP_FROM") or None,
        "portal_timezone": env.get("VISITROOM_PORTAL_TIMEZONE") or "UTC",
        "portal_practices": parse_practices(env.get("VISITROOM_PORTAL_PRACTICES")),
    }
    durations = {
        "smtp_timeout_s": "VISITROOM_SMTP_TIMEOUT",
        "portal_invite_ttl_s": "VISITROOM_PORTAL_INVITE_TTL",
        "portal_retry_base_s": "VISITROOM_PORTAL_RETRY_BASE",
    }
    for field_name, var in durations.items():
        if env.get(var):
            values[field_name] = parse_duration(var, env[var])
    limits = {
        "portal_public_rate_limit": "VISITROOM_PORTAL_PUBLIC_RATE_LIMIT",
        "portal_account_rate_limit": "VISITROOM_PORTAL_ACCOUNT_RATE_LIMIT",
        "portal_invite_rate_limit": "VISITROOM_PORTAL_INVITE_RATE_LIMIT",
    }
    for field_name, var in limits.items():
        if env.get(var):
            values[field_name] = RateLimit.parse(env[var])
    return values


def usable_cores() -> int:
    """The cores this process may run on (a container's cpuset, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def workers_from_env(env: Mapping[str, str]) -> dict[str, object]:
    """`VISITROOM_WORKERS` (default: one per core), the per-worker budgets, thumbnails."""
    try:
        values: dict[str, object] = {
            "workers": int(env.get("VISITROOM_WORKERS") or usable_cores()),
            "worker_max_participants": int(env.get("VISITROOM_WORKER_MAX_PARTICIPANTS") or 0),
            "worker_pps_budget": float(env.get("VISITROOM_WORKER_PPS_BUDGET") or 40_000),
            "worker_cpu_budget": float(env.get("VISITROOM_WORKER_CPU_BUDGET") or 0.85),
            "stage_video_slots": int(env.get("VISITROOM_STAGE_VIDEO_SLOTS") or 0),
            "thumbnail_refresh_s": float(env.get("VISITROOM_THUMBNAIL_REFRESH_S") or 1.0),
            "worker_host": env.get("VISITROOM_WORKER_HOST") or None,
        }
    except ValueError as exc:
        raise ConfigError(f"SFU worker settings: {exc}") from None
    return values


def limits_from_env(env: Mapping[str, str]) -> dict[str, object]:
    """Floods and slow clients: VISITROOM_SEND_QUEUE_BYTES, _HEADER_TIMEOUT_S, and so on."""
    try:
        queue_bytes = int(env.get("VISITROOM_SEND_QUEUE_BYTES") or 8 * 1024 * 1024)
        header_timeout = float(env.get("VISITROOM_HEADER_TIMEOUT_S") or 5.0)
        per_address = int(env.get("VISITROOM_MAX_CONNECTIONS_PER_ADDRESS") or 500)
        proxies = split_list(env.get("VISITROOM_TRUSTED_PROXIES"))
        for proxy in proxies:
            ipaddress.ip_network(proxy, strict=False)
    except ValueError as exc:
        raise ConfigError(f"connection limits: {exc}") from None
    if queue_bytes <= 0 or header_timeout <= 0 or per_address < 1:
        raise ConfigError(
            "connection limits (queue bytes, header timeout, per address) must be positive"
        )
    return {
        "send_queue_bytes": queue_bytes,
        "header_timeout_s": header_timeout,
        "max_unauthenticated_per_address": per_address,
        "trusted_proxies": proxies,
    }


def check_workers(config: Config) -> None:
    if config.workers < 0 or config.worker_max_participants < 0:
        raise ConfigError("--workers and VISITROOM_WORKER_MAX_PARTICIPANTS must not be negative")
    if config.worker_pps_budget <= 0 or config.worker_cpu_budget <= 0:
        raise ConfigError("the SFU worker budgets must be positive")


def from_env(env: Mapping[str, str], **overrides: object) -> Config:
    """Build a Config from the environment; `overrides` (CLI flags) win when not None."""
    values: dict[str, object] = {
        "host": env.get("VISITROOM_HOST", "127.0.0.1"),
        "port": int(env.get("VISITROOM_PORT", "8080")),
        "data_dir": Path(env.get("VISITROOM_DATA_DIR", "data")),
        "public_base_url": env.get("VISITROOM_PUBLIC_BASE_URL") or None,
        "allowed_origins": split_list(env.get("VISITROOM_ALLOWED_ORIGINS")),
        "knock_rate_limit": RateLimit.parse(env.get("VISITROOM_KNOCK_RATE_LIMIT", "20/10")),
        "max_frame_bytes": int(env.get("VISITROOM_MAX_FRAME_BYTES", str(64 * 1024))),
        "ice_hosts": split_list(env.get("VISITROOM_ICE_HOSTS")),
        "announced_ip": env.get("VISITROOM_ANNOUNCED_IP") or None,
        "ice_servers": parse_ice_servers(env.get("VISITROOM_ICE_SERVERS")),
        "smtp_url": env.get("VISITROOM_SMTP_URL") or None,
        "redis_url": env.get("VISITROOM_REDIS_URL") or None,
        "node_id": env.get("VISITROOM_NODE_ID", ""),
        "node_url": env.get("VISITROOM_NODE_URL") or None,
        "drain_deadline_s": float(env.get("VISITROOM_DRAIN_DEADLINE_S", "30")),
        "audit_retention_days": int(env.get("VISITROOM_AUDIT_RETENTION_DAYS", str(6 * 365 + 2))),
        **workers_from_env(env),
        **portal_from_env(env),
        **limits_from_env(env),
    }
    if env.get("VISITROOM_RTC_PORTS"):
        values["rtc_ports"] = parse_ports(env["VISITROOM_RTC_PORTS"])
    if env.get("VISITROOM_MAX_PARTICIPANTS"):
        values["max_participants_cap"] = int(env["VISITROOM_MAX_PARTICIPANTS"])
    for name, value in overrides.items():
        if value is not None:
            values[name] = value
    for name in ("tls_cert", "tls_key", "data_dir"):
        if isinstance(values.get(name), str):
            values[name] = Path(str(values[name]))
    if int(str(values.get("audit_retention_days", 2192))) < 6 * 365:
        raise ConfigError("VISITROOM_AUDIT_RETENTION_DAYS must be at least 2190 (six years)")
    if bool(values.get("tls_cert")) != bool(values.get("tls_key")):
        raise ConfigError("--tls-cert and --tls-key go together")
    keys = api_keys_from_env(env)
    if keys is not None:
        values["api_keys"] = keys
    config = Config(**values)  # type: ignore[arg-type]
    check_workers(config)
    return config
