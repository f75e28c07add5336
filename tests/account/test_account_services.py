"""The services a citizen logged in to, and withdrawing consent from one of them."""

from __future__ import annotations

import shutil

import pytest
from account_browser import CitizenBrowser
from harness import ISSUER
from harness import changed_tables
from harness import complete_login
from page import html_of
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
    response = browser.post_form(
        f"/account/services/{relying_party.client_id}/withdraw", {"confirm": "yes"}
    )
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


def test_withdrawal_asks_first_and_only_the_confirmed_form_withdraws(
    app, client, browser, relying_party, enrolled_phone, db_state
):
    complete_login(client, relying_party, enrolled_phone, scope="openid address")
    withdraw = f"/account/services/{relying_party.client_id}/withdraw"
    overview = html_of(browser.client.get("/account"))
    # the account page links to the question; it has no button that withdraws at once
    assert [a for a in overview.find("a") if a.attrs.get("href") == ISSUER + withdraw]
    assert not overview.find("form", action=ISSUER + withdraw)

    before = db_state()
    asked = browser.client.get(withdraw)
    assert asked.status_code == 200
    page = html_of(asked)
    (heading,) = page.find("h1")
    assert "Bewohnerparkausweis" in heading.words
    assert "your registered address" in asked.get_data(as_text=True)  # what it received
    (form,) = page.find("form", action=ISSUER + withdraw, method="post")
    fields = {e.attrs.get("name"): e.attrs.get("value") for e in page.find("input")}
    assert fields["confirm"] == "yes"
    assert fields["csrf_token"]
    assert [b for b in page.find("button", type="submit") if "withdraw" in b.words.lower()]
    assert db_state() == before  # asking changes nothing

    # a post without the confirmation is sent to the question, and changes nothing
    unconfirmed = browser.post_form(withdraw)
    assert unconfirmed.status_code == 303
    assert unconfirmed.headers["Location"] == ISSUER + withdraw
    assert db_state() == before
    assert all(token.revoked_at is None for token in _tokens(app))

    confirmed = browser.post_form(withdraw, {"confirm": "yes"})
    assert confirmed.status_code == 303
    assert changed_tables(before, db_state()) == {"tokens", "consent_withdrawals", "audit_events"}
    page = html_of(browser.client.get(confirmed.headers["Location"]))
    (message,) = [p for p in page.find("p", role="status") if "Done." in p.words]
    assert any(p.attrs.get("id") == "services" for p in message.parents)
    assert browser.client.get(withdraw).status_code == 404  # nothing left to withdraw


def test_rejects_confirmed_withdrawal_without_csrf_token(
    app, client, browser, relying_party, enrolled_phone, db_state
):
    complete_login(client, relying_party, enrolled_phone)
    before = db_state()
    response = browser.client.post(
        f"/account/services/{relying_party.client_id}/withdraw", data={"confirm": "yes"}
    )
    assert response.status_code == 403
    assert db_state() == before


# -- SAML services ------------------------------------------------------------------------------
def _inside(page, tag, ancestor):
    return [e for e in page.find(tag) if any(p is ancestor for p in e.parents)]


def _within(element, ancestor):
    """``element`` is inside ``ancestor`` and is the list item of one service (has a heading)."""
    return (
        any(p is ancestor for p in element.parents)
        and element.parents[-1].attrs.get("class") == "service-list"
    )


def _saml_login(app, client, enrolled_phone, tmp_path):
    """A QR login at a pysaml2 SP ("Hundesteuer" in its metadata) asking for the first name."""
    from harness import desktop_status
    from saml_sp import SamlServiceProvider
    from saml_sp import posted_fields

    from idserver.saml import add_service_provider

    sp = SamlServiceProvider(
        tmp_path, client.get("/saml/metadata").get_data(as_text=True), requested=("givenName",)
    )
    with app.app_context():
        registered = add_service_provider(sp.metadata(), source="test")
    started = client.get(sp.redirect_request(f"{ISSUER}/saml/metadata"))
    login_id = started.headers["Location"].rsplit("/", 1)[-1]
    status = desktop_status(client, login_id).json
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 200
    answer = client.get(desktop_status(client, login_id).json["continue_url"])
    assert sp.read_response(posted_fields(answer.get_data(as_text=True))["SAMLResponse"])
    return registered.id


@pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is missing")
@pytest.mark.parametrize(
    ("language", "last_login", "received", "nothing_to_withdraw"),
    [
        ("en", "Last login:", "your first name", "keeps no permission for it"),
        ("de", "Letzte Anmeldung:", "Ihr Vorname", "verwahrt dafür keine Einwilligung"),
    ],
)
def test_lists_saml_services_with_the_attributes_they_received(
    app, client, enrolled_phone, tmp_path, language, last_login, received, nothing_to_withdraw
):
    sp_id = _saml_login(app, client, enrolled_phone, tmp_path)
    client.set_cookie("lang", language)
    page = html_of(client.get("/account"))
    (item,) = [li for li in page.find("li") if _within(li, page.by_id("services"))]
    assert _inside(page, "h3", item)[0].words == "Hundesteuer"  # OrganizationDisplayName
    assert last_login in item.words and received in item.words
    assert nothing_to_withdraw in item.words
    assert _inside(page, "time", item)[0].attrs["datetime"]
    assert not [a for a in _inside(page, "a", item) if a.attrs["href"].endswith("/withdraw")]
    # there is no consent to withdraw: the OIDC withdrawal page does not know the SP
    assert client.get(f"/account/services/{sp_id}/withdraw").status_code == 404


@pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is missing")
def test_oidc_and_saml_services_are_listed_together_latest_first(
    app, client, relying_party, enrolled_phone, tmp_path
):
    complete_login(client, relying_party, enrolled_phone, scope="openid address")
    _saml_login(app, client, enrolled_phone, tmp_path)
    page = html_of(client.get("/account"))
    names = [h.words for h in _inside(page, "h3", page.by_id("services"))]
    assert names == ["Hundesteuer", "Bewohnerparkausweis"]
