"""OpenID Connect sign-in for staff, the relying party's rules. Pure: no I/O, an injected time.

The flow is the authorization code flow with PKCE (S256), `state` and `nonce`:

1. `begin()` makes a random `state`, and from it (with a server key) the PKCE
   verifier and the nonce, so the browser keeps only a signed *flow cookie*
   (state, start time, where to go after) and no secret travels in it;
2. the provider sends the browser back with `code` and `state`: `code_of()`
   checks the state against the flow cookie and its age;
3. `token_request()` is the code exchange (client_secret_basic or _post);
4. `verify_id_token()` checks the ID token's signature against the provider's
   JWKS and its iss, aud (and azp), exp, iat and nonce;
5. `identity_of()` maps its claims to an email, a practice and a role.

Every refusal is an `OidcError` whose `reason` is a short fixed word for the
audit trail and whose message is for the person signing in; neither ever holds
a code, a token or a secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt

from staff.roles import Role

FLOW_TTL_S = 600.0  # from "Sign in with ..." to the callback
LEEWAY_S = 60.0  # clock skew allowed on exp / iat
MAX_IAT_AGE_S = 600.0  # an ID token issued longer ago than this is refused
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
SCOPE = "openid email profile"


class OidcError(Exception):
    """A refused OpenID Connect step: `reason` for the audit, the message for the user."""

    def __init__(self, reason: str, message: str, actor: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.actor = actor  # the practice user concerned, when known (`staff:<id>`)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- the provider -------------------------------------------------------------------------


@dataclass(frozen=True)
class Provider:
    """What discovery ({issuer}/.well-known/openid-configuration) tells about the provider."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    auth_methods: tuple[str, ...]
    algorithms: tuple[str, ...]

    @classmethod
    def from_discovery(cls, issuer: str, document: object) -> Provider:
        if not isinstance(document, dict):
            raise OidcError("discovery", "the identity provider's configuration is not JSON")
        if document.get("issuer") != issuer:
            raise OidcError("discovery", "the identity provider names another issuer")
        urls = [document.get(k) for k in ("authorization_endpoint", "token_endpoint", "jwks_uri")]
        if not all(isinstance(url, str) and _is_url(url) for url in urls):
            raise OidcError("discovery", "the identity provider's configuration lacks endpoints")
        methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        algs = document.get("id_token_signing_alg_values_supported") or ["RS256"]
        if "S256" not in (document.get("code_challenge_methods_supported") or ["S256"]):
            raise OidcError("discovery", "the identity provider does not support PKCE (S256)")
        accepted = tuple(str(a) for a in algs if a in ALGORITHMS)
        if not accepted:
            raise OidcError("discovery", "the identity provider signs with no accepted algorithm")
        return cls(
            issuer, str(urls[0]), str(urls[1]), str(urls[2]),
            tuple(str(m) for m in methods), accepted,
        )  # fmt: skip

    def auth_method(self) -> str:
        """client_secret_basic when offered (RFC 6749's preference), else client_secret_post."""
        for method in ("client_secret_basic", "client_secret_post"):
            if method in self.auth_methods:
                return method
        raise OidcError("discovery", "the identity provider offers no client secret method")


def _is_url(text: str) -> bool:
    parts = urlsplit(text)
    return parts.scheme in ("https", "http") and bool(parts.netloc)


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


# --- the flow cookie, state, nonce and PKCE ------------------------------------------------


@dataclass(frozen=True)
class Flow:
    """One sign-in on its way: what the signed flow cookie carries."""

    state: str
    started_at: float
    next_path: str = "/"


class FlowKeys:
    """The server key that signs flow cookies and derives each flow's verifier and nonce."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the OIDC flow key must be at least 32 bytes")
        self._key = key

    def _mac(self, label: str, text: str) -> bytes:
        return hmac.new(self._key, f"{label}\0{text}".encode(), hashlib.sha256).digest()

    def verifier(self, flow: Flow) -> str:
        """The PKCE code verifier (43 characters of base64url: RFC 7636 section 4.1)."""
        return _b64(self._mac("pkce", flow.state))

    def nonce(self, flow: Flow) -> str:
        return _b64(self._mac("nonce", flow.state))

    def seal(self, flow: Flow) -> str:
        body = _b64(json.dumps([flow.state, flow.started_at, flow.next_path]).encode())
        return body + "." + _b64(self._mac("cookie", body))

    def open(self, sealed: str | None) -> Flow | None:
        """The flow of a cookie, or None when it is missing, malformed or not ours."""
        body, _, mac = (sealed or "").partition(".")
        if not body or not hmac.compare_digest(mac, _b64(self._mac("cookie", body))):
            return None
        try:
            state, started_at, next_path = json.loads(_unb64(body))
        except ValueError:
            return None
        if not isinstance(state, str) or not isinstance(started_at, int | float):
            return None
        return Flow(state, float(started_at), safe_next(next_path))


def code_challenge(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


def safe_next(path: object) -> str:
    """Where to go after signing in: a path on this site only (never another host)."""
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
        return "/"
    if "\\" in path or any(ord(c) < 0x20 for c in path) or len(path) > 512:
        return "/"
    return path


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str
    redirect_uri: str

    def __repr__(self) -> str:  # the secret never shows in a log or a traceback
        return f"Client(client_id={self.client_id!r}, redirect_uri={self.redirect_uri!r})"


def begin(
    provider: Provider, client: Client, keys: FlowKeys, now: float, next_path: str = "/"
) -> tuple[str, Flow]:
    """The provider's authorization URL to send the browser to, and the flow to keep."""
    flow = Flow(secrets.token_urlsafe(24), now, safe_next(next_path))
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "scope": SCOPE,
        "state": flow.state,
        "nonce": keys.nonce(flow),
        "code_challenge": code_challenge(keys.verifier(flow)),
        "code_challenge_method": "S256",
    }
    separator = "&" if urlsplit(provider.authorization_endpoint).query else "?"
    return provider.authorization_endpoint + separator + urlencode(query), flow


def code_of(query: Mapping[str, str], flow: Flow | None, now: float) -> str:
    """The authorization code of a callback, once its state matches a live flow of ours."""
    if flow is None:
        raise OidcError("no_flow", "this sign-in was not started here (or cookies are off)")
    if not hmac.compare_digest(query.get("state", "").encode(), flow.state.encode()):
        raise OidcError("state", "this sign-in does not match the one started: start again")
    if now - flow.started_at > FLOW_TTL_S or now < flow.started_at - LEEWAY_S:
        raise OidcError("expired", "this sign-in took too long: start again")
    if "error" in query:
        raise OidcError("provider_error", "the identity provider did not sign you in")
    code = query.get("code", "")
    if not code or len(code) > 2048:
        raise OidcError("no_code", "the identity provider sent no authorization code")
    return code


@dataclass(frozen=True)
class TokenRequest:
    url: str
    form: dict[str, str]
    headers: dict[str, str]

    def __repr__(self) -> str:  # holds the code, the verifier and maybe the secret
        return f"TokenRequest(url={self.url!r})"


def token_request(
    provider: Provider, client: Client, keys: FlowKeys, flow: Flow, code: str
) -> TokenRequest:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client.redirect_uri,
        "code_verifier": keys.verifier(flow),
    }
    headers = {"Accept": "application/json"}
    if provider.auth_method() == "client_secret_basic":
        # RFC 6749 section 2.3.1: each part form-urlencoded before Basic
        pair = urlencode({"a": client.client_id})[2:] + ":" + urlencode({"a": client.secret})[2:]
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    else:
        form.update(client_id=client.client_id, client_secret=client.secret)
    return TokenRequest(provider.token_endpoint, form, headers)


def id_token_of(response: object) -> str:
    """The ID token of a token endpoint's JSON reply (the access token is not used)."""
    token = response.get("id_token") if isinstance(response, dict) else None
    if not isinstance(token, str) or not token:
        raise OidcError("no_id_token", "the identity provider sent no ID token")
    return token


# --- the ID token -------------------------------------------------------------------------


def verify_id_token(
    token: str, jwks: object, provider: Provider, client_id: str, nonce: str, now: float
) -> dict[str, Any]:
    """The ID token's claims once its signature, iss, aud/azp, exp, iat and nonce are right."""
    key = _signing_key(token, jwks, provider)
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=list(provider.algorithms), audience=client_id,
            issuer=provider.issuer, leeway=LEEWAY_S,
            options={"require": ["iss", "sub", "aud", "exp", "iat"], "verify_iat": False,
                     "verify_exp": False, "verify_nbf": False},
        )  # fmt: skip
    except jwt.InvalidAudienceError:
        raise OidcError("audience", "the ID token was not issued for visitroom") from None
    except jwt.InvalidIssuerError:
        raise OidcError("issuer", "the ID token comes from another issuer") from None
    except jwt.PyJWTError:
        raise OidcError("id_token", "the ID token is not valid") from None
    _check_times(claims, now)
    _check_azp(claims, client_id)
    if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
        raise OidcError("nonce", "the ID token does not belong to this sign-in")
    return claims


def _signing_key(token: str, jwks: object, provider: Provider) -> Any:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise OidcError("id_token", "the ID token is not valid") from None
    if header.get("alg") not in provider.algorithms:
        raise OidcError("id_token", "the ID token is not signed with an accepted algorithm")
    try:
        keys = jwt.PyJWKSet.from_dict(jwks if isinstance(jwks, dict) else {}).keys
    except jwt.PyJWTError:
        raise OidcError("jwks", "the identity provider's keys are unreadable") from None
    kid = header.get("kid")
    found = [k for k in keys if kid is None or k.key_id == kid]
    found = [k for k in found if k.public_key_use in (None, "sig")]
    if len(found) != 1:
        raise OidcError("jwks", "the ID token's key is not among the identity provider's keys")
    return found[0].key


def _check_times(claims: Mapping[str, Any], now: float) -> None:
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise OidcError("id_token", "the ID token is not valid")
    if now >= exp + LEEWAY_S:
        raise OidcError("expired", "the ID token has expired: sign in again")
    if iat > now + LEEWAY_S or now - iat > MAX_IAT_AGE_S:
        raise OidcError("iat", "the ID token's issue time is wrong: check the clocks")


def _check_azp(claims: Mapping[str, Any], client_id: str) -> None:
    """OIDC Core 3.1.3.7: several audiences need an azp, which must be us."""
    aud = claims.get("aud")
    azp = claims.get("azp")
    if ((isinstance(aud, list) and len(aud) > 1) or azp is not None) and azp != client_id:
        raise OidcError("audience", "the ID token was not issued for visitroom")


# --- claims to a practice user ------------------------------------------------------------


@dataclass(frozen=True)
class ClaimMap:
    """Which claims name the practice and the role, and how role values translate."""

    practice_claim: str = "practice"
    role_claim: str = "visitroom_role"  # "" : the role stays as the practice admin set it
    role_values: Mapping[str, str] | None = None  # the provider's value -> a visitroom role

    def role(self, value: object) -> Role:
        text = (self.role_values or {}).get(str(value), value)
        try:
            return Role.parse(text)
        except ValueError:
            raise OidcError("role", "your account's role is not one visitroom knows") from None


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in."""

    issuer: str
    subject: str
    email: str
    practice: str
    role: Role | None  # None when roles are not taken from the provider


def identity_of(claims: Mapping[str, Any], mapping: ClaimMap) -> Identity:
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise OidcError("email", "your account has no email address visitroom can use")
    if claims.get("email_verified") is False:
        raise OidcError("email", "your account's email address is not verified")
    practice = claims.get(mapping.practice_claim)
    if not isinstance(practice, str) or not practice:
        raise OidcError("practice", "your account names no practice")
    role = mapping.role(claims.get(mapping.role_claim)) if mapping.role_claim else None
    return Identity(str(claims["iss"]), str(claims["sub"]), email.strip(), practice, role)


def parse_role_values(text: str) -> dict[str, str]:
    """`VISITROOM_OIDC_ROLE_VALUES`: ``doctor=provider,reception=front_desk``."""
    values: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        theirs, sep, ours = item.partition("=")
        if not sep or not theirs.strip():
            raise ValueError("VISITROOM_OIDC_ROLE_VALUES must look like doctor=provider,...")
        values[theirs.strip()] = Role.parse(ours.strip()).value
    return values
