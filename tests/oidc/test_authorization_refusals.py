"""OIDC refusals at /authorize and /token; each asserts the refusal and the unchanged state."""

from __future__ import annotations

from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
from harness import ISSUER
from harness import changed_tables
from harness import complete_login


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"scope": "profile"}, "invalid_scope"),
        ({"prompt": "none"}, "login_required"),
    ],
)
def test_rejects_bad_authorization_request_with_redirect(
    client, relying_party, db_state, overrides, error
):
    before = db_state()
    params = relying_party.authorize_params(**overrides)
    response = client.get("/authorize?" + urlencode(params))
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == relying_party.redirect_uri
    query = parse_qs(location.query)
    assert query["error"] == [error]
    assert query["iss"] == [ISSUER]
    assert query["state"] == [relying_party.state]
    assert db_state() == before


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://localhost:8001/callback/",
        "http://localhost:8001/callback?x=1",
        "http://evil.example/callback",
        "HTTP://localhost:8001/callback",
    ],
)
def test_rejects_redirect_uri_mismatch_without_redirecting(
    client, relying_party, db_state, redirect_uri
):
    before = db_state()
    response = client.get(
        "/authorize?" + urlencode(relying_party.authorize_params(redirect_uri=redirect_uri))
    )
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert db_state() == before


def test_rejects_unknown_client(client, relying_party, db_state):
    before = db_state()
    response = client.get(
        "/authorize?" + urlencode(relying_party.authorize_params(client_id="nobody"))
    )
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert db_state() == before


def test_rejects_wrong_pkce_verifier(client, relying_party, enrolled_phone, db_state):
    code = relying_party.approved_code(client, enrolled_phone)
    before = db_state()
    response = relying_party.exchange(client, code, code_verifier="x" * 50)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"
    assert db_state() == before
    # the right verifier still works: a failed PKCE check does not burn the code
    assert relying_party.exchange(client, code).status_code == 200


def test_rejects_missing_pkce_verifier(client, relying_party, enrolled_phone, db_state):
    code = relying_party.approved_code(client, enrolled_phone)
    before = db_state()
    response = relying_party.exchange(client, code, code_verifier=None)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert db_state() == before


def test_rejects_redirect_uri_mismatch_at_token(client, relying_party, enrolled_phone, db_state):
    code = relying_party.approved_code(client, enrolled_phone)
    before = db_state()
    response = relying_party.exchange(client, code, redirect_uri="http://localhost:8001/other")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"
    assert db_state() == before


def test_rejects_wrong_client_secret(client, relying_party, enrolled_phone, db_state):
    code = relying_party.approved_code(client, enrolled_phone)
    before = db_state()
    response = relying_party.exchange(client, code, auth=(relying_party.client_id, "wrong"))
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
    # only the failed-authentication rate limit counted it
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}


def test_rejects_code_reuse_and_revokes_its_tokens(client, relying_party, enrolled_phone, db_state):
    code = relying_party.approved_code(client, enrolled_phone)
    first = relying_party.exchange(client, code)
    assert first.status_code == 200
    bearer = {"Authorization": f"Bearer {first.json['access_token']}"}
    assert client.get("/userinfo", headers=bearer).status_code == 200
    before = db_state()
    again = relying_party.exchange(client, code)
    assert again.status_code == 400
    assert again.json["error"] == "invalid_grant"
    # the reuse revoked the tokens issued for the code, and changed nothing else
    assert changed_tables(before, db_state()) == {"tokens"}
    assert client.get("/userinfo", headers=bearer).status_code == 401


def test_rejects_code_for_another_client(app, client, relying_party, enrolled_phone, db_state):
    from idserver.oidc.clients import register_client

    with app.app_context():
        other, secret = register_client(
            name="Bewerberportal", redirect_uris=[relying_party.redirect_uri]
        )
    code = relying_party.approved_code(client, enrolled_phone)
    before = db_state()
    response = relying_party.exchange(client, code, auth=(other.client_id, secret))
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"
    assert db_state() == before


def test_pairwise_sub_differs_between_relying_parties(app, client, relying_party, enrolled_phone):
    from harness import RelyingParty

    from idserver.oidc.clients import register_client

    first = relying_party.verify_id_token(
        client, complete_login(client, relying_party, enrolled_phone)["id_token"]
    )
    with app.app_context():
        registered, secret = register_client(
            name="Bewerberportal", redirect_uris=["http://localhost:8002/callback"]
        )
    jobs = RelyingParty(
        app, registered.client_id, secret, redirect_uri="http://localhost:8002/callback"
    )
    browser = app.test_client()
    second = jobs.verify_id_token(
        browser, complete_login(browser, jobs, enrolled_phone)["id_token"]
    )
    assert first["sub"] != second["sub"]
    again = relying_party.verify_id_token(
        client, complete_login(client, relying_party, enrolled_phone)["id_token"]
    )
    assert again["sub"] == first["sub"]
