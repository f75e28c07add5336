"""Malformed input anywhere is a 4xx that stores nothing, never a 500 (OWASP ASVS 5.0 V1, V2).

Each case here was a 500 before it was fixed (deep JSON, lone surrogates, NUL characters on
PostgreSQL, non-UTF-8 Basic credentials, an unreachable JWKS).
"""

from __future__ import annotations

import base64
import json

import pytest
from harness import changed_tables

from idserver.citizens.service import issue_activation_code
from idserver.oidc.clients import register_client

COUNTERS = {"activation_attempts", "activation_codes", "rate_limit_counters"}


def _json_endpoints(login_id):
    return [
        "/api/v1/enrolments",
        "/api/v1/enrolments/" + "e" * 32,
        f"/api/v1/logins/{login_id}/scan",
        f"/api/v1/logins/{login_id}/challenge",
        f"/api/v1/logins/{login_id}/approve",
        f"/api/v1/logins/{login_id}/deny",
        f"/login/{login_id}/passkey",  # (passkey/options reads no body)
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
        b'{"activation_id": "\\ud800", "code": "\\udfff", "binding": "\\ud83d"}',
        b'{"activation_id": "a\\u0000b", "code": "\\u0000", "t": "\\u0000", "h": "x"}',
        b'{"\\u0000": 1}',
        b"\xff\xfe\x00\x00",
        b'{"a": ' + b"9" * 5000 + b"}",
        b"[] ",
        b'"just a string"',
        b"null",
    ],
    ids=[
        "deep-array",
        "deep-object",
        "lone-surrogates",
        "nul-characters",
        "nul-key",
        "not-utf8",
        "huge-integer",
        "array",
        "string",
        "null",
    ],
)
def test_rejects_unparseable_json_bodies_everywhere(client, relying_party, db_state, body):
    login_id = relying_party.start_login(client)
    before = db_state()
    for path in _json_endpoints(login_id):
        response = client.post(path, data=body, content_type="application/json")
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert response.is_json and "error" in response.json
    # wrong activation attempts are counted (that is the point); nothing else moves
    assert changed_tables(before, db_state()) <= COUNTERS


@pytest.mark.parametrize(
    "path",
    [
        "/login/" + "a\x00" * 16,
        "/q/" + "a\x00" * 16 + "?t=1&h=x",
        "/authorize?client_id=a%00b&response_type=code",
        "/api/v1/logins/" + "a%00" * 16,
        "/activate/a%00b",
        "/logout?id_token_hint=%00",
    ],
)
def test_rejects_nul_characters_in_paths_and_queries(client, db_state, path):
    before = db_state()
    response = client.get(path.replace("\x00", "%00"))
    assert 400 <= response.status_code < 500
    assert db_state() == before


def test_rejects_nul_characters_in_form_fields(client, db_state):
    before = db_state()
    response = client.post(
        "/token", data={"grant_type": "authorization_code", "code": "a\x00", "client_id": "x\x00y"}
    )
    assert 400 <= response.status_code < 500
    assert db_state() == before


@pytest.mark.parametrize(
    "credentials",
    [b"\xff\xfe:secret", b"client\x00id:secret", b"no-colon-at-all"],
    ids=["not-utf8", "nul", "no-colon"],
)
def test_rejects_malformed_basic_credentials_at_the_token_endpoint(client, db_state, credentials):
    before = db_state()
    response = client.post(
        "/token",
        data={"grant_type": "authorization_code", "code": "x"},
        headers={"Authorization": "Basic " + base64.b64encode(credentials).decode()},
    )
    assert response.status_code in (400, 401)
    assert response.json["error"] in ("invalid_client", "invalid_request")
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}


def test_rejects_client_whose_jwks_cannot_be_fetched_as_invalid_client(app, client, db_state):
    with app.app_context():
        registered, _ = register_client(
            name="Offline",
            redirect_uris=["http://localhost:8004/callback"],
            auth_method="private_key_jwt",
            jwks_uri="http://127.0.0.1:9/jwks.json",  # nothing listens there
        )
    header = base64.urlsafe_b64encode(json.dumps({"alg": "ES256"}).encode()).rstrip(b"=").decode()
    claims = {"iss": registered.client_id, "sub": registered.client_id, "aud": "http://localhost"}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    before = db_state()
    response = client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": "x",
            "redirect_uri": "http://localhost:8004/callback",
            "code_verifier": "v" * 43,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": f"{header}.{payload}.c2ln",
        },
    )
    assert response.status_code in (400, 401)
    assert response.json["error"] == "invalid_client"
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}


def test_rejects_oversized_request_bodies(client, db_state):
    before = db_state()
    response = client.post(
        "/api/v1/enrolments",
        data=b'{"code": "' + b"A" * 300_000 + b'"}',
        content_type="application/json",
    )
    assert response.status_code == 413
    assert response.json["error"] == "invalid_request"
    assert db_state() == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_rejects_api_bodies_that_are_not_declared_json(client, activation, db_state, content_type):
    before = db_state()
    body = json.dumps({"activation_id": activation[0], "code": activation[1]})
    response = client.post("/api/v1/enrolments", data=body, content_type=content_type)
    assert response.status_code == 415
    assert db_state() == before


def test_activation_answers_do_not_reveal_which_ids_exist(app, client, citizen, db_state):
    # Existing and unknown activation ids: same status, same body, same statements executed.
    app.config["RATE_LIMIT_ACTIVATION"] = "100/minute"
    with app.app_context():
        record, _ = issue_activation_code(citizen.id)
    unknown_id = "00000000-0000-4000-8000-000000000000"
    answers = []
    for activation_id in (record.id, unknown_id) * (app.config["ACTIVATION_MAX_ATTEMPTS"] + 1):
        before = db_state()
        response = client.post(
            "/api/v1/enrolments",
            json={"activation_id": activation_id, "code": "ABCD-EFGH-JKMN-PQRS"},
        )
        answers.append((response.status_code, response.get_data()))
        assert changed_tables(before, db_state()) <= COUNTERS
    # even after the real code is blocked (five wrong tries), a wrong guess looks the same
    assert len(set(answers)) == 1
    assert answers[0][0] == 400
