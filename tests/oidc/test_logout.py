"""RP-initiated logout ends the Bürger-ID session and returns only to registered URIs."""

from __future__ import annotations

from urllib.parse import urlencode

from harness import complete_login
from joserfc import jws
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from idserver.db import db
from idserver.oidc.models import Client
from idserver.sessions import BrowserSession


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


def _register_goodbye(app, relying_party):
    with app.app_context():
        stored = db.session.get(Client, relying_party.client_id)
        stored.post_logout_redirect_uris = ["http://localhost:8001/goodbye"]
        db.session.commit()


def test_logout_with_a_hint_signed_by_a_retired_key_ends_the_session(
    app, client, runner, relying_party, enrolled_phone
):
    # Retired keys leave the JWKS but are kept to verify hints: the citizen is logged out and
    # sent back, not shown "No key for kid" while the session lives on.
    _register_goodbye(app, relying_party)
    old_token = complete_login(client, relying_party, enrolled_phone)["id_token"]
    old_kid = jws.extract_compact(old_token.encode()).headers()["kid"]
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    assert runner.invoke(args=["keys", "retire", old_kid]).exit_code == 0
    assert old_kid not in {key["kid"] for key in client.get("/jwks.json").json["keys"]}
    response = client.get(
        "/logout?"
        + urlencode(
            {
                "id_token_hint": old_token,
                "post_logout_redirect_uri": "http://localhost:8001/goodbye",
                "state": "bye",
            }
        )
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "http://localhost:8001/goodbye?state=bye"
    (session,) = _sessions(app)
    assert session.ended_at is not None


def test_logout_with_a_hint_we_cannot_verify_ends_the_session_without_redirect(
    app, client, relying_party, enrolled_phone, rp_key
):
    # A hint signed by a key that is not ours: no redirect (RP-Initiated Logout 1.0 §4), and
    # a clear page; the browser's own session ends, as it would with no hint at all.
    _register_goodbye(app, relying_party)
    tokens = complete_login(client, relying_party, enrolled_phone)
    claims = jwt.decode(tokens["id_token"], KeySet.import_key_set(client.get("/jwks.json").json))
    forged = jwt.encode({"alg": "ES256", "kid": "rp-1"}, claims.claims, rp_key)
    assert client.get("/account").status_code == 200
    response = client.get(
        "/logout?"
        + urlencode(
            {"id_token_hint": forged, "post_logout_redirect_uri": "http://localhost:8001/goodbye"}
        )
    )
    assert response.status_code == 400
    assert "Location" not in response.headers
    page = response.get_data(as_text=True)
    assert "Sie sind von Bürger-ID abgemeldet" in page and "No key for kid" not in page
    (session,) = _sessions(app)
    assert session.ended_at is not None
    assert client.get("/account").status_code != 200
