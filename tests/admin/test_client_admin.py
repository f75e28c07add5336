"""Relying parties in the clerk console: only administrators, every change audited."""

from __future__ import annotations

import re

import pytest
from clerk_session import CSRF_FIELD
from clerk_session import add_clerk
from clerk_session import run_cli
from clerk_session import sign_in_clerk
from harness import complete_login
from sqlalchemy import select

from idserver.audit.models import AuditEvent
from idserver.clerks.models import Clerk
from idserver.db import db
from idserver.oidc.models import Client
from idserver.oidc.models import Token
from idserver.oidc.models import hash_secret

SECRET = re.compile(r'<code class="client-secret">([^<]+)</code>')


def _csrf(clerk, client_id):
    """The form token, read from the service's page as a browser would."""
    page = clerk.browser.get(f"/admin/clients/{client_id}")
    assert page.status_code == 200
    return CSRF_FIELD.search(page.get_data(as_text=True)).group(1)


def _post(clerk, path, data=None):
    client_id = path.split("/")[3]  # /admin/clients/<client_id>/…
    return clerk.browser.post(path, data={**(data or {}), "csrf_token": _csrf(clerk, client_id)})


def _events(app, name):
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def _client(app, client_id):
    with app.app_context():
        return db.session.get(Client, client_id)


def test_clerk_set_role_makes_an_administrator(app, runner):
    added = add_clerk(runner)
    code, changed = run_cli(runner, "clerk", "set-role", added["id"], "admin")
    assert code == 0 and changed["role"] == "admin"
    (event,) = _events(app, "clerk_role_changed")
    assert event.data["role"] == "admin" and event.data["previous_role"] == "clerk"
    code, _ = run_cli(runner, "clerk", "set-role", added["id"], "admin")
    assert code == 0
    assert len(_events(app, "clerk_role_changed")) == 1  # the same role again changes nothing


def test_an_administrator_lists_and_shows_services(app, runner, tmp_path, relying_party):
    admin = sign_in_clerk(app, runner, tmp_path, role="admin")
    start = admin.browser.get("/admin")
    assert start.status_code == 303 and start.headers["Location"].endswith("/admin/clients")
    listing = admin.browser.get("/admin/clients").get_data(as_text=True)
    assert relying_party.client_id in listing and "Bewohnerparkausweis" in listing
    page = admin.browser.get(f"/admin/clients/{relying_party.client_id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert relying_party.redirect_uri in text
    assert "client-secret" not in text


def test_an_administrator_changes_the_addresses(app, runner, tmp_path, relying_party):
    admin = sign_in_clerk(app, runner, tmp_path, role="admin")
    changed = _post(
        admin,
        f"/admin/clients/{relying_party.client_id}/addresses",
        {
            "redirect_uris": "https://parken.example/cb\r\nhttps://parken.example/cb2\r\n",
            "post_logout_redirect_uris": "https://parken.example/\n",
        },
    )
    assert changed.status_code == 303
    registered = _client(app, relying_party.client_id)
    assert registered.redirect_uris == ["https://parken.example/cb", "https://parken.example/cb2"]
    assert registered.post_logout_redirect_uris == ["https://parken.example/"]
    (event,) = _events(app, "client_updated")
    assert event.actor == admin.actor
    assert event.data["changed"] == ["post_logout_redirect_uris", "redirect_uris"]


@pytest.mark.parametrize(
    "redirect_uris",
    ["", "http://parken.example/cb", "https://parken.example/*", "https://parken.example/#x"],
)
def test_rejects_unsafe_addresses_and_stores_nothing(
    app, runner, tmp_path, relying_party, db_state, redirect_uris
):
    admin = sign_in_clerk(app, runner, tmp_path, role="admin")
    token = _csrf(admin, relying_party.client_id)
    before = db_state()
    refused = admin.browser.post(
        f"/admin/clients/{relying_party.client_id}/addresses",
        data={"redirect_uris": redirect_uris, "csrf_token": token},
    )
    assert refused.status_code == 400
    assert "cannot be saved" in refused.get_data(as_text=True)
    assert db_state() == before


def test_an_administrator_disables_and_enables_a_service(
    app, runner, tmp_path, client, relying_party, enrolled_phone
):
    complete_login(client, relying_party, enrolled_phone)
    admin = sign_in_clerk(app, runner, tmp_path, role="admin")
    assert _post(admin, f"/admin/clients/{relying_party.client_id}/disable").status_code == 303
    assert _client(app, relying_party.client_id).status == "disabled"
    with app.app_context():
        tokens = db.session.scalars(
            select(Token).where(Token.client_id == relying_party.client_id)
        ).all()
        assert tokens and all(token.revoked_at is not None for token in tokens)
    assert _post(admin, f"/admin/clients/{relying_party.client_id}/enable").status_code == 303
    assert _client(app, relying_party.client_id).status == "active"
    assert [e.actor for e in _events(app, "client_disabled")] == [admin.actor]
    assert [e.actor for e in _events(app, "client_enabled")] == [admin.actor]


def test_a_rotated_secret_is_shown_once_and_replaces_the_old(app, runner, tmp_path, relying_party):
    admin = sign_in_clerk(app, runner, tmp_path, role="admin")
    path = f"/admin/clients/{relying_party.client_id}/rotate-secret"
    unconfirmed = _post(admin, path)
    assert unconfirmed.status_code == 303
    assert _client(app, relying_party.client_id).client_secret_hash == hash_secret(
        relying_party.client_secret
    )
    shown = _post(admin, path, {"confirm": "yes"})
    assert shown.status_code == 200
    assert shown.headers["Cache-Control"] == "no-store"
    secret = SECRET.search(shown.get_data(as_text=True)).group(1)
    assert _client(app, relying_party.client_id).client_secret_hash == hash_secret(secret)
    page = admin.browser.get(f"/admin/clients/{relying_party.client_id}").get_data(as_text=True)
    assert secret not in page
    (event,) = _events(app, "client_secret_rotated")
    assert event.actor == admin.actor and secret not in str(event.data)


def test_delete_keeps_consent_records_and_audit(
    app, runner, tmp_path, client, relying_party, enrolled_phone
):
    complete_login(client, relying_party, enrolled_phone)
    with app.app_context():
        tokens_before = db.session.scalars(
            select(Token.id).where(Token.client_id == relying_party.client_id)
        ).all()
        events_before = len(db.session.scalars(select(AuditEvent)).all())
    admin = sign_in_clerk(app, runner, tmp_path, role="admin")
    path = f"/admin/clients/{relying_party.client_id}/delete"
    assert _post(admin, path).status_code == 303  # unconfirmed: nothing happens
    assert _client(app, relying_party.client_id).status == "active"
    assert _post(admin, path, {"confirm": "yes"}).status_code == 303
    registered = _client(app, relying_party.client_id)
    assert registered is not None and registered.status == "deleted"
    with app.app_context():
        assert (
            db.session.scalars(
                select(Token.id).where(Token.client_id == relying_party.client_id)
            ).all()
            == tokens_before
        )
        assert len(db.session.scalars(select(AuditEvent)).all()) > events_before
    (event,) = _events(app, "client_deleted")
    assert event.actor == admin.actor
    listing = admin.browser.get("/admin/clients").get_data(as_text=True)
    assert relying_party.client_id in listing and "deleted" in listing


@pytest.mark.parametrize("role", ["clerk", "supervisor"])
@pytest.mark.parametrize(
    "method, action",
    [
        ("get", ""),
        ("get", "/{id}"),
        ("post", "/{id}/addresses"),
        ("post", "/{id}/disable"),
        ("post", "/{id}/enable"),
        ("post", "/{id}/rotate-secret"),
        ("post", "/{id}/delete"),
    ],
)
def test_rejects_a_clerk_who_is_no_administrator(
    app, runner, tmp_path, relying_party, db_state, role, method, action
):
    clerk = sign_in_clerk(app, runner, tmp_path, role=role)
    token = clerk.csrf()
    assert "/admin/clients" not in clerk.browser.get("/admin").get_data(as_text=True)
    path = "/admin/clients" + action.format(id=relying_party.client_id)
    data = {
        "csrf_token": token,
        "confirm": "yes",
        "redirect_uris": "https://evil.example/cb",
    }
    before = db_state()
    refused = clerk.browser.get(path) if method == "get" else clerk.browser.post(path, data=data)
    assert refused.status_code == 403 and "not_allowed" in refused.get_data(as_text=True)
    assert db_state() == before


def test_rejects_forged_client_admin_forms(app, runner, tmp_path, relying_party, db_state):
    admin = sign_in_clerk(app, runner, tmp_path, role="admin")
    before = db_state()
    for action in ("disable", "delete", "rotate-secret", "addresses"):
        forged = admin.browser.post(
            f"/admin/clients/{relying_party.client_id}/{action}",
            data={"confirm": "yes", "redirect_uris": "https://evil.example/cb"},
        )
        assert forged.status_code == 403
    assert db_state() == before


def test_the_console_speaks_german_to_an_administrator(app, runner, tmp_path, relying_party):
    admin = sign_in_clerk(app, runner, tmp_path, role="admin")
    admin.browser.environ_base["HTTP_ACCEPT_LANGUAGE"] = "de"
    text = admin.browser.get(f"/admin/clients/{relying_party.client_id}").get_data(as_text=True)
    assert "Dienst deaktivieren" in text and "Administrator/in" in text


def test_an_administrator_role_cannot_be_stored_for_an_unknown_clerk(app, runner):
    code, _ = run_cli(runner, "clerk", "set-role", "no-such-clerk", "admin")
    assert code != 0
    with app.app_context():
        assert db.session.scalars(select(Clerk)).all() == []
