"""What the OpenID Foundation's conformance suite checks of a Basic and Config OP, tested here.

The plans ``oidcc-basic-certification-test-plan`` and ``oidcc-config-certification-test-plan``
need a public deployment; their checks that do not are repeated against the app itself:

- Config: discovery's REQUIRED fields (OIDC Discovery 1.0 §3), the issuer exactly as configured,
  RS256 offered, and discovery listing exactly what works: every response type, mode, grant,
  client authentication method, signing algorithm, scope and claim listed is usable, and what
  is not listed is refused.
- Basic: ``nonce`` echoed, ``at_hash`` right for ES256 and RS256 ID tokens (OIDC Core §3.1.3.6),
  ``c_hash`` not applicable because hybrid flows are refused, a new ``kid`` after key rotation
  with the old key still published, claims by scope (§5.4), and error responses: the token
  endpoint's (RFC 6749 §5.2) and userinfo's (RFC 6750 §3.1). Every refusal changes nothing but
  the rate-limit counters.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from harness import ISSUER
from harness import RelyingParty
from harness import changed_tables
from harness import complete_login
from joserfc import jws
from joserfc import jwt
from joserfc.jwk import KeySet

from idserver.oidc.clients import register_client
from idserver.oidc.clients import update_client

COUNTERS = {"rate_limit_counters"}  # count every try, right or wrong
DISCOVERY_REQUIRED = (  # OIDC Discovery 1.0 §3: REQUIRED, and RECOMMENDED where the OP has it
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "response_types_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
    "userinfo_endpoint",
    "scopes_supported",
    "claims_supported",
)
SCOPE_CLAIMS = {  # OIDC Core 1.0 §5.4, as this server releases them
    "openid": {"sub"},
    "profile": {"name", "given_name", "family_name"},
    "email": {"email", "email_verified"},
    "address": {"address"},
    "birthdate": {"birthdate"},
}
ID_TOKEN_ONLY = {"iss", "aud", "azp", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid"}


def _discovery(client: Any) -> dict[str, Any]:
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    return dict(response.json)


def _decoded(client: Any, id_token: str) -> Any:
    keys = KeySet.import_key_set(client.get("/jwks.json").json)
    return jwt.decode(id_token, keys, algorithms=["ES256", "RS256"])


def _left_half_hash(value: str) -> str:
    """OIDC Core 1.0 §3.1.3.6: base64url of the left half of SHA-256 (ES256 and RS256 both)."""
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def _error_redirect(response: Any) -> dict[str, list[str]]:
    assert response.status_code in (302, 303), response.get_data(as_text=True)
    return parse_qs(urlsplit(response.headers["Location"]).query)


# -- Config OP: discovery ---------------------------------------------------------------------
def test_discovery_has_every_required_field_and_the_configured_issuer(client):
    meta = _discovery(client)
    for name in DISCOVERY_REQUIRED:
        assert meta.get(name), name
    assert meta["issuer"] == ISSUER  # byte for byte, no trailing slash (§4.3)
    assert "RS256" in meta["id_token_signing_alg_values_supported"]  # §3: MUST be offered
    assert "none" not in meta["id_token_signing_alg_values_supported"]
    for name, value in meta.items():
        if name.endswith("_endpoint") or name == "jwks_uri":
            assert value.startswith(ISSUER + "/"), name
            assert client.open(urlsplit(value).path, method="OPTIONS").status_code != 404, name


def test_discovery_lists_the_claims_every_id_token_and_userinfo_carries(
    app, client, enrolled_phone
):
    with app.app_context():
        registered, secret = register_client(
            name="Alle Angaben",
            redirect_uris=["http://localhost:8001/callback"],
            scope="openid profile email address birthdate",
        )
    rp = RelyingParty(app, registered.client_id, str(secret))
    rp.scope = "openid profile email address birthdate"
    tokens = complete_login(client, rp, enrolled_phone)
    claims = set(_decoded(client, tokens["id_token"]).claims)
    userinfo = client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ).json
    supported = set(_discovery(client)["claims_supported"])
    assert claims | set(userinfo) <= supported
    assert {"azp", "sid", "at_hash"} <= claims


def test_discovery_lists_exactly_the_grants_response_types_and_methods_that_work(
    app, client, relying_party, enrolled_phone
):
    meta = _discovery(client)
    assert meta["response_types_supported"] == ["code"]
    assert set(meta["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["subject_types_supported"] == ["pairwise"]
    assert set(meta["id_token_signing_alg_values_supported"]) == {"ES256", "RS256"}
    assert meta["claims_parameter_supported"] is True  # OIDC Core §5.5 (test_claims_parameter.py)
    assert meta["request_parameter_supported"] is False
    assert meta["request_uri_parameter_supported"] is False
    # every client authentication method listed can be registered
    for method in meta["token_endpoint_auth_methods_supported"]:
        options: dict[str, Any] = {"auth_method": method}
        if method == "private_key_jwt":
            options["jwks_uri"] = "https://rp.example/jwks.json"
        with app.app_context():
            register_client(
                name=f"Methode {method}", redirect_uris=[relying_party.redirect_uri], **options
            )
    # every signing algorithm listed signs an ID token for a client that asks for it
    for alg in meta["id_token_signing_alg_values_supported"]:
        with app.app_context():
            update_client(relying_party.client_id, id_token_alg=alg)
        id_token = complete_login(client, relying_party, enrolled_phone)["id_token"]
        assert jws.extract_compact(id_token.encode()).headers()["alg"] == alg
    # every response mode listed starts a login (tests/oidc/test_authorization_request.py
    # follows form_post to its end)
    for mode in meta["response_modes_supported"]:
        assert relying_party.start_login(client, response_mode=mode)


@pytest.mark.parametrize(
    ("response_type", "why"),
    [
        ("code id_token", "hybrid: would need c_hash"),
        ("code token", "hybrid"),
        ("code id_token token", "hybrid"),
        ("id_token", "implicit"),
        ("id_token token", "implicit"),
        ("token", "implicit (OAuth 2.0)"),
    ],
)
def test_rejects_response_types_discovery_does_not_list(
    client, relying_party, db_state, response_type, why
):
    """Only ``code`` is offered, so no ID token leaves the authorization endpoint and ``c_hash``
    (OIDC Core 1.0 §3.3.2.11) never applies: hybrid and implicit requests are refused."""
    before = db_state()
    response = client.get(
        "/authorize", query_string=relying_party.authorize_params(response_type=response_type)
    )
    query = _error_redirect(response)
    assert query["error"] == ["unsupported_response_type"], why
    assert query["state"] == [relying_party.state]
    assert "code" not in query and "id_token" not in query and "access_token" not in query
    assert changed_tables(before, db_state()) <= COUNTERS


def test_rejects_the_plain_pkce_method_discovery_does_not_list(client, relying_party, db_state):
    before = db_state()
    params = relying_party.authorize_params(code_challenge_method="plain")
    query = _error_redirect(client.get("/authorize", query_string=params))
    assert query["error"] == ["invalid_request"]
    assert changed_tables(before, db_state()) <= COUNTERS


# -- Basic OP: ID tokens ----------------------------------------------------------------------
def test_nonce_is_echoed_and_absent_when_not_sent(client, relying_party, enrolled_phone):
    tokens = complete_login(client, relying_party, enrolled_phone)
    assert _decoded(client, tokens["id_token"]).claims["nonce"] == relying_party.nonce
    tokens = complete_login(client, relying_party, enrolled_phone, nonce=None)
    assert "nonce" not in _decoded(client, tokens["id_token"]).claims


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_at_hash_is_the_left_half_of_the_access_tokens_sha256(
    app, client, relying_party, enrolled_phone, alg
):
    with app.app_context():
        update_client(relying_party.client_id, id_token_alg=alg)
    tokens = complete_login(client, relying_party, enrolled_phone)
    token = _decoded(client, tokens["id_token"])
    assert token.header["alg"] == alg
    assert token.claims["at_hash"] == _left_half_hash(tokens["access_token"])
    assert "c_hash" not in token.claims  # no code travels with an ID token (code flow only)


def test_a_rotated_key_signs_with_a_new_kid_and_the_old_stays_published(
    client, runner, relying_party, enrolled_phone
):
    old_token = complete_login(client, relying_party, enrolled_phone)["id_token"]
    old_kid = jws.extract_compact(old_token.encode()).headers()["kid"]
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    new_token = complete_login(client, relying_party, enrolled_phone)["id_token"]
    new_kid = jws.extract_compact(new_token.encode()).headers()["kid"]
    assert new_kid != old_kid
    published = {key["kid"] for key in client.get("/jwks.json").json["keys"]}
    assert {old_kid, new_kid} <= published
    for id_token in (old_token, new_token):  # an RP with a fresh JWKS verifies both
        assert _decoded(client, id_token).claims["aud"] == relying_party.client_id


@pytest.mark.parametrize(
    "scope", ["openid", *[f"openid {s}" for s in SCOPE_CLAIMS if s != "openid"]]
)
def test_claims_are_released_by_scope(app, client, relying_party, enrolled_phone, scope):
    relying_party.scope = scope
    tokens = complete_login(client, relying_party, enrolled_phone)
    expected = set().union(*(SCOPE_CLAIMS[s] for s in scope.split()))
    in_id_token = set(_decoded(client, tokens["id_token"]).claims) - ID_TOKEN_ONLY - {"at_hash"}
    userinfo = client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert userinfo.status_code == 200
    assert set(userinfo.json) == expected
    assert in_id_token == expected
    assert tokens["scope"] == scope


# -- Basic OP: token endpoint errors (RFC 6749 §5.2) ------------------------------------------
TOKEN_ERRORS = [
    ("missing grant_type", {"grant_type": None}, "invalid_request"),
    ("password grant", {"grant_type": "password"}, "unsupported_grant_type"),
    ("client_credentials grant", {"grant_type": "client_credentials"}, "unsupported_grant_type"),
    ("implicit as a grant", {"grant_type": "implicit"}, "unsupported_grant_type"),
    ("unknown grant", {"grant_type": "urn:example:grant"}, "unsupported_grant_type"),
    ("code not issued", {"code": "not-a-code"}, "invalid_grant"),
    ("missing code", {"code": None}, "invalid_request"),
    ("redirect_uri mismatch", {"redirect_uri": "http://localhost:8001/other"}, "invalid_grant"),
    ("redirect_uri missing", {"redirect_uri": None}, "invalid_grant"),
    ("PKCE verifier wrong", {"code_verifier": "x" * 43}, "invalid_grant"),
    ("PKCE verifier missing", {"code_verifier": None}, "invalid_request"),
    ("PKCE verifier malformed", {"code_verifier": "short"}, "invalid_request"),
    (
        "refresh grant not registered",
        {"grant_type": "refresh_token", "refresh_token": "x"},
        "unauthorized_client",
    ),
]


@pytest.mark.parametrize(
    ("case", "form", "error"), TOKEN_ERRORS, ids=[case for case, _, _ in TOKEN_ERRORS]
)
def test_rejects_token_requests_with_the_rfc6749_error(
    client, relying_party, enrolled_phone, db_state, case, form, error
):
    code = relying_party.approved_code(client, enrolled_phone)
    before = db_state()
    fields = {"code": code, **form}
    response = relying_party.exchange(client, fields.pop("code"), **fields)
    assert response.status_code == 400, case
    assert response.json["error"] == error, case
    assert response.headers["Cache-Control"] == "no-store"  # RFC 6749 §5.1, §5.2
    assert response.mimetype == "application/json"
    assert changed_tables(before, db_state()) <= COUNTERS
    # the code is still good for its own client: a refusal burns nothing
    assert relying_party.exchange(client, code).status_code == 200


@pytest.mark.parametrize(
    ("case", "auth"),
    [("wrong secret", "wrong"), ("unknown client", "unknown"), ("no authentication", None)],
)
def test_rejects_client_authentication_failures_with_invalid_client(
    client, relying_party, enrolled_phone, db_state, case, auth
):
    code = relying_party.approved_code(client, enrolled_phone)
    credentials = {
        "wrong": (relying_party.client_id, "not-the-secret"),
        "unknown": ("no-such-client", relying_party.client_secret),
        None: None,
    }[auth]
    before = db_state()
    response = relying_party.exchange(client, code, auth=credentials)
    assert response.status_code == 401, case
    assert response.json["error"] == "invalid_client"
    if credentials is not None:  # RFC 6749 §5.2: the scheme the client tried, in a challenge
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert changed_tables(before, db_state()) <= COUNTERS


def test_rejects_two_client_authentication_methods_with_invalid_request(
    client, relying_party, enrolled_phone, db_state
):
    code = relying_party.approved_code(client, enrolled_phone)
    before = db_state()
    response = relying_party.exchange(client, code, client_secret=relying_party.client_secret)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert changed_tables(before, db_state()) <= COUNTERS


# -- Basic OP: userinfo errors (RFC 6750 §3.1) ------------------------------------------------
def test_rejects_userinfo_without_a_token_with_a_bare_bearer_challenge(client, db_state):
    """§3.1: without any authentication information, 401 and a challenge with no error code."""
    before = db_state()
    for response in (
        client.get("/userinfo"),
        client.post("/userinfo"),
        client.get("/userinfo", headers={"Authorization": "Basic dXNlcjpwYXNz"}),
        client.get("/userinfo?access_token=from-the-query"),  # never read (RFC 9700 §4.3.2)
    ):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="userinfo"'
        assert response.json["error"] == "invalid_request"
    assert changed_tables(before, db_state()) <= COUNTERS


def test_rejects_userinfo_with_an_invalid_or_revoked_token_as_invalid_token(
    client, relying_party, enrolled_phone, db_state
):
    tokens = complete_login(client, relying_party, enrolled_phone)
    revoked = client.post(
        "/revoke",
        data={"token": tokens["access_token"]},
        auth=(relying_party.client_id, relying_party.client_secret),
    )
    assert revoked.status_code == 200
    before = db_state()
    for token in ("not-a-token", tokens["access_token"]):
        response = client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="userinfo", error="invalid_token"')
        assert response.json["error"] == "invalid_token"
    assert changed_tables(before, db_state()) <= COUNTERS


def test_rejects_userinfo_with_the_token_sent_twice_as_invalid_request(
    client, relying_party, enrolled_phone, db_state
):
    tokens = complete_login(client, relying_party, enrolled_phone)
    before = db_state()
    response = client.post(
        "/userinfo",
        data={"access_token": tokens["access_token"]},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert changed_tables(before, db_state()) <= COUNTERS
