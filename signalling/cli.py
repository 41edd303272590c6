"""`visitroom serve`, `visitroom token`, `visitroom audit verify` and `visitroom webhooks`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import ssl
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from common.audit_chain import describe, load_key, load_or_create_key
from common.config import ConfigError
from common.datadir import ALLOW_OPEN_ENV, PRIVATE_UMASK, open_dir_problem
from common.scopes import (
    ADMIN_SCOPES,
    PORTAL_STAFF,
    ROOMS_ADMIN,
    ROOMS_GUEST,
    ROOMS_HOST,
    parse,
    render,
)
from common.tokens import mint, parse_ttl
from signalling.config import Config, ensure_credentials, from_env, stored_api_keys

if TYPE_CHECKING:
    from portal.config import PortalConfig
    from staff.config import StaffConfig

log = logging.getLogger("visitroom")

# Connections waiting to be accepted (the kernel caps it at net.core.somaxconn): with
# aiohttp's 128, a burst of connections fills the queue and a health check's SYN is
# dropped and retried a second later.
LISTEN_BACKLOG = 4096
# An idle kept-alive connection (or one whose next request never completes) is
# closed after this long; aiohttp's default is 75 s.
KEEPALIVE_S = 15.0


def _serve_parser(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="address to bind (VISITROOM_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (VISITROOM_PORT, default 8080)")
    serve.add_argument("--data-dir", help="where state is kept (VISITROOM_DATA_DIR, ./data)")
    serve.add_argument("--tls-cert", help="PEM certificate: serve HTTPS and WSS")
    serve.add_argument("--tls-key", help="PEM private key for --tls-cert")
    serve.add_argument("--redis", dest="redis_url", help="Redis URL: several machines")
    serve.add_argument(
        "--workers",
        type=int,
        help="SFU worker processes (VISITROOM_WORKERS, default: one per core; 0: in-process)",
    )
    serve.add_argument(
        "--allow-open-data-dir",
        action="store_true",
        default=None,
        help=f"start even if group or others may read the data dir ({ALLOW_OPEN_ENV}=1)",
    )
    serve.add_argument("--log-level", default=os.environ.get("VISITROOM_LOG_LEVEL", "INFO"))
    serve.set_defaults(func=cmd_serve)


def _audit_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the audit trail")
    commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = commands.add_parser(
        "verify", help="check the keyed hash chain; exit 1 and name the first bad row if broken"
    )
    verify.add_argument("--data-dir", help="where state is kept (VISITROOM_DATA_DIR, ./data)")
    verify.set_defaults(func=cmd_audit_verify)


def _token_parser(sub: Any) -> None:
    token = sub.add_parser("token", help="print an access token (JWT)")
    token.add_argument("--room", default="*", help="room id ('*' only with --admin)")
    token.add_argument("--identity", required=True, help="the person's identity (sub)")
    token.add_argument("--name", help="display name (default: the identity)")
    token.add_argument(
        "--role", choices=("host", "guest"), help="default: host, or guest without rooms:host"
    )
    token.add_argument("--admin", action="store_true", help="may call the REST API")
    token.add_argument("--practice", help="the practice whose rooms/patients the token is for")
    token.add_argument(
        "--scope",
        help="space-separated scopes: rooms:admin rooms:host rooms:guest portal:staff"
        " portal:support (default: from --admin/--practice/--role, see docs/operations.md)",
    )
    token.add_argument("--ttl", default="2h", help="lifetime: 90s, 15m, 2h, 7d")
    token.add_argument("--key", help="the API key id to sign with (default: the first)")
    token.add_argument("--data-dir", help="where stored credentials are (VISITROOM_DATA_DIR)")
    token.set_defaults(func=cmd_token)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visitroom", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _token_parser(sub)
    _audit_parser(sub)
    from signalling.webhook_cli import add_commands as add_webhook_commands

    add_webhook_commands(sub)
    from signalling.health_cli import add_command as add_health_command

    add_health_command(sub)
    with contextlib.suppress(ImportError):
        from portal.cli import add_commands

        add_commands(sub, portal_settings)
    with contextlib.suppress(ImportError):
        from staff.cli import add_commands as add_staff_commands

        add_staff_commands(sub, data_dir_of)
    return parser


def data_dir_of(args: argparse.Namespace) -> Path:
    """The data directory `visitroom practice|user ...` works on."""
    return from_env(os.environ, data_dir=getattr(args, "data_dir", None)).data_dir


def load_config(args: argparse.Namespace, serving: bool = False) -> tuple[Config, Path | None]:
    """The configuration and stored API credentials (the path when generated now);
    `serving` refuses a data dir open to other users unless allowed."""
    overrides = {
        name: getattr(args, name, None)
        for name in (
            "host", "port", "data_dir", "tls_cert", "tls_key", "redis_url", "workers",
            "allow_open_data_dir",
        )
    }  # fmt: skip
    config = from_env(os.environ, **overrides)
    problem = open_dir_problem(config.data_dir)
    if serving and problem and not config.allow_open_data_dir:
        raise ConfigError(problem)
    want_key = not config.api_keys
    want_cluster = config.cluster_secret is None and not config.redis_url
    if not (want_key or want_cluster):
        return config, None
    stored, created = ensure_credentials(config.data_dir, api_key=want_key, cluster=want_cluster)
    keys = {stored["api_key"]: stored["api_secret"]} if want_key else config.api_keys
    cluster = stored["cluster_secret"] if want_cluster else config.cluster_secret
    return replace(config, api_keys=keys, cluster_secret=cluster), created


def signing_config(args: argparse.Namespace) -> Config:
    """The configuration with the server's own API keys (configured, else stored by
    `visitroom serve`); a ConfigError, never new keys, when there are none."""
    config = from_env(os.environ, data_dir=getattr(args, "data_dir", None))
    if config.api_keys:
        return config
    return replace(config, api_keys=stored_api_keys(config.data_dir))


def portal_settings(args: argparse.Namespace, with_credentials: bool) -> PortalConfig:
    """The portal's settings for `visitroom portal ...` (the API keys only when needed)."""
    from signalling.app import portal_config

    if with_credentials:
        config = signing_config(args)
    else:
        config = from_env(os.environ, data_dir=getattr(args, "data_dir", None))
    return portal_config(config, os.environ)


def token_claims(args: argparse.Namespace) -> tuple[frozenset[str], bool, str]:
    """The scopes, admin flag and role a `visitroom token` asks for (ValueError: why not).

    Without --scope the token gets the scopes its other flags always meant:
    --admin --practice P is a portal front-desk token (portal:staff only);
    otherwise --admin is rooms:admin and the role rooms:host or rooms:guest.
    """
    if args.scope is not None:
        scopes = parse(args.scope.replace(",", " "))
    elif args.admin and args.practice is not None:
        scopes = frozenset({PORTAL_STAFF})
    else:
        role_scope = ROOMS_HOST if args.role in (None, "host") else ROOMS_GUEST
        scopes = frozenset({role_scope, *([ROOMS_ADMIN] if args.admin else [])})
    role = args.role or ("host" if ROOMS_HOST in scopes else "guest")
    if role == "host" and ROOMS_HOST not in scopes:
        raise ValueError("--role host needs the rooms:host scope")
    if PORTAL_STAFF in scopes and not args.practice:
        raise ValueError("the portal:staff scope needs --practice")
    admin = args.admin or bool(scopes & ADMIN_SCOPES)
    if args.room == "*" and not admin:
        raise ValueError("--room is required unless --admin is given")
    return scopes, admin, role


def cmd_token(args: argparse.Namespace) -> int:
    config = signing_config(args)
    try:
        scopes, admin, role = token_claims(args)
    except ValueError as exc:  # a ScopeError too
        print(f"error: {exc}", file=sys.stderr)
        return 2
    key = args.key or next(iter(config.api_keys))
    if key not in config.api_keys:
        print(f"error: no API key {key!r} is configured", file=sys.stderr)
        return 2
    ttl_s = parse_ttl(args.ttl)
    if ttl_s > config.token_max_lifetime_s:
        limit = config.token_max_lifetime_s
        print(f"error: --ttl is over the server's maximum ({limit:.0f} s)", file=sys.stderr)
        return 2
    print(
        mint(
            key,
            config.api_keys[key],
            room=args.room,
            identity=args.identity,
            name=args.name or args.identity,
            role=role,
            ttl_s=ttl_s,
            admin=admin,
            practice=args.practice,
            scope=render(scopes),
        )
    )
    return 0


def ssl_context(config: Config) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


def cmd_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config, created = load_config(args, serving=True)
    if created is not None:
        print(f"Generated credentials in {created} (mode 0600).", flush=True)
    _, audit_key_file = load_or_create_key(config.data_dir, config.audit_key)
    if audit_key_file is not None:
        print(
            f"Generated the audit trail key in {audit_key_file} (mode 0600): keep a copy "
            "somewhere else; `visitroom audit verify` needs it to prove the trail intact.",
            flush=True,
        )
    if open_dir_problem(config.data_dir):
        log.warning("the data directory %s is open to other users (allowed)", config.data_dir)
    if not config.is_loopback and config.tls_cert is None:
        log.warning(
            "listening on %s without TLS: browsers only allow cameras on secure origins; "
            "use --tls-cert/--tls-key or a TLS-terminating proxy",
            config.host,
        )
    if (broken := _broken_import()) is not None:
        print(f"error: cannot start: {broken}", file=sys.stderr)
        return 3
    import uvloop

    from signalling.app import portal_config, staff_config

    staff = staff_config(config, os.environ)
    uvloop.run(serve(config, portal_config(config, os.environ), staff))
    return 0


def _broken_import() -> str | None:
    """Load the application's modules up front, so a broken install says what broke."""
    try:
        import signalling.app  # noqa: F401
    except ImportError as exc:
        return (
            f"a part of visitroom failed to import ({exc}); "
            "reinstall it from the lock (scripts/install.sh server)"
        )
    return None


async def serve(config: Config, portal: PortalConfig, staff: StaffConfig | None = None) -> None:
    from signalling.app import create_app
    from signalling.guard import GUARD, GuardedSite, raise_fd_limit

    soft, _ = raise_fd_limit()
    app = create_app(config, portal=portal, staff=staff)
    app[GUARD].max_pending = max(64, soft * 3 // 4)
    log.info("open-file limit %d; at most %d connections in their headers", soft, soft * 3 // 4)
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=5.0, keepalive_timeout=KEEPALIVE_S
    )
    await runner.setup()
    site = GuardedSite(
        runner,
        app[GUARD],
        config.host,
        config.port,
        ssl_context=ssl_context(config),
        backlog=LISTEN_BACKLOG,
    )
    await site.start()
    print(f"visitroom is ready on {config.base_url}", flush=True)
    print(f"  provider dashboard: {config.base_url}/dashboard", flush=True)
    print("  staff sign-in: visitroom practice create, then visitroom user add", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from common.audit import verify_file
    from signalling.app import AUDIT_FILE

    config = from_env(os.environ, data_dir=args.data_dir)
    path = config.data_dir / AUDIT_FILE
    if not path.exists():
        print(f"error: no audit trail in {config.data_dir}", file=sys.stderr)
        return 2
    key = load_key(config.data_dir, config.audit_key)
    if key is None:
        print(
            f"error: no audit key: put the key in {config.data_dir}/audit.key or set "
            "VISITROOM_AUDIT_KEY (start the server once to key an older trail)",
            file=sys.stderr,
        )
        return 2
    try:
        report = verify_file(path, key)
    except sqlite3.DatabaseError as exc:
        print(f"BAD: the trail cannot be read as an audit trail: {exc}")
        return 1
    for line in describe(report):
        print(line)
    return 0 if report.intact else 1


def main(argv: list[str] | None = None) -> int:
    # Everything visitroom writes (databases, keys, locks) is for its own user only.
    os.umask(PRIVATE_UMASK)
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code
