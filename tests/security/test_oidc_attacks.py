"""Attacks on the OpenID Connect endpoints (OIDC Core 1.0, RFC 9700, FAPI 2.0 Security Profile)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
from harness import ISSUER
from harness import RP_REDIRECT
from harness import RelyingParty
from harness import b64
from harness import changed_tables
from harness import complete_login
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import update

from idserver.db import db
from idserver.errors import IdServerError
from idserver.oidc.clients import delete_client
from idserver.oidc.clients import disable_client
from idserver.oidc.clients import register_client
from idserver.oidc.models import AuthorizationCode


def _claims(client_id):
    now = int(time.time())
    return {
        "iss": client_id,
        "sub": client_id,
        "aud": ISSUER,
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
    }


def _unsigned(header, claims):
    def part(value):
        return b64(json.dumps(value).encode())

    return f"{part(header)}.{part(claims)}"


def _refused_assertion(client, jwt_client, enrolled_phone, db_state, assertion_for):
    code = jwt_client.approved_code(client, enrolled_phone)
    before = db_state()
    response = jwt_client.exchange(client, code, assertion=assertion_for())
    assert response.status_code in (400, 401)
    assert response.json["error"] == "invalid_client"
    # only the failed-authentication counter moved; the code is still unused
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}
    return code


@pytest.mark.parametrize("parameter", ["jwk", "jku", "x5u", "x5c"])
def test_rejects_client_assertion_carrying_its_own_key(
    client, jwt_client, enrolled_phone, db_state, parameter
):
    # RFC 7515 §10.7 / RFC 8725 §3.10: the key must come from the registration, never the token.
    attacker = ECKey.generate_key("P-256", parameters={"kid": "rp-1", "alg": "ES256"})
    values = {
        "jwk": attacker.as_dict(private=False),
        "jku": "https://evil.example/jwks.json",
        "x5u": "https://evil.example/cert.pem",
        "x5c": [base64.b64encode(b"not a certificate").decode()],
    }
    header = {"alg": "ES256", "kid": "rp-1", parameter: values[parameter]}
    _refused_assertion(
        client,
        jwt_client,
        enrolled_phone,
        db_state,
        lambda: jwt.encode(header, _claims(jwt_client.client_id), attacker),
    )


def test_rejects_unsigned_client_assertion(client, jwt_client, enrolled_phone, db_state):
    _refused_assertion(
        client,
        jwt_client,
        enrolled_phone,
        db_state,
        lambda: _unsigned({"alg": "none"}, _claims(jwt_client.client_id)) + ".",
    )


def test_rejects_client_assertion_hmac_signed_with_the_public_key(
    client, jwt_client, rp_key, enrolled_phone, db_state
):
    # Algorithm confusion: HS256 "signed" with the client's public key as the shared secret.
    public = json.dumps(rp_key.as_dict(private=False)).encode()

    def forged():
        signing_input = _unsigned({"alg": "HS256", "kid": "rp-1"}, _claims(jwt_client.client_id))
        mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64(mac)}"

    _refused_assertion(client, jwt_client, enrolled_phone, db_state, forged)


@pytest.mark.parametrize(
    "audience",
    [[ISSUER, "https://evil.test"], [ISSUER], ["https://evil.test", ISSUER]],
    ids=["issuer-and-evil", "issuer-only", "evil-and-issuer"],
)
def test_rejects_client_assertion_with_an_array_audience(
    client, jwt_client, rp_key, enrolled_phone, db_state, audience
):
    # FAPI 2.0 §5.3.2.1 (audience injection): an assertion whose aud also names another server
    # could have been made for, and replayed from, that server. Only the issuer as a string.
    def signed(aud):
        claims = {**_claims(jwt_client.client_id), "aud": aud}
        return jwt.encode({"alg": "ES256", "kid": rp_key.kid}, claims, rp_key)

    # invalid_client, and only the failed-authentication counter moved: no jti recorded, and
    # the code is not burned, so the same code still buys tokens with a correct assertion
    code = _refused_assertion(
        client, jwt_client, enrolled_phone, db_state, lambda: signed(audience)
    )
    accepted = jwt_client.exchange(client, code, assertion=signed(ISSUER))
    assert accepted.status_code == 200, accepted.json
    jwt_client.verify_id_token(client, accepted.json["id_token"])


def test_rejects_client_secret_sent_in_the_body(client, relying_party, enrolled_phone, db_state):
    # Only the registered method (client_secret_basic) authenticates this client.
    code = relying_party.approved_code(client, enrolled_phone)
    before = db_state()
    response = client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": relying_party.redirect_uri,
            "code_verifier": relying_party.verifier,
            "client_id": relying_party.client_id,
            "client_secret": relying_party.client_secret,
        },
    )
    assert response.json["error"] == "invalid_client"
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}


def test_rejects_expired_authorization_code(app, client, relying_party, enrolled_phone, db_state):
    code = relying_party.approved_code(client, enrolled_phone)
    with app.app_context():
        db.session.execute(
            update(AuthorizationCode).values(
                expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            )
        )
        db.session.commit()
    before = db_state()
    response = relying_party.exchange(client, code)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"
    assert db_state() == before


def test_rejects_pkce_verifier_shorter_than_43_characters(
    client, relying_party, enrolled_phone, db_state
):
    # RFC 7636 §4.1: a verifier has 43 to 128 characters; a short one is guessable.
    verifier = "abc"
    challenge = b64(hashlib.sha256(verifier.encode()).digest())
    code = relying_party.approved_code(client, enrolled_phone, code_challenge=challenge)
    before = db_state()
    response = relying_party.exchange(client, code, code_verifier=verifier)
    assert response.status_code == 400
    assert db_state() == before


def test_rejects_access_token_in_the_query_string(client, relying_party, enrolled_phone, db_state):
    # FAPI 2.0 §5.3.3 / RFC 9700 §4.3.2: bearer tokens only in the Authorization header.
    tokens = relying_party.exchange(
        client, relying_party.approved_code(client, enrolled_phone)
    ).json
    before = db_state()
    response = client.get("/userinfo?" + urlencode({"access_token": tokens["access_token"]}))
    assert response.status_code == 401
    assert db_state() == before


def test_rejects_token_request_by_get(client, relying_party, enrolled_phone, db_state):
    code = relying_party.approved_code(client, enrolled_phone)
    before = db_state()
    response = client.get(
        "/token?" + urlencode({"grant_type": "authorization_code", "code": code}),
        auth=(relying_party.client_id, relying_party.client_secret),
    )
    assert response.status_code == 405
    assert db_state() == before
    assert relying_party.exchange(client, code).status_code == 200  # the code was not burned


@pytest.mark.parametrize("parameter", ["request", "request_uri"])
def test_rejects_request_objects_instead_of_ignoring_them(
    client, relying_party, db_state, parameter
):
    # A request object could carry a different redirect_uri or scope; refused per OIDC Core §6.
    values = {
        "request": _unsigned({"alg": "none"}, {"redirect_uri": "https://evil.example/cb"}) + ".",
        "request_uri": "https://evil.example/request.jwt",
    }
    params = relying_party.authorize_params(**{parameter: values[parameter]})
    before = db_state()
    response = client.get("/authorize?" + urlencode(params))
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == relying_party.redirect_uri
    query = parse_qs(location.query)
    assert query["error"] == [f"{parameter}_not_supported"]
    assert query["state"] == [relying_party.state] and query["iss"] == [ISSUER]
    assert db_state() == before


@pytest.mark.parametrize("parameter", ["redirect_uri", "scope", "client_id"])
def test_rejects_repeated_authorization_parameters(client, relying_party, db_state, parameter):
    # RFC 6749 §3.1: parameters must not be repeated (parameter pollution).
    extra = {"redirect_uri": "https://evil.example/cb", "scope": "openid address", "client_id": "x"}
    query = (
        urlencode(relying_party.authorize_params()) + "&" + urlencode({parameter: extra[parameter]})
    )
    before = db_state()
    response = client.get("/authorize?" + query)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert db_state() == before


def test_authorize_answers_no_cors_preflight(client, relying_party, db_state):
    # The authorization endpoint is for top-level navigation only; no cross-origin reads.
    query = urlencode(relying_party.authorize_params())
    before = db_state()
    preflight = client.options(
        "/authorize?" + query,
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    refused = client.get(
        "/authorize?" + urlencode(relying_party.authorize_params(client_id="nobody")),
        headers={"Origin": "https://evil.example"},
    )
    for response in (preflight, refused):
        names = [name.lower() for name, _ in response.headers.items()]
        assert not [name for name in names if name.startswith("access-control-")]
    assert db_state() == before


@pytest.mark.parametrize(
    "uri",
    [
        "https://rp.example/cb#fragment",
        "https://*.rp.example/cb",
        "http://rp.example/cb",
        "https://user:pass@rp.example/cb",
        "javascript:alert(1)",
        "/relative/cb",
    ],
)
def test_rejects_registering_an_unsafe_redirect_uri(runner, db_state, uri):
    # RFC 9700 §2.1 / §4.1.3: exact, absolute https URIs; no fragments, wildcards or credentials.
    before = db_state()
    result = runner.invoke(args=["client", "add", "--name", "Evil", "--redirect-uri", uri])
    assert result.exit_code == 1
    assert json.loads(result.output)["error"] == "invalid_redirect_uri"
    assert db_state() == before


@pytest.mark.parametrize(
    "how",
    ["post-query-string", "json-body", "multipart-body", "header-and-body", "two-body-tokens"],
)
def test_rejects_access_token_sent_other_than_by_header_or_form_body(
    client, relying_party, enrolled_phone, db_state, how
):
    # RFC 6750 §2.2: a body token only in a single-part form-encoded POST; §2: one way at once.
    token = relying_party.exchange(
        client, relying_party.approved_code(client, enrolled_phone)
    ).json["access_token"]
    before = db_state()
    if how == "post-query-string":
        response = client.post("/userinfo?" + urlencode({"access_token": token}))
    elif how == "json-body":
        response = client.post("/userinfo", json={"access_token": token})
    elif how == "multipart-body":
        response = client.post(
            "/userinfo", data={"access_token": token}, content_type="multipart/form-data"
        )
    elif how == "header-and-body":
        response = client.post(
            "/userinfo",
            data={"access_token": token},
            headers={"Authorization": f"Bearer {token}"},
        )
    else:
        response = client.post(
            "/userinfo",
            data=urlencode([("access_token", token), ("access_token", token)]),
            content_type="application/x-www-form-urlencoded",
        )
    assert response.status_code in (400, 401)
    assert "sub" not in (response.json or {})
    if how in ("header-and-body", "two-body-tokens"):
        assert response.json["error"] == "invalid_request"
    assert db_state() == before


@pytest.mark.parametrize(
    "second", ["client_secret", "client_assertion"], ids=["basic+post", "basic+assertion"]
)
def test_rejects_two_client_authentication_methods_in_one_request(
    client, relying_party, enrolled_phone, db_state, second
):
    # RFC 6749 §2.3: a client MUST NOT use more than one authentication method per request.
    code = relying_party.approved_code(client, enrolled_phone)
    before = db_state()
    extra = (
        {"client_secret": relying_party.client_secret}
        if second == "client_secret"
        else {
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": "a.b.c",
        }
    )
    response = relying_party.exchange(client, code, client_id=relying_party.client_id, **extra)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert db_state() == before
    assert relying_party.exchange(client, code).status_code == 200  # the code was not burned


def test_rejects_client_secret_post_credentials_in_the_query_string(
    app, client, enrolled_phone, db_state
):
    # RFC 6749 §2.3.1: client_secret_post means the request body, never the URL.
    with app.app_context():
        registered, secret = register_client(
            name="Hundesteuer", redirect_uris=[RP_REDIRECT], auth_method="client_secret_post"
        )
    rp = RelyingParty(app, registered.client_id, secret)
    code = rp.approved_code(client, enrolled_phone)
    before = db_state()
    response = client.post(
        "/token?" + urlencode({"client_id": rp.client_id, "client_secret": secret}),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": rp.redirect_uri,
            "code_verifier": rp.verifier,
        },
    )
    assert response.status_code in (400, 401)
    assert response.json["error"] == "invalid_client"
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}


def test_rejects_registering_the_id_of_a_deleted_client(app, relying_party, db_state):
    # A new client under a deleted one's id would inherit its citizens' consent records.
    with app.app_context():
        delete_client(relying_party.client_id)
    before = db_state()
    with app.app_context(), pytest.raises(IdServerError) as refused:
        register_client(
            name="Nachfolger",
            redirect_uris=["https://evil.example/callback"],
            client_id=relying_party.client_id,
        )
    assert refused.value.error == "client_exists"
    assert db_state() == before


@pytest.mark.parametrize("change", ["disable", "delete"])
def test_rejects_every_use_of_a_disabled_or_deleted_client(
    app, client, relying_party, jwt_client, rp_key, enrolled_phone, db_state, change
):
    tokens = complete_login(client, relying_party, enrolled_phone)
    code = relying_party.approved_code(client, enrolled_phone)
    jwt_code = jwt_client.approved_code(client, enrolled_phone)
    with app.app_context():
        for cid in (relying_party.client_id, jwt_client.client_id):
            (disable_client if change == "disable" else delete_client)(cid)
    before = db_state()
    # /authorize: an error page, no redirect to a client we no longer vouch for (RFC 6749
    # §4.1.2.1)
    for rp in (relying_party, jwt_client):
        response = client.get("/authorize?" + urlencode(rp.authorize_params()))
        assert response.status_code == 400 and "Location" not in response.headers
    # /token: invalid_client, with its secret or with a signed assertion
    refused = relying_party.exchange(client, code)
    assert refused.status_code == 401 and refused.json["error"] == "invalid_client"
    claims = _claims(jwt_client.client_id)
    assertion = jwt.encode({"alg": "ES256", "kid": "rp-1"}, claims, rp_key)
    refused = jwt_client.exchange(client, jwt_code, assertion=assertion)
    assert refused.status_code in (400, 401) and refused.json["error"] == "invalid_client"
    # /userinfo: the token it was given no longer works
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/userinfo", headers=bearer).status_code == 401
    assert changed_tables(before, db_state()) <= {"rate_limit_counters", "used_client_assertions"}
