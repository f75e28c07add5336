"""Refresh tokens: offline_access with prompt=consent, rotation, reuse, lifetimes, revocation."""

from __future__ import annotations

import datetime as dt

import pytest
from harness import OFFLINE
from harness import changed_tables
from harness import complete_login
from harness import refresh
from sqlalchemy import select
from sqlalchemy import update

from idserver.account.consents import withdraw_consent
from idserver.account.devices import revoke_device
from idserver.audit.models import AuditEvent
from idserver.citizens.models import Citizen
from idserver.db import db
from idserver.db import utcnow
from idserver.oidc.models import RefreshToken
from idserver.oidc.models import Token
from idserver.oidc.models import hash_secret
from idserver.passkeys.models import Credential

COUNTERS = {"rate_limit_counters"}  # count every try, right or wrong


def _unchanged(before, after):
    return changed_tables(before, after) <= COUNTERS


def _refresh_tokens(app):
    with app.app_context():
        return db.session.scalars(select(RefreshToken).order_by(RefreshToken.id)).all()


def _events(app, event):
    with app.app_context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.event == event)).all()


def _userinfo(client, access_token):
    return client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def test_offline_access_with_consent_issues_a_refresh_token_stored_hashed(
    app, client, offline_party, enrolled_phone, citizen
):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    assert tokens["scope"] == "openid profile offline_access"
    (stored,) = _refresh_tokens(app)
    assert stored.token_hash == hash_secret(tokens["refresh_token"])
    assert tokens["refresh_token"] not in repr(stored.__dict__)
    assert stored.citizen_id == citizen.id and stored.client_id == offline_party.client_id
    assert stored.parent_id is None and stored.used_at is None and stored.revoked_at is None
    with app.app_context():
        (credential,) = db.session.scalars(select(Credential)).all()
        (token,) = db.session.scalars(select(Token)).all()
    assert stored.credential_pk == credential.id
    assert token.refresh_family == stored.family_id
    assert stored.expires_at - stored.issued_at == dt.timedelta(days=30)
    assert stored.idle_expires_at - stored.issued_at == dt.timedelta(days=7)


def test_refresh_rotates_and_keeps_the_familys_absolute_expiry(
    app, client, offline_party, enrolled_phone, db_state
):
    first = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    before = db_state()
    second = refresh(client, offline_party, first["refresh_token"])
    assert second.status_code == 200, second.json
    assert second.headers["Cache-Control"] == "no-store"
    assert set(second.json) >= {"access_token", "refresh_token", "expires_in", "token_type"}
    assert second.json["refresh_token"] != first["refresh_token"]
    assert second.json["scope"] == "openid profile offline_access"
    assert changed_tables(before, db_state()) - COUNTERS == {
        "refresh_tokens",
        "tokens",
        "audit_events",
    }
    old, new = _refresh_tokens(app)
    assert old.used_at is not None and old.revoked_at is None
    assert new.parent_id == old.id and new.family_id == old.family_id
    assert new.expires_at == old.expires_at  # rotation does not extend the family
    assert _userinfo(client, second.json["access_token"]).json["given_name"] == "Erika"
    # the new refresh token works in turn
    third = refresh(client, offline_party, second.json["refresh_token"])
    assert third.status_code == 200, third.json


def test_refresh_may_narrow_the_scope_but_not_widen_it(
    app, client, offline_party, enrolled_phone, db_state
):
    first = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    before = db_state()
    wider = refresh(client, offline_party, first["refresh_token"], scope="openid email")
    assert wider.status_code == 400 and wider.json["error"] == "invalid_scope"
    assert _unchanged(before, db_state())
    narrower = refresh(client, offline_party, first["refresh_token"], scope="openid")
    assert narrower.status_code == 200 and narrower.json["scope"] == "openid"
    # the successor keeps the scope granted at login (RFC 6749 §6)
    assert _refresh_tokens(app)[-1].scope == "openid profile offline_access"


def test_reusing_a_refresh_token_revokes_the_whole_family(
    app, client, offline_party, enrolled_phone, citizen
):
    first = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    second = refresh(client, offline_party, first["refresh_token"]).json
    replay = refresh(client, offline_party, first["refresh_token"])
    assert replay.status_code == 400 and replay.json["error"] == "invalid_grant"
    assert all(r.revoked_at is not None for r in _refresh_tokens(app))
    with app.app_context():
        assert all(t.revoked_at is not None for t in db.session.scalars(select(Token)))
    # the successor the legitimate client (or the thief) holds is dead too, and its access token
    assert refresh(client, offline_party, second["refresh_token"]).json["error"] == "invalid_grant"
    assert _userinfo(client, second["access_token"]).status_code == 401
    assert _userinfo(client, first["access_token"]).status_code == 401
    (event,) = _events(app, "refresh_token_reused")
    assert event.actor == f"client:{offline_party.client_id}" and event.subject == citizen.id
    assert event.data["refresh_tokens_revoked"] == 2  # the replayed one and its successor
    assert event.data["tokens_revoked"] == 2
    # replaying it again is refused without another revocation or audit entry
    assert refresh(client, offline_party, first["refresh_token"]).json["error"] == "invalid_grant"
    assert len(_events(app, "refresh_token_reused")) == 1


@pytest.mark.parametrize("limit", ["expires_at", "idle_expires_at"])
def test_rejects_an_expired_refresh_token(
    app, client, offline_party, enrolled_phone, db_state, limit
):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    with app.app_context():
        db.session.execute(update(RefreshToken).values({limit: utcnow() - dt.timedelta(seconds=1)}))
        db.session.commit()
    before = db_state()
    response = refresh(client, offline_party, tokens["refresh_token"])
    assert response.status_code == 400 and response.json["error"] == "invalid_grant"
    assert _unchanged(before, db_state())


def test_idle_expiry_never_passes_the_absolute_one(app, client, offline_party, enrolled_phone):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    with app.app_context():
        db.session.execute(update(RefreshToken).values(expires_at=utcnow() + dt.timedelta(days=1)))
        db.session.commit()
    assert refresh(client, offline_party, tokens["refresh_token"]).status_code == 200
    old, new = _refresh_tokens(app)
    assert new.idle_expires_at == new.expires_at == old.expires_at


def test_revoking_the_device_revokes_its_refresh_tokens(
    app, client, offline_party, enrolled_phone, citizen, db_state
):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    with app.app_context():
        (credential,) = db.session.scalars(select(Credential)).all()
        revoke_device(citizen.id, credential.id)
    (stored,) = _refresh_tokens(app)
    assert stored.revoked_at is not None
    before = db_state()
    response = refresh(client, offline_party, tokens["refresh_token"])
    assert response.status_code == 400 and response.json["error"] == "invalid_grant"
    assert _unchanged(before, db_state())


def test_a_suspended_device_cannot_refresh(app, client, offline_party, enrolled_phone, db_state):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    with app.app_context():
        db.session.execute(update(Credential).values(suspended_at=utcnow()))
        db.session.commit()
    before = db_state()
    response = refresh(client, offline_party, tokens["refresh_token"])
    assert response.status_code == 400 and response.json["error"] == "invalid_grant"
    assert _unchanged(before, db_state())


def test_withdrawing_consent_revokes_refresh_tokens(
    app, client, offline_party, enrolled_phone, citizen, db_state
):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    with app.app_context():
        withdraw_consent(citizen.id, offline_party.client_id)
    assert all(r.revoked_at is not None for r in _refresh_tokens(app))
    before = db_state()
    response = refresh(client, offline_party, tokens["refresh_token"])
    assert response.status_code == 400 and response.json["error"] == "invalid_grant"
    assert _unchanged(before, db_state())


def test_rejects_refresh_for_a_citizen_marked_deleted(
    app, client, offline_party, enrolled_phone, citizen, db_state
):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    with app.app_context():
        db.session.execute(update(Citizen).values(deleted_at=utcnow()))
        db.session.commit()
    before = db_state()
    response = refresh(client, offline_party, tokens["refresh_token"])
    assert response.status_code == 400 and response.json["error"] == "invalid_grant"
    assert _unchanged(before, db_state())


def test_a_purged_citizens_refresh_tokens_go_with_them(
    app, client, offline_party, enrolled_phone, citizen
):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    with app.app_context():
        db.session.delete(db.session.get(Citizen, citizen.id))
        db.session.commit()
    assert _refresh_tokens(app) == []
    response = refresh(client, offline_party, tokens["refresh_token"])
    assert response.status_code == 400 and response.json["error"] == "invalid_grant"


def test_disabling_the_client_revokes_its_refresh_tokens(
    app, client, offline_party, enrolled_phone, db_state
):
    from idserver.oidc.clients import disable_client

    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    with app.app_context():
        disable_client(offline_party.client_id)
    assert all(r.revoked_at is not None for r in _refresh_tokens(app))
    before = db_state()
    response = refresh(client, offline_party, tokens["refresh_token"])
    assert response.status_code == 401 and response.json["error"] == "invalid_client"
    assert _unchanged(before, db_state())


def test_offline_access_without_prompt_consent_is_ignored(
    app, client, offline_party, enrolled_phone
):
    tokens = complete_login(
        client, offline_party, enrolled_phone, scope="openid profile offline_access"
    )
    assert "refresh_token" not in tokens
    assert tokens["scope"] == "openid profile"
    assert _refresh_tokens(app) == []


def test_a_client_not_registered_for_refresh_tokens_gets_none(
    app, client, relying_party, enrolled_phone, db_state
):
    tokens = complete_login(client, relying_party, enrolled_phone, **OFFLINE)
    assert "refresh_token" not in tokens
    assert "offline_access" not in tokens["scope"]
    assert _refresh_tokens(app) == []
    # and it cannot use the grant with someone else's refresh token either
    before = db_state()
    response = refresh(client, relying_party, "not-a-token")
    assert response.status_code == 400 and response.json["error"] == "unauthorized_client"
    assert _unchanged(before, db_state())


def test_rejects_another_clients_refresh_token(
    app, client, offline_party, enrolled_phone, db_state
):
    from idserver.oidc.clients import register_client

    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    with app.app_context():
        other, secret = register_client(
            name="Hundesteuer",
            redirect_uris=[offline_party.redirect_uri],
            grant_types=["refresh_token"],
        )
    before = db_state()
    response = refresh(
        client, offline_party, tokens["refresh_token"], auth=(other.client_id, secret)
    )
    assert response.status_code == 400 and response.json["error"] == "invalid_grant"
    assert _unchanged(before, db_state())


@pytest.mark.parametrize(
    "auth", [None, ("wrong", "secret"), "wrong-secret"], ids=["none", "unknown", "bad-secret"]
)
def test_rejects_refresh_without_client_authentication(
    app, client, offline_party, enrolled_phone, db_state, auth
):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    if auth == "wrong-secret":
        auth = (offline_party.client_id, "wrong")
    before = db_state()
    response = refresh(client, offline_party, tokens["refresh_token"], auth=auth)
    assert response.status_code == 401 and response.json["error"] == "invalid_client"
    assert _unchanged(before, db_state())


def test_discovery_lists_refresh_revocation_and_introspection(client):
    config = client.get("/.well-known/openid-configuration").json
    assert config["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert "offline_access" in config["scopes_supported"]
    assert config["revocation_endpoint"].endswith("/revoke")
    assert config["introspection_endpoint"].endswith("/introspect")
    methods = config["token_endpoint_auth_methods_supported"]
    algorithms = config["token_endpoint_auth_signing_alg_values_supported"]
    for endpoint in ("revocation", "introspection"):
        assert config[f"{endpoint}_endpoint_auth_methods_supported"] == methods
        assert config[f"{endpoint}_endpoint_auth_signing_alg_values_supported"] == algorithms
