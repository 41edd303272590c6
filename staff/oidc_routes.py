"""OpenID Connect sign-in over HTTP: the thin shell around staff.oidc.

- GET /auth/oidc/info: {"enabled": bool, "label"?, "start"?} for the sign-in screen's
  button (always there; `enabled` false when OIDC is not configured);
- GET /auth/oidc/start?next=/dashboard: a signed flow cookie, then 302 to the provider;
- GET /auth/oidc/callback: state checked, code exchanged, ID token verified, the
  practice user found, and the same staff session as a password sign-in started
  (303 to `next`); a refusal is a plain page saying why, and an audit row.

What it needs of the staff part is the small `StaffSignIn` protocol, so this
module knows nothing of how users and sessions are stored.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from common.audit import AuditEntry, AuditLog
from staff import oidc
from staff.oidc import Client, Flow, FlowKeys, Identity, OidcError, Provider
from staff.oidc_config import CALLBACK_PATH, OidcConfig
from staff.roles import Role, User

log = logging.getLogger(__name__)

FLOW_COOKIE = "vr_oidc"
FLOW_PATH = "/auth/oidc"
DEFAULT_NEXT = "/dashboard"
HTTP_TIMEOUT_S = 10.0
DISCOVERY_TTL_S = 3600.0
MAX_REPLY = 256 * 1024
KEY_LABEL = b"visitroom oidc flow v1"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Referrer-Policy": "no-referrer",
}


class StaffSignIn(Protocol):
    """What OIDC sign-in needs of the staff part."""

    secure: bool  # the cookies get Secure (site served over TLS)

    async def user_by_email(self, email: str) -> User | None: ...

    async def set_role(self, user: User, role: Role, actor: str) -> User:
        """The provider's role for the user (audited as a role change by `actor`)."""
        ...

    async def start_session(
        self, user: User, cookies: Mapping[str, str]
    ) -> tuple[str, str, dict[str, Any]]:
        """A new staff session (`cookies`: the browser's, whose older session ends):
        (cookie name, session id, cookie attributes)."""
        ...


def flow_keys(api_keys: dict[str, str] | Any) -> FlowKeys:
    """The flow key, derived from an API secret (the smallest key id's, as staff.mail's
    link key): the same on every node."""
    secret = api_keys[min(api_keys)]
    return FlowKeys(hmac.new(secret.encode(), KEY_LABEL, hashlib.sha256).digest())


@dataclass
class RelyingParty:
    config: OidcConfig
    client: Client
    keys: FlowKeys
    staff: StaffSignIn
    audit: AuditLog
    clock: Callable[[], float] = time.time
    http: aiohttp.ClientSession | None = None
    _provider: tuple[float, Provider] | None = None
    _jwks: dict[str, Any] = field(default_factory=dict)

    # --- the provider's documents -------------------------------------------------------

    async def _get_json(self, url: str) -> Any:
        assert self.http is not None
        async with self.http.get(url, headers={"Accept": "application/json"}) as response:
            if response.status != 200:
                raise OidcError("unreachable", "the identity provider cannot be reached")
            return await _json(response)

    async def provider(self) -> Provider:
        now = self.clock()
        if self._provider is None or now - self._provider[0] > DISCOVERY_TTL_S:
            document = await self._get_json(oidc.discovery_url(self.config.issuer))
            self._provider = (now, Provider.from_discovery(self.config.issuer, document))
            self._jwks = {}
        return self._provider[1]

    async def verify(self, provider: Provider, token: str, flow: Flow) -> dict[str, Any]:
        nonce = self.keys.nonce(flow)
        if not self._jwks:
            self._jwks = await self._get_json(provider.jwks_uri)
        try:
            return oidc.verify_id_token(
                token, self._jwks, provider, self.client.client_id, nonce, self.clock()
            )
        except OidcError as exc:
            if exc.reason != "jwks":
                raise
        self._jwks = await self._get_json(provider.jwks_uri)  # the provider rotated its keys
        return oidc.verify_id_token(
            token, self._jwks, provider, self.client.client_id, nonce, self.clock()
        )

    async def exchange(self, provider: Provider, flow: Flow, code: str) -> str:
        request = oidc.token_request(provider, self.client, self.keys, flow, code)
        assert self.http is not None
        async with self.http.post(request.url, data=request.form, headers=request.headers) as rep:
            if rep.status != 200:  # the reply's body may echo the code: not read, not logged
                raise OidcError("token_endpoint", "the identity provider refused the sign-in")
            body = await _json(rep)
        return oidc.id_token_of(body)

    # --- the practice user --------------------------------------------------------------

    async def user_of(self, identity: Identity) -> User:
        user = await self.staff.user_by_email(identity.email)
        if user is None:
            raise OidcError("unknown_user", "your account is not a user of this practice's"
                            " visitroom: ask your practice admin to add you")  # fmt: skip
        if user.practice != identity.practice:
            raise OidcError("practice", "your account belongs to another practice", user.identity)
        if user.disabled:
            raise OidcError("disabled", "your visitroom account is disabled", user.identity)
        if identity.role is not None and identity.role is not user.role:
            user = await self.staff.set_role(user, identity.role, "oidc:" + identity.issuer)
        return user

    def refuse(self, reason: str, actor: str | None = None) -> None:
        self.audit.record(
            AuditEntry("staff_sign_in", "unauthorized", None, actor, None,
                       {"method": "oidc", "reason": reason})
        )  # fmt: skip


async def _json(response: aiohttp.ClientResponse) -> Any:
    """A reply's JSON, read up to MAX_REPLY bytes (ValueError beyond, or when malformed)."""
    raw = await response.content.read(MAX_REPLY + 1)
    if len(raw) > MAX_REPLY:
        raise ValueError("the identity provider's reply is too large")
    return json.loads(raw)


RP = web.AppKey("oidc_relying_party", RelyingParty)


def flow_cookie(secure: bool) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "httponly": True, "samesite": "Lax", "path": FLOW_PATH, "max_age": int(oidc.FLOW_TTL_S),
    }  # fmt: skip
    if secure:
        attributes["secure"] = True
    return attributes


async def info(request: web.Request) -> web.Response:
    """Whether to show the button: asked by every sign-in screen, so it always answers 200."""
    rp = request.app.get(RP)
    data: dict[str, object] = {"enabled": False}
    if rp is not None:
        data = {"enabled": True, "label": rp.config.label, "start": FLOW_PATH + "/start"}
    return web.json_response(data, headers={"Cache-Control": "no-store"})


async def start(request: web.Request) -> web.StreamResponse:
    rp = request.app[RP]
    try:
        provider = await rp.provider()
    except (OidcError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, OidcError) else "unreachable"
        rp.refuse(reason)
        log.warning("OIDC discovery failed (%s)", reason)
        return page(502, "The identity provider cannot be reached. Try again in a minute.")
    next_path = request.query.get("next", DEFAULT_NEXT)
    url, flow = oidc.begin(provider, rp.client, rp.keys, rp.clock(), next_path)
    response = web.Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})
    response.set_cookie(FLOW_COOKIE, rp.keys.seal(flow), **flow_cookie(rp.staff.secure))
    return response


async def callback(request: web.Request) -> web.StreamResponse:
    rp = request.app[RP]
    flow = rp.keys.open(request.cookies.get(FLOW_COOKIE))
    try:
        user = await _sign_in(rp, request, flow)
    except OidcError as exc:
        rp.refuse(exc.reason, exc.actor)
        response = page(403 if exc.reason in REFUSALS else 400, exc.message)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        rp.refuse("unreachable")
        response = page(502, "The identity provider cannot be reached. Try again in a minute.")
    else:
        response = await _signed_in(rp, request, user, flow)
    response.del_cookie(FLOW_COOKIE, path=FLOW_PATH)  # a flow is used once, either way
    return response


async def _signed_in(
    rp: RelyingParty, request: web.Request, user: User, flow: Flow | None
) -> web.Response:
    name, session_id, attributes = await rp.staff.start_session(user, request.cookies)
    assert flow is not None
    headers = {"Location": flow.next_path, "Cache-Control": "no-store"}
    response = web.Response(status=303, headers=headers)
    response.set_cookie(name, session_id, **attributes)
    return response


REFUSALS = frozenset({"unknown_user", "practice", "disabled", "role", "email"})


async def _sign_in(rp: RelyingParty, request: web.Request, flow: Flow | None) -> User:
    code = oidc.code_of(request.query, flow, rp.clock())
    assert flow is not None
    provider = await rp.provider()
    token = await rp.exchange(provider, flow, code)
    claims = await rp.verify(provider, token, flow)
    return await rp.user_of(oidc.identity_of(claims, rp.config.claims))


def page(status: int, message: str) -> web.Response:
    """A refusal the person can read: what happened, and the way back."""
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        "<title>Sign-in refused · visitroom</title>"
        "<body style='font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;"
        "padding:0 1rem'><h1>Sign-in refused</h1>"
        f"<p data-testid=oidc-error role=alert>{html.escape(message)}</p>"
        f"<p><a data-testid=oidc-back href='{DEFAULT_NEXT}'>Back to sign-in</a></p></body></html>"
    )
    return web.Response(status=status, text=body, content_type="text/html", headers=PAGE_HEADERS)


def setup(
    app: web.Application, config: OidcConfig | None, base_url: str, api_keys: Any,
    staff: StaffSignIn, audit: AuditLog, clock: Callable[[], float] = time.time,
) -> RelyingParty | None:  # fmt: skip
    """Add the /auth/oidc routes (only /info, saying "off", without a configuration);
    the HTTP client lives in the app's cleanup context."""
    app.router.add_get(FLOW_PATH + "/info", info)
    if config is None:
        return None
    client = Client(config.client_id, config.client_secret, base_url.rstrip("/") + CALLBACK_PATH)
    rp = RelyingParty(config, client, flow_keys(api_keys), staff, audit, clock)
    app[RP] = rp
    app.router.add_get(FLOW_PATH + "/start", start)
    app.router.add_get(CALLBACK_PATH, callback)

    async def http_client(_: web.Application) -> Any:
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        rp.http = aiohttp.ClientSession(timeout=timeout, raise_for_status=False)
        yield
        await rp.http.close()

    app.cleanup_ctx.append(http_client)
    return rp
