"""Replacing the revocation codes on the account page: the old codes die, and only a citizen who
has just logged in (not a stolen phone's open session) may replace them."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest
from harness import ISSUER
from harness import changed_tables
from sqlalchemy import select
from sqlalchemy import update

from idserver.account.views import FRESH_LOGIN
from idserver.citizens.models import RevocationCode
from idserver.db import db
from idserver.passkeys.models import Credential
from idserver.sessions import BrowserSession

sys.path.insert(0, str(Path(__file__).parents[1] / "account"))
from account_browser import CitizenBrowser  # noqa: E402
from account_browser import csrf_token  # noqa: E402

PAGE = "/account/revocation-codes"


@pytest.fixture
def browser(client, enrolled_phone):
    browser = CitizenBrowser(client)
    browser.log_in(enrolled_phone)
    return browser


def _valid_codes(app):
    with app.app_context():
        return db.session.scalars(
            select(RevocationCode.id).where(RevocationCode.used_at.is_(None))
        ).all()


def _age_login(app, by):
    with app.app_context():
        db.session.execute(update(BrowserSession).values(created_at=dt.datetime.now(dt.UTC) - by))
        db.session.commit()


def test_rejects_revocation_code_replaced_by_the_citizen(app, browser, enrolled_phone, db_state):
    token = csrf_token(browser.client, PAGE)
    assert browser.client.post(PAGE, data={"csrf_token": token}).status_code == 200
    before = db_state()
    finder = app.test_client()  # whoever finds the old paper code
    refused = finder.post(
        "/lost", data={"csrf_token": csrf_token(finder), "code": enrolled_phone.revocation_code}
    )
    assert (refused.status_code, refused.headers["Location"]) == (303, f"{ISSUER}/lost")
    # only the per-address attempt counter moves; every device and session stays
    assert changed_tables(before, db_state()) - {"rate_limit_counters"} == set()
    with app.app_context():
        assert not any(c.revoked_at for c in db.session.scalars(select(Credential)))
    assert browser.client.get("/account").status_code == 200


@pytest.mark.parametrize("method", ["get", "post"])
def test_rejects_replacing_revocation_codes_without_a_fresh_login(
    app, browser, enrolled_phone, db_state, method
):
    token = csrf_token(browser.client, PAGE)  # taken while the login was fresh
    _age_login(app, FRESH_LOGIN + dt.timedelta(seconds=5))
    valid = _valid_codes(app)
    before = db_state()
    if method == "post":
        refused = browser.client.post(PAGE, data={"csrf_token": token})
        assert (refused.status_code, refused.headers["Location"]) == (303, ISSUER + PAGE)
        assert 'id="revocation-code"' not in refused.get_data(as_text=True)
        assert db_state() == before
    # the page asks for a new login (a QR login returning here), and nothing else happens
    asked = browser.client.get(PAGE)
    assert asked.status_code == 303 and asked.headers["Location"].startswith(f"{ISSUER}/login/")
    assert changed_tables(before, db_state()) == {"login_transactions", "rate_limit_counters"}
    assert _valid_codes(app) == valid
    # the citizen logs in again with the phone (user verification) and may replace the codes
    browser.log_in(enrolled_phone, next_page=PAGE)
    token = csrf_token(browser.client, PAGE)
    assert browser.client.post(PAGE, data={"csrf_token": token}).status_code == 200
    assert len(_valid_codes(app)) == 1 and _valid_codes(app) != valid


def test_rejects_replacing_revocation_codes_without_csrf_token(app, browser, db_state):
    csrf_token(browser.client, PAGE)
    before = db_state()
    for form in ({}, {"csrf_token": "forged"}):
        refused = browser.client.post(PAGE, data=form)
        assert refused.status_code == 403
        assert 'id="revocation-code"' not in refused.get_data(as_text=True)
    # a real token, but sent by another site
    real = {"csrf_token": csrf_token(browser.client, PAGE)}
    cross = browser.client.post(PAGE, data=real, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert db_state() == before
