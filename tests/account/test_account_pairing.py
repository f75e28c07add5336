"""Adding a device from an enrolled one: the pairing, its happy path and its refusals."""

from __future__ import annotations

import datetime as dt

import pytest
from account_browser import CitizenBrowser
from account_browser import NewDevice
from account_browser import csrf_token
from harness import ORIGIN
from harness import Phone
from harness import changed_tables
from harness import desktop_status
from security.hostile import es256_cose
from security.hostile import registration
from security.hostile import rs256_cose
from sqlalchemy import select
from sqlalchemy import update

from idserver.account.models import Pairing
from idserver.audit.models import AuditEvent
from idserver.citizens.models import ActivationCode
from idserver.citizens.service import issue_activation_code
from idserver.db import db
from idserver.passkeys.models import Credential
from idserver.phone.authenticator import SoftAuthenticator


@pytest.fixture
def browser(client, enrolled_phone):
    browser = CitizenBrowser(client)
    browser.log_in(enrolled_phone)
    return browser


@pytest.fixture
def new_device(app, tmp_path):
    return NewDevice(Phone(app.test_client(), SoftAuthenticator(path=tmp_path / "tablet.json")))


def _pairing(app, pairing_id):
    with app.app_context():
        return db.session.get(Pairing, pairing_id)


def _credentials(app):
    with app.app_context():
        return db.session.scalars(select(Credential).order_by(Credential.id)).all()


def _claimed(browser, new_device):
    pairing_id = browser.start_pairing()
    assert new_device.claim(pairing_id).status_code == 303
    return pairing_id, new_device.shown_number(pairing_id)


def _other(number):
    return "11" if number != "11" else "12"


def _expire(app, pairing_id):
    with app.app_context():
        db.session.execute(
            update(Pairing)
            .where(Pairing.id == pairing_id)
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
        db.session.commit()


def test_new_device_joins_through_a_pairing_and_can_log_in(
    app, browser, enrolled_phone, new_device, relying_party
):
    pairing_id = browser.start_pairing()
    assert len(pairing_id) >= 22  # ≥ 128 bits in base64url
    page = browser.client.get(f"/account/pairings/{pairing_id}").get_data(as_text=True)
    assert f'data-join-url="http://localhost/pair/{pairing_id}"' in page
    assert "qrcode.js" in page and "<script>" not in page
    assert new_device.claim(pairing_id).status_code == 303
    number = new_device.shown_number(pairing_id)
    # the enrolled side learns that a device is waiting, never the number
    waiting = browser.client.get(
        f"/account/pairings/{pairing_id}/status", headers={"Accept": "application/json"}
    ).json
    assert waiting["status"] == "claimed" and "number" not in waiting

    approved = browser.approve_pairing(pairing_id, number, enrolled_phone)
    assert approved.status_code == 200, approved.json
    assert new_device.status(pairing_id).json["status"] == "approved"
    finished = new_device.enrol(pairing_id)
    assert finished.status_code == 201, finished.json
    assert len(finished.json["revocation_code"].replace("-", "")) == 12

    assert _pairing(app, pairing_id).state == "used"
    old, new = _credentials(app)
    assert new.name == "Erikas Tablet" and new.citizen_id == old.citizen_id
    with app.app_context():
        enrolments = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "enrolment").order_by(AuditEvent.id)
        ).all()
        assert len(db.session.scalars(select(ActivationCode)).all()) == 1  # no new letter
    assert enrolments[-1].data["via"] == "pairing"
    assert enrolments[-1].data["pairing_id"] == pairing_id
    assert enrolments[-1].data["approved_by"] == old.id
    assert enrolments[-1].data["credential_id"] == new.id

    # the new device logs in to a relying party
    login_id = relying_party.start_login(browser.client)
    status = desktop_status(browser.client, login_id).json
    assert new_device.phone.approve(status["phone_url"], status["number"]).status_code == 200


def test_rejects_wrong_number_and_cancels_the_pairing(app, browser, new_device, db_state):
    pairing_id, number = _claimed(browser, new_device)
    before = db_state()
    wrong = browser.post_json(f"/account/pairings/{pairing_id}/options", {"number": _other(number)})
    assert wrong.status_code == 400
    assert wrong.json["error"] == "wrong_number"
    assert changed_tables(before, db_state()) == {"pairings"}
    assert _pairing(app, pairing_id).state == "cancelled"
    assert new_device.status(pairing_id).json["status"] == "cancelled"
    # the right number no longer helps, and the new device cannot register
    before = db_state()
    right = browser.post_json(f"/account/pairings/{pairing_id}/options", {"number": number})
    assert right.json["error"] == "pairing_cancelled"
    assert new_device.begin_enrolment(pairing_id).json["error"] == "pairing_cancelled"
    assert db_state() == before


def test_rejects_wrong_number_at_the_approval_step(
    app, browser, enrolled_phone, new_device, db_state
):
    pairing_id, number = _claimed(browser, new_device)
    begun = browser.post_json(f"/account/pairings/{pairing_id}/options", {"number": number})
    credential = enrolled_phone.authenticator.get_assertion(begun.json["options"], origin=ORIGIN)
    before = db_state()
    response = browser.post_json(
        f"/account/pairings/{pairing_id}/approve",
        {
            "number": _other(number),
            "ceremony_id": begun.json["ceremony_id"],
            "credential": credential,
        },
    )
    assert response.json["error"] == "wrong_number"
    assert changed_tables(before, db_state()) == {"pairings", "webauthn_challenges"}
    assert _pairing(app, pairing_id).state == "cancelled"


def test_rejects_expired_pairing(app, browser, enrolled_phone, new_device, db_state):
    pairing_id, number = _claimed(browser, new_device)
    _expire(app, pairing_id)
    response = browser.post_json(f"/account/pairings/{pairing_id}/options", {"number": number})
    assert response.status_code == 400
    assert response.json["error"] == "pairing_expired"
    assert _pairing(app, pairing_id).state == "expired"
    before = db_state()
    assert new_device.begin_enrolment(pairing_id).json["error"] == "pairing_expired"
    page = new_device.client.get(f"/pair/{pairing_id}")
    assert page.status_code == 400 and "expired" in page.get_data(as_text=True)
    assert db_state() == before


def test_rejects_pairing_that_expires_after_approval(
    app, browser, enrolled_phone, new_device, db_state
):
    pairing_id, number = _claimed(browser, new_device)
    assert browser.approve_pairing(pairing_id, number, enrolled_phone).status_code == 200
    begun = new_device.begin_enrolment(pairing_id)
    _expire(app, pairing_id)
    credential = new_device.phone.authenticator.create_credential(
        begun.json["options"], origin=ORIGIN
    )
    response = new_device.client.post(
        f"/pair/{pairing_id}/enrolment",
        json={"enrolment_id": begun.json["enrolment_id"], "credential": credential},
        headers={"X-CSRF-Token": csrf_token(new_device.client)},
    )
    assert response.status_code == 400
    assert response.json["error"] == "pairing_expired"
    assert len(_credentials(app)) == 1


def test_pairing_lives_as_long_as_configured(app, browser, new_device):
    app.config["PAIRING_TTL_SECONDS"] = 600
    pairing_id = browser.start_pairing()
    pairing = _pairing(app, pairing_id)
    assert pairing.expires_at - pairing.created_at == dt.timedelta(seconds=600)
    page = browser.client.get(f"/account/pairings/{pairing_id}").get_data(as_text=True)
    assert "The code is valid for 10 minutes and works only once." in page
    claimed = new_device.claim(pairing_id)
    binding = [c for c in claimed.headers.getlist("Set-Cookie") if c.startswith("pair-")]
    assert len(binding) == 1 and "Max-Age=660" in binding[0]  # the pairing's life, and a minute


def test_rejects_more_approval_challenges_than_configured(app, browser, new_device, db_state):
    app.config["MAX_CHALLENGES_PER_PAIRING"] = 2
    pairing_id, number = _claimed(browser, new_device)
    for _ in range(2):
        begun = browser.post_json(f"/account/pairings/{pairing_id}/options", {"number": number})
        assert begun.status_code == 200, begun.json
    before = db_state()
    refused = browser.post_json(f"/account/pairings/{pairing_id}/options", {"number": number})
    assert refused.status_code == 429
    assert refused.json["error"] == "too_many_requests"
    assert db_state() == before
    assert _pairing(app, pairing_id).challenges_issued == 2


def test_rejects_a_second_device_claiming_the_pairing(app, browser, new_device, tmp_path, db_state):
    pairing_id, _number = _claimed(browser, new_device)
    intruder = NewDevice(Phone(app.test_client(), SoftAuthenticator(path=tmp_path / "x.json")))
    before = db_state()
    page = intruder.client.get(f"/pair/{pairing_id}")
    assert page.status_code == 400
    claimed = intruder.client.post(
        f"/pair/{pairing_id}/claim", data={"csrf_token": csrf_token(intruder.client)}
    )
    assert claimed.status_code == 400
    assert "already being used by another device" in claimed.get_data(as_text=True)
    assert intruder.status(pairing_id).json["error"] == "not_bound"
    assert intruder.begin_enrolment(pairing_id).json["error"] == "not_bound"
    assert db_state() == before
    # the device that claimed it may reload its page
    assert new_device.client.get(f"/pair/{pairing_id}").status_code == 200


def test_rejects_approval_by_another_citizens_device(
    app, browser, new_device, db_state, other_citizen_phone
):
    stranger = other_citizen_phone
    pairing_id, number = _claimed(browser, new_device)
    begun = browser.post_json(f"/account/pairings/{pairing_id}/options", {"number": number})
    options = dict(begun.json["options"], allowCredentials=[])  # a hostile client ignores it
    credential = stranger.authenticator.get_assertion(options, origin=ORIGIN)
    before = db_state()
    response = browser.post_json(
        f"/account/pairings/{pairing_id}/approve",
        {"number": number, "ceremony_id": begun.json["ceremony_id"], "credential": credential},
    )
    assert response.status_code == 400
    assert response.json["error"] == "unknown_device"
    assert _pairing(app, pairing_id).state == "claimed"
    # only the one-time challenge was used up; Max's counter did not move
    assert changed_tables(before, db_state()) == {"webauthn_challenges"}

    # and Max, logged in himself, cannot see or approve Erika's pairing
    max_browser = CitizenBrowser(app.test_client())
    max_browser.log_in(stranger)
    before = db_state()
    assert max_browser.client.get(f"/account/pairings/{pairing_id}").status_code == 404
    sneaky = max_browser.post_json(f"/account/pairings/{pairing_id}/options", {"number": number})
    assert sneaky.status_code == 404
    assert db_state() == before


def test_rejects_reuse_of_a_used_pairing(
    app, browser, enrolled_phone, new_device, tmp_path, db_state
):
    pairing_id, number = _claimed(browser, new_device)
    assert browser.approve_pairing(pairing_id, number, enrolled_phone).status_code == 200
    assert new_device.enrol(pairing_id).status_code == 201
    before = db_state()
    again = new_device.begin_enrolment(pairing_id)
    assert again.status_code == 400 and again.json["error"] == "pairing_used"
    third = NewDevice(Phone(app.test_client(), SoftAuthenticator(path=tmp_path / "3.json")))
    page = third.client.get(f"/pair/{pairing_id}")
    assert page.status_code == 400 and "only once" in page.get_data(as_text=True)
    assert (
        browser.post_json(f"/account/pairings/{pairing_id}/options", {"number": number}).json[
            "error"
        ]
        == "pairing_used"
    )
    assert db_state() == before


def test_rejects_pairing_enrolment_through_the_activation_api(
    app, browser, enrolled_phone, new_device, db_state
):
    pairing_id, number = _claimed(browser, new_device)
    assert browser.approve_pairing(pairing_id, number, enrolled_phone).status_code == 200
    begun = new_device.begin_enrolment(pairing_id)
    credential = new_device.phone.authenticator.create_credential(
        begun.json["options"], origin=ORIGIN
    )
    before = db_state()
    response = new_device.client.post(
        f"/api/v1/enrolments/{begun.json['enrolment_id']}", json={"credential": credential}
    )
    assert response.status_code == 400
    assert changed_tables(before, db_state()) == {"webauthn_challenges"}
    assert _pairing(app, pairing_id).state == "approved"


@pytest.mark.parametrize("key", ["rsa-1024-bits", "the-approving-phones-own"])
def test_rejects_weak_or_registered_key_at_pairing_and_the_pairing_stays_usable(
    app, browser, enrolled_phone, new_device, db_state, key
):
    pairing_id, number = _claimed(browser, new_device)
    assert browser.approve_pairing(pairing_id, number, enrolled_phone).status_code == 200
    begun = new_device.begin_enrolment(pairing_id)
    held = enrolled_phone.authenticator.keys[0].private_key
    cose_key, error = {
        "rsa-1024-bits": (rs256_cose(1024), "enrolment_rejected"),
        "the-approving-phones-own": (es256_cose(held), "credential_exists"),
    }[key]
    forged = registration(begun.json["options"], cose_key=cose_key)
    token = csrf_token(new_device.client)
    before = db_state()
    response = new_device.client.post(
        f"/pair/{pairing_id}/enrolment",
        json={"enrolment_id": begun.json["enrolment_id"], "credential": forged},
        headers={"X-CSRF-Token": token},
    )
    assert response.status_code == 400
    assert response.json["error"] == error
    assert changed_tables(before, db_state()) == {"webauthn_challenges"}
    assert _pairing(app, pairing_id).state == "approved"
    assert new_device.enrol(pairing_id).status_code == 201  # with the device's own, sound key


def test_rejects_activation_enrolment_through_a_pairing(
    app, browser, enrolled_phone, new_device, citizen, db_state
):
    pairing_id, number = _claimed(browser, new_device)
    assert browser.approve_pairing(pairing_id, number, enrolled_phone).status_code == 200
    with app.app_context():
        record, code = issue_activation_code(citizen.id)
    begun = new_device.client.post(
        "/api/v1/enrolments", json={"activation_id": record.id, "code": code}
    )
    credential = new_device.phone.authenticator.create_credential(
        begun.json["options"], origin=ORIGIN
    )
    before = db_state()
    response = new_device.client.post(
        f"/pair/{pairing_id}/enrolment",
        json={"enrolment_id": begun.json["enrolment_id"], "credential": credential},
        headers={"X-CSRF-Token": csrf_token(new_device.client)},
    )
    assert response.status_code == 400
    assert db_state() == before


def test_pairing_pages_need_a_session(app, client, new_device, db_state):
    before = db_state()
    anonymous = client.get(
        "/account/pairings/" + "x" * 32 + "/status", headers={"Accept": "application/json"}
    )
    assert anonymous.status_code == 401
    assert anonymous.json["error"] == "login_required"
    assert db_state() == before


def test_revoking_the_approving_device_cancels_its_pairing(
    app, browser, enrolled_phone, new_device, db_state
):
    pairing_id, number = _claimed(browser, new_device)
    assert browser.approve_pairing(pairing_id, number, enrolled_phone).status_code == 200
    approver = _pairing(app, pairing_id).approved_by
    assert browser.post_form(f"/account/devices/{approver}/revoke").status_code == 303
    assert _pairing(app, pairing_id).state == "cancelled"
    before = db_state()
    refused = new_device.begin_enrolment(pairing_id)
    assert refused.status_code == 400 and refused.json["error"] == "pairing_cancelled"
    assert db_state() == before


def test_lost_phone_code_cancels_a_pairing_in_progress(
    app, browser, enrolled_phone, new_device, db_state
):
    pairing_id, number = _claimed(browser, new_device)
    assert browser.approve_pairing(pairing_id, number, enrolled_phone).status_code == 200
    lost = app.test_client()
    response = lost.post(
        "/lost",
        data={"csrf_token": csrf_token(lost), "code": enrolled_phone.revocation_code},
    )
    assert response.headers["Location"].endswith("/lost/done")
    assert _pairing(app, pairing_id).state == "cancelled"
    before = db_state()
    assert new_device.begin_enrolment(pairing_id).json["error"] == "pairing_cancelled"
    assert db_state() == before
