"""The account page's revocation codes: how many work, and replacing them all with one."""

from __future__ import annotations

import hashlib

import pytest
from account_browser import CitizenBrowser
from account_browser import NewDevice
from account_browser import csrf_token
from harness import ISSUER
from harness import Phone
from harness import changed_tables
from sqlalchemy import select

from idserver.audit.models import AuditEvent
from idserver.citizens.models import RevocationCode
from idserver.citizens.service import normalise_code
from idserver.db import db
from idserver.passkeys.models import Credential
from idserver.phone.authenticator import SoftAuthenticator

PAGE = "/account/revocation-codes"


@pytest.fixture
def browser(client, enrolled_phone):
    browser = CitizenBrowser(client)
    browser.log_in(enrolled_phone)
    return browser


def _add_device(app, browser, enrolled_phone, tmp_path):
    """A second device through a pairing: it hands out a second revocation code."""
    device = NewDevice(Phone(app.test_client(), SoftAuthenticator(path=tmp_path / "tablet.json")))
    pairing_id = browser.start_pairing()
    assert device.claim(pairing_id).status_code == 303
    number = device.shown_number(pairing_id)
    assert browser.approve_pairing(pairing_id, number, enrolled_phone).status_code == 200
    assert device.enrol(pairing_id).status_code == 201
    return device


def _codes(app):
    with app.app_context():
        return db.session.scalars(select(RevocationCode).order_by(RevocationCode.created_at)).all()


def _replace(browser):
    return browser.client.post(PAGE, data={"csrf_token": csrf_token(browser.client, PAGE)})


def test_account_page_counts_the_valid_revocation_codes(
    app, browser, enrolled_phone, tmp_path, client
):
    page = browser.client.get("/account").get_data(as_text=True)
    assert "You have 1 valid revocation code. It blocks all your devices." in page
    _add_device(app, browser, enrolled_phone, tmp_path)
    page = browser.client.get("/account").get_data(as_text=True)
    assert "You have 2 valid revocation codes. Each one blocks all your devices." in page
    assert f'href="{ISSUER}{PAGE}"' in page
    german = browser.client.get("/account", headers={"Accept-Language": "de"})
    assert "Sie haben 2 gültige Sperrcodes. Jeder sperrt alle Ihre Geräte." in german.get_data(
        as_text=True
    )


def test_pages_that_show_a_code_say_it_blocks_all_devices(app, activation, client):
    activation_id, _code = activation
    page = client.get(f"/activate/{activation_id}", headers={"Accept-Language": "en"})
    assert "this code blocks all your devices at once" in page.get_data(as_text=True)
    assert "this code blocks it." not in page.get_data(as_text=True)


def test_replacing_asks_for_confirmation_first(app, browser, enrolled_phone, db_state):
    before = db_state()
    confirm = browser.client.get(PAGE)
    assert confirm.status_code == 200
    assert confirm.headers["Cache-Control"] == "no-store"
    html = confirm.get_data(as_text=True)
    assert "all your old revocation codes stop working at once" in html
    assert "You have 1 valid revocation code." in html
    assert f'action="{ISSUER}{PAGE}"' in html and 'name="csrf_token"' in html
    assert changed_tables(before, db_state()) == set()


def test_new_code_is_shown_once_and_blocks_all_devices_at_lost(
    app, browser, enrolled_phone, tmp_path, citizen
):
    _add_device(app, browser, enrolled_phone, tmp_path)
    old_ids = {code.id for code in _codes(app)}
    assert len(old_ids) == 2

    shown = _replace(browser)
    assert shown.status_code == 200
    assert shown.headers["Cache-Control"] == "no-store"
    html = shown.get_data(as_text=True)
    new_code = html.split('<code id="revocation-code">', 1)[1].split("</code>", 1)[0]
    assert len(normalise_code(new_code)) == 12
    assert "blocks all your devices at once" in html

    codes = _codes(app)
    valid = [code for code in codes if code.used_at is None]
    assert len(codes) == 3 and len(valid) == 1 and valid[0].id not in old_ids
    # only the hash is stored, and the code is in no later page or cookie
    assert valid[0].code_hash == hashlib.sha256(normalise_code(new_code).encode()).hexdigest()
    for page in ("/account", PAGE):
        assert new_code not in browser.client.get(page).get_data(as_text=True)
    assert all(new_code not in cookie.value for cookie in browser.client._cookies.values())
    assert "You have 1 valid revocation code." in browser.client.get("/account").get_data(
        as_text=True
    )
    with app.app_context():
        (event,) = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "revocation_codes_replaced")
        ).all()
    assert event.subject == citizen.id
    assert event.data == {"revocation_code_id": valid[0].id, "codes_replaced": 2}

    # the new code blocks every device, without a login
    stranger = app.test_client()
    lost = stranger.post("/lost", data={"csrf_token": csrf_token(stranger), "code": new_code})
    assert (lost.status_code, lost.headers["Location"]) == (303, f"{ISSUER}/lost/done")
    with app.app_context():
        assert all(c.revoked_at for c in db.session.scalars(select(Credential)))
    assert browser.client.get("/account").status_code == 303


def test_replacing_needs_a_session(app, client, enrolled_phone, db_state):
    before = db_state()
    page = client.get(PAGE)
    assert page.status_code == 303 and "/login/" in page.headers["Location"]
    # only the login starts (and the built-in client for it is created on first use)
    assert changed_tables(before, db_state()) <= {
        "clients",
        "login_transactions",
        "rate_limit_counters",
    }
    assert {code.used_at for code in _codes(app)} == {None}
