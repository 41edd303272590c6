"""`visitroom serve` and `visitroom token`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from signalling.auth import mint, parse_ttl
from signalling.config import Config, ConfigError, from_env, load_or_create_credentials

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
    serve.add_argument("--log-level", default=os.environ.get("VISITROOM_LOG_LEVEL", "INFO"))
    serve.set_defaults(func=cmd_serve)


def _token_parser(sub: Any) -> None:
    token = sub.add_parser("token", help="print an access token (JWT)")
    token.add_argument("--room", default="*", help="room id ('*' only with --admin)")
    token.add_argument("--identity", required=True, help="the person's identity (sub)")
    token.add_argument("--name", help="display name (default: the identity)")
    token.add_argument("--role", choices=("host", "guest"), default="host")
    token.add_argument("--admin", action="store_true", help="may call the REST API")
    token.add_argument("--practice", help="practice claim (portal staff tokens)")
    token.add_argument("--scope", help="scope claim, e.g. support")
    token.add_argument("--ttl", default="2h", help="lifetime: 90s, 15m, 2h, 7d")
    token.add_argument("--data-dir", help="where stored credentials are (VISITROOM_DATA_DIR)")
    token.set_defaults(func=cmd_token)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visitroom", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _token_parser(sub)
    with contextlib.suppress(ImportError):
        from portal.cli import add_commands

        add_commands(sub)
    return parser


def load_config(args: argparse.Namespace) -> tuple[Config, Path | None]:
    overrides = {
        name: getattr(args, name, None)
        for name in ("host", "port", "data_dir", "tls_cert", "tls_key", "redis_url", "workers")
    }
    config = from_env(os.environ, **overrides)
    created = None
    if not config.api_keys:
        keys, created = load_or_create_credentials(config.data_dir)
        config = from_env(os.environ, **overrides, api_keys=keys)
    return config, created


def cmd_token(args: argparse.Namespace) -> int:
    config, _ = load_config(args)
    if args.room == "*" and not args.admin:
        print("error: --room is required unless --admin is given", file=sys.stderr)
        return 2
    key, secret = next(iter(config.api_keys.items()))
    print(
        mint(
            key,
            secret,
            room=args.room,
            identity=args.identity,
            name=args.name or args.identity,
            role=args.role,
            ttl_s=parse_ttl(args.ttl),
            admin=args.admin,
            practice=args.practice,
            scope=args.scope,
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
    config, created = load_config(args)
    if created is not None:
        print(f"Generated an API key and secret in {created} (mode 0600).", flush=True)
    if not config.is_loopback and config.tls_cert is None:
        log.warning(
            "listening on %s without TLS: browsers only allow cameras on secure origins; "
            "use --tls-cert/--tls-key or a TLS-terminating proxy",
            config.host,
        )
    import uvloop

    uvloop.run(serve(config))
    return 0


async def serve(config: Config) -> None:
    from signalling.app import create_app
    from signalling.guard import GUARD, GuardedSite, raise_fd_limit

    soft, _ = raise_fd_limit()
    app = create_app(config)
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
    print("  host token: visitroom token --admin --identity YOU --role host", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code
