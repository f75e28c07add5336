"""Attacks on pushed authorization requests (RFC 9126): every refusal changes nothing."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
from harness import ISSUER
from harness import changed_tables
from harness import register_relying_party
from sqlalchemy import select
from sqlalchemy import update

from idserver.db import db
from idserver.oidc.clients import disable_client
from idserver.oidc.clients import update_client
from idserver.oidc.models import PushedAuthorizationRequest

PREFIX = "urn:ietf:params:oauth:request_uri:"


def _push(browser, rp, *, auth=..., **overrides):
    basic = (rp.client_id, rp.client_secret) if auth is ... else auth
    return browser.post("/par", data=rp.authorize_params(**overrides), auth=basic)


def _use(browser, client_id, request_uri, **extra):
    query = {"client_id": client_id, "request_uri": request_uri, **extra}
    return browser.get("/authorize?" + urlencode(query))


def _started_login(response):
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"].startswith(f"{ISSUER}/login/")
    return response.headers["Location"].rsplit("/", 1)[-1]


def _refused_on_a_page(response):
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "invalid_request_uri" in response.get_data(as_text=True)


def test_rejects_a_reused_request_uri(client, relying_party, db_state):
    request_uri = _push(client, relying_party).json["request_uri"]
    _started_login(_use(client, relying_party.client_id, request_uri))
    before = db_state()
    _refused_on_a_page(_use(client, relying_party.client_id, request_uri))
    assert db_state() == before


def test_rejects_an_expired_request_uri(app, client, relying_party, db_state):
    request_uri = _push(client, relying_party).json["request_uri"]
    with app.app_context():
        db.session.execute(
            update(PushedAuthorizationRequest).values(
                expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            )
        )
        db.session.commit()
    before = db_state()
    _refused_on_a_page(_use(client, relying_party.client_id, request_uri))
    assert db_state() == before


def test_rejects_another_clients_request_uri(app, client, relying_party, db_state):
    other = register_relying_party(app, redirect_uri="https://other.example/cb")
    request_uri = _push(client, relying_party).json["request_uri"]
    before = db_state()
    _refused_on_a_page(_use(client, other.client_id, request_uri))
    _refused_on_a_page(_use(client, "", request_uri))
    assert db_state() == before
    # Still there for its own client.
    _started_login(_use(client, relying_party.client_id, request_uri))


@pytest.mark.parametrize(
    "request_uri",
    [
        PREFIX + "guessed",
        PREFIX,
        PREFIX + "x" * 300,
    ],
)
def test_rejects_an_unknown_request_uri(client, relying_party, db_state, request_uri):
    _push(client, relying_party)
    before = db_state()
    _refused_on_a_page(_use(client, relying_party.client_id, request_uri))
    assert db_state() == before


@pytest.mark.parametrize(
    "auth",
    [None, ("wrong", "secret"), "wrong secret"],
    ids=["no authentication", "unknown client", "wrong secret"],
)
def test_rejects_an_unauthenticated_push(client, relying_party, db_state, auth):
    if auth == "wrong secret":
        auth = (relying_party.client_id, "not-the-secret")
    before = db_state()
    pushed = _push(client, relying_party, auth=auth)
    assert pushed.status_code in (400, 401)
    assert pushed.json["error"] == "invalid_client"
    # Only the failed authentication is counted (RATE_LIMIT_TOKEN); nothing is stored.
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}


def test_rejects_a_push_by_a_disabled_client(app, client, relying_party, db_state):
    with app.app_context():
        disable_client(relying_party.client_id)
    before = db_state()
    assert _push(client, relying_party).json["error"] == "invalid_client"
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}


def test_rejects_using_a_request_pushed_before_its_client_was_disabled(
    app, client, relying_party, db_state
):
    request_uri = _push(client, relying_party).json["request_uri"]
    with app.app_context():
        disable_client(relying_party.client_id)
    before = db_state()
    response = _use(client, relying_party.client_id, request_uri)
    assert response.status_code == 400
    assert "Location" not in response.headers
    # The request is used up; no login starts for the disabled client.
    assert changed_tables(before, db_state()) == {"pushed_authorization_requests"}


def test_rejects_a_request_uri_in_a_pushed_request(client, relying_party, db_state):
    before = db_state()
    pushed = _push(client, relying_party, request_uri=PREFIX + "nested")
    assert pushed.status_code == 400
    assert pushed.json["error"] == "invalid_request"
    assert db_state() == before


def test_rejects_a_push_naming_another_client(app, client, relying_party, db_state):
    other = register_relying_party(app, redirect_uri="https://other.example/cb")
    before = db_state()
    pushed = _push(client, relying_party, client_id=other.client_id)
    assert pushed.status_code in (400, 401)
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}


def test_rejects_repeated_parameters_in_a_pushed_request(client, relying_party, db_state):
    params = list(relying_party.authorize_params().items())
    params.append(("redirect_uri", "https://evil.example/cb"))
    before = db_state()
    pushed = client.post(
        "/par",
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        auth=(relying_party.client_id, relying_party.client_secret),
    )
    assert pushed.status_code == 400 and pushed.json["error"] == "invalid_request"
    assert db_state() == before


def test_rejects_a_direct_request_from_a_client_that_must_push(
    app, client, relying_party, db_state
):
    with app.app_context():
        update_client(relying_party.client_id, require_par=True)
    before = db_state()
    response = client.get("/authorize?" + urlencode(relying_party.authorize_params()))
    assert response.status_code == 303
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["error"] == ["invalid_request"]
    # Nor through the POST form of the request, nor with a request_uri that is not ours.
    posted = client.post("/authorize", data=relying_party.authorize_params())
    assert parse_qs(urlsplit(posted.headers["Location"]).query)["error"] == ["invalid_request"]
    assert db_state() == before


def test_query_parameters_cannot_change_a_pushed_request(app, client, relying_party):
    request_uri = _push(client, relying_party).json["request_uri"]
    login_id = _started_login(
        _use(
            client,
            relying_party.client_id,
            request_uri,
            redirect_uri="https://evil.example/cb",
            scope="openid profile address email",
            code_challenge="attacker-chosen-challenge-" + "x" * 20,
        )
    )
    from idserver.crosslogin.models import LoginTransaction

    with app.app_context():
        login = db.session.get(LoginTransaction, login_id)
        stored = db.session.scalars(select(PushedAuthorizationRequest.params)).one()
        assert login.request_params == stored
        assert login.request_params["redirect_uri"] == relying_party.redirect_uri


def test_rejects_guessing_client_secrets_at_the_par_endpoint(app, client, relying_party, db_state):
    # The token endpoint's budget of failed client authentications (RATE_LIMIT_TOKEN).
    app.config["RATE_LIMIT_TOKEN"] = "2/minute"
    for guess in ("guess-1", "guess-2"):
        assert _push(client, relying_party, auth=(relying_party.client_id, guess)).status_code in (
            400,
            401,
        )
    before = db_state()
    blocked = _push(client, relying_party)
    assert blocked.status_code == 429
    assert blocked.is_json and blocked.json["error"] == "too_many_requests"
    assert db_state() == before
