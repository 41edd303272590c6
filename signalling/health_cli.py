"""`visitroom health`: probe this machine's server, for a container's HEALTHCHECK.

It reads the same VISITROOM_HOST and VISITROOM_PORT as `serve` (flags win), asks
`/healthz` (or `/readyz` with `--ready`) on the bound address (a wildcard bind is
probed on loopback) and exits 0 when it answers 200, 1 otherwise. With `--tls`
it speaks HTTPS without checking the certificate: it probes its own process,
whose certificate names the public host, not the loopback address.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import urllib.error
import urllib.request
from typing import Any

WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def add_command(sub: Any) -> None:
    health = sub.add_parser("health", help="probe the local server (a container's HEALTHCHECK)")
    health.add_argument("--host", help="the server's bind address (VISITROOM_HOST)")
    health.add_argument("--port", type=int, help="its TCP port (VISITROOM_PORT, default 8080)")
    health.add_argument("--tls", action="store_true", help="the server runs with --tls-cert")
    health.add_argument("--ready", action="store_true", help="probe /readyz instead of /healthz")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    health.set_defaults(func=cmd_health)


def probe_url(host: str, port: int, *, tls: bool, ready: bool) -> str:
    address = WILDCARDS.get(host, host)
    if ":" in address:
        address = f"[{address}]"
    scheme = "https" if tls else "http"
    return f"{scheme}://{address}:{port}/{'readyz' if ready else 'healthz'}"


def cmd_health(args: argparse.Namespace) -> int:
    host = args.host or os.environ.get("VISITROOM_HOST", "127.0.0.1")
    port = args.port or int(os.environ.get("VISITROOM_PORT", "8080"))
    url = probe_url(host, port, tls=args.tls, ready=args.ready)
    context = None
    if args.tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=args.timeout, context=context) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    print(f"{'healthy' if status == 200 else 'unhealthy'}: {url} answered {status}")
    return 0 if status == 200 else 1
