"""`GET /v1/openapi.json`: valid OpenAPI 3.1, built from docs/, true to the live routes,
and the answers of real calls match the schemas it documents."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from common.session import CSRF_HEADER, SAFE_METHODS
from signalling.keys import CONFIG
from staff.roles import Role
from staff.sessions import COOKIE
from tests.conftest import admin_token, token
from tests.openapi_build import METHODS, ROOMS, SERVED, STAFF, built
from tests.staff_support import Staff, add_practice, add_user, staff_app
from tests.test_staff_api import schedule

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


def test_the_staff_document_is_valid_openapi_3_1_with_the_rooms_documents_parts() -> None:
    staff = yaml.safe_load(STAFF.read_text())
    assert staff["openapi"].startswith("3.1.")
    validate(staff, base_uri=STAFF.as_uri())  # resolves `rooms-openapi.yaml#/...`


def test_a_session_change_needs_the_csrf_token_wherever_the_document_takes_the_session() -> None:
    schemes = served()["components"]["securitySchemes"]
    assert (schemes["staffSession"]["in"], schemes["staffSession"]["name"]) == ("cookie", COOKIE)
    assert (schemes["csrfToken"]["in"], schemes["csrfToken"]["name"]) == ("header", CSRF_HEADER)
    for path, item in served()["paths"].items():
        for method, operation in item.items():
            for requirement in operation.get("security", []) if method in METHODS else []:
                if "staffSession" in requirement and method.upper() not in SAFE_METHODS:
                    assert "csrfToken" in requirement, f"{method.upper()} {path}"


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
        return self.answer((response.status, body), path, method or response.method.lower(), status)

    def answer(
        self, answer: tuple[int, dict[str, Any]], path: str, method: str, status: int
    ) -> dict[str, Any]:
        """A (status, body) already read, as tests.staff_support.Staff gives them."""
        got, body = answer
        assert got == status, body
        target = {"$ref": "urn:visitroom#" + self.schema_pointer(path, method, status)}
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


async def test_real_staff_answers_match_the_documented_schemas(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    answers = Answers(served())
    app = staff_app(tmp_path)
    boss = Staff(await aiohttp_client(app))
    await add_practice(app, "p1")
    await add_user(app, "p1", "boss@clinic.test", Role.PRACTICE_ADMIN, "Pat Admin")
    await add_user(app, "p1", "ana@clinic.test", Role.PROVIDER)
    sign_in, session = "/v1/staff/sign-in", "/v1/staff/session"
    nobody = answers.answer(await boss.call("GET", session), session, "get", 200)
    assert nobody == {"user": None}
    wrong = await boss.sign_in("boss@clinic.test", "the wrong password")
    answers.answer(wrong, sign_in, "post", 401)
    started = answers.answer(await boss.sign_in("boss@clinic.test"), sign_in, "post", 200)
    assert started["user"]["role"] == "practice_admin" and boss.cookie
    answers.answer(await boss.call("GET", session), session, "get", 200)
    users, user = "/v1/staff/users", "/v1/staff/users/{user_id}"
    listed = answers.answer(await boss.call("GET", users), users, "get", 200)
    assert sorted(u["email"] for u in listed["users"]) == ["ana@clinic.test", "boss@clinic.test"]
    new = {"email": "fd@clinic.test", "display_name": "Front Desk", "role": "front_desk"}
    forged = await boss.call("POST", users, new, csrf=False)
    assert answers.answer(forged, users, "post", 403)["error"]["code"] == "forbidden"
    added = answers.answer(await boss.call("POST", users, new), users, "post", 201)
    change = {"role": "provider", "disabled": True}
    changed = await boss.call("PATCH", f"{users}/{added['user_id']}", change)
    assert answers.answer(changed, user, "patch", 200)["disabled"] is True
    unknown = await boss.call("PATCH", f"{users}/u_000000000000", change)
    answers.answer(unknown, user, "patch", 404)
    setup, confirm = "/v1/staff/totp/setup", "/v1/staff/totp/confirm"
    answers.answer(await boss.call("POST", setup), setup, "post", 200)
    bad_code = await boss.call("POST", confirm, {"code": "000000"})
    assert answers.answer(bad_code, confirm, "post", 400)["error"]["code"] == "bad_code"
    ana = Staff(boss.client)
    await ana.sign_in("ana@clinic.test")
    answers.answer(await ana.call("GET", users), users, "get", 403)  # not a practice admin
    offer, mine = "/v1/rooms/{room_id}/host-offer", await schedule(ana, "p1")
    answers.answer(await ana.call("GET", "/v1/rooms/visit-1/host-offer"), offer, "get", 200)
    yes = await ana.call("GET", f"/v1/rooms/{mine}/host-offer")
    assert answers.answer(yes, offer, "get", 200) == {"host": True, "name": "Dr. Ana Smith"}
    answers.answer(await ana.call("GET", "/v1/rooms"), "/v1/rooms", "get", 200)  # on a session
    reset, complete = "/v1/staff/password-reset", "/v1/staff/password-reset/complete"
    stranger = Staff(boss.client)
    asked = await stranger.call("POST", reset, {"email": "nobody@clinic.test"})
    answers.answer(asked, reset, "post", 202)
    bogus = {"token": "no such link", "password": "a long new password"}
    used = answers.answer(await stranger.call("POST", complete, bogus), complete, "post", 400)
    assert used["error"]["code"] == "link_invalid"
    elsewhere = await stranger.call("POST", reset, {"email": "x@y.test"}, origin="https://a.test")
    answers.answer(elsewhere, reset, "post", 403)
    assert (await boss.call("POST", "/v1/staff/sign-out"))[0] == 204
