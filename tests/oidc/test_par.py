"""Pushed authorization requests (RFC 9126): push, then /authorize with the request_uri."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
from harness import ISSUER
from harness import desktop_status
from joserfc import jwt
from sqlalchemy import select

from idserver import create_app
from idserver.crosslogin.models import LoginTransaction
from idserver.db import db
from idserver.oidc.clients import register_client
from idserver.oidc.clients import update_client
from idserver.oidc.models import Client
from idserver.oidc.models import PushedAuthorizationRequest

PREFIX = "urn:ietf:params:oauth:request_uri:"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def push(browser, rp, *, auth=..., **overrides):
    """POST /par with ``rp``'s authorization request, HTTP Basic unless ``auth`` says otherwise."""
    basic = (rp.client_id, rp.client_secret) if auth is ... else auth
    return browser.post("/par", data=rp.authorize_params(**overrides), auth=basic)


def authorize_pushed(browser, client_id, request_uri, **extra):
    query = {"client_id": client_id, "request_uri": request_uri, **extra}
    return browser.get("/authorize?" + urlencode(query))


def login_id_of(response):
    assert response.status_code == 303, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith(f"{ISSUER}/login/")
    return location.rsplit("/", 1)[-1]


def approve(browser, phone, login_id):
    status = desktop_status(browser, login_id).json
    assert phone.approve(status["phone_url"], status["number"]).status_code == 200
    return browser.get(desktop_status(browser, login_id).json["continue_url"])


def test_pushed_request_logs_in_like_a_direct_one(client, relying_party, enrolled_phone):
    pushed = push(client, relying_party)
    assert pushed.status_code == 201, pushed.json
    assert pushed.headers["Cache-Control"] == "no-store"
    assert pushed.json["request_uri"].startswith(PREFIX)
    assert pushed.json["expires_in"] == 60
    login_id = login_id_of(
        authorize_pushed(client, relying_party.client_id, pushed.json["request_uri"])
    )
    answer = approve(client, enrolled_phone, login_id)
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["state"] == [relying_party.state] and query["iss"] == [ISSUER]
    tokens = relying_party.exchange(client, query["code"][0])
    assert tokens.status_code == 200, tokens.json
    claims = relying_party.verify_id_token(client, tokens.json["id_token"])
    assert claims["nonce"] == relying_party.nonce


def test_only_the_request_uris_hash_is_stored(app, client, relying_party):
    request_uri = push(client, relying_party).json["request_uri"]
    with app.app_context():
        row = db.session.scalars(select(PushedAuthorizationRequest)).one()
        assert row.request_uri_hash == hashlib.sha256(request_uri.encode()).hexdigest()
        assert row.client_id == relying_party.client_id
        assert row.used_at is None
        assert request_uri not in str(row.params)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"ui_locales": "en", "prompt": "login", "max_age": "0"},
        {
            "response_mode": "form_post",
            "login_hint": "some-sub",
            "acr_values": "urn:buergerid:loa:low",
        },
        {"scope": "openid profile email", "claims": '{"userinfo": {"email": null}}'},
    ],
)
def test_the_login_gets_every_pushed_parameter_as_from_a_direct_request(
    app, client, relying_party, extra
):
    direct = login_id_of(
        client.get("/authorize?" + urlencode(relying_party.authorize_params(**extra)))
    )
    with app.app_context():
        expected = db.session.get(LoginTransaction, direct)
        expected_params, expected_requester = dict(expected.request_params), expected.requester
    # The same parameters, pushed: nonce, state and PKCE as they were.
    pushed = client.post(
        "/par", data=expected_params, auth=(relying_party.client_id, relying_party.client_secret)
    )
    assert pushed.status_code == 201, pushed.json
    via_par = login_id_of(
        authorize_pushed(client, relying_party.client_id, pushed.json["request_uri"])
    )
    with app.app_context():
        login = db.session.get(LoginTransaction, via_par)
        assert login.request_params == expected_params
        assert login.requester == expected_requester
        assert login.scope == expected.scope


def test_form_post_answer_of_a_pushed_request(client, relying_party, enrolled_phone):
    pushed = push(client, relying_party, response_mode="form_post")
    login_id = login_id_of(
        authorize_pushed(client, relying_party.client_id, pushed.json["request_uri"])
    )
    answer = approve(client, enrolled_phone, login_id)
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert relying_party.redirect_uri in page and 'name="code"' in page


def test_ui_locales_of_a_pushed_request_choose_the_pages_language(client, relying_party):
    pushed = push(client, relying_party, ui_locales="en")
    login_id = login_id_of(
        authorize_pushed(client, relying_party.client_id, pushed.json["request_uri"])
    )
    page = client.get(f"/login/{login_id}", headers={"Accept-Language": "de"})
    assert '<html lang="en">' in page.get_data(as_text=True)


def test_pushed_prompt_none_is_answered_login_required_at_the_redirect_uri(client, relying_party):
    pushed = push(client, relying_party, prompt="none")
    assert pushed.status_code == 201, pushed.json
    answer = authorize_pushed(client, relying_party.client_id, pushed.json["request_uri"])
    assert answer.status_code == 303
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["error"] == ["login_required"] and query["state"] == [relying_party.state]


def test_push_with_client_secret_post(app, client):
    with app.app_context():
        registered, secret = register_client(
            name="Hundesteuer",
            redirect_uris=["https://rp.example/cb"],
            auth_method="client_secret_post",
        )
    params = {
        "response_type": "code",
        "client_id": registered.client_id,
        "client_secret": secret,
        "redirect_uri": "https://rp.example/cb",
        "scope": "openid",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }
    pushed = client.post("/par", data=params)
    assert pushed.status_code == 201, pushed.json
    with app.app_context():
        stored = db.session.scalars(select(PushedAuthorizationRequest.params)).one()
    assert "client_secret" not in stored  # the authentication is no part of the request


def test_push_with_private_key_jwt(client, jwt_client, rp_key):
    now = int(time.time())
    claims = {
        "iss": jwt_client.client_id,
        "sub": jwt_client.client_id,
        "aud": ISSUER,
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
    }
    assertion = jwt.encode({"alg": "ES256", "kid": rp_key.kid}, claims, rp_key)
    data = jwt_client.authorize_params(
        client_assertion_type=ASSERTION_TYPE, client_assertion=assertion
    )
    pushed = client.post("/par", data=data)
    assert pushed.status_code == 201, pushed.json
    login_id_of(authorize_pushed(client, jwt_client.client_id, pushed.json["request_uri"]))


def test_push_without_client_id_takes_the_authenticated_clients(client, relying_party):
    pushed = push(client, relying_party, client_id=None)
    assert pushed.status_code == 201, pushed.json
    login_id_of(authorize_pushed(client, relying_party.client_id, pushed.json["request_uri"]))


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"redirect_uri": "https://evil.example/cb"}, "invalid_request"),
        ({"code_challenge": None}, "invalid_request"),
        ({"scope": "profile"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"max_age": "abc"}, "invalid_request"),
        ({"response_mode": "fragment"}, "invalid_request"),
        ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
    ],
)
def test_rejects_invalid_pushed_request_as_json(client, relying_party, db_state, overrides, error):
    before = db_state()
    pushed = push(client, relying_party, **overrides)
    assert pushed.status_code == 400
    assert pushed.json["error"] == error
    assert "state" not in pushed.json
    assert db_state() == before


def test_discovery_lists_the_par_endpoint(app_config):
    app = create_app(app_config)
    metadata = app.test_client().get("/.well-known/openid-configuration").json
    assert metadata["pushed_authorization_request_endpoint"] == f"{ISSUER}/par"
    assert metadata["require_pushed_authorization_requests"] is False
    required = create_app({**app_config, "REQUIRE_PUSHED_AUTHORIZATION_REQUESTS": True})
    server_metadata = required.test_client().get("/.well-known/oauth-authorization-server").json
    assert server_metadata["require_pushed_authorization_requests"] is True


def test_a_client_that_must_push_logs_in_through_par(app, client, relying_party, enrolled_phone):
    with app.app_context():
        update_client(relying_party.client_id, require_par=True)
    direct = client.get("/authorize?" + urlencode(relying_party.authorize_params()))
    query = parse_qs(urlsplit(direct.headers["Location"]).query)
    assert query["error"] == ["invalid_request"] and query["state"] == [relying_party.state]
    pushed = push(client, relying_party)
    login_id = login_id_of(
        authorize_pushed(client, relying_party.client_id, pushed.json["request_uri"])
    )
    assert approve(client, enrolled_phone, login_id).status_code == 303


def test_the_server_can_require_par_of_every_client(app_config, tmp_path):
    app = create_app({**app_config, "REQUIRE_PUSHED_AUTHORIZATION_REQUESTS": True})
    with app.app_context():
        db.create_all()
        registered, secret = register_client(
            name="Sperrmüll", redirect_uris=["https://rp.example/cb"]
        )
    browser = app.test_client()
    params = {
        "response_type": "code",
        "client_id": registered.client_id,
        "redirect_uri": "https://rp.example/cb",
        "scope": "openid",
        "state": "s1",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }
    direct = browser.get("/authorize?" + urlencode(params))
    assert parse_qs(urlsplit(direct.headers["Location"]).query)["error"] == ["invalid_request"]
    pushed = browser.post("/par", data=params, auth=(registered.client_id, secret))
    assert pushed.status_code == 201, pushed.json
    login_id_of(authorize_pushed(browser, registered.client_id, pushed.json["request_uri"]))
    with app.app_context():
        db.engine.dispose()


def test_cli_sets_require_par(app, runner):
    added = runner.invoke(
        args=[
            "client",
            "add",
            "--name",
            "Wahlschein",
            "--redirect-uri",
            "https://rp.example/cb",
            "--require-par",
        ]
    )
    assert added.exit_code == 0, added.output
    assert '"require_pushed_authorization_requests": true' in added.output
    client_id = next(
        line.split('"')[3] for line in added.output.splitlines() if '"client_id"' in line
    )
    updated = runner.invoke(args=["client", "update", client_id, "--no-require-par"])
    assert updated.exit_code == 0, updated.output
    with app.app_context():
        assert db.session.get(Client, client_id).require_pushed_authorization_requests is False


def test_a_request_uri_raced_by_many_browsers_starts_exactly_one_login(app, client, relying_party):
    request_uri = push(client, relying_party).json["request_uri"]
    racers = 6
    barrier = threading.Barrier(racers)
    statuses: list[int] = []

    def racer() -> None:
        browser = app.test_client()
        barrier.wait()
        statuses.append(authorize_pushed(browser, relying_party.client_id, request_uri).status_code)

    threads = [threading.Thread(target=racer) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [303] + [400] * (racers - 1)
    with app.app_context():
        assert len(db.session.scalars(select(LoginTransaction)).all()) == 1
