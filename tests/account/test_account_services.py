"""The services a citizen logged in to, and withdrawing consent from one of them."""

from __future__ import annotations

import pytest
from account_browser import CitizenBrowser
from harness import ISSUER
from harness import changed_tables
from harness import complete_login
from sqlalchemy import select

from idserver.audit.models import AuditEvent
from idserver.db import db
from idserver.oidc.models import Token


@pytest.fixture
def browser(app, enrolled_phone):
    browser = CitizenBrowser(app.test_client())
    browser.log_in(enrolled_phone)
    return browser


def _tokens(app):
    with app.app_context():
        return db.session.scalars(select(Token)).all()


def test_lists_services_with_the_data_they_received(client, relying_party, enrolled_phone, app):
    complete_login(client, relying_party, enrolled_phone, scope="openid address")
    browser = CitizenBrowser(app.test_client())
    html = browser.log_in(enrolled_phone).get_data(as_text=True)
    services = html.split('id="services"')[1]
    assert "Bewohnerparkausweis" in services
    assert "your registered address" in services
    assert "a pseudonym that only this service knows you by" in services
    assert "your first name" not in services  # the profile scope was not asked for
    assert "Last login:" in services


def test_no_services_yet(browser):
    html = browser.client.get("/account").get_data(as_text=True)
    assert "You have not logged in to any service with Bürger-ID yet." in html


def test_withdrawing_consent_revokes_the_services_tokens(
    app, client, browser, relying_party, enrolled_phone, citizen, db_state
):
    tokens = complete_login(client, relying_party, enrolled_phone)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/userinfo", headers=bearer).status_code == 200
    before = db_state()
    response = browser.post_form(f"/account/services/{relying_party.client_id}/withdraw")
    assert response.status_code == 303
    assert response.headers["Location"] == f"{ISSUER}/account#services"
    assert changed_tables(before, db_state()) == {"tokens", "consent_withdrawals", "audit_events"}
    assert all(token.revoked_at is not None for token in _tokens(app))
    assert client.get("/userinfo", headers=bearer).status_code == 401
    with app.app_context():
        (event,) = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "consent_withdrawn")
        ).all()
    assert event.actor == f"citizen:{citizen.id}"
    assert event.data == {"client_id": relying_party.client_id, "tokens_revoked": 1}
    html = browser.client.get("/account").get_data(as_text=True)
    assert "Bewohnerparkausweis" not in html.split('id="services"')[1]

    # logging in there again is a new consent: the service is listed again
    complete_login(app.test_client(), relying_party, enrolled_phone)
    html = browser.client.get("/account").get_data(as_text=True)
    assert "Bewohnerparkausweis" in html.split('id="services"')[1]


def test_rejects_withdrawal_for_a_service_never_used(app, browser, relying_party, db_state):
    before = db_state()
    for client_id in (relying_party.client_id, "buergerid", "no-such-client"):
        response = browser.post_form(f"/account/services/{client_id}/withdraw")
        assert response.status_code == 404
    assert db_state() == before


def test_rejects_withdrawal_without_csrf_token(
    app, client, browser, relying_party, enrolled_phone, db_state
):
    complete_login(client, relying_party, enrolled_phone)
    before = db_state()
    response = browser.client.post(f"/account/services/{relying_party.client_id}/withdraw")
    assert response.status_code == 403
    assert db_state() == before
