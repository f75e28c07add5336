"""The citizen's device list: what it shows, renaming, revoking, logging out, CSRF."""

from __future__ import annotations

import uuid

import pytest
from account_browser import CitizenBrowser
from harness import ISSUER
from harness import ORIGIN
from harness import Phone
from harness import changed_tables
from harness import desktop_status
from page import html_of
from sqlalchemy import select

from idserver.audit.models import AuditEvent
from idserver.citizens.service import issue_activation_code
from idserver.crosslogin.models import LoginTransaction
from idserver.db import db
from idserver.passkeys.aaguids import authenticator_name
from idserver.passkeys.models import Credential
from idserver.phone.authenticator import SOFT_PHONE_AAGUID
from idserver.phone.authenticator import SoftAuthenticator
from idserver.sessions import BrowserSession


@pytest.fixture
def browser(client, enrolled_phone):
    browser = CitizenBrowser(client)
    browser.log_in(enrolled_phone)
    return browser


@pytest.fixture
def synced_phone(app, citizen, tmp_path):
    """A second device of the same citizen whose passkey is synced and backed up."""
    with app.app_context():
        record, code = issue_activation_code(citizen.id)
    phone = Phone(app.test_client(), SoftAuthenticator(path=tmp_path / "synced.json"))
    begun = phone.client.post("/api/v1/enrolments", json={"activation_id": record.id, "code": code})
    credential = phone.authenticator.create_credential(
        begun.json["options"], origin=ORIGIN, backup_eligible=True, backed_up=True
    )
    finished = phone.client.post(
        f"/api/v1/enrolments/{begun.json['enrolment_id']}",
        json={"credential": credential, "name": "Familien-iPad"},
    )
    assert finished.status_code == 201, finished.json
    phone.revocation_code = finished.json["revocation_code"]
    return phone


def _device(app, name):
    with app.app_context():
        return db.session.scalars(select(Credential).where(Credential.name == name)).one()


def _events(app, event):
    with app.app_context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.event == event)).all()


def test_anonymous_account_page_redirects_to_the_qr_login(client):
    response = client.get("/account")
    assert response.status_code == 303
    assert response.headers["Location"].startswith(f"{ISSUER}/login/")


def test_device_list_shows_name_type_storage_and_state(app, client, enrolled_phone, synced_phone):
    html = CitizenBrowser(client).log_in(enrolled_phone).get_data(as_text=True)
    assert "Erikas Telefon" in html and "Familien-iPad" in html
    assert "Bürger-ID soft phone" in html  # the type, from the AAGUID
    assert "Only on this device" in html
    assert "Also saved in your account with the maker of the device" in html
    assert "you logged in with this device" in html
    assert html.count("Active") == 2
    assert "<script" not in html.split("<main")[1]  # no inline scripts (CSP)


def test_aaguid_names_are_looked_up_and_unknown_ones_stay_unnamed():
    assert authenticator_name(str(uuid.UUID(bytes=SOFT_PHONE_AAGUID))) == "Bürger-ID soft phone"
    assert authenticator_name("EA9B8D66-4D01-1D21-3CE4-B6B48CB575D4") == "Google Password Manager"
    assert authenticator_name("fbfc3007-154e-4ecc-8c0b-6e020557d7bd") == "iCloud Keychain"
    assert authenticator_name("00000000-0000-0000-0000-000000000000") is None
    assert authenticator_name("not-a-uuid") is None
    assert authenticator_name(str(uuid.uuid4())) is None


def test_rename_device_is_audited(app, browser, enrolled_phone, citizen, db_state):
    device = _device(app, "Erikas Telefon")
    before = db_state()
    response = browser.post_form(f"/account/devices/{device.id}/rename", {"name": "  Diensthandy "})
    assert response.status_code == 303
    assert changed_tables(before, db_state()) == {"credentials", "audit_events"}
    assert _device(app, "Diensthandy").id == device.id
    (event,) = _events(app, "device_renamed")
    assert event.actor == f"citizen:{citizen.id}"
    assert event.data == {"credential_id": device.id}  # ids only, never the name
    page = browser.client.get(response.headers["Location"]).get_data(as_text=True)
    assert "The device has been renamed." in page


@pytest.mark.parametrize("name", ["", "   ", "x" * 61, "Telefon\x07", "Tele\u202efon"])
def test_rejects_invalid_device_name(app, browser, enrolled_phone, db_state, name):
    device = _device(app, "Erikas Telefon")
    before = db_state()
    response = browser.post_form(f"/account/devices/{device.id}/rename", {"name": name})
    assert response.status_code == 422
    assert db_state() == before
    (error,) = html_of(response).find("p", id=f"name-error-{device.id}")
    assert error.attrs["role"] == "alert"
    assert "notice-error" in error.attrs["class"].split()


def test_refused_name_is_shown_at_its_field_with_what_was_typed(
    app, browser, enrolled_phone, db_state
):
    device = _device(app, "Erikas Telefon")
    before = db_state()
    typed = "Ein sehr langer Gerätename, der mehr als sechzig Zeichen hat!"
    assert len(typed) == 61
    response = browser.post_form(f"/account/devices/{device.id}/rename", {"name": typed})
    assert response.status_code == 422
    assert db_state() == before
    assert _device(app, "Erikas Telefon").id == device.id  # the name did not change
    page = html_of(response)
    (field,) = page.find("input", id=f"name-{device.id}")
    assert field.attrs["value"] == typed  # kept, to correct rather than type again
    assert field.attrs["aria-invalid"] == "true"
    assert f"name-error-{device.id}" in field.attrs["aria-describedby"].split()
    (error,) = page.find("p", id=f"name-error-{device.id}")
    assert error.attrs["role"] == "alert"
    assert "60" in error.words
    # at the field, inside the device's own entry: not only at the top of the page
    assert any(p.attrs.get("id") == f"device-{device.id}" for p in error.parents)
    assert len(page.find("p", role="alert")) == 1  # no second copy at the top
    assert len([f for f in page.find("input", name="name") if "aria-invalid" in f.attrs]) == 1


def test_rename_confirmation_is_shown_at_the_renamed_device(app, browser, enrolled_phone):
    device = _device(app, "Erikas Telefon")
    response = browser.post_form(f"/account/devices/{device.id}/rename", {"name": "Diensthandy"})
    assert response.status_code == 303
    assert response.headers["Location"] == f"{ISSUER}/account#device-{device.id}"
    page = html_of(browser.client.get(response.headers["Location"]))
    (message,) = [p for p in page.find("p", role="status") if "renamed" in p.words]
    assert message.words == "The device has been renamed."
    (entry,) = [p for p in message.parents if p.attrs.get("id") == f"device-{device.id}"]
    assert entry.tag == "li"
    # shown once: the next visit has no message
    again = html_of(browser.client.get("/account"))
    assert not [p for p in again.find("p", role="status") if "renamed" in p.words]


def test_rejects_rename_without_csrf_token(app, browser, enrolled_phone, db_state):
    device = _device(app, "Erikas Telefon")
    before = db_state()
    response = browser.client.post(f"/account/devices/{device.id}/rename", data={"name": "Neu"})
    assert response.status_code == 403
    assert "csrf_failed" in response.get_data(as_text=True)
    wrong = browser.client.post(
        f"/account/devices/{device.id}/revoke", data={"csrf_token": "forged"}
    )
    assert wrong.status_code == 403
    assert db_state() == before


def test_rejects_changes_to_another_citizens_device(app, browser, db_state, other_citizen_phone):
    foreign = _device(app, "Max Telefon")
    before = db_state()
    assert browser.client.get(f"/account/devices/{foreign.id}/revoke").status_code == 404
    renamed = browser.post_form(f"/account/devices/{foreign.id}/rename", {"name": "Mine"})
    revoked = browser.post_form(f"/account/devices/{foreign.id}/revoke")
    assert renamed.status_code == 404 and revoked.status_code == 404
    assert db_state() == before


def test_revoke_asks_for_confirmation_then_the_device_cannot_log_in(
    app, client, enrolled_phone, synced_phone, relying_party, citizen, db_state
):
    browser = CitizenBrowser(client)
    browser.log_in(enrolled_phone)
    device = _device(app, "Familien-iPad")
    before = db_state()
    confirm = browser.client.get(f"/account/devices/{device.id}/revoke")
    assert confirm.status_code == 200
    html = confirm.get_data(as_text=True)
    assert "Familien-iPad" in html and "Yes, remove this device" in html
    assert db_state() == before  # asking changes nothing
    response = browser.post_form(f"/account/devices/{device.id}/revoke")
    assert response.status_code == 303
    assert response.headers["Location"] == f"{ISSUER}/account"
    assert changed_tables(before, db_state()) == {"credentials", "audit_events"}
    assert _device(app, "Familien-iPad").revoked_at is not None
    (event,) = _events(app, "device_revoked")
    assert event.actor == f"citizen:{citizen.id}" and event.data == {"credential_id": device.id}
    # the session (logged in with the other device) goes on, and lists the device as removed
    assert "Removed on" in browser.client.get("/account").get_data(as_text=True)
    # the revoked device can no longer log in
    desktop = app.test_client()
    login_id = relying_party.start_login(desktop)
    status = desktop_status(desktop, login_id).json
    refused = synced_phone.approve(status["phone_url"], status["number"])
    assert refused.status_code == 400
    assert refused.json["error"] == "unknown_device"
    # and it cannot be revoked twice
    assert browser.post_form(f"/account/devices/{device.id}/revoke").status_code == 404


def test_revoking_the_device_of_this_session_ends_the_session(app, browser, enrolled_phone):
    device = _device(app, "Erikas Telefon")
    confirm = browser.client.get(f"/account/devices/{device.id}/revoke").get_data(as_text=True)
    assert "You logged in with this device" in confirm
    assert "This is your last device" in confirm
    response = browser.post_form(f"/account/devices/{device.id}/revoke")
    assert response.status_code == 303
    assert response.headers["Location"] == f"{ISSUER}/account/logged-out"
    with app.app_context():
        assert db.session.scalars(select(BrowserSession)).one().ended_at is not None
    assert browser.client.get("/account").status_code == 303  # back to the login


def test_revoked_device_cannot_approve_a_login_it_had_already_opened(
    app, browser, enrolled_phone, relying_party, db_state
):
    desktop = app.test_client()
    login_id = relying_party.start_login(desktop)
    status = desktop_status(desktop, login_id).json
    _, scanned = enrolled_phone.scan(status["phone_url"])
    binding = scanned.json["binding"]
    issued = enrolled_phone.challenge(login_id, binding, status["number"])
    assert issued.status_code == 200
    device = _device(app, "Erikas Telefon")
    assert browser.post_form(f"/account/devices/{device.id}/revoke").status_code == 303
    credential = enrolled_phone.authenticator.get_assertion(issued.json["options"], origin=ORIGIN)
    before = db_state()
    response = enrolled_phone.client.post(
        f"/api/v1/logins/{login_id}/approve",
        json={"binding": binding, "number": status["number"], "credential": credential},
    )
    assert response.status_code == 400
    assert response.json["error"] == "unknown_device"
    # only the one-time challenge nonce was burned; the login is still waiting, nobody approved
    assert changed_tables(before, db_state()) == {"login_transactions"}
    with app.app_context():
        tx = db.session.get(LoginTransaction, login_id)
        assert tx.state == "scanned" and tx.citizen_id is None and tx.credential_pk is None
    assert desktop_status(desktop, login_id).json["status"] == "scanned"


def test_logout_ends_the_session(app, browser):
    before = browser.client.get("/account")
    assert before.status_code == 200
    response = browser.post_form("/account/logout")
    assert response.status_code == 303
    assert response.headers["Location"] == f"{ISSUER}/account/logged-out"
    assert "You are logged out" in browser.client.get("/account/logged-out").get_data(as_text=True)
    with app.app_context():
        assert db.session.scalars(select(BrowserSession)).one().ended_at is not None
    assert browser.client.get("/account").status_code == 303
