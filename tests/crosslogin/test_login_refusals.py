"""Refusals of the QR-code login; each asserts the refusal and that nothing else changed."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from harness import Phone
from harness import changed_tables
from harness import desktop_status
from sqlalchemy import select
from sqlalchemy import update

from idserver.crosslogin import qr
from idserver.crosslogin.models import LoginTransaction
from idserver.db import db
from idserver.passkeys.models import Credential
from idserver.phone.authenticator import SoftAuthenticator


def _login(client, relying_party):
    login_id = relying_party.start_login(client)
    return login_id, desktop_status(client, login_id).json


def _state(app, login_id):
    with app.app_context():
        return db.session.get(LoginTransaction, login_id).state


def test_login_id_has_at_least_128_bits(client, relying_party):
    login_id, _ = _login(client, relying_party)
    assert len(login_id) >= 22  # base64url: 6 bits per character


def test_rejects_wrong_number_and_cancels_on_both_screens(
    app, client, relying_party, enrolled_phone, db_state
):
    login_id, status = _login(client, relying_party)
    _, scanned = enrolled_phone.scan(status["phone_url"])
    wrong = "11" if status["number"] != "11" else "12"
    before = db_state()
    response = enrolled_phone.challenge(login_id, scanned.json["binding"], wrong)
    assert response.status_code == 400
    assert response.json["error"] == "wrong_number"
    # the login is cancelled and that is audited; nothing else changed
    assert changed_tables(before, db_state()) == {"login_transactions", "audit_events"}
    desktop = desktop_status(client, login_id).json
    assert desktop["status"] == "denied" and desktop["reason"] == "wrong_number"
    # the desktop continues to the application with access_denied, once
    redirected = client.get(desktop["continue_url"])
    query = parse_qs(urlsplit(redirected.headers["Location"]).query)
    assert query["error"] == ["access_denied"] and query["state"] == [relying_party.state]
    assert client.get(desktop["continue_url"]).status_code in (400, 404)


def test_rejects_approval_after_wrong_number(app, client, relying_party, enrolled_phone, db_state):
    login_id, status = _login(client, relying_party)
    _, scanned = enrolled_phone.scan(status["phone_url"])
    binding = scanned.json["binding"]
    issued = enrolled_phone.challenge(login_id, binding, status["number"])
    wrong = "11" if status["number"] != "11" else "12"
    enrolled_phone.challenge(login_id, binding, wrong)
    before = db_state()
    credential = enrolled_phone.authenticator.get_assertion(
        issued.json["options"], origin=enrolled_phone.origin
    )
    response = enrolled_phone.client.post(
        f"/api/v1/logins/{login_id}/approve",
        json={"binding": binding, "number": status["number"], "credential": credential},
    )
    assert response.status_code == 400
    assert _state(app, login_id) == "denied"
    assert changed_tables(before, db_state()) == set()


def test_rejects_expired_login_transaction(app, client, relying_party, enrolled_phone, db_state):
    login_id, status = _login(client, relying_party)
    with app.app_context():
        db.session.execute(
            update(LoginTransaction).values(
                expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            )
        )
        db.session.commit()
    _, scanned = enrolled_phone.scan(status["phone_url"])
    assert scanned.status_code == 400
    assert scanned.json["error"] == "login_expired"
    before = db_state()
    assert enrolled_phone.scan(status["phone_url"])[1].status_code == 400
    assert desktop_status(client, login_id).json["status"] == "expired"
    assert db_state() == before


def test_rejects_reused_login_transaction(app, client, relying_party, enrolled_phone, db_state):
    login_id, status = _login(client, relying_party)
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 200
    continue_url = desktop_status(client, login_id).json["continue_url"]
    assert client.get(continue_url).status_code == 303
    before = db_state()
    again = client.get(continue_url)
    # no second code: the back button finds "you are already logged in" (issue 14.1), no redirect
    assert again.status_code == 200 and "Location" not in again.headers
    assert 'id="onward"' in again.get_data(as_text=True)
    assert db_state() == before
    # and the phone cannot approve it once more
    assert enrolled_phone.scan(status["phone_url"])[1].status_code == 400


def test_rejects_assertion_replayed_into_another_login(
    app, client, relying_party, enrolled_phone, db_state
):
    first_id, first = _login(client, relying_party)
    second_browser = app.test_client()
    second_id, second = _login(second_browser, relying_party)
    _, scanned_first = enrolled_phone.scan(first["phone_url"])
    _, scanned_second = enrolled_phone.scan(second["phone_url"])
    issued_first = enrolled_phone.challenge(
        first_id, scanned_first.json["binding"], first["number"]
    )
    enrolled_phone.challenge(second_id, scanned_second.json["binding"], second["number"])
    credential = enrolled_phone.authenticator.get_assertion(
        issued_first.json["options"], origin=enrolled_phone.origin
    )
    before = db_state()
    response = enrolled_phone.client.post(
        f"/api/v1/logins/{second_id}/approve",
        json={
            "binding": scanned_second.json["binding"],
            "number": second["number"],
            "credential": credential,
        },
    )
    assert response.status_code == 400
    assert _state(app, second_id) == "scanned"
    assert _state(app, first_id) == "scanned"
    # only the second login's one-time challenge nonce was burned
    assert changed_tables(before, db_state()) == {"login_transactions"}
    with app.app_context():
        assert db.session.get(LoginTransaction, second_id).citizen_id is None


def test_rejects_unknown_credential(app, client, relying_party, enrolled_phone, tmp_path, db_state):
    stranger = Phone(app.test_client(), SoftAuthenticator(path=tmp_path / "stranger.json"))
    # the stranger holds a key for the same RP ID, but it was never enrolled here
    options = {
        "challenge": "AAAA",
        "rp": {"id": "localhost", "name": "x"},
        "user": {"id": "AAAA", "name": "x", "displayName": "x"},
        "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
    }
    stranger.authenticator.create_credential(options, origin=stranger.origin)
    login_id, status = _login(client, relying_party)
    before = db_state()
    response = stranger.approve(status["phone_url"], status["number"])
    assert response.status_code == 400
    assert response.json["error"] == "unknown_device"
    assert _state(app, login_id) == "scanned"
    assert changed_tables(before, db_state()) == {"login_transactions"}


def test_rejects_revoked_credential(app, client, relying_party, enrolled_phone, db_state):
    with app.app_context():
        db.session.execute(update(Credential).values(revoked_at=dt.datetime.now(dt.UTC)))
        db.session.commit()
    login_id, status = _login(client, relying_party)
    before = db_state()
    response = enrolled_phone.approve(status["phone_url"], status["number"])
    assert response.status_code == 400
    assert response.json["error"] == "unknown_device"
    assert _state(app, login_id) == "scanned"
    with app.app_context():
        assert db.session.scalars(select(Credential)).one().sign_count == 0
    assert changed_tables(before, db_state()) == {"login_transactions"}


def test_rejects_stale_animated_qr_code(app, client, relying_party, enrolled_phone, db_state):
    login_id, _ = _login(client, relying_party)
    with app.app_context():
        tx = db.session.get(LoginTransaction, login_id)
        key = qr.login_key(app.config["SECRET_KEY"], tx.id)
    old_step = qr.current_step(1) - app.config["QR_MAX_AGE_SECONDS"] - 2
    stale_url = qr.frame_url("http://localhost", login_id, key, old_step)
    before = db_state()
    _, response = enrolled_phone.scan(stale_url)
    assert response.status_code == 400
    assert response.json["error"] == "qr_stale"
    assert db_state() == before


def test_rejects_forged_qr_mac(client, relying_party, enrolled_phone, db_state):
    login_id, status = _login(client, relying_party)
    forged = status["phone_url"].rsplit("&h=", 1)[0] + "&h=AAAAAAAAAAAAAAAAAAAAAA"
    before = db_state()
    assert enrolled_phone.scan(forged)[1].json["error"] == "qr_stale"
    assert db_state() == before


def test_rejects_second_phone_scanning_the_same_login(
    app, client, relying_party, enrolled_phone, tmp_path, db_state
):
    _, status = _login(client, relying_party)
    assert enrolled_phone.scan(status["phone_url"])[1].status_code == 200
    other = Phone(app.test_client(), SoftAuthenticator(path=tmp_path / "other.json"))
    before = db_state()
    _, response = other.scan(status["phone_url"])
    assert response.status_code == 400
    assert response.json["error"] == "already_scanned"
    assert db_state() == before


def test_rejects_polling_another_browsers_transaction(app, client, relying_party, db_state):
    login_id, _ = _login(client, relying_party)
    before = db_state()
    intruder = app.test_client()
    assert desktop_status(intruder, login_id).status_code == 404
    assert intruder.get(f"/login/{login_id}").status_code == 404
    assert intruder.get(f"/login/{login_id}/continue").status_code == 404
    assert db_state() == before


def test_rejects_challenge_without_the_phone_binding(
    client, relying_party, enrolled_phone, db_state
):
    login_id, status = _login(client, relying_party)
    enrolled_phone.scan(status["phone_url"])
    before = db_state()
    response = enrolled_phone.challenge(login_id, "not-the-binding", status["number"])
    assert response.status_code == 400
    assert response.json["error"] == "not_bound"
    assert db_state() == before


def test_phone_denies_and_desktop_returns_access_denied(app, client, relying_party, enrolled_phone):
    login_id, status = _login(client, relying_party)
    _, scanned = enrolled_phone.scan(status["phone_url"])
    denied = enrolled_phone.client.post(
        f"/api/v1/logins/{login_id}/deny", json={"binding": scanned.json["binding"]}
    )
    assert denied.status_code == 200
    desktop = desktop_status(client, login_id).json
    assert desktop["status"] == "denied"
    location = client.get(desktop["continue_url"]).headers["Location"]
    assert "error=access_denied" in location


def test_phone_page_shows_client_claims_and_desktop(client, relying_party, enrolled_phone):
    _, status = _login(client, relying_party)
    page = enrolled_phone.client.get(status["phone_url"].replace("http://localhost", ""))
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Bewohnerparkausweis" in html
    # The phone must not give the number away: it may appear only as part of something
    # longer (the desktop's address 127.0.0.1, a base64 login id), never on its own.
    shown = html.split('id="number"')[0].split("<main")[1]
    assert not re.search(rf"(?<![\w.:/-]){status['number']}(?![\w.:/-])", shown)


def test_rejects_number_in_other_scripts_digits(
    app, client, relying_party, enrolled_phone, db_state
):
    login_id, status = _login(client, relying_party)
    _, scanned = enrolled_phone.scan(status["phone_url"])
    before = db_state()
    response = enrolled_phone.challenge(login_id, scanned.json["binding"], "\u0665\u0662")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_number"
    assert db_state() == before
