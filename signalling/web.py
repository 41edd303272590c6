"""The reference web client: its pages and static files, with strict security headers.

Pages are static HTML shells; everything they show is built by their ES
modules. Nothing is loaded from another origin: the Content-Security-Policy
allows scripts, styles and connections to this origin only (plus its own
WebSocket URL), and only `/embed/{room_id}` may be framed, and then only by
`VISITROOM_ALLOWED_ORIGINS`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from signalling import dashboard_api
from signalling.config import Config
from signalling.keys import CONFIG
from signalling.rooms import valid_room_id

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
ASSET_DIRS = ("sdk", "app", "css", "img")
ASSET_SUFFIXES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
PAGES = ("guest", "host", "embed", "dashboard")

PERMISSIONS_POLICY = (
    "camera=(self), microphone=(self), display-capture=(self), fullscreen=(self), "
    "geolocation=(), payment=(), usb=()"
)


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _load_assets(root: Path) -> dict[str, Asset]:
    """Every servable file, by URL path; nothing outside these directories is reachable."""
    assets: dict[str, Asset] = {}
    for directory in ASSET_DIRS:
        for path in sorted((root / directory).glob("*")):
            kind = ASSET_SUFFIXES.get(path.suffix)
            if kind is None or not path.is_file():
                continue
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            assets[f"/{directory}/{path.name}"] = Asset(body, kind, etag)
    return assets


def _load_pages(root: Path) -> dict[str, bytes]:
    return {name: (root / f"{name}.html").read_bytes() for name in PAGES}


PAGE_KEY: web.AppKey[dict[str, bytes]] = web.AppKey("web_pages")
ASSET_KEY: web.AppKey[dict[str, Asset]] = web.AppKey("web_assets")


def _socket_origins(request: web.Request, config: Config) -> list[str]:
    """The page's own WebSocket origins: ws(s)://host of the request and of the base URL."""
    base = urlsplit(config.base_url)
    secure = request.secure or base.scheme == "https"
    scheme = "wss" if secure else "ws"
    hosts = dict.fromkeys([request.host, base.netloc])
    return [f"{scheme}://{host}" for host in hosts if host]


def content_security_policy(
    request: web.Request, config: Config, frame_ancestors: list[str]
) -> str:
    connect = " ".join(["'self'", *_socket_origins(request, config)])
    ancestors = " ".join(frame_ancestors) if frame_ancestors else "'none'"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            "font-src 'self'",
            "media-src 'self' blob: mediastream:",
            f"connect-src {connect}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors {ancestors}",
        ]
    )


def security_headers(response: web.StreamResponse) -> None:
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Permissions-Policy"] = PERMISSIONS_POLICY


def _page(
    request: web.Request, name: str, frame_ancestors: list[str] | None = None
) -> web.Response:
    config = request.app[CONFIG]
    response = web.Response(
        body=request.app[PAGE_KEY][name], content_type="text/html", charset="utf-8"
    )
    security_headers(response)
    response.headers["Content-Security-Policy"] = content_security_policy(
        request, config, frame_ancestors or []
    )
    response.headers["Cache-Control"] = "no-store"
    if frame_ancestors is None:
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    return response


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if not valid_room_id(room_id):
        raise _plain_error(web.HTTPNotFound, "There is no visit at this address.")
    return room_id


def _plain_error(status: type[web.HTTPException], text: str) -> web.HTTPException:
    error = status(text=text, content_type="text/plain")
    security_headers(error)
    error.headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
    return error


def own_origin(request: web.Request, config: Config) -> set[str]:
    base = urlsplit(config.base_url)
    return {f"{request.scheme}://{request.host}", f"{base.scheme}://{base.netloc}"}


def valid_parent_origin(origin: str, request: web.Request, config: Config) -> bool:
    """A parent page may receive events only when it is this server or an allowed origin."""
    return origin in config.allowed_origins or origin in own_origin(request, config)


async def guest_page(request: web.Request) -> web.Response:
    _room_id(request)
    return _page(request, "guest")


async def host_page(request: web.Request) -> web.Response:
    _room_id(request)
    return _page(request, "host")


async def embed_page(request: web.Request) -> web.Response:
    _room_id(request)
    config = request.app[CONFIG]
    parent = request.query.get("parent_origin")
    if parent is not None and not valid_parent_origin(parent, request, config):
        raise _plain_error(
            web.HTTPBadRequest, "parent_origin is not one of this server's allowed origins."
        )
    return _page(request, "embed", ["'self'", *config.allowed_origins])


async def dashboard_page(request: web.Request) -> web.Response:
    return _page(request, "dashboard")


async def asset(request: web.Request) -> web.StreamResponse:
    path = f"/{request.match_info['directory']}/{request.match_info['name']}"
    found = request.app[ASSET_KEY].get(path)
    if found is None:
        raise _plain_error(web.HTTPNotFound, "Not found.")
    if request.headers.get("If-None-Match") == found.etag:
        response: web.StreamResponse = web.Response(status=304)
    else:
        response = web.Response(body=found.body, content_type=found.content_type)
        if found.content_type.startswith("text/"):
            response.charset = "utf-8"
    security_headers(response)
    response.headers["ETag"] = found.etag
    response.headers["Cache-Control"] = "no-cache"
    _cross_origin(request, response, sdk=path.startswith("/sdk/"))
    return response


def _cross_origin(request: web.Request, response: web.StreamResponse, *, sdk: bool) -> None:
    """The SDK may be imported by allowed third-party front ends; the app files may not."""
    origin = request.headers.get("Origin")
    config = request.app[CONFIG]
    if sdk and origin is not None and origin in config.allowed_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    else:
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"


def setup(app: web.Application) -> None:
    """Mount the pages, the static files and the dashboard's REST routes."""
    app[PAGE_KEY] = _load_pages(WEB_ROOT)
    app[ASSET_KEY] = _load_assets(WEB_ROOT)
    app.router.add_get("/r/{room_id}", guest_page)
    app.router.add_get("/host/{room_id}", host_page)
    app.router.add_get("/embed/{room_id}", embed_page)
    app.router.add_get("/dashboard", dashboard_page)
    pattern = "/{directory:" + "|".join(ASSET_DIRS) + "}/{name:[A-Za-z0-9_.-]+}"
    app.router.add_get(pattern, asset)
    dashboard_api.setup_routes(app)
