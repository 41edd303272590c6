"""The OpenID Connect relying party's rules, with keys made here: no provider, no sockets."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from common.config import ConfigError
from staff import oidc
from staff.oidc import ClaimMap, Client, Flow, FlowKeys, OidcError, Provider
from staff.oidc_config import OidcConfig
from staff.roles import Role

ISSUER = "https://idp.example.org/realms/clinic"
CLIENT = Client(
    "visitroom", "s3cret-of-the-client", "https://visits.example.org/auth/oidc/callback"
)
NOW = 1_800_000_000.0
KEYS = FlowKeys(b"k" * 32)
DISCOVERY: dict[str, Any] = {
    "issuer": ISSUER,
    "authorization_endpoint": ISSUER + "/auth",
    "token_endpoint": ISSUER + "/token",
    "jwks_uri": ISSUER + "/jwks",
    "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    "id_token_signing_alg_values_supported": ["RS256"],
    "code_challenge_methods_supported": ["S256"],
}
PROVIDER = Provider.from_discovery(ISSUER, DISCOVERY)
SIGNER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks_of(*keys: rsa.RSAPrivateKey) -> dict[str, Any]:
    out = []
    for index, key in enumerate(keys):
        jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        jwk.update(kid=f"k{index}", alg="RS256", use="sig")
        out.append(jwk)
    return {"keys": out}


JWKS = jwks_of(SIGNER)
FLOW = Flow("the-state", NOW - 5)


def id_token(key: rsa.RSAPrivateKey = SIGNER, kid: str = "k0", **changes: Any) -> str:
    claims: dict[str, Any] = {
        "iss": ISSUER, "sub": "u-123", "aud": CLIENT.client_id, "exp": NOW + 300,
        "iat": NOW - 2, "nonce": KEYS.nonce(FLOW), "email": "Jones@Example.org",
        "practice": "p-north", "visitroom_role": "provider",
    }  # fmt: skip
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def verify(token: str, nonce: str | None = None, now: float = NOW) -> dict[str, Any]:
    nonce = KEYS.nonce(FLOW) if nonce is None else nonce
    return oidc.verify_id_token(token, JWKS, PROVIDER, CLIENT.client_id, nonce, now)


def refused(reason: str, call: Any, *args: Any, **kwargs: Any) -> OidcError:
    with pytest.raises(OidcError) as caught:
        call(*args, **kwargs)
    assert caught.value.reason == reason, caught.value.message
    return caught.value


# --- the authorization request ------------------------------------------------------------


def test_the_authorization_url_asks_for_a_code_with_pkce_s256_state_and_nonce() -> None:
    url, flow = oidc.begin(PROVIDER, CLIENT, KEYS, NOW, "/dashboard")
    assert url.startswith(DISCOVERY["authorization_endpoint"] + "?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == "visitroom"
    assert query["redirect_uri"] == CLIENT.redirect_uri
    assert "openid" in query["scope"].split()
    assert query["state"] == flow.state and len(flow.state) >= 32
    assert query["nonce"] == KEYS.nonce(flow)
    assert query["code_challenge_method"] == "S256"
    digest = hashlib.sha256(KEYS.verifier(flow).encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert 43 <= len(KEYS.verifier(flow)) <= 128
    assert CLIENT.secret not in url and KEYS.verifier(flow) not in url


def test_each_sign_in_gets_its_own_state_verifier_and_nonce() -> None:
    _, one = oidc.begin(PROVIDER, CLIENT, KEYS, NOW)
    _, two = oidc.begin(PROVIDER, CLIENT, KEYS, NOW)
    assert one.state != two.state
    assert KEYS.verifier(one) != KEYS.verifier(two) and KEYS.nonce(one) != KEYS.nonce(two)
    assert FlowKeys(b"x" * 32).verifier(one) != KEYS.verifier(one)


def test_the_flow_cookie_comes_back_only_as_signed() -> None:
    flow = Flow("abc", NOW, "/host/room-1")
    sealed = KEYS.seal(flow)
    assert KEYS.open(sealed) == flow
    body, _, mac = sealed.partition(".")
    forged = base64.urlsafe_b64encode(json.dumps(["evil", NOW, "/"]).encode()).decode()
    assert KEYS.open(forged.rstrip("=") + "." + mac) is None
    assert KEYS.open(body + "." + mac[:-2] + "AA") is None
    assert FlowKeys(b"y" * 32).open(sealed) is None
    assert KEYS.open(None) is None and KEYS.open("") is None and KEYS.open("a.b") is None


def test_after_sign_in_the_browser_goes_to_a_path_of_this_site_only() -> None:
    for bad in ("https://evil.example", "//evil.example/x", "/\\evil.example", "dashboard", 5):
        assert oidc.safe_next(bad) == "/"
    assert oidc.safe_next("/host/visit-1?x=1") == "/host/visit-1?x=1"
    _, flow = oidc.begin(PROVIDER, CLIENT, KEYS, NOW, "https://evil.example/")
    assert flow.next_path == "/"


# --- the callback -------------------------------------------------------------------------


def test_the_callback_gives_the_code_when_the_state_matches() -> None:
    assert oidc.code_of({"state": FLOW.state, "code": "the-code"}, FLOW, NOW) == "the-code"


def test_a_state_that_does_not_match_the_flow_cookie_is_refused() -> None:
    refused("state", oidc.code_of, {"state": "another", "code": "c"}, FLOW, NOW)
    refused("state", oidc.code_of, {"code": "c"}, FLOW, NOW)


def test_a_callback_without_a_flow_cookie_or_too_late_or_with_an_error_is_refused() -> None:
    refused("no_flow", oidc.code_of, {"state": FLOW.state, "code": "c"}, None, NOW)
    late = NOW + oidc.FLOW_TTL_S + 1
    refused("expired", oidc.code_of, {"state": FLOW.state, "code": "c"}, FLOW, late)
    query = {"state": FLOW.state, "error": "access_denied"}
    refused("provider_error", oidc.code_of, query, FLOW, NOW)
    refused("no_code", oidc.code_of, {"state": FLOW.state}, FLOW, NOW)


def test_the_code_is_exchanged_with_the_verifier_and_client_secret_basic() -> None:
    request = oidc.token_request(PROVIDER, CLIENT, KEYS, FLOW, "the-code")
    assert request.url == DISCOVERY["token_endpoint"]
    assert request.form == {
        "grant_type": "authorization_code", "code": "the-code",
        "redirect_uri": CLIENT.redirect_uri, "code_verifier": KEYS.verifier(FLOW),
    }  # fmt: skip
    basic = base64.b64decode(request.headers["Authorization"].removeprefix("Basic "))
    assert basic == b"visitroom:s3cret-of-the-client"
    assert "the-code" not in repr(request) and CLIENT.secret not in repr(CLIENT)


def test_client_secret_post_is_used_when_the_provider_offers_only_that() -> None:
    provider = Provider.from_discovery(
        ISSUER, {**DISCOVERY, "token_endpoint_auth_methods_supported": ["client_secret_post"]}
    )
    request = oidc.token_request(provider, CLIENT, KEYS, FLOW, "c")
    assert "Authorization" not in request.headers
    assert request.form["client_id"] == "visitroom"
    assert request.form["client_secret"] == CLIENT.secret


def test_a_token_reply_without_an_id_token_is_refused() -> None:
    refused("no_id_token", oidc.id_token_of, {"access_token": "a"})
    assert oidc.id_token_of({"id_token": "x.y.z"}) == "x.y.z"


def test_discovery_must_name_the_configured_issuer_and_offer_s256() -> None:
    refused("discovery", Provider.from_discovery, ISSUER, {**DISCOVERY, "issuer": "https://x"})
    no_pkce = {**DISCOVERY, "code_challenge_methods_supported": ["plain"]}
    refused("discovery", Provider.from_discovery, ISSUER, no_pkce)
    refused("discovery", Provider.from_discovery, ISSUER, {**DISCOVERY, "token_endpoint": 3})
    hmac_only = {**DISCOVERY, "id_token_signing_alg_values_supported": ["HS256", "none"]}
    refused("discovery", Provider.from_discovery, ISSUER, hmac_only)
    assert oidc.discovery_url(ISSUER + "/") == ISSUER + "/.well-known/openid-configuration"


# --- the ID token -------------------------------------------------------------------------


def test_a_good_id_token_gives_its_claims() -> None:
    claims = verify(id_token())
    assert claims["sub"] == "u-123" and claims["practice"] == "p-north"


def test_an_id_token_for_another_audience_is_refused() -> None:
    refused("audience", verify, id_token(aud="another-app"))
    refused("audience", verify, id_token(aud=["another-app", "visitroom"]))
    refused("audience", verify, id_token(azp="another-app"))


def test_an_expired_id_token_is_refused() -> None:
    refused("expired", verify, id_token(exp=NOW - oidc.LEEWAY_S - 1))
    assert verify(id_token(exp=NOW - 10))  # within the clock-skew leeway


def test_an_id_token_issued_in_the_future_or_long_ago_is_refused() -> None:
    refused("iat", verify, id_token(iat=NOW + oidc.LEEWAY_S + 5))
    refused("iat", verify, id_token(iat=NOW - oidc.MAX_IAT_AGE_S - 5, exp=NOW + 60))


def test_an_id_token_of_another_issuer_or_sign_in_is_refused() -> None:
    refused("issuer", verify, id_token(iss="https://evil.example"))
    refused("nonce", verify, id_token(), nonce="another-nonce")
    refused("nonce", verify, id_token(nonce=None))


def test_an_id_token_signed_by_another_key_is_refused() -> None:
    refused("id_token", verify, id_token(OTHER))
    refused("jwks", verify, id_token(OTHER, kid="unknown"))


def test_an_unsigned_or_hmac_signed_id_token_is_refused() -> None:
    claims = jwt.decode(id_token(), options={"verify_signature": False})
    unsigned = jwt.encode(claims, "", algorithm="none", headers={"kid": "k0"})
    refused("id_token", verify, unsigned)
    hmac_signed = jwt.encode(claims, "k" * 32, algorithm="HS256", headers={"kid": "k0"})
    refused("id_token", verify, hmac_signed)
    refused("id_token", verify, "not-a-token")


def test_an_id_token_without_sub_or_exp_is_refused() -> None:
    refused("id_token", verify, id_token(sub=None))
    refused("id_token", verify, id_token(exp=None))


# --- claims -------------------------------------------------------------------------------


def test_claims_map_to_email_practice_and_role() -> None:
    identity = oidc.identity_of(verify(id_token()), ClaimMap())
    assert identity.email == "Jones@Example.org"
    assert identity.practice == "p-north" and identity.role is Role.PROVIDER
    assert (identity.issuer, identity.subject) == (ISSUER, "u-123")


def test_claim_names_and_role_values_are_configurable() -> None:
    mapping = ClaimMap("org", "groups_role", {"reception": "front_desk"})
    claims = verify(id_token(org="p-south", groups_role="reception"))
    identity = oidc.identity_of(claims, mapping)
    assert identity.practice == "p-south" and identity.role is Role.FRONT_DESK
    assert oidc.identity_of(claims, ClaimMap("org", "")).role is None


def test_claims_without_practice_email_or_a_known_role_are_refused() -> None:
    refused("practice", oidc.identity_of, verify(id_token(practice=None)), ClaimMap())
    refused("email", oidc.identity_of, verify(id_token(email=None)), ClaimMap())
    refused("email", oidc.identity_of, verify(id_token(email_verified=False)), ClaimMap())
    refused("role", oidc.identity_of, verify(id_token(visitroom_role="admin")), ClaimMap())


# --- settings -----------------------------------------------------------------------------


def test_oidc_is_off_without_an_issuer() -> None:
    assert OidcConfig.from_env({}) is None


def test_the_client_secret_comes_from_a_file_and_never_shows_in_repr(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-the-file\n")
    env = {
        "VISITROOM_OIDC_ISSUER": ISSUER, "VISITROOM_OIDC_CLIENT_ID": "visitroom",
        "VISITROOM_OIDC_CLIENT_SECRET_FILE": str(secret_file),
        "VISITROOM_OIDC_ROLE_VALUES": "doctor=provider",
    }  # fmt: skip
    config = OidcConfig.from_env(env)
    assert config is not None and config.client_secret == "from-the-file"
    assert "from-the-file" not in repr(config)
    assert config.claims.role_values == {"doctor": "provider"}
    assert config.label == "idp.example.org"


def test_bad_oidc_settings_stop_the_server_with_a_clear_message() -> None:
    base = {"VISITROOM_OIDC_ISSUER": ISSUER, "VISITROOM_OIDC_CLIENT_ID": "visitroom"}
    cases = [
        ({}, "VISITROOM_OIDC_CLIENT_SECRET"),
        ({"VISITROOM_OIDC_CLIENT_ID": ""}, "VISITROOM_OIDC_CLIENT_ID"),
        ({"VISITROOM_OIDC_ISSUER": "http://idp.example.org"}, "https://"),
        ({"VISITROOM_OIDC_CLIENT_SECRET": "s", "VISITROOM_OIDC_ROLE_VALUES": "x=boss"}, "role"),
        ({"VISITROOM_OIDC_CLIENT_SECRET_FILE": "/nonexistent/secret"}, "SECRET_FILE"),
    ]
    for changes, words in cases:
        with pytest.raises(ConfigError, match=words):
            OidcConfig.from_env({**base, **changes})
    loopback = {**base, "VISITROOM_OIDC_ISSUER": "http://127.0.0.1:4000/oidc"}
    assert OidcConfig.from_env({**loopback, "VISITROOM_OIDC_CLIENT_SECRET": "s"}) is not None
