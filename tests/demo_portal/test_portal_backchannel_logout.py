"""The demo portals take OIDC Back-Channel Logout: Bürger-ID's logout token ends the portal's
sessions of that Bürger-ID session (``sid``) or resident (``sub``), over real HTTP."""

from __future__ import annotations

import threading
import time

import pytest
from portals import MAX
from portals import enrolled_resident
from sqlalchemy import select
from werkzeug.serving import make_server

from demo_portal import sessions as portal_sessions
from demo_portal.db import db as portal_db
from idserver.db import db
from idserver.oidc.claims import pairwise_subject
from idserver.oidc.clients import update_client
from idserver.oidc.logout import BACKCHANNEL_LOGOUT_EVENT
from idserver.oidc.logout import logout_token
from idserver.oidc.models import Client
from idserver.oidc.models import LogoutDelivery


def _signed_in(browser, portal) -> bool:
    return browser.page(portal, "/about").status == 200


def _portal_logins(portal):
    with portal.app_context():
        table = portal_sessions.logins_table(portal.config["PORTAL"].metadata)
        return portal_db.session.execute(select(table)).all()


def _token(idp, portal, *, sid=None, sub=None) -> str:
    """A logout token as Bürger-ID makes it, for ``portal``."""
    with idp.app.app_context():
        client = db.session.get(Client, portal.config["CLIENT_ID"])
        return logout_token(LogoutDelivery(sid=sid, sub=sub), client)


@pytest.fixture
def served_parking(idp, parking):
    """The parking portal on a real socket too, registered as its back-channel logout URI."""
    server = make_server("127.0.0.1", 0, parking, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with idp.app.app_context():
        update_client(
            parking.config["CLIENT_ID"],
            backchannel_logout_uri=f"http://127.0.0.1:{server.server_port}/backchannel-logout",
        )
    yield parking
    server.shutdown()
    thread.join(timeout=10)


def test_logging_out_at_buergerid_signs_the_resident_out_of_the_portal(
    idp, browser, served_parking, erika
):
    browser.sign_in(served_parking, erika.phone)
    assert _signed_in(browser, served_parking)
    answer = browser.get(f"{idp.issuer}/logout")  # at Bürger-ID, not at the portal
    assert answer.status == 200
    with idp.app.app_context():
        (delivery,) = db.session.scalars(select(LogoutDelivery)).all()
        assert delivery.delivered_at is not None, delivery.last_error
    assert not _signed_in(browser, served_parking)
    assert _portal_logins(served_parking) == []


def test_a_logout_token_ends_only_that_sessions_sign_in(
    idp, browser, second_browser, parking, erika, tmp_path
):
    max_ = enrolled_resident(idp, tmp_path, MAX)
    browser.sign_in(parking, erika.phone)
    second_browser.sign_in(parking, max_.phone)
    logins = {row.sub: row.idp_sid for row in _portal_logins(parking)}
    assert len(logins) == 2 and all(logins.values())
    with idp.app.app_context():
        erikas_sub = pairwise_subject(erika.citizen_id, client_id=parking.config["CLIENT_ID"])
    with parking.test_client() as rp:
        answer = rp.post(
            "/backchannel-logout",
            data={"logout_token": _token(idp, parking, sid=logins[erikas_sub], sub=erikas_sub)},
        )
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    assert not _signed_in(browser, parking)
    assert _signed_in(second_browser, parking)


def test_a_logout_token_with_sub_only_ends_every_sign_in_of_the_resident(
    idp, browser, second_browser, parking, erika
):
    browser.sign_in(parking, erika.phone)
    second_browser.sign_in(parking, erika.phone)
    (sub,) = {row.sub for row in _portal_logins(parking)}
    with parking.test_client() as rp:
        answer = rp.post(
            "/backchannel-logout", data={"logout_token": _token(idp, parking, sub=sub)}
        )
    assert answer.status_code == 200
    assert not _signed_in(browser, parking) and not _signed_in(second_browser, parking)


def test_the_logout_token_carries_the_back_channel_event(idp, parking):
    from joserfc import jwt
    from joserfc.jwk import KeySet

    from idserver.keys import key_store

    token = _token(idp, parking, sid="s", sub="u")
    with idp.app.app_context():
        claims = jwt.decode(token, KeySet.import_key_set(key_store().jwks())).claims
    assert claims["events"] == {BACKCHANNEL_LOGOUT_EVENT: {}}
    assert claims["exp"] - claims["iat"] <= 300 and claims["iat"] <= time.time() + 1
