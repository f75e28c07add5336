"""RP-initiated logout ends the Bürger-ID session and returns only to registered URIs."""

from __future__ import annotations

from urllib.parse import urlencode

from harness import complete_login
from sqlalchemy import select

from idserver.account.models import BrowserSession
from idserver.db import db
from idserver.oidc.models import Client


def _sessions(app):
    with app.app_context():
        return db.session.scalars(select(BrowserSession)).all()


def test_login_starts_a_session_and_logout_ends_it(app, client, relying_party, enrolled_phone):
    with app.app_context():
        stored = db.session.get(Client, relying_party.client_id)
        stored.post_logout_redirect_uris = ["http://localhost:8001/goodbye"]
        db.session.commit()
    tokens = complete_login(client, relying_party, enrolled_phone)
    (session,) = _sessions(app)
    assert session.ended_at is None and session.acr.endswith("phone-number-matching")
    response = client.get(
        "/logout?"
        + urlencode(
            {
                "id_token_hint": tokens["id_token"],
                "post_logout_redirect_uri": "http://localhost:8001/goodbye",
                "state": "bye",
            }
        )
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "http://localhost:8001/goodbye?state=bye"
    (session,) = _sessions(app)
    assert session.ended_at is not None


def test_rejects_unregistered_post_logout_redirect(app, client, relying_party, enrolled_phone):
    tokens = complete_login(client, relying_party, enrolled_phone)
    response = client.get(
        "/logout?"
        + urlencode(
            {
                "id_token_hint": tokens["id_token"],
                "post_logout_redirect_uri": "https://evil.example/",
            }
        )
    )
    assert response.status_code == 200  # logged out, but no redirect to an unregistered URI
    assert "Location" not in response.headers


def test_rejects_forged_id_token_hint(client, db_state):
    before = db_state()
    response = client.get("/logout?id_token_hint=eyJhbGciOiJub25lIn0.e30.")
    assert response.status_code == 400
    assert db_state() == before
