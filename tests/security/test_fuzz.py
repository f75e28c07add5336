"""Property tests: whatever outside input looks like, the answer is never a 5xx, and a refusal
changes nothing but the counters whose job is to count refusals.

Each property runs a bounded number of examples (``FUZZ``) against one application and database
per test, so the whole file stays fast; the hypothesis example database is off.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import urlencode

from harness import changed_tables
from harness import desktop_status
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from .conftest import begin_enrolment
from .conftest import scan_login
from .hostile import b64

FUZZ = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
COUNTERS = {"activation_attempts", "activation_codes", "rate_limit_counters"}

text = st.text(max_size=80)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | text
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)
base64ish = st.binary(max_size=200).map(b64) | text | json_values


def _no_server_error(response: Any) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)[:500]


@FUZZ
@given(
    body=json_values,
    field_values=st.dictionaries(
        st.sampled_from(
            ["t", "h", "binding", "number", "credential", "activation_id", "code", "name"]
        ),
        json_values,
        max_size=5,
    ),
)
def test_fuzzed_phone_api_bodies_are_refused_cleanly(
    app, client, relying_party, enrolled_phone, db_state, body, field_values
):
    app.config["RATE_LIMIT_ACTIVATION"] = "100000/minute"
    app.config["RATE_LIMIT_LOGIN"] = "100000/minute"
    login_id = relying_party.start_login(client)
    paths = [
        f"/api/v1/logins/{login_id}/scan",
        f"/api/v1/logins/{login_id}/challenge",
        f"/api/v1/logins/{login_id}/approve",
        f"/api/v1/logins/{login_id}/deny",
        "/api/v1/enrolments",
        "/api/v1/enrolments/" + "e" * 32,
    ]
    before = db_state()
    for path in paths:
        for payload in (body, field_values):
            response = client.post(path, json=payload)
            _no_server_error(response)
            assert response.status_code >= 400
    assert changed_tables(before, db_state()) <= COUNTERS


REGISTRATION_FIELDS = [
    ("id",),
    ("rawId",),
    ("type",),
    ("response",),
    ("response", "clientDataJSON"),
    ("response", "attestationObject"),
]


def _replace(document: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


@FUZZ
@given(path=st.sampled_from(REGISTRATION_FIELDS), value=base64ish)
def test_fuzzed_registration_fields_are_refused_cleanly(
    app, phone, activation, db_state, path, value
):
    app.config["RATE_LIMIT_ACTIVATION"] = "100000/minute"
    enrolment = begin_enrolment(phone.client, activation)
    genuine = phone.authenticator.create_credential(enrolment.options, origin=phone.origin)
    phone.authenticator.keys.clear()
    forged = _replace(genuine, path, value)
    if forged == genuine:
        return
    before = db_state()
    response = enrolment.finish(forged)
    _no_server_error(response)
    assert response.status_code == 400
    assert changed_tables(before, db_state()) <= {"webauthn_challenges"}


ASSERTION_FIELDS = [
    ("id",),
    ("rawId",),
    ("type",),
    ("response",),
    ("response", "clientDataJSON"),
    ("response", "authenticatorData"),
    ("response", "signature"),
    ("response", "userHandle"),
]


@FUZZ
@given(path=st.sampled_from(ASSERTION_FIELDS), value=base64ish)
def test_fuzzed_assertion_fields_are_refused_cleanly(
    app, client, relying_party, enrolled_phone, db_state, path, value
):
    app.config["MAX_CHALLENGES_PER_LOGIN"] = 1000
    app.config["RATE_LIMIT_LOGIN"] = "100000/minute"
    login = scan_login(app.test_client(), relying_party, enrolled_phone)
    options = login.challenge().json["options"]
    genuine = enrolled_phone.authenticator.get_assertion(options, origin=enrolled_phone.origin)
    forged = _replace(genuine, path, value)
    if forged == genuine or path == ("type",) and value == "public-key":
        return
    before = db_state()
    response = login.approve(forged)
    _no_server_error(response)
    assert response.status_code == 400
    assert changed_tables(before, db_state()) <= {"login_transactions"}  # the nonce, burned


@FUZZ
@given(t=text | st.integers().map(str), h=text)
def test_fuzzed_qr_frames_are_refused_cleanly(
    app, client, relying_party, enrolled_phone, db_state, t, h
):
    app.config["RATE_LIMIT_LOGIN"] = "100000/minute"
    login_id = relying_party.start_login(client)
    before = db_state()
    page = enrolled_phone.client.get(f"/q/{login_id}?" + urlencode({"t": t, "h": h}))
    scanned = enrolled_phone.client.post(f"/api/v1/logins/{login_id}/scan", json={"t": t, "h": h})
    for response in (page, scanned):
        _no_server_error(response)
        assert response.status_code == 400
    assert db_state() == before


@FUZZ
@given(activation_id=json_values, code=json_values)
def test_fuzzed_activation_codes_are_refused_cleanly(app, phone, db_state, activation_id, code):
    app.config["RATE_LIMIT_ACTIVATION"] = "100000/minute"
    before = db_state()
    response = phone.client.post(
        "/api/v1/enrolments", json={"activation_id": activation_id, "code": code}
    )
    _no_server_error(response)
    assert response.status_code in (400, 429)
    assert changed_tables(before, db_state()) <= COUNTERS


AUTHORIZE_PARAMETERS = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "acr_values",
    "ui_locales",
    "request",
    "response_mode",
]


@FUZZ
@given(
    overrides=st.dictionaries(
        st.sampled_from(AUTHORIZE_PARAMETERS), st.none() | st.text(max_size=60), max_size=4
    )
)
def test_fuzzed_authorization_requests_are_refused_or_start_one_login(
    app, client, relying_party, db_state, overrides
):
    app.config["RATE_LIMIT_LOGIN"] = "100000/minute"
    params = relying_party.authorize_params(**overrides)
    before = db_state()
    response = client.get("/authorize?" + urlencode(params))
    _no_server_error(response)
    location = response.headers.get("Location", "")
    if response.status_code == 303 and location.startswith("http://localhost/login/"):
        assert changed_tables(before, db_state()) == {"login_transactions", "rate_limit_counters"}
        assert desktop_status(client, location.rsplit("/", 1)[-1]).status_code == 200
    else:
        assert db_state() == before


TOKEN_PARAMETERS = [
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "client_id",
    "client_secret",
    "client_assertion_type",
    "client_assertion",
    "scope",
    "refresh_token",
]


@FUZZ
@given(
    form=st.dictionaries(st.sampled_from(TOKEN_PARAMETERS), st.text(max_size=80), max_size=6),
    username=st.none() | st.text(max_size=30),
    password=st.text(max_size=30),
)
def test_fuzzed_token_requests_are_refused_cleanly(
    app, client, relying_party, db_state, form, username, password
):
    app.config["RATE_LIMIT_TOKEN"] = "100000/minute"
    auth = (username, password) if username is not None else None
    before = db_state()
    response = client.post("/token", data=form, auth=auth)
    _no_server_error(response)
    assert 400 <= response.status_code < 500
    assert response.is_json and "error" in response.json
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}
