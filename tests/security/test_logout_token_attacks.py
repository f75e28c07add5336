"""Attacks on logout everywhere: forged or misdirected logout tokens at the demo portal's
back-channel endpoint (Back-Channel Logout 1.0 §2.6), and a logout request for someone else's
session at Bürger-ID. Every refusal checks that nothing changed."""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import urlencode

import pytest
from harness import complete_login
from harness import snapshot
from joserfc import jwt
from joserfc.jwk import ECKey
from portals import portal_snapshot
from sqlalchemy import select

from demo_portal import sessions as portal_sessions
from demo_portal.db import db as portal_db
from idserver.db import db
from idserver.keys import ID_TOKEN
from idserver.keys import key_store
from idserver.oidc.clients import update_client
from idserver.oidc.logout import BACKCHANNEL_LOGOUT_EVENT
from idserver.oidc.models import LogoutDelivery
from idserver.sessions import BrowserSession


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _signed_in(browser, portal) -> bool:
    return browser.page(portal, "/about").status == 200


def _login(portal):
    with portal.app_context():
        table = portal_sessions.logins_table(portal.config["PORTAL"].metadata)
        (row,) = portal_db.session.execute(select(table)).all()
        return row


def _claims(idp, portal, login, **changes):
    now = int(time.time())
    claims = {
        "iss": idp.issuer,
        "aud": portal.config["CLIENT_ID"],
        "iat": now,
        "exp": now + 120,
        "jti": "jti-1",
        "sid": login.idp_sid,
        "sub": login.sub,
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(idp, claims, *, typ="logout+jwt", key=None):
    with idp.app.app_context():
        signing = key or key_store().signing_key(ID_TOKEN, "ES256")
        header = {"alg": "ES256", "kid": signing.kid or "x", "typ": typ}
        return jwt.encode(header, claims, signing)


def _unsigned(claims):
    return f"{_b64({'alg': 'none', 'typ': 'logout+jwt'})}.{_b64(claims)}."


BAD_TOKENS = {
    "unsigned": lambda idp, p, login: _unsigned(_claims(idp, p, login)),
    "foreign_key": lambda idp, p, login: _sign(
        idp, _claims(idp, p, login), key=ECKey.generate_key("P-256", parameters={"kid": "evil"})
    ),
    "wrong_audience": lambda idp, p, login: _sign(idp, _claims(idp, p, login, aud="other-rp")),
    "wrong_issuer": lambda idp, p, login: _sign(
        idp, _claims(idp, p, login, iss="https://evil.example")
    ),
    "expired": lambda idp, p, login: _sign(
        idp, _claims(idp, p, login, iat=int(time.time()) - 400, exp=int(time.time()) - 200)
    ),
    "issued_long_ago": lambda idp, p, login: _sign(
        idp, _claims(idp, p, login, iat=int(time.time()) - 3600, exp=int(time.time()) + 60)
    ),
    "with_nonce": lambda idp, p, login: _sign(idp, _claims(idp, p, login, nonce="n")),
    "missing_events": lambda idp, p, login: _sign(idp, _claims(idp, p, login, events=None)),
    "other_event": lambda idp, p, login: _sign(
        idp, _claims(idp, p, login, events={"http://schemas.openid.net/event/other": {}})
    ),
    "neither_sid_nor_sub": lambda idp, p, login: _sign(
        idp, _claims(idp, p, login, sid=None, sub=None)
    ),
    "missing_jti": lambda idp, p, login: _sign(idp, _claims(idp, p, login, jti=None)),
    "id_token_type": lambda idp, p, login: _sign(idp, _claims(idp, p, login), typ="JWT"),
    "empty": lambda idp, p, login: "",
}


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
def test_portal_rejects_bad_logout_tokens(idp, browser, parking, erika, kind):
    browser.sign_in(parking, erika.phone)
    token = BAD_TOKENS[kind](idp, parking, _login(parking))
    before = portal_snapshot(parking), snapshot(idp.app)
    with parking.test_client() as rp:
        answer = rp.post("/backchannel-logout", data={"logout_token": token})
    assert answer.status_code == 400
    assert answer.json["error"] == "invalid_request"
    assert answer.headers["Cache-Control"] == "no-store"
    assert (portal_snapshot(parking), snapshot(idp.app)) == before
    assert _signed_in(browser, parking)


def test_portal_rejects_an_id_token_posted_as_a_logout_token(idp, browser, parking, erika):
    """An ID token is signed by the same key, but has a nonce, no events and typ JWT."""
    browser.sign_in(parking, erika.phone)

    client = browser.open(parking)
    with client.session_transaction() as cookie:
        id_token = cookie["resident"]["id_token"]
    before = portal_snapshot(parking)
    answer = client.post("/backchannel-logout", data={"logout_token": id_token})
    assert answer.status_code == 400
    assert portal_snapshot(parking) == before
    assert _signed_in(browser, parking)


def test_logout_request_with_anothers_id_token_ends_only_the_own_session(
    app, client, relying_party, enrolled_phone, db_state
):
    """RP-initiated logout ends the session of the browser that asks, whatever hint it sends:
    presenting the victim's ID token from another browser changes nothing of the victim's."""
    with app.app_context():
        update_client(relying_party.client_id, backchannel_logout_uri="http://127.0.0.1:9/bcl")
    tokens = complete_login(client, relying_party, enrolled_phone)
    attacker = app.test_client()
    before = db_state()
    answer = attacker.get("/logout?" + urlencode({"id_token_hint": tokens["id_token"]}))
    assert answer.status_code == 200
    assert db_state() == before
    with app.app_context():
        (session,) = db.session.scalars(select(BrowserSession)).all()
        assert session.ended_at is None
        assert db.session.scalars(select(LogoutDelivery)).all() == []
    userinfo = client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert userinfo.status_code == 200
