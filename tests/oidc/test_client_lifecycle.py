"""Client authentication by form body, bearer tokens in a form body, token-endpoint errors,
server metadata, and a relying party's life: update, disable, enable, rotate, delete."""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.discovery import OpenIDProviderMetadata
from harness import ISSUER
from harness import RP_REDIRECT
from harness import RelyingParty
from harness import changed_tables
from harness import complete_login
from harness import desktop_status
from sqlalchemy import func
from sqlalchemy import select

from idserver.account.consents import list_services
from idserver.account.consents import withdraw_consent
from idserver.account.models import ConsentWithdrawal
from idserver.audit import verify_chain
from idserver.audit.models import AuditEvent
from idserver.db import db
from idserver.errors import IdServerError
from idserver.oidc.clients import delete_client
from idserver.oidc.clients import disable_client
from idserver.oidc.clients import enable_client
from idserver.oidc.clients import register_client
from idserver.oidc.clients import rotate_client_secret
from idserver.oidc.clients import update_client
from idserver.oidc.models import Client
from idserver.oidc.models import Token


def _bearer(tokens):
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _events(app, name):
    with app.app_context():
        return list(
            db.session.scalars(
                select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.id)
            )
        )


@pytest.fixture
def post_client(app):
    """A relying party registered for ``client_secret_post``."""
    with app.app_context():
        registered, secret = register_client(
            name="Hundesteuer",
            redirect_uris=[RP_REDIRECT],
            auth_method="client_secret_post",
        )
    assert secret
    return RelyingParty(app, registered.client_id, secret)


# -- client_secret_post, body tokens, token-endpoint errors, metadata ----------------------------
def test_client_secret_post_exchanges_a_code(client, post_client, enrolled_phone):
    code = post_client.approved_code(client, enrolled_phone)
    response = post_client.exchange(
        client,
        code,
        auth=None,
        client_id=post_client.client_id,
        client_secret=post_client.client_secret,
    )
    assert response.status_code == 200, response.json
    assert response.json["token_type"].lower() == "bearer"
    assert post_client.verify_id_token(client, response.json["id_token"])["sub"]


def test_rejects_client_secret_basic_from_a_client_registered_for_post(
    client, post_client, enrolled_phone, db_state
):
    code = post_client.approved_code(client, enrolled_phone)
    before = db_state()
    response = post_client.exchange(client, code)  # HTTP Basic with the right secret
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}


def test_userinfo_accepts_the_token_in_a_form_body(client, relying_party, enrolled_phone):
    tokens = complete_login(client, relying_party, enrolled_phone)
    by_header = client.get("/userinfo", headers=_bearer(tokens))
    by_body = client.post("/userinfo", data={"access_token": tokens["access_token"]})
    assert by_body.status_code == 200, by_body.get_data(as_text=True)
    assert by_body.json == by_header.json and by_body.json["sub"]


@pytest.mark.parametrize("grant_type", [None, ""], ids=["missing", "empty"])
def test_rejects_token_request_without_grant_type_as_invalid_request(
    client, relying_party, enrolled_phone, db_state, grant_type
):
    code = relying_party.approved_code(client, enrolled_phone)
    before = db_state()
    response = relying_party.exchange(client, code, grant_type=grant_type)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"  # RFC 6749 §5.2
    assert "grant_type" in response.json["error_description"]
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}
    assert relying_party.exchange(client, code).status_code == 200  # the code is still good


def test_unknown_grant_type_stays_unsupported_grant_type(client, relying_party, db_state):
    before = db_state()
    response = client.post(
        "/token", data={"grant_type": "password"}, auth=(relying_party.client_id, "x")
    )
    assert response.status_code == 400
    assert response.json["error"] == "unsupported_grant_type"
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}


def test_server_metadata_is_published_at_both_well_known_addresses(client):
    oidc = client.get("/.well-known/openid-configuration")
    oauth = client.get("/.well-known/oauth-authorization-server")
    assert oidc.status_code == oauth.status_code == 200
    assert oidc.json == oauth.json
    assert oauth.headers["Cache-Control"] == "public, max-age=300"
    AuthorizationServerMetadata(oauth.json).validate()  # RFC 8414 §2
    # OIDC Discovery 1.0 §3, its "RS256 MUST be included" too
    metadata = OpenIDProviderMetadata(oidc.json)
    for name in dir(metadata):
        if name.startswith("validate_"):
            getattr(metadata, name)()
    assert oauth.json["issuer"] == ISSUER
    assert oauth.json["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ]


# -- update ---------------------------------------------------------------------------------------
def test_update_changes_redirect_uris_and_audits_the_actor(app, client, relying_party, db_state):
    new_uri = "https://parken.example.org/callback"
    with app.app_context():
        updated, secret = update_client(
            relying_party.client_id,
            actor="operator",
            redirect_uris=[new_uri],
            name="Parkausweis",
            proximity_policy="deny",
            os_user="erika",
        )
        assert secret is None
        assert updated.redirect_uris == [new_uri] and updated.name == "Parkausweis"
    (event,) = _events(app, "client_updated")
    assert event.actor == "operator" and event.data["os_user"] == "erika"
    assert event.data["changed"] == ["name", "proximity_policy", "redirect_uris"]
    assert event.data["redirect_uris"] == [new_uri]
    # the old redirect URI is no longer registered: refused without a redirect
    before = db_state()
    response = client.get("/authorize?" + urlencode(relying_party.authorize_params()))
    assert response.status_code == 400 and "Location" not in response.headers
    assert db_state() == before


@pytest.mark.parametrize(
    "changes, error",
    [
        ({"redirect_uris": ["https://rp.example/cb#frag"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["http://rp.example/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": []}, "invalid_redirect_uri"),
        ({"post_logout_redirect_uris": ["https://*.example/"]}, "invalid_redirect_uri"),
        ({"name": "  "}, "invalid_client_metadata"),
        ({"scope": "profile"}, "invalid_scope"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"auth_method": "none"}, "invalid_client_metadata"),
        ({"auth_method": "private_key_jwt"}, "invalid_client_metadata"),  # no keys given
        ({"jwks_uri": "https://rp.example/jwks"}, "invalid_client_metadata"),  # secret method
        ({"proximity_policy": "ignore"}, "invalid_client_metadata"),
        # one bad value spoils the whole update: the good name is not stored either
        ({"name": "Neu", "redirect_uris": ["https://rp.example/*"]}, "invalid_redirect_uri"),
    ],
)
def test_rejects_invalid_update_and_changes_nothing(app, relying_party, db_state, changes, error):
    before = db_state()
    with app.app_context(), pytest.raises(IdServerError) as refused:
        update_client(relying_party.client_id, **changes)
    assert refused.value.error == error
    assert db_state() == before


def test_update_between_auth_methods(app, client, relying_party, enrolled_phone, rp_key, tmp_path):
    import json

    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [rp_key.as_dict(private=False)]}))
    with app.app_context():
        moved, secret = update_client(
            relying_party.client_id, auth_method="private_key_jwt", jwks_file=str(jwks_file)
        )
        assert secret is None and moved.client_secret_hash is None and moved.jwks
        back, secret = update_client(relying_party.client_id, auth_method="client_secret_post")
        assert secret and back.jwks is None and back.check_client_secret(secret)
    code = relying_party.approved_code(client, enrolled_phone)
    response = relying_party.exchange(
        client, code, auth=None, client_id=relying_party.client_id, client_secret=secret
    )
    assert response.status_code == 200, response.json


# -- disable, enable ---------------------------------------------------------------------------
def test_disabled_client_is_unknown_everywhere_until_enabled(
    app, client, relying_party, enrolled_phone, db_state
):
    tokens = complete_login(client, relying_party, enrolled_phone)
    code = relying_party.approved_code(client, enrolled_phone)  # not yet exchanged
    with app.app_context():
        disabled = disable_client(relying_party.client_id, os_user="erika")
        assert disabled.status == "disabled"
    (event,) = _events(app, "client_disabled")
    assert event.actor == "operator" and event.data["tokens_revoked"] == 1
    assert event.data["codes_voided"] == 1
    before = db_state()
    authorize = client.get("/authorize?" + urlencode(relying_party.authorize_params()))
    assert authorize.status_code == 400 and "Location" not in authorize.headers
    exchanged = relying_party.exchange(client, code)
    assert exchanged.status_code == 401 and exchanged.json["error"] == "invalid_client"
    assert client.get("/userinfo", headers=_bearer(tokens)).status_code == 401
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}
    with app.app_context():
        assert enable_client(relying_party.client_id).status == "active"
    assert [e.event for e in _events(app, "client_enabled")] == ["client_enabled"]
    # the grants disabling ended stay ended; a new login works again
    assert client.get("/userinfo", headers=_bearer(tokens)).status_code == 401
    assert relying_party.exchange(client, code).status_code == 400
    fresh = complete_login(client, relying_party, enrolled_phone)
    assert client.get("/userinfo", headers=_bearer(fresh)).status_code == 200


def test_login_approved_after_its_client_was_disabled_ends_on_a_page(
    app, client, relying_party, enrolled_phone, db_state
):
    login_id = relying_party.start_login(client)
    status = desktop_status(client, login_id).json
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 200
    continue_url = desktop_status(client, login_id).json["continue_url"]
    with app.app_context():
        disable_client(relying_party.client_id)
    before = db_state()
    response = client.get(continue_url)
    assert response.status_code == 400 and "Location" not in response.headers
    assert "Bürger-ID" in response.get_data(as_text=True)
    # no code, no session: only the login transaction moved on
    assert changed_tables(before, db_state()) <= {"login_transactions", "rate_limit_counters"}


def test_disable_and_enable_are_idempotent(app, relying_party):
    with app.app_context():
        disable_client(relying_party.client_id)
        disable_client(relying_party.client_id)
        enable_client(relying_party.client_id)
        enable_client(relying_party.client_id)
    assert len(_events(app, "client_disabled")) == 1
    assert len(_events(app, "client_enabled")) == 1


def test_token_of_a_disabled_client_fails_even_if_no_revocation_saw_it(
    app, client, relying_party, enrolled_phone
):
    """A token issued while the client was being disabled: the client check still holds."""
    tokens = complete_login(client, relying_party, enrolled_phone)
    with app.app_context():
        disable_client(relying_party.client_id)
        db.session.execute(Token.__table__.update().values(revoked_at=None))
        db.session.commit()
    assert client.post("/userinfo", data={"access_token": tokens["access_token"]}).status_code == (
        401
    )


# -- rotate-secret ---------------------------------------------------------------------------------
def test_rotated_secret_replaces_the_old_one(app, client, relying_party, enrolled_phone, db_state):
    old = relying_party.client_secret
    with app.app_context():
        new = rotate_client_secret(relying_party.client_id, os_user="erika")
        stored = db.session.get(Client, relying_party.client_id)
        assert new != old and new not in (stored.client_secret_hash or "")
        assert stored.check_client_secret(new)
    (event,) = _events(app, "client_secret_rotated")
    assert new not in str(event.data) and old not in str(event.data)
    code = relying_party.approved_code(client, enrolled_phone)
    before = db_state()
    refused = relying_party.exchange(client, code)  # still the old secret
    assert refused.status_code == 401 and refused.json["error"] == "invalid_client"
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}
    relying_party.client_secret = new
    assert relying_party.exchange(client, code).status_code == 200


def test_rejects_rotating_the_secret_of_a_private_key_jwt_client(app, jwt_client, db_state):
    before = db_state()
    with app.app_context(), pytest.raises(IdServerError) as refused:
        rotate_client_secret(jwt_client.client_id)
    assert refused.value.error == "invalid_client_metadata"
    assert db_state() == before


# -- delete ---------------------------------------------------------------------------------------
def test_delete_keeps_consent_records_and_audit(
    app, client, relying_party, enrolled_phone, citizen, db_state
):
    tokens = complete_login(client, relying_party, enrolled_phone)
    with app.app_context():
        withdraw_consent(citizen.id, relying_party.client_id)
    complete_login(client, relying_party, enrolled_phone)
    with app.app_context():
        audit_before = db.session.scalar(select(func.count()).select_from(AuditEvent))
        deleted = delete_client(relying_party.client_id, os_user="erika")
        assert deleted.status == "deleted" and deleted.client_secret_hash is None
        assert db.session.scalar(select(func.count()).select_from(Token)) == 2
        assert db.session.scalar(select(func.count()).select_from(ConsentWithdrawal)) == 1
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == (audit_before + 1)
        # the citizen still sees what the service received
        assert [s.client_id for s in list_services(citizen.id)] == [relying_party.client_id]
        assert verify_chain() == []
    (event,) = _events(app, "client_deleted")
    assert event.actor == "operator" and event.data["tokens_revoked"] == 1
    before = db_state()
    assert client.get("/userinfo", headers=_bearer(tokens)).status_code == 401
    authorize = client.get("/authorize?" + urlencode(relying_party.authorize_params()))
    assert authorize.status_code == 400 and "Location" not in authorize.headers
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}


@pytest.mark.parametrize(
    "change",
    [
        lambda cid: update_client(cid, name="Neu"),
        lambda cid: disable_client(cid),
        lambda cid: enable_client(cid),
        lambda cid: rotate_client_secret(cid),
        lambda cid: delete_client(cid),
    ],
    ids=["update", "disable", "enable", "rotate-secret", "delete"],
)
def test_rejects_changes_to_a_deleted_client(app, relying_party, db_state, change):
    with app.app_context():
        delete_client(relying_party.client_id)
    before = db_state()
    with app.app_context(), pytest.raises(IdServerError) as refused:
        change(relying_party.client_id)
    assert refused.value.error == "unknown_client"
    assert db_state() == before


def test_generated_client_ids_can_be_given_to_the_cli(app, runner):
    """A generated id never begins with "-", which the command line would read as an option."""
    with app.app_context():
        ids = [
            register_client(name=f"Dienst {n}", redirect_uris=[RP_REDIRECT])[0].client_id
            for n in range(64)
        ]
    assert all(re.fullmatch(r"[0-9a-f]{32}", client_id) for client_id in ids)
    shown = runner.invoke(args=["client", "show", ids[0]])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["client_id"] == ids[0]
