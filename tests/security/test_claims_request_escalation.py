"""Attacks with the ``claims`` parameter (OIDC Core 1.0 §5.5): threat model OI21.

A relying party asks, through ``claims``, for claims its registered scopes do not release, or
sends a parameter that is no claims request at all. Neither gets it anything: a malformed one
is refused with ``invalid_request`` and changes nothing; claims beyond the client's scopes are
ignored, so they are neither shown on the phone nor released nor stored.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
from harness import ISSUER
from harness import complete_login
from harness import desktop_status
from harness import register_relying_party
from sqlalchemy import select

from idserver.db import db
from idserver.oidc.models import AuthorizationCode
from idserver.oidc.models import Token


@pytest.mark.parametrize(
    "claims",
    [
        "not json",
        "{",
        '["id_token"]',
        '"birthdate"',
        "null",
        json.dumps({"id_token": ["birthdate"]}),
        json.dumps({"userinfo": "birthdate"}),
        json.dumps({"id_token": {"birthdate": True}}),
        json.dumps({"id_token": {"birthdate": {"essential": "yes"}}}),
        json.dumps({"userinfo": {"x": 1}}),
        "{" + '"id_token": {},' * 2000 + "}",
    ],
)
def test_rejects_a_malformed_claims_request_without_a_login(
    client, relying_party, db_state, claims
):
    before = db_state()
    params = relying_party.authorize_params(claims=claims)
    response = client.get("/authorize?" + urlencode(params))
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == relying_party.redirect_uri
    query = parse_qs(location.query)
    assert query["error"] == ["invalid_request"]
    assert "claims" in query["error_description"][0]
    assert query["iss"] == [ISSUER] and query["state"] == [relying_party.state]
    assert db_state() == before


def test_rejects_claims_beyond_the_registered_scopes_by_ignoring_them(app, client, enrolled_phone):
    # registered for profile only: birthdate, e-mail and address are out of its reach
    party = register_relying_party(app, scope="openid profile")
    greedy = {
        "id_token": {"birthdate": {"essential": True}, "address": None},
        "userinfo": {"email": {"essential": True}, "birthdate": None},
    }
    login_id = party.start_login(client, claims=json.dumps(greedy))
    _, scanned = enrolled_phone.scan(desktop_status(client, login_id).json["phone_url"])
    context = scanned.json["context"]
    assert context["claims"] == ["sub", "name", "given_name", "family_name"]
    assert context["essential_claims"] == []
    tokens = complete_login(client, party, enrolled_phone, claims=json.dumps(greedy))
    id_token = party.verify_id_token(client, tokens["id_token"])
    info = client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ).json
    for released in (id_token, info):
        assert not {"birthdate", "address", "email"} & set(released)
    with app.app_context():
        codes = db.session.scalars(select(AuthorizationCode)).all()
        tokens_stored = db.session.scalars(select(Token)).all()
    assert all(code.claims_request is None for code in codes)
    assert all(token.claims_request is None for token in tokens_stored)
    assert all(
        token.claims == ["sub", "name", "given_name", "family_name"] for token in tokens_stored
    )


def test_rejects_releasing_a_registered_claim_nobody_asked_for(
    client, relying_party, enrolled_phone
):
    """Registered for birthdate but asking with scope ``openid profile``: birthdate is released
    only because the claims request named it, and then the phone listed it first."""
    login_id = relying_party.start_login(client)
    _, scanned = enrolled_phone.scan(desktop_status(client, login_id).json["phone_url"])
    assert "birthdate" not in scanned.json["context"]["claims"]
    tokens = complete_login(client, relying_party, enrolled_phone)
    assert "birthdate" not in relying_party.verify_id_token(client, tokens["id_token"])
