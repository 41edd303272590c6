"""`GET /v1/openapi.json`: the rooms, portal and staff APIs in one OpenAPI 3.1 document.

The document is built from docs/rooms-openapi.yaml, docs/portal-openapi.yaml and
docs/staff-openapi.yaml into signalling/openapi.json (`python -m tests.openapi_build`);
this serves it with `servers` naming this server's public base URL.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from signalling.keys import CONFIG

DOCUMENT = Path(__file__).with_name("openapi.json")


def rendered(base_url: str) -> bytes:
    """The document as served: the built file with `servers` set to `base_url`."""
    document = json.loads(DOCUMENT.read_text())
    return json.dumps({**document, "servers": [{"url": base_url}]}).encode()


def setup(app: web.Application) -> None:
    # Read once, at start: a missing or broken file stops the server, not the first call.
    body = rendered(app[CONFIG].base_url)

    async def serve_document(request: web.Request) -> web.Response:
        response = web.Response(body=body, content_type="application/json")
        response.headers["Cache-Control"] = "no-cache"
        return response

    app.router.add_get("/v1/openapi.json", serve_document)
