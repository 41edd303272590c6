"""docs/portal-openapi.yaml is a valid OpenAPI 3 document that covers every portal route."""

from __future__ import annotations

from pathlib import Path

import yaml
from aiohttp import web
from openapi_spec_validator import validate

from tests.portal_support import (  # noqa: F401  (the *_fixture names are fixtures)
    mailbox_fixture,
    portal_app_fixture,
)

SPEC = Path(__file__).resolve().parent.parent / "docs" / "portal-openapi.yaml"


def test_the_openapi_file_is_valid() -> None:
    validate(yaml.safe_load(SPEC.read_text()))


def test_the_openapi_file_covers_every_portal_route(portal_app: web.Application) -> None:
    documented = {
        (method.upper(), path)
        for path, item in yaml.safe_load(SPEC.read_text())["paths"].items()
        for method in item
        if method != "parameters"
    }
    mounted = {
        (route.method, route.resource.canonical)
        for route in portal_app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith(("/v1/portal", "/portal"))
        and route.method != "HEAD"
    }
    assert mounted == documented
