"""The ``claims`` request parameter (OIDC Core 1.0 §5.5; issue 15, item 1).

A relying party asks for single claims in the ID token or at userinfo, voluntary or essential.
It gets exactly what it asked for, where it asked for it, and never more than its registered
scopes allow; the phone lists every claim that can be released and marks the essential ones.
"""

from __future__ import annotations

import json
from typing import Any

from harness import OFFLINE
from harness import RP_REDIRECT
from harness import RelyingParty
from harness import complete_login
from harness import desktop_status
from harness import refresh
from sqlalchemy import select

from idserver.crosslogin.models import LoginTransaction
from idserver.db import db
from idserver.oidc.clients import register_client
from idserver.oidc.models import AuthorizationCode
from idserver.oidc.models import RefreshToken
from idserver.oidc.models import Token

BIRTHDATE_IN_ID_TOKEN = {"id_token": {"birthdate": {"essential": True}}}
EMAIL_AT_USERINFO = {"userinfo": {"email": None, "address": {"essential": False}}}


def _claims(request: dict[str, Any]) -> str:
    return json.dumps(request)


def _userinfo(client: Any, access_token: str) -> dict[str, Any]:
    response = client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


def test_discovery_says_the_claims_parameter_is_supported(client):
    assert client.get("/.well-known/openid-configuration").json["claims_parameter_supported"]


def test_a_claim_asked_for_in_the_id_token_is_in_the_id_token_only(
    client, relying_party, enrolled_phone
):
    tokens = complete_login(
        client, relying_party, enrolled_phone, claims=_claims(BIRTHDATE_IN_ID_TOKEN)
    )
    id_token = relying_party.verify_id_token(client, tokens["id_token"])
    assert id_token["birthdate"] == "1984-08-12"
    assert id_token["given_name"] == "Erika"  # the scope's claims as before
    assert "birthdate" not in _userinfo(client, tokens["access_token"])


def test_a_claim_asked_for_at_userinfo_is_at_userinfo_only(client, relying_party, enrolled_phone):
    tokens = complete_login(
        client, relying_party, enrolled_phone, claims=_claims(EMAIL_AT_USERINFO)
    )
    info = _userinfo(client, tokens["access_token"])
    assert info["address"]["locality"] == "Dortmund"
    assert info["family_name"] == "Mustermann"
    assert "email_verified" not in info  # only the claim asked for, not its whole scope
    id_token = relying_party.verify_id_token(client, tokens["id_token"])
    assert "address" not in id_token


def test_the_request_is_stored_with_the_code_and_the_token(
    app, client, relying_party, enrolled_phone
):
    complete_login(client, relying_party, enrolled_phone, claims=_claims(BIRTHDATE_IN_ID_TOKEN))
    with app.app_context():
        (code,) = db.session.scalars(select(AuthorizationCode)).all()
        (token,) = db.session.scalars(select(Token)).all()
    expected = {"id_token": ["birthdate"], "userinfo": [], "essential": ["birthdate"]}
    assert code.claims_request == expected and token.claims_request == expected
    assert token.claims == ["sub", "name", "given_name", "family_name", "birthdate"]


def test_refreshed_tokens_keep_the_request(app, client, enrolled_phone):
    with app.app_context():
        registered, secret = register_client(
            name="Wohngeldantrag",
            redirect_uris=[RP_REDIRECT],
            scope="openid profile birthdate",
            grant_types=["refresh_token"],
        )
    offline_party = RelyingParty(app, registered.client_id, secret)
    request = {"userinfo": {"birthdate": None}}
    tokens = complete_login(
        client, offline_party, enrolled_phone, claims=_claims(request), **OFFLINE
    )
    renewed = refresh(client, offline_party, tokens["refresh_token"])
    assert renewed.status_code == 200, renewed.json
    assert _userinfo(client, renewed.json["access_token"])["birthdate"] == "1984-08-12"
    with app.app_context():
        stored = db.session.scalars(select(RefreshToken)).all()
    assert len(stored) == 2
    assert all(row.claims_request["userinfo"] == ["birthdate"] for row in stored)


def test_the_phone_lists_the_requested_claims_and_marks_the_essential_ones(
    app, client, relying_party, enrolled_phone
):
    login_id = relying_party.start_login(client, claims=_claims(BIRTHDATE_IN_ID_TOKEN))
    status = desktop_status(client, login_id).json
    _, scanned = enrolled_phone.scan(status["phone_url"])
    assert scanned.status_code == 200, scanned.json
    context = scanned.json["context"]
    assert "birthdate" in context["claims"]
    assert context["essential_claims"] == ["birthdate"]
    with app.app_context():
        tx = db.session.get(LoginTransaction, login_id)
        assert tx.requesting.essential_claims == ("birthdate",)


def test_the_phone_page_marks_an_essential_claim(app, client, relying_party):
    login_id = relying_party.start_login(client, claims=_claims(BIRTHDATE_IN_ID_TOKEN))
    phone_url = desktop_status(client, login_id).json["phone_url"]
    opened = app.test_client().get(phone_url.split("localhost", 1)[-1] + "&lang=de")
    html = opened.get_data(as_text=True)
    assert opened.status_code == 200, html
    assert "vom Dienst verlangt" in html


def test_without_a_claims_request_nothing_changes(app, client, relying_party, enrolled_phone):
    tokens = complete_login(client, relying_party, enrolled_phone)
    assert "birthdate" not in relying_party.verify_id_token(client, tokens["id_token"])
    with app.app_context():
        (token,) = db.session.scalars(select(Token)).all()
    assert token.claims_request is None
    login_id = relying_party.start_login(client)
    _, scanned = enrolled_phone.scan(desktop_status(client, login_id).json["phone_url"])
    assert scanned.json["context"]["essential_claims"] == []


def test_unknown_members_and_claim_names_are_ignored(client, relying_party, enrolled_phone):
    request = {
        "id_token": {
            "birthdate": None,
            "shoe_size": {"essential": True},
            "acr": {"essential": True},
        },
        "vp_token": {"anything": None},
    }
    tokens = complete_login(client, relying_party, enrolled_phone, claims=_claims(request))
    id_token = relying_party.verify_id_token(client, tokens["id_token"])
    assert id_token["birthdate"] == "1984-08-12" and "shoe_size" not in id_token
    # value/values are accepted and not enforced: the claims are the register's
    tokens = complete_login(
        client,
        relying_party,
        enrolled_phone,
        claims=_claims({"id_token": {"birthdate": {"value": "2000-01-01"}}}),
    )
    assert relying_party.verify_id_token(client, tokens["id_token"])["birthdate"] == "1984-08-12"
