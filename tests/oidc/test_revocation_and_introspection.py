"""RFC 7009 token revocation and RFC 7662 introspection, each for the client's own tokens."""

from __future__ import annotations

import secrets
import time

import pytest
from harness import ASSERTION_TYPE
from harness import ISSUER
from harness import OFFLINE
from harness import changed_tables
from harness import complete_login
from harness import refresh
from joserfc import jwt
from sqlalchemy import select

from idserver.audit.models import AuditEvent
from idserver.db import db
from idserver.oidc.claims import pairwise_subject
from idserver.oidc.clients import register_client
from idserver.oidc.models import RefreshToken
from idserver.oidc.models import Token

COUNTERS = {"rate_limit_counters"}  # count every try, right or wrong


def _post(client, path, rp, token, *, auth=..., **form):
    basic = (rp.client_id, rp.client_secret) if auth is ... else auth
    return client.post(path, data={"token": token, **form}, auth=basic)


def _other_client(app, rp):
    with app.app_context():
        other, secret = register_client(name="Hundesteuer", redirect_uris=[rp.redirect_uri])
    return other.client_id, secret


def _revoked(app, model):
    with app.app_context():
        return [row.revoked_at is not None for row in db.session.scalars(select(model))]


def test_introspects_an_access_token_with_the_pairwise_subject(
    app, client, offline_party, enrolled_phone, citizen
):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    response = _post(client, "/introspect", offline_party, tokens["access_token"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    with app.app_context():
        sub = pairwise_subject(citizen.id, client_id=offline_party.client_id)
        (token,) = db.session.scalars(select(Token)).all()
    assert body == {
        "active": True,
        "scope": "openid profile offline_access",
        "client_id": offline_party.client_id,
        "sub": sub,
        "exp": int(token.expires_at.timestamp()),
        "iat": int(token.issued_at.timestamp()),
        "token_type": "Bearer",
        "aud": offline_party.client_id,
        "iss": ISSUER,
    }
    assert sub != citizen.id


def test_introspects_a_refresh_token_and_a_used_one_is_inactive(
    client, offline_party, enrolled_phone
):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    hinted = _post(
        client,
        "/introspect",
        offline_party,
        tokens["refresh_token"],
        token_type_hint="refresh_token",
    )
    assert hinted.json["active"] is True and hinted.json["token_type"] == "refresh_token"
    assert refresh(client, offline_party, tokens["refresh_token"]).status_code == 200
    used = _post(client, "/introspect", offline_party, tokens["refresh_token"])
    assert used.json == {"active": False}


def test_introspection_of_unknown_or_foreign_tokens_is_inactive(
    app, client, offline_party, enrolled_phone, db_state
):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    other = _other_client(app, offline_party)
    before = db_state()
    for token in (tokens["access_token"], tokens["refresh_token"]):
        foreign = _post(client, "/introspect", offline_party, token, auth=other)
        assert foreign.status_code == 200 and foreign.json == {"active": False}
    unknown = _post(client, "/introspect", offline_party, "no-such-token")
    assert unknown.status_code == 200 and unknown.json == {"active": False}
    assert changed_tables(before, db_state()) <= COUNTERS


@pytest.mark.parametrize("path", ["/introspect", "/revoke"])
@pytest.mark.parametrize(
    "auth", [None, ("unknown", "secret"), "wrong-secret"], ids=["none", "unknown", "bad-secret"]
)
def test_rejects_requests_without_client_authentication(
    client, offline_party, enrolled_phone, db_state, path, auth
):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    if auth == "wrong-secret":
        auth = (offline_party.client_id, "wrong")
    before = db_state()
    response = _post(client, path, offline_party, tokens["access_token"], auth=auth)
    assert response.status_code == 401 and response.json["error"] == "invalid_client"
    assert changed_tables(before, db_state()) <= COUNTERS
    assert _post(client, "/introspect", offline_party, tokens["access_token"]).json["active"]


def test_revoking_an_access_token_ends_it_and_leaves_the_refresh_token(
    app, client, offline_party, enrolled_phone, citizen, db_state
):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    before = db_state()
    response = _post(
        client, "/revoke", offline_party, tokens["access_token"], token_type_hint="access_token"
    )
    assert response.status_code == 200
    assert changed_tables(before, db_state()) - COUNTERS == {"tokens", "audit_events"}
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/userinfo", headers=bearer).status_code == 401
    assert refresh(client, offline_party, tokens["refresh_token"]).status_code == 200
    with app.app_context():
        (event,) = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "token_revoked")
        ).all()
    assert event.actor == f"client:{offline_party.client_id}" and event.subject == citizen.id


def test_revoking_a_refresh_token_revokes_its_family_and_access_tokens(
    app, client, offline_party, enrolled_phone
):
    first = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    second = refresh(client, offline_party, first["refresh_token"]).json
    response = _post(client, "/revoke", offline_party, second["refresh_token"])
    assert response.status_code == 200 and response.json == {}
    assert all(_revoked(app, RefreshToken)) and all(_revoked(app, Token))
    assert refresh(client, offline_party, second["refresh_token"]).json["error"] == "invalid_grant"
    bearer = {"Authorization": f"Bearer {second['access_token']}"}
    assert client.get("/userinfo", headers=bearer).status_code == 401
    # revoking again, or an unknown token, is still 200 (RFC 7009 §2.2)
    assert _post(client, "/revoke", offline_party, second["refresh_token"]).status_code == 200
    assert _post(client, "/revoke", offline_party, "no-such-token").status_code == 200


def test_rejects_revoking_another_clients_token(
    app, client, offline_party, enrolled_phone, db_state
):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    other = _other_client(app, offline_party)
    before = db_state()
    for token in (tokens["access_token"], tokens["refresh_token"]):
        response = _post(client, "/revoke", offline_party, token, auth=other)
        assert response.status_code == 400 and response.json["error"] == "invalid_grant"
    assert changed_tables(before, db_state()) <= COUNTERS
    assert not any(_revoked(app, Token)) and not any(_revoked(app, RefreshToken))


@pytest.mark.parametrize("path", ["/introspect", "/revoke"])
def test_rejects_an_unknown_token_type_hint(client, offline_party, enrolled_phone, db_state, path):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    before = db_state()
    response = _post(
        client, path, offline_party, tokens["access_token"], token_type_hint="id_token"
    )
    assert response.json["error"] == "unsupported_token_type"  # Authlib answers it with 401
    assert changed_tables(before, db_state()) <= COUNTERS


def _assertion(rp, key):
    now = int(time.time())
    claims = {
        "iss": rp.client_id,
        "sub": rp.client_id,
        "aud": ISSUER,
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)


@pytest.mark.parametrize("path", ["/introspect", "/revoke"])
def test_private_key_jwt_clients_authenticate_with_an_assertion(
    client, jwt_client, rp_key, enrolled_phone, db_state, path
):
    code = jwt_client.approved_code(client, enrolled_phone)
    tokens = jwt_client.exchange(client, code, assertion=_assertion(jwt_client, rp_key)).json
    # its registered method only: no secret to fall back on
    before = db_state()
    refused = client.post(
        path, data={"token": tokens["access_token"]}, auth=(jwt_client.client_id, "guess")
    )
    assert refused.status_code == 401 and refused.json["error"] == "invalid_client"
    assert changed_tables(before, db_state()) <= COUNTERS
    form = {
        "token": tokens["access_token"],
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": _assertion(jwt_client, rp_key),
    }
    response = client.post(path, data=form)
    assert response.status_code == 200
    active = client.post(
        "/introspect", data={**form, "client_assertion": _assertion(jwt_client, rp_key)}
    )
    assert active.json["active"] is (path == "/introspect")
