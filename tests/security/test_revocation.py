"""Attacks with what a device obtained before it was revoked or suspended.

A thief who logged in with a stolen phone, or the holder of a cloned passkey, keeps the
browser session and the relying party keeps the access token of that login. Whichever way the
device goes (clone detection, the account page, the revocation code, a clerk), its sessions,
tokens and unredeemed codes end in the same transaction, and the end is audited.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from harness import ISSUER
from harness import Phone
from harness import complete_login
from sqlalchemy import select
from sqlalchemy import update

from idserver.audit.models import AuditEvent
from idserver.citizens.service import issue_activation_code
from idserver.db import db
from idserver.db import utcnow
from idserver.oidc.models import AuthorizationCode
from idserver.oidc.models import Token
from idserver.passkeys.models import Credential
from idserver.phone.authenticator import SoftAuthenticator
from idserver.sessions import BrowserSession

from .conftest import scan_login

sys.path.insert(0, str(Path(__file__).parents[1] / "account"))
sys.path.insert(0, str(Path(__file__).parents[1] / "admin"))
from account_browser import CitizenBrowser  # noqa: E402
from account_browser import NewDevice  # noqa: E402
from account_browser import csrf_token  # noqa: E402
from clerk_session import sign_in_clerk  # noqa: E402


@pytest.fixture
def tablet(app, citizen, tmp_path) -> Phone:
    """Erika's second device ("Erikas Tablet"), enrolled with a second letter."""
    with app.app_context():
        record, code = issue_activation_code(citizen.id)
    tablet = Phone(app.test_client(), SoftAuthenticator(path=tmp_path / "tablet.json"))
    assert tablet.enrol(record.id, code, name="Erikas Tablet").status_code == 201
    return tablet


def _device(app, name: str) -> int:
    with app.app_context():
        return db.session.scalars(select(Credential.id).where(Credential.name == name)).one()


def _userinfo(client, tokens):
    return client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})


def _session_check(browser):
    """A page script's request that needs the session (answers 401 without one, writes nothing)."""
    return browser.get("/account/pairings/none/status", headers={"Accept": "application/json"})


def _grants_ended(app):
    with app.app_context():
        return db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "device_grants_ended")
        ).all()


def _assert_refused_token(client, tokens, db_state):
    before = db_state()
    refused = _userinfo(client, tokens)
    assert refused.status_code == 401
    assert refused.json["error"] == "invalid_token"
    assert db_state() == before


def _assert_refused_session(browser, db_state):
    before = db_state()
    refused = _session_check(browser)
    assert refused.status_code == 401
    assert refused.json["error"] == "login_required"
    assert db_state() == before
    # the account page sends the browser to log in again
    assert browser.get("/account").headers["Location"].startswith(f"{ISSUER}/login/")


def _suspend_as_cloned(app, relying_party, phone: Phone) -> None:
    """A copy of ``phone``'s passkey answers with a counter already used: the device goes."""
    stored = _sign_count(app, phone)
    clone = scan_login(app.test_client(), relying_party, phone)
    options = clone.challenge().json["options"]
    cloned = phone.authenticator.get_assertion(
        options, origin=phone.origin, sign_count_override=stored
    )
    refused = clone.approve(cloned)
    assert refused.status_code == 400
    assert refused.json["error"] == "device_suspended"


def _sign_count(app, phone: Phone) -> int:
    credential_id = phone.authenticator.keys[0].credential_id
    with app.app_context():
        return db.session.scalars(
            select(Credential.sign_count).where(Credential.credential_id == credential_id)
        ).one()


def _remove_on_the_account_page(app, phone: Phone, device: str) -> CitizenBrowser:
    account = CitizenBrowser(app.test_client())
    account.log_in(phone)
    removed = account.post_form(f"/account/devices/{_device(app, device)}/revoke")
    assert removed.status_code == 303
    assert removed.headers["Location"] == f"{ISSUER}/account"
    return account


def _report_lost(app, phone: Phone) -> None:
    stranger = app.test_client()  # whoever holds the code; no login needed
    form = {"csrf_token": csrf_token(stranger), "code": phone.revocation_code}
    response = stranger.post("/lost", data=form)
    assert response.headers["Location"] == f"{ISSUER}/lost/done"


def test_rejects_tokens_of_a_device_suspended_as_cloned(
    app, client, relying_party, enrolled_phone, db_state
):
    tokens = complete_login(client, relying_party, enrolled_phone)
    assert _userinfo(client, tokens).status_code == 200
    code = relying_party.approved_code(app.test_client(), enrolled_phone)  # not yet redeemed
    _suspend_as_cloned(app, relying_party, enrolled_phone)
    _assert_refused_token(client, tokens, db_state)
    before = db_state()
    refused = relying_party.exchange(client, code)
    assert refused.status_code == 400
    assert refused.json["error"] == "invalid_grant"
    assert db_state() == before
    device = _device(app, "Erikas Telefon")
    with app.app_context():
        assert db.session.scalars(select(Token)).one().revoked_at is not None
        voided = db.session.scalars(
            select(AuthorizationCode).where(AuthorizationCode.used_at.is_(None))
        )
        assert voided.one().revoked_at is not None
        suspended = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "device_suspended")
        ).one()
    (ended,) = _grants_ended(app)
    assert suspended.id == ended.id + 1  # audited together with the suspension
    assert (ended.actor, ended.subject) == ("system", suspended.subject)
    assert ended.data == {
        "credential_ids": [device],
        "reason": "sign_count_regression",
        "sessions_ended": 2,
        "tokens_revoked": 1,
        "codes_voided": 1,
        "pairings_cancelled": 0,
    }


def test_rejects_session_of_a_device_suspended_as_cloned(
    app, client, relying_party, enrolled_phone, db_state
):
    browser = CitizenBrowser(client)
    browser.log_in(enrolled_phone)
    assert _session_check(client).status_code == 404  # the session works: no such pairing
    _suspend_as_cloned(app, relying_party, enrolled_phone)
    _assert_refused_session(client, db_state)
    with app.app_context():
        assert db.session.scalars(select(BrowserSession)).one().ended_at is not None
    (ended,) = _grants_ended(app)
    assert ended.data["reason"] == "sign_count_regression"
    assert ended.data["sessions_ended"] == 1


def test_rejects_tokens_and_sessions_of_a_device_removed_on_the_account_page(
    app, relying_party, citizen, enrolled_phone, tablet, db_state
):
    """The tablet is stolen; Erika removes it with her phone. The thief's login goes too."""
    thief = app.test_client()
    tokens = complete_login(thief, relying_party, tablet)  # and a session at Bürger-ID
    assert _userinfo(thief, tokens).status_code == 200
    assert thief.get("/account").status_code == 200
    _remove_on_the_account_page(app, enrolled_phone, "Erikas Tablet")
    _assert_refused_token(thief, tokens, db_state)
    _assert_refused_session(thief, db_state)
    (ended,) = _grants_ended(app)
    assert (ended.actor, ended.subject) == (f"citizen:{citizen.id}", citizen.id)
    assert ended.data == {
        "credential_ids": [_device(app, "Erikas Tablet")],
        "reason": "device_revoked",
        "sessions_ended": 1,
        "tokens_revoked": 1,
        "codes_voided": 0,
        "pairings_cancelled": 0,
    }


def test_rejects_redeeming_a_code_issued_before_the_phone_was_reported_lost(
    app, client, relying_party, citizen, enrolled_phone, db_state
):
    code = relying_party.approved_code(client, enrolled_phone)
    _report_lost(app, enrolled_phone)
    before = db_state()
    refused = relying_party.exchange(client, code)
    assert refused.status_code == 400
    assert refused.json["error"] == "invalid_grant"
    assert db_state() == before
    with app.app_context():
        voided = db.session.scalars(select(AuthorizationCode)).one()
        assert voided.revoked_at is not None and voided.used_at is None
        assert db.session.scalars(select(Token)).first() is None
    _assert_refused_session(client, db_state)  # the session of that login ended as well
    (ended,) = _grants_ended(app)
    assert ended.subject == citizen.id
    assert ended.data["reason"] == "lost_phone"
    assert (ended.data["codes_voided"], ended.data["sessions_ended"]) == (1, 1)


def test_rejects_tokens_of_a_device_revoked_by_a_clerk(
    app, runner, tmp_path, client, relying_party, citizen, enrolled_phone, db_state
):
    tokens = complete_login(client, relying_party, enrolled_phone)
    code = relying_party.approved_code(app.test_client(), enrolled_phone)
    clerk = sign_in_clerk(app, runner, tmp_path)
    revoked = clerk.post(f"/admin/residents/{citizen.id}/revoke-devices")
    assert revoked.status_code == 303
    _assert_refused_token(client, tokens, db_state)
    before = db_state()
    assert relying_party.exchange(client, code).json["error"] == "invalid_grant"
    assert db_state() == before
    _assert_refused_session(client, db_state)
    (ended,) = _grants_ended(app)
    assert (ended.actor, ended.subject) == (clerk.actor, citizen.id)
    assert ended.data == {
        "credential_ids": [_device(app, "Erikas Telefon")],
        "reason": "clerk",
        "sessions_ended": 2,
        "tokens_revoked": 1,
        "codes_voided": 1,
        "pairings_cancelled": 0,
    }
    # the clerk's own device and session are not the resident's: they go on
    assert clerk.browser.get("/admin").status_code == 200


def test_rejects_enrolling_through_a_pairing_approved_by_a_device_suspended_as_cloned(
    app, client, relying_party, enrolled_phone, tmp_path, db_state
):
    """Whoever holds a copy of the passkey approves "add another device" for their own one."""
    browser = CitizenBrowser(client)
    browser.log_in(enrolled_phone)
    new_device = NewDevice(Phone(app.test_client(), SoftAuthenticator(path=tmp_path / "own.json")))
    pairing_id = browser.start_pairing()
    assert new_device.claim(pairing_id).status_code == 303
    number = new_device.shown_number(pairing_id)
    assert browser.approve_pairing(pairing_id, number, enrolled_phone).status_code == 200
    _suspend_as_cloned(app, relying_party, enrolled_phone)
    before = db_state()
    refused = new_device.begin_enrolment(pairing_id)
    assert refused.status_code == 400
    assert refused.json["error"] == "pairing_cancelled"
    assert db_state() == before
    (ended,) = _grants_ended(app)
    assert (ended.data["pairings_cancelled"], ended.data["sessions_ended"]) == (1, 1)


@pytest.mark.parametrize("revocation", ["account_page", "cloned"])
def test_other_devices_of_the_citizen_keep_their_sessions_and_tokens(
    app, relying_party, enrolled_phone, tablet, revocation
):
    on_phone, on_tablet = app.test_client(), app.test_client()
    phone_tokens = complete_login(on_phone, relying_party, enrolled_phone)
    tablet_tokens = complete_login(on_tablet, relying_party, tablet)
    if revocation == "account_page":
        _remove_on_the_account_page(app, enrolled_phone, "Erikas Tablet")
    else:
        _suspend_as_cloned(app, relying_party, tablet)
    assert _userinfo(on_tablet, tablet_tokens).status_code == 401
    assert _session_check(on_tablet).status_code == 401
    # the phone's login is untouched
    assert _userinfo(on_phone, phone_tokens).status_code == 200
    assert on_phone.get("/account").status_code == 200
    phone = _device(app, "Erikas Telefon")
    with app.app_context():
        phone_token = db.session.scalars(select(Token).where(Token.credential_pk == phone)).one()
        assert phone_token.revoked_at is None
    (ended,) = _grants_ended(app)
    assert ended.data["credential_ids"] == [_device(app, "Erikas Tablet")]


def test_rejects_grants_of_a_device_blocked_before_they_named_it(
    app, client, relying_party, enrolled_phone, db_state
):
    """A device blocked before this release (or while its login was being finished) left its
    session, token and code unmarked: each still dies with the device."""
    tokens = complete_login(client, relying_party, enrolled_phone)
    code = relying_party.approved_code(client, enrolled_phone)
    with app.app_context():
        db.session.execute(update(Credential).values(revoked_at=utcnow()))
        db.session.commit()
    _assert_refused_token(client, tokens, db_state)
    _assert_refused_session(client, db_state)
    before = db_state()
    refused = relying_party.exchange(client, code)
    assert refused.status_code == 400
    assert refused.json["error"] == "invalid_grant"
    assert db_state() == before  # the code is not burned
