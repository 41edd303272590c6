"""`GET /v1/openapi.json`: the rooms and portal APIs in one OpenAPI 3.1 document.

The document is built from docs/rooms-openapi.yaml and docs/portal-openapi.yaml
into signalling/openapi.json (`python -m tests.openapi_build`); this serves it
with `servers` naming this server's public base URL.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from signalling.keys import CONFIG

DOCUMENT = Path(__file__).with_name("openapi.json")


@functools.cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DOCUMENT.read_text())
    return loaded


async def serve_document(request: web.Request) -> web.Response:
    servers = [{"url": request.app[CONFIG].base_url}]
    response = web.json_response({**document(), "servers": servers})
    response.headers["Cache-Control"] = "no-cache"
    return response


def setup(app: web.Application) -> None:
    document()  # a missing or broken file stops the server at start, not at the first call
    app.router.add_get("/v1/openapi.json", serve_document)
