"""Attacks on the QR-code login (RFC 10027: Cross-Device Flows, Security BCP).

The attacker's favourite move is to start a login on their own computer and relay its QR code
to a victim (by mail, chat or a fake web page), hoping the victim's phone approves it.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from harness import changed_tables
from harness import desktop_status
from sqlalchemy import select
from sqlalchemy import update

from idserver.account.devices import revoke_device
from idserver.account.devices import revoke_devices_with_code
from idserver.admin.service import revoke_all_devices
from idserver.citizens.models import Citizen
from idserver.clerks import add_clerk
from idserver.crosslogin import qr
from idserver.crosslogin.models import LoginTransaction
from idserver.db import db
from idserver.oidc.models import AuthorizationCode
from idserver.passkeys.models import Credential

from .conftest import scan_login
from .conftest import wrong_number
from .hostile import frame


def _tx(app, login_id):
    with app.app_context():
        return db.session.get(LoginTransaction, login_id, populate_existing=True)


def _sign_count(app):
    with app.app_context():
        return db.session.scalars(select(Credential)).one().sign_count


def test_rejects_relayed_qr_frame_once_it_is_stale(
    app, client, relying_party, enrolled_phone, db_state
):
    # RFC 10027 "Short Lived/Timebound QR or User Codes": a screenshot relayed to a victim is
    # older than QR_MAX_AGE_SECONDS by the time the victim scans it.
    attacker_desktop = client
    login_id = relying_party.start_login(attacker_desktop)
    key = qr.login_key(app.config["SECRET_KEY"], login_id)
    relayed_step = qr.current_step(1) - app.config["QR_MAX_AGE_SECONDS"] - 1
    relayed = qr.frame_url("http://localhost", login_id, key, relayed_step)
    before = db_state()
    _, response = enrolled_phone.scan(relayed)
    assert response.status_code == 400
    assert response.json["error"] == "qr_stale"
    assert _tx(app, login_id).state == "pending"
    assert db_state() == before


def test_relayed_fresh_qr_frame_fails_on_number_matching(
    app, client, relying_party, enrolled_phone, db_state
):
    # Relayed fast enough to be fresh, the victim still does not see the attacker's screen and
    # so cannot know the number; a wrong number cancels the login at once (no second guess).
    attacker = scan_login(client, relying_party, enrolled_phone)
    before = db_state()
    response = attacker.challenge(wrong_number(attacker.number))
    assert response.status_code == 400
    assert response.json["error"] == "wrong_number"
    assert changed_tables(before, db_state()) == {"login_transactions", "audit_events"}
    assert attacker.status()["status"] == "denied"
    assert _sign_count(app) == 0
    with app.app_context():
        assert db.session.scalars(select(AuthorizationCode)).all() == []


def test_rejects_guessing_the_number_a_second_time(scanned, db_state):
    assert scanned.challenge(wrong_number(scanned.number)).status_code == 400
    before = db_state()
    again = scanned.challenge(scanned.number)
    assert again.status_code == 400
    assert again.json["error"] == "login_ended"
    assert db_state() == before


def test_rejects_approval_replayed_after_the_login_was_approved(app, scanned, db_state):
    options = scanned.challenge().json["options"]
    credential = scanned.phone.authenticator.get_assertion(options, origin=scanned.phone.origin)
    assert scanned.approve(credential).status_code == 200
    before = db_state()
    replay = scanned.approve(credential)
    assert replay.status_code == 400
    assert replay.json["error"] == "login_ended"
    assert db_state() == before


def test_rejects_qr_frame_of_a_consumed_login(app, scanned, db_state):
    options = scanned.challenge().json["options"]
    credential = scanned.phone.authenticator.get_assertion(options, origin=scanned.phone.origin)
    assert scanned.approve(credential).status_code == 200
    assert scanned.browser.get(scanned.status()["continue_url"]).status_code == 303
    before = db_state()
    _, rescanned = scanned.phone.scan(scanned.phone_url)
    assert rescanned.status_code == 400
    assert db_state() == before
    assert _tx(app, scanned.login_id).state == "consumed"


def test_rejects_binding_carried_over_from_another_login(
    app, relying_party, enrolled_phone, other_citizen_phone, db_state
):
    victim = scan_login(app.test_client(), relying_party, enrolled_phone)
    own = scan_login(app.test_client(), relying_party, other_citizen_phone)
    before = db_state()
    response = other_citizen_phone.challenge(victim.login_id, own.binding, victim.number)
    assert response.status_code == 400
    assert response.json["error"] == "not_bound"
    assert db_state() == before


def test_rejects_approval_after_the_login_expired(app, scanned, db_state):
    options = scanned.challenge().json["options"]
    credential = scanned.phone.authenticator.get_assertion(options, origin=scanned.phone.origin)
    with app.app_context():
        db.session.execute(
            update(LoginTransaction).values(
                expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            )
        )
        db.session.commit()
    before = db_state()
    response = scanned.approve(credential)
    assert response.status_code == 400
    assert response.json["error"] == "login_expired"
    # the only change: the transaction is now marked expired (and that is audited)
    assert changed_tables(before, db_state()) == {"login_transactions", "audit_events"}
    assert _tx(app, scanned.login_id).citizen_id is None
    assert _sign_count(app) == 0


def test_rejects_qr_frame_from_the_future(app, client, relying_party, enrolled_phone, db_state):
    login_id = relying_party.start_login(client)
    key = qr.login_key(app.config["SECRET_KEY"], login_id)
    future = qr.frame_url("http://localhost", login_id, key, qr.current_step(1) + 30)
    before = db_state()
    _, response = enrolled_phone.scan(future)
    assert response.json["error"] == "qr_stale"
    assert db_state() == before


def test_rejects_qr_frame_of_another_login(app, relying_party, enrolled_phone, db_state):
    first_browser, second_browser = app.test_client(), app.test_client()
    first = relying_party.start_login(first_browser)
    second = relying_party.start_login(second_browser)
    _, first_mac = frame(desktop_status(first_browser, first).json["phone_url"])
    before = db_state()
    response = enrolled_phone.client.post(f"/api/v1/logins/{second}/scan", json=first_mac)
    assert response.status_code == 400
    assert response.json["error"] == "qr_stale"  # each login has its own MAC key
    assert db_state() == before


def test_rejects_long_poll_with_another_logins_cookie(app, relying_party, db_state):
    victim_browser = app.test_client()
    victim_login = relying_party.start_login(victim_browser)
    attacker_browser = app.test_client()
    relying_party.start_login(attacker_browser)  # holds a genuine cookie, for its own login
    before = db_state()
    response = desktop_status(attacker_browser, victim_login, seen=0)
    assert response.status_code == 404
    assert "number" not in (response.json or {})
    assert (
        attacker_browser.post(f"/login/{victim_login}/passkey/options", json={}).status_code == 404
    )
    assert db_state() == before


def test_rejects_approval_bombing_of_one_citizen(
    app, client, relying_party, enrolled_phone, db_state
):
    # RFC 10027 "Rate Limits": a citizen whose phone is pestered into approving over and over
    # gets at most RATE_LIMIT_APPROVAL approved logins.
    app.config["RATE_LIMIT_APPROVAL"] = "2/minute"
    for _ in range(2):
        login = scan_login(app.test_client(), relying_party, enrolled_phone)
        options = login.challenge().json["options"]
        credential = enrolled_phone.authenticator.get_assertion(
            options, origin=enrolled_phone.origin
        )
        assert login.approve(credential).status_code == 200
    login = scan_login(client, relying_party, enrolled_phone)
    options = login.challenge().json["options"]
    credential = enrolled_phone.authenticator.get_assertion(options, origin=enrolled_phone.origin)
    before = db_state()
    response = login.approve(credential)
    assert response.status_code == 429
    assert response.json["error"] == "too_many_requests"
    assert db_state() == before  # the nonce is not burned, the counter not advanced


def test_rejects_challenge_flooding_of_one_login(app, scanned, db_state):
    app.config["MAX_CHALLENGES_PER_LOGIN"] = 2
    assert scanned.challenge().status_code == 200
    assert scanned.challenge().status_code == 200
    before = db_state()
    response = scanned.challenge()
    assert response.status_code == 429
    assert response.json["error"] == "too_many_requests"
    assert db_state() == before


def test_rejects_phone_approval_assertion_used_for_the_desktop_passkey_login(
    app, scanned, db_state
):
    options = scanned.challenge().json["options"]
    credential = scanned.phone.authenticator.get_assertion(options, origin=scanned.phone.origin)
    begun = scanned.browser.post(f"/login/{scanned.login_id}/passkey/options", json={})
    assert begun.status_code == 200
    before = db_state()
    response = scanned.browser.post(
        f"/login/{scanned.login_id}/passkey",
        json={"ceremony_id": begun.json["ceremony_id"], "credential": credential},
    )
    assert response.status_code == 400
    # the desktop ceremony's challenge is burned before verification; nothing else moves
    assert changed_tables(before, db_state()) == {"webauthn_challenges"}
    assert _tx(app, scanned.login_id).state == "scanned"
    assert _sign_count(app) == 0


def test_rejects_approval_after_the_phone_denied(app, scanned, db_state):
    options = scanned.challenge().json["options"]
    credential = scanned.phone.authenticator.get_assertion(options, origin=scanned.phone.origin)
    denied = scanned.phone.client.post(
        f"/api/v1/logins/{scanned.login_id}/deny", json={"binding": scanned.binding}
    )
    assert denied.status_code == 200
    before = db_state()
    response = scanned.approve(credential)
    assert response.status_code == 400
    assert db_state() == before
    assert _tx(app, scanned.login_id).state == "denied"


def _revoke_on_the_account_page(app, citizen_id):
    with app.app_context():
        device = db.session.scalars(select(Credential).where(Credential.citizen_id == citizen_id))
        revoke_device(citizen_id, device.one().id)


def _revoke_with_the_revocation_code(app, citizen_id, phone):
    with app.app_context():
        assert revoke_devices_with_code(phone.revocation_code) == citizen_id


def _revoke_by_a_clerk(app, citizen_id):
    with app.app_context():
        added = add_clerk(given_name="Clara", family_name="Schreiber", email="c@example.org")
        revoke_all_devices(added.clerk, db.session.get(Citizen, citizen_id))


@pytest.mark.parametrize("revocation", ["account_page", "revocation_code", "clerk"])
def test_rejects_continuing_a_login_approved_by_a_device_revoked_since(
    app, scanned, db_state, revocation
):
    """A thief's approval on a phone reported lost in the meantime buys no code and no session."""
    options = scanned.challenge().json["options"]
    credential = scanned.phone.authenticator.get_assertion(options, origin=scanned.phone.origin)
    assert scanned.approve(credential).status_code == 200
    status = scanned.status()
    assert status["status"] == "approved"
    citizen_id = _tx(app, scanned.login_id).citizen_id
    if revocation == "account_page":
        _revoke_on_the_account_page(app, citizen_id)
    elif revocation == "revocation_code":
        _revoke_with_the_revocation_code(app, citizen_id, scanned.phone)
    else:
        _revoke_by_a_clerk(app, citizen_id)
    before = db_state()
    refused = scanned.browser.get(status["continue_url"])
    assert refused.status_code == 400
    assert "login_ended" in refused.get_data(as_text=True)
    assert db_state() == before  # no code, no session, the login not consumed
    with app.app_context():
        assert db.session.scalars(select(AuthorizationCode)).first() is None
    assert _tx(app, scanned.login_id).state == "approved"


def test_rejects_renewing_another_browsers_login(app, client, relying_party, db_state):
    """ "Show a new code" starts a login only for the browser that started the old one."""
    victim_login = relying_party.start_login(client)
    with app.app_context():
        db.session.execute(
            update(LoginTransaction)
            .where(LoginTransaction.id == victim_login)
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
        db.session.commit()
    client.get(f"/login/{victim_login}")  # ends it as expired
    attacker = app.test_client()
    own_login = relying_party.start_login(attacker)  # a genuine cookie and CSRF token of its own
    page = attacker.get(f"/login/{own_login}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    before = db_state()
    refused = attacker.post(f"/login/{victim_login}/renew", data={"csrf_token": token.group(1)})
    assert refused.status_code == 404
    assert "Location" not in refused.headers and "Set-Cookie" not in refused.headers
    assert db_state() == before
