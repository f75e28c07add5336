"""The lost-phone page: the revocation code blocks every device and session, once, no oracle."""

from __future__ import annotations

import re

import pytest
from account_browser import CitizenBrowser
from account_browser import csrf_token
from harness import ISSUER
from harness import changed_tables
from harness import complete_login
from harness import desktop_status
from sqlalchemy import select

from idserver.audit.models import AuditEvent
from idserver.citizens.models import RevocationCode
from idserver.db import db
from idserver.passkeys.models import Credential
from idserver.sessions import BrowserSession


def _submit(client, code):
    return client.post("/lost", data={"csrf_token": csrf_token(client), "code": code})


def _page_after(client, response):
    """The page a refusal leads to, without the per-session CSRF token."""
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    return re.sub(r'value="[^"]+"(?=>\s*<label for="code")', "", html)


def _volatile_free(before, after):
    """Rate-limit counters count every try (right or wrong); everything else must not move."""
    return changed_tables(before, after) - {"rate_limit_counters"}


def test_lost_page_explains_the_code_and_the_citizens_office(client):
    html = client.get("/lost", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert 'label for="code"' in html
    assert "citizens&#39; office" in html or "citizens' office" in html


def test_revocation_code_blocks_all_devices_and_ends_all_sessions(
    app, client, enrolled_phone, citizen, relying_party, db_state
):
    browser = CitizenBrowser(app.test_client())
    browser.log_in(enrolled_phone)
    tokens = complete_login(client, relying_party, enrolled_phone)
    before = db_state()
    stranger = app.test_client()  # whoever holds the code; no login needed
    response = _submit(stranger, enrolled_phone.revocation_code.lower().replace("-", " "))
    assert response.status_code == 303
    assert response.headers["Location"] == f"{ISSUER}/lost/done"
    done = stranger.get("/lost/done", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "All your devices are blocked" in done and "new activation letter" in done
    assert _volatile_free(before, db_state()) == {
        "revocation_codes",
        "credentials",
        "browser_sessions",
        "tokens",
        "audit_events",
    }
    with app.app_context():
        assert all(c.revoked_at for c in db.session.scalars(select(Credential)))
        assert all(s.ended_at for s in db.session.scalars(select(BrowserSession)))
        assert all(r.used_at for r in db.session.scalars(select(RevocationCode)))
        (event,) = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "devices_revoked_with_code")
        ).all()
    assert event.subject == citizen.id
    assert event.data["credentials_revoked"] == 1
    # both browsers are logged out, the relying party's token is dead, the phone cannot log in
    assert browser.client.get("/account").status_code == 303
    assert client.get("/account").status_code == 303
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/userinfo", headers=bearer).status_code == 401
    desktop = app.test_client()
    login_id = relying_party.start_login(desktop)
    status = desktop_status(desktop, login_id).json
    assert enrolled_phone.approve(status["phone_url"], status["number"]).json["error"] == (
        "unknown_device"
    )
    # the done page is shown once, to the browser that used the code
    assert stranger.get("/lost/done").status_code == 303
    assert app.test_client().get("/lost/done").status_code == 303


def test_revocation_code_works_only_once_and_looks_like_a_wrong_code(
    app, client, enrolled_phone, db_state
):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"  # the refusal is read in English below
    assert _submit(client, enrolled_phone.revocation_code).status_code == 303
    before = db_state()
    again = _submit(client, enrolled_phone.revocation_code)
    assert again.status_code == 303
    assert again.headers["Location"] == f"{ISSUER}/lost"
    used_page = _page_after(client, again)
    wrong = _submit(client, "ABCD-EFGH-JKMN")
    assert (wrong.status_code, wrong.headers["Location"]) == (303, f"{ISSUER}/lost")
    assert _volatile_free(before, db_state()) == set()
    # a used code and a code that never existed get the very same page
    assert used_page == _page_after(client, wrong)
    assert "This code did not work" in used_page


@pytest.mark.parametrize("code", ["", "x" * 65, "ABCD-EFGH-JKM", "\u0661" * 12])
def test_rejects_malformed_codes_without_change(app, client, enrolled_phone, db_state, code):
    before = db_state()
    response = _submit(client, code)
    assert (response.status_code, response.headers["Location"]) == (303, f"{ISSUER}/lost")
    assert _volatile_free(before, db_state()) == set()


def test_revocation_attempts_are_rate_limited(app, client, enrolled_phone, db_state):
    app.config["RATE_LIMIT_ACTIVATION"] = "2/minute"
    for _ in range(2):
        assert _submit(client, "ABCD-EFGH-JKMN").status_code == 303
    before = db_state()
    limited = _submit(client, enrolled_phone.revocation_code)
    assert limited.status_code == 429
    assert db_state() == before  # not even the right code gets through


def test_rejects_code_without_csrf_token(client, enrolled_phone, db_state):
    before = db_state()
    response = client.post("/lost", data={"code": enrolled_phone.revocation_code})
    assert response.status_code == 403
    assert db_state() == before
