"""`GET /v1/openapi.json`: valid OpenAPI 3.1, built from docs/, true to the live routes,
and the answers of real calls match the schemas it documents."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from signalling.keys import CONFIG
from tests.conftest import admin_token, token
from tests.openapi_build import METHODS, ROOMS, SERVED, built

# Mounted but not part of the API: web pages and static files (docs/sdk.md), the
# node-to-node audit hop (cluster only, signed) and Prometheus text (docs/operations.md).
NOT_API = {
    "/dashboard",
    "/embed/{room_id}",
    "/host/{room_id}",
    "/r/{room_id}",
    "/{directory}/{name}",
    "/internal/audit/{room_id}",
    "/metrics",
}


def served() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SERVED.read_text())
    return document


def test_the_rooms_document_is_valid_openapi_3_1() -> None:
    rooms = yaml.safe_load(ROOMS.read_text())
    assert rooms["openapi"].startswith("3.1.")
    validate(rooms)


def test_the_served_document_is_built_from_the_docs() -> None:
    assert SERVED.read_text() == built(), "stale: run `PYTHONPATH=. python -m tests.openapi_build`"
    validate(served())


def test_every_route_is_documented_and_every_documented_route_exists(
    app: web.Application,
) -> None:
    documented = {
        (method.upper(), path)
        for path, item in served()["paths"].items()
        for method in item
        if method in METHODS
    }
    mounted = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    assert {m for m in mounted if m[1] not in NOT_API} == documented
    assert {path for _, path in mounted} >= NOT_API  # the list names nothing that is gone


async def test_the_server_serves_the_document_with_its_own_base_url(
    client: TestClient[Any, Any], app: web.Application
) -> None:
    response = await client.get("/v1/openapi.json")
    assert response.status == 200 and response.content_type == "application/json"
    document = await response.json()
    validate(document)
    assert document["servers"] == [{"url": app[CONFIG].base_url}]
    assert document["paths"] == served()["paths"]
    assert "/v1/rooms" in document["paths"] and "/v1/portal/patients" in document["paths"]


def pointer(*parts: str) -> str:
    return "/" + "/".join(quote(p.replace("~", "~0").replace("/", "~1"), safe="") for p in parts)


class Answers:
    """Checks a real answer against the schema the document gives its path, method and status."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource("urn:visitroom", resource)

    def schema_pointer(self, path: str, method: str, status: int) -> str:
        responses = self.document["paths"][path][method]["responses"]
        assert str(status) in responses, f"{method.upper()} {path} does not document {status}"
        at: tuple[str, ...] = ("paths", path, method, "responses", str(status))
        ref = responses[str(status)].get("$ref")
        if ref is not None:
            at = tuple(ref.removeprefix("#/").split("/"))
        return pointer(*at, "content", "application/json", "schema")

    async def check(
        self, response: Any, path: str, status: int, method: str | None = None
    ) -> dict[str, Any]:
        assert response.status == status, await response.text()
        body: dict[str, Any] = await response.json()
        target = {
            "$ref": "urn:visitroom#"
            + self.schema_pointer(path, method or response.method.lower(), status)
        }
        errors = list(OAS31Validator(target, registry=self.registry).iter_errors(body))
        assert not errors, f"{path} {status}: {[e.message for e in errors]}"
        return body


def auth(bearer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer}"}


async def test_real_answers_match_the_documented_schemas(client: TestClient[Any, Any]) -> None:
    answers = Answers(served())
    admin = auth(admin_token())
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    visit = {
        "room_id": "visit-7",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=30)).isoformat(),
        "practice": "lakeside",
        "max_waiting": 3,
    }
    rooms, room = "/v1/rooms", "/v1/rooms/{room_id}"
    created = await answers.check(await client.post(rooms, json=visit, headers=admin), rooms, 201)
    assert created["practice"] == "lakeside"
    await answers.check(await client.post(rooms, json=visit, headers=admin), rooms, 409)
    await answers.check(await client.post(rooms, json={}, headers=admin), rooms, 400)
    await answers.check(await client.post(rooms, json=visit), rooms, 401)
    guest = auth(token(room="*", role="guest", admin=True, scope="portal:support"))
    await answers.check(await client.get(rooms, headers=guest), rooms, 403)
    listed = await answers.check(await client.get(rooms, headers=admin), rooms, 200)
    assert [r["room_id"] for r in listed["rooms"]] == ["visit-7"]
    await answers.check(await client.get("/v1/rooms/visit-7", headers=admin), room, 200)
    await answers.check(await client.get("/v1/rooms/nothing", headers=admin), room, 404)
    window = "/v1/rooms/{room_id}/window"
    await answers.check(await client.get("/v1/rooms/visit-7/window"), window, 200)
    minted = "/v1/rooms/{room_id}/host-token"
    await answers.check(
        await client.post("/v1/rooms/visit-7/host-token", headers=admin), minted, 201
    )
    audit = "/v1/rooms/{room_id}/audit"
    trail = await answers.check(
        await client.get("/v1/rooms/visit-7/audit", headers=admin), audit, 200
    )
    assert {"room_create", "host_token"} <= {e["action"] for e in trail["entries"]}
    await answers.check(await client.delete("/v1/rooms/visit-7", headers=admin), room, 200)
    patients = "/v1/portal/patients"  # the portal's part of the same document
    await answers.check(
        await client.get(patients, params={"q": "lee"}, headers=admin), patients, 403
    )
    await answers.check(await client.get("/healthz"), "/healthz", 200)
    await answers.check(await client.get("/readyz"), "/readyz", 200)
