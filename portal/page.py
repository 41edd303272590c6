"""The activation landing page: one static HTML file with inline script and style.

The token travels in the URL fragment, which browsers never send to a server.
The page is served with a Content-Security-Policy that allows exactly its own
inline script and style (by SHA-256) and requests to this origin, no referrer,
and no caching.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

PAGE = Path(__file__).resolve().parent.parent / "web" / "portal" / "activate.html"
INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def csp_hash(text: str) -> str:
    """The CSP source expression allowing exactly this inline script or style."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def content_security_policy(html: str) -> str:
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for kind, body in INLINE.findall(html):
        hashes[kind].append(csp_hash(body))
    return "; ".join(
        [
            "default-src 'none'",
            "script-src " + (" ".join(hashes["script"]) or "'none'"),
            "style-src " + (" ".join(hashes["style"]) or "'none'"),
            "connect-src 'self'",
            "img-src 'none'",
            "form-action 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


def landing_page(path: Path = PAGE) -> Callable[[web.Request], Awaitable[web.Response]]:
    html = path.read_text(encoding="utf-8")
    body = html.encode()
    headers = {
        "Content-Security-Policy": content_security_policy(html),
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
    }

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/html", charset="utf-8", headers=headers)

    return serve
