"""Server configuration: command-line flags over environment over defaults."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cluster.kdf import check_cluster_secret
from common.config import ConfigError, RateLimit, parse_duration
from common.datadir import allow_open_from_env, make_private_dir
from common.turn import TurnConfigError, check_turn
from signalling.webhook_config import WebhookSettings, webhooks_from_env

MIN_SECRET_BYTES = 32
CREDENTIALS_FILE = "credentials.json"
ANONYMOUS_KNOCKS = RateLimit(20, 10.0)  # the default: anonymous knocks, per address
IDENTITY_KNOCKS = RateLimit(5, 10.0)  # the default: token knocks, per identity


SEND_QUEUE_BYTES = 8 * 1024 * 1024  # what one WebSocket that does not read may hold


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    # key id -> secret; the first one signs what the server mints (repr hides them)
    api_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    # keys every node of a cluster shares (cluster.kdf); never the API secrets
    cluster_secret: str | None = field(default=None, repr=False)
    token_max_lifetime_s: float = 24 * 3600.0
    # /metrics: a bearer token on the main port, or a loopback-only port of its own
    metrics_token: str | None = field(default=None, repr=False)
    metrics_port: int | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    public_base_url: str | None = None
    allowed_origins: tuple[str, ...] = ()
    knock_rate_limit: RateLimit = ANONYMOUS_KNOCKS
    knock_identity_rate_limit: RateLimit = IDENTITY_KNOCKS
    knock_address_rate_limit: RateLimit | None = None  # all knocks (None: 10x the first)
    lobby_cap_factor: float = 2.0  # waiting guests per room: this times its capacity
    max_frame_bytes: int = 64 * 1024
    hello_timeout_s: float = 10.0
    resume_window_s: float = 30.0
    max_participants_cap: int = 200
    default_max_participants: int = 200
    send_queue_limit: int = 1024
    # floods and slow clients (docs/operations.md, "Floods and slow clients")
    send_queue_bytes: int = SEND_QUEUE_BYTES  # per WebSocket, besides send_queue_limit frames
    header_timeout_s: float = 5.0  # a request's headers must be complete by then
    max_unauthenticated_per_address: int = 500  # connections not yet a verified WebSocket
    trusted_proxies: tuple[str, ...] = ()  # exempt from the per-address cap; X-Forwarded-For
    # media plane
    ice_hosts: tuple[str, ...] = ()
    announced_ip: str | None = None
    rtc_ports: tuple[int, int] | None = None
    rtc_udp_port: int | None = None  # single-port mode's port (worker i: + i)
    ice_servers: tuple[Mapping[str, object], ...] = ()
    # TURN REST API credentials handed out in `welcome` (common/turn.py)
    turn_urls: tuple[str, ...] = ()
    turn_secret: str | None = field(default=None, repr=False)
    turn_ttl_s: float = 4 * 3600.0
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
    layer_trace: str | None = None  # VISITROOM_LAYER_TRACE: a directory (sfu.routing.trace)
    # VISITROOM_PER_LAYER_KEYFRAMES: simulcast publishers re-key only the asked layer
    per_layer_keyframes: bool = True
    # most new transports connecting at once per SFU process, the rest queued (0: no pacing)
    max_connecting: int = 0
    # cluster
    redis_url: str | None = None
    node_id: str = ""
    node_url: str | None = None  # how other nodes reach this one (default: base URL)
    drain_deadline_s: float = 30.0
    audit_retention_days: int = 6 * 365 + 2  # HIPAA: six years of audit records, at least
    # VISITROOM_AUDIT_KEY; None: the data dir's audit.key (generated on first start)
    audit_key: str | None = field(default=None, repr=False)
    # start on a data dir that group or others may read (access controlled otherwise)
    allow_open_data_dir: bool = False
    # events for integrators (docs/operations.md, "Webhooks"); no URLs: none are sent
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)

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


def check_cluster(secret: str | None, redis_url: str | None) -> None:
    if secret is None:
        if redis_url:
            raise ConfigError(
                "--redis needs VISITROOM_CLUSTER_SECRET: the same long random value "
                f"(at least {MIN_SECRET_BYTES} bytes) on every node, not an API secret"
            )
        return
    try:
        check_cluster_secret(secret)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _read_credentials(path: Path) -> dict[str, str]:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path} must not be readable by others (chmod 600)")
    try:
        stored = json.loads(path.read_text())
    except ValueError:
        raise ConfigError(f"{path} is not a credentials file (not JSON)") from None
    if not isinstance(stored, dict) or not all(isinstance(v, str) for v in stored.values()):
        raise ConfigError(f"{path} is not a credentials file")
    return stored


def _write_credentials(path: Path, stored: Mapping[str, str]) -> None:
    """Write a new version next to the old one (mode 0600), then swap it in."""
    make_private_dir(path.parent)
    temporary = path.with_name(path.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(dict(stored), handle)
    os.replace(temporary, path)


def ensure_credentials(
    data_dir: Path, *, api_key: bool = True, cluster: bool = True
) -> tuple[dict[str, str], Path | None]:
    """The stored credentials, generating (mode 0600) what is asked for and missing.

    `api_key`: an API key/secret pair (``api_key``, ``api_secret``); `cluster`:
    a cluster secret (``cluster_secret``).  Returns what is stored and the
    file path when something was generated now (else None).
    """
    path = data_dir / CREDENTIALS_FILE
    stored = _read_credentials(path) if path.exists() else {}
    wanted = dict(stored)
    if api_key and "api_secret" not in wanted:
        wanted["api_key"] = "vr_" + secrets.token_hex(8)
        wanted["api_secret"] = secrets.token_urlsafe(48)
    if cluster and "cluster_secret" not in wanted:
        wanted["cluster_secret"] = secrets.token_urlsafe(48)
    if "api_secret" in wanted:
        check_secret(wanted["api_secret"])
    check_cluster(wanted.get("cluster_secret"), None)
    if wanted == stored:
        return stored, None
    _write_credentials(path, wanted)
    return wanted, path


def stored_api_keys(data_dir: Path) -> dict[str, str]:
    """The API key/secret pair `visitroom serve` stored in `data_dir`; never generates one.

    For commands that sign with the server's key (`visitroom token`, the portal's
    `send-pending`): a key made up here would sign tokens the server rejects.
    """
    path = data_dir / CREDENTIALS_FILE
    stored = _read_credentials(path) if path.is_file() else {}
    if not stored.get("api_key") or not stored.get("api_secret"):
        raise ConfigError(
            f"no API credentials in {data_dir} (nothing was generated): pass the server's "
            "data directory with --data-dir (or VISITROOM_DATA_DIR), or set VISITROOM_API_KEY "
            "and VISITROOM_API_SECRET (or VISITROOM_API_KEYS) as the server has them"
        )
    check_secret(stored["api_secret"])
    return {stored["api_key"]: stored["api_secret"]}


def parse_api_keys(text: str) -> dict[str, str]:
    """`VISITROOM_API_KEYS`: ``key1:secret1,key2:secret2`` (the first signs)."""
    keys: dict[str, str] = {}
    for item in split_list(text):
        key, sep, secret = item.partition(":")
        key = key.strip()
        if not sep or not key:
            raise ConfigError("VISITROOM_API_KEYS must look like key1:secret1,key2:secret2")
        if key in keys:
            raise ConfigError(f"VISITROOM_API_KEYS names the key id {key!r} twice")
        check_secret(secret)
        keys[key] = secret
    if not keys:
        raise ConfigError("VISITROOM_API_KEYS is set but names no key")
    return keys


def api_keys_from_env(env: Mapping[str, str]) -> dict[str, str] | None:
    """`VISITROOM_API_KEY`/`VISITROOM_API_SECRET` first, then `VISITROOM_API_KEYS`."""
    keys: dict[str, str] = {}
    key = env.get("VISITROOM_API_KEY")
    secret = env.get("VISITROOM_API_SECRET")
    if key is not None or secret is not None:
        if not key:
            raise ConfigError("VISITROOM_API_SECRET is set but VISITROOM_API_KEY is empty")
        check_secret(secret or "")
        keys[key] = secret or ""
    listed = parse_api_keys(env["VISITROOM_API_KEYS"]) if env.get("VISITROOM_API_KEYS") else {}
    for other, other_secret in listed.items():
        if keys.get(other, other_secret) != other_secret:
            raise ConfigError(f"the API key id {other!r} is configured with two secrets")
        keys.setdefault(other, other_secret)
    return keys or None


def parse_ports(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        ports = (int(low), int(high or low))
    except ValueError:
        raise ConfigError(f"VISITROOM_RTC_PORTS must look like 40000-40999, not {text!r}") from None
    if not 1024 <= ports[0] <= ports[1] <= 65535:
        raise ConfigError(f"VISITROOM_RTC_PORTS out of range: {text!r}")
    return ports


def parse_udp_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ConfigError(f"VISITROOM_RTC_UDP_PORT must be a port number, not {text!r}") from None
    if not 1024 <= port <= 65535:
        raise ConfigError(f"VISITROOM_RTC_UDP_PORT out of range (1024-65535): {text!r}")
    return port


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
            "max_connecting": int(env.get("VISITROOM_MEDIA_MAX_CONNECTING") or 0),
            "worker_host": env.get("VISITROOM_WORKER_HOST") or None,
            "layer_trace": env.get("VISITROOM_LAYER_TRACE") or None,
            "per_layer_keyframes": _on_off(env, "VISITROOM_PER_LAYER_KEYFRAMES", True),
        }
    except ValueError as exc:
        raise ConfigError(f"SFU worker settings: {exc}") from None
    if int(str(values["max_connecting"])) < 0:
        raise ConfigError("VISITROOM_MEDIA_MAX_CONNECTING must be 0 (no pacing) or more")
    return values


def _on_off(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A switch: 1/0 (or true/false, yes/no, on/off); unset or empty: `default`."""
    value = (env.get(name) or "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1 or 0, not {value!r}")


def limits_from_env(env: Mapping[str, str]) -> dict[str, object]:
    """Floods and slow clients: VISITROOM_SEND_QUEUE_BYTES, _HEADER_TIMEOUT_S, and so on."""
    try:
        queue_bytes = int(env.get("VISITROOM_SEND_QUEUE_BYTES") or SEND_QUEUE_BYTES)
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
    if config.rtc_udp_port is not None and config.rtc_udp_port + max(config.workers, 1) > 65536:
        raise ConfigError("VISITROOM_RTC_UDP_PORT + the number of workers passes port 65535")


def security_from_env(env: Mapping[str, str]) -> dict[str, object]:
    """The cluster secret, the token lifetime cap and how /metrics is reached."""
    values: dict[str, object] = {
        "cluster_secret": env.get("VISITROOM_CLUSTER_SECRET") or None,
        "metrics_token": env.get("VISITROOM_METRICS_TOKEN") or None,
    }
    if env.get("VISITROOM_TOKEN_MAX_LIFETIME_S"):
        lifetime = env["VISITROOM_TOKEN_MAX_LIFETIME_S"]
        values["token_max_lifetime_s"] = parse_duration("VISITROOM_TOKEN_MAX_LIFETIME_S", lifetime)
    if env.get("VISITROOM_METRICS_PORT"):
        try:
            port = int(env["VISITROOM_METRICS_PORT"])
        except ValueError:
            raise ConfigError("VISITROOM_METRICS_PORT must be a port number") from None
        if not 0 <= port <= 65535:
            raise ConfigError("VISITROOM_METRICS_PORT must be a port number")
        values["metrics_port"] = port
    token = values["metrics_token"]
    if isinstance(token, str) and len(token.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"VISITROOM_METRICS_TOKEN must be at least {MIN_SECRET_BYTES} bytes")
    return values


def turn_from_env(env: Mapping[str, str]) -> dict[str, object]:
    """TURN URLs, the secret shared with coturn, and how long a credential lasts."""
    urls = split_list(env.get("VISITROOM_TURN_URLS"))
    secret = env.get("VISITROOM_TURN_SECRET") or None
    try:
        check_turn(urls, secret)
    except TurnConfigError as error:
        raise ConfigError(str(error)) from None
    values: dict[str, object] = {"turn_urls": urls, "turn_secret": secret}
    if env.get("VISITROOM_TURN_TTL_S"):
        values["turn_ttl_s"] = parse_duration("VISITROOM_TURN_TTL_S", env["VISITROOM_TURN_TTL_S"])
    return values


def lobby_from_env(env: Mapping[str, str]) -> dict[str, object]:
    """Knock limits per identity and per address, and the lobby cap factor."""
    values: dict[str, object] = {}
    limits = {
        "knock_identity_rate_limit": "VISITROOM_KNOCK_IDENTITY_RATE_LIMIT",
        "knock_address_rate_limit": "VISITROOM_KNOCK_ADDRESS_RATE_LIMIT",
    }
    for field_name, var in limits.items():
        if env.get(var):
            values[field_name] = RateLimit.parse(env[var])
    if env.get("VISITROOM_LOBBY_CAP_FACTOR"):
        values["lobby_cap_factor"] = parse_factor(env["VISITROOM_LOBBY_CAP_FACTOR"])
    return values


def parse_factor(text: str) -> float:
    try:
        factor = float(text)
    except ValueError:
        raise ConfigError(f"VISITROOM_LOBBY_CAP_FACTOR must be a number, not {text!r}") from None
    if not 0 < factor <= 100:
        raise ConfigError("VISITROOM_LOBBY_CAP_FACTOR must be above 0 and at most 100")
    return factor


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
        "redis_url": env.get("VISITROOM_REDIS_URL") or None,
        "node_id": env.get("VISITROOM_NODE_ID", ""),
        "node_url": env.get("VISITROOM_NODE_URL") or None,
        "drain_deadline_s": float(env.get("VISITROOM_DRAIN_DEADLINE_S", "30")),
        "resume_window_s": float(env.get("VISITROOM_RESUME_WINDOW_S", "30")),
        "audit_retention_days": int(env.get("VISITROOM_AUDIT_RETENTION_DAYS", str(6 * 365 + 2))),
        "audit_key": env.get("VISITROOM_AUDIT_KEY") or None,
        "allow_open_data_dir": allow_open_from_env(env),
        "webhooks": webhooks_from_env(env),
        **workers_from_env(env),
        **security_from_env(env),
        **lobby_from_env(env),
        **turn_from_env(env),
        **limits_from_env(env),
    }
    if env.get("VISITROOM_RTC_PORTS"):
        values["rtc_ports"] = parse_ports(env["VISITROOM_RTC_PORTS"])
    if env.get("VISITROOM_RTC_UDP_PORT"):
        values["rtc_udp_port"] = parse_udp_port(env["VISITROOM_RTC_UDP_PORT"])
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
    if keys is not None and values.get("api_keys") is None:
        values["api_keys"] = keys
    config = Config(**values)  # type: ignore[arg-type]
    check_workers(config)
    check_cluster(config.cluster_secret, config.redis_url)
    return config
