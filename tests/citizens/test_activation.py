"""Activation codes: one-time, expiring, hashed, and bounded against guessing."""

from __future__ import annotations

import datetime as dt

import pytest
from harness import changed_tables
from sqlalchemy import select
from sqlalchemy import update

from idserver.citizens.models import ActivationCode
from idserver.citizens.service import CODE_ALPHABET
from idserver.citizens.service import issue_activation_code
from idserver.db import db
from idserver.passkeys.models import Credential


def test_code_is_grouped_unambiguous_and_stored_only_as_hash(app, citizen):
    with app.app_context():
        record, code = issue_activation_code(citizen.id)
        groups = code.split("-")
        assert [len(g) for g in groups] == [4, 4, 4, 4]
        assert set("".join(groups)) <= set(CODE_ALPHABET)
        assert not set("0O1IL") & set(code)
        stored = db.session.get(ActivationCode, record.id)
        assert code not in repr(stored.__dict__) and stored.code_hash != code
        assert (
            dt.timedelta(days=13) < stored.expires_at - stored.created_at <= dt.timedelta(days=14)
        )


def test_enrolment_burns_the_code_and_returns_a_revocation_code(app, phone, activation):
    response = phone.enrol(*activation)
    assert response.status_code == 201
    assert len(response.json["revocation_code"].replace("-", "")) == 12
    with app.app_context():
        record = db.session.get(ActivationCode, activation[0])
        assert record.used_at is not None
        device = db.session.scalars(select(Credential)).one()
        assert device.name == "Erikas Telefon"
        assert device.attestation_format == "none"


def test_code_is_accepted_in_lower_case_without_dashes(phone, activation):
    activation_id, code = activation
    assert phone.enrol(activation_id, code.lower().replace("-", " ")).status_code == 201


def test_rejects_used_activation_code(phone, activation, db_state, tmp_path):
    assert phone.enrol(*activation).status_code == 201
    before = db_state()
    again = phone.client.post(
        "/api/v1/enrolments", json={"activation_id": activation[0], "code": activation[1]}
    )
    assert again.status_code == 400
    assert again.json["error"] == "code_used"
    assert db_state() == before


def test_rejects_expired_activation_code(app, phone, activation, db_state):
    with app.app_context():
        db.session.execute(
            update(ActivationCode).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(1))
        )
        db.session.commit()
    before = db_state()
    response = phone.client.post(
        "/api/v1/enrolments", json={"activation_id": activation[0], "code": activation[1]}
    )
    assert response.status_code == 400
    assert response.json["error"] == "code_expired"
    assert db_state() == before


def test_rejects_wrong_activation_code_and_counts_the_attempt(app, phone, activation, db_state):
    before = db_state()
    response = phone.client.post(
        "/api/v1/enrolments", json={"activation_id": activation[0], "code": "AAAA-BBBB-CCCC-DDDD"}
    )
    assert response.status_code == 400
    assert response.json["error"] == "invalid_activation_code"
    # only the attempt counters moved: no challenge, no credential, the code is still unused
    assert changed_tables(before, db_state()) - {"rate_limit_counters"} == {
        "activation_codes",
        "activation_attempts",
    }
    with app.app_context():
        assert db.session.get(ActivationCode, activation[0]).failed_attempts == 1


def test_rejects_code_after_too_many_wrong_attempts(app, phone, activation, db_state):
    for _ in range(app.config["ACTIVATION_MAX_ATTEMPTS"]):
        phone.client.post(
            "/api/v1/enrolments", json={"activation_id": activation[0], "code": "AAAA-BBBB-CCCC"}
        )
    before = db_state()
    right = phone.client.post(
        "/api/v1/enrolments", json={"activation_id": activation[0], "code": activation[1]}
    )
    assert right.status_code == 429
    assert right.json["error"] == "too_many_attempts"
    assert db_state() == before


def test_rejects_guessing_from_one_address_across_codes(app, phone, citizen, db_state):
    app.config["ACTIVATION_MAX_ATTEMPTS_PER_ADDRESS"] = 3
    with app.app_context():
        ids = [issue_activation_code(citizen.id)[0].id for _ in range(4)]
    for activation_id in ids[:3]:
        phone.client.post(
            "/api/v1/enrolments", json={"activation_id": activation_id, "code": "AAAA-BBBB"}
        )
    before = db_state()
    blocked = phone.client.post(
        "/api/v1/enrolments", json={"activation_id": ids[3], "code": "AAAA-BBBB"}
    )
    assert blocked.status_code == 429
    assert db_state() == before


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"activation_id": 5, "code": "x"},
        {"activation_id": "x" * 500, "code": "y"},
        {"activation_id": None, "code": ["list"]},
    ],
)
def test_rejects_malformed_enrolment_start(phone, activation, db_state, body):
    before_tables = db_state()
    response = phone.client.post("/api/v1/enrolments", json=body)
    assert response.status_code == 400
    assert "error_description" in response.json
    assert changed_tables(before_tables, db_state()) <= {
        "activation_attempts",
        "rate_limit_counters",
    }


def test_rejects_enrolment_without_user_verification(phone, activation, db_state):
    begun = phone.client.post(
        "/api/v1/enrolments", json={"activation_id": activation[0], "code": activation[1]}
    )
    before = db_state()
    credential = phone.authenticator.create_credential(
        begun.json["options"], origin=phone.origin, user_verified=False
    )
    finished = phone.client.post(
        f"/api/v1/enrolments/{begun.json['enrolment_id']}", json={"credential": credential}
    )
    assert finished.status_code == 400
    assert finished.json["error"] == "enrolment_rejected"
    # the challenge was burned before verification; nothing else changed
    assert changed_tables(before, db_state()) == {"webauthn_challenges"}


def test_rejects_enrolment_response_replayed(phone, activation, db_state):
    begun = phone.client.post(
        "/api/v1/enrolments", json={"activation_id": activation[0], "code": activation[1]}
    )
    credential = phone.authenticator.create_credential(begun.json["options"], origin=phone.origin)
    url = f"/api/v1/enrolments/{begun.json['enrolment_id']}"
    assert phone.client.post(url, json={"credential": credential}).status_code == 201
    before = db_state()
    again = phone.client.post(url, json={"credential": credential})
    assert again.status_code == 400
    assert db_state() == before


def test_activation_page_renders_for_the_letter_link(client, activation):
    page = client.get(f"/activate/{activation[0]}")
    assert page.status_code == 200
    assert f'data-activation-id="{activation[0]}"' in page.get_data(as_text=True)


def test_native_app_enrols_with_a_configured_origin(app, phone, activation):
    app.config["ALLOWED_ORIGINS"] = ["android:apk-key-hash:Z3VpZGU"]
    phone.origin = "android:apk-key-hash:Z3VpZGU"
    assert phone.enrol(*activation).status_code == 201
    with app.app_context():
        assert db.session.scalars(select(Credential)).one().kind == "app"


def test_rejects_enrolment_from_an_unconfigured_app_origin(phone, activation, db_state):
    phone.origin = "android:apk-key-hash:ZXZpbA"
    begun = phone.client.post(
        "/api/v1/enrolments", json={"activation_id": activation[0], "code": activation[1]}
    )
    before = db_state()
    credential = phone.authenticator.create_credential(begun.json["options"], origin=phone.origin)
    finished = phone.client.post(
        f"/api/v1/enrolments/{begun.json['enrolment_id']}", json={"credential": credential}
    )
    assert finished.status_code == 400
    assert changed_tables(before, db_state()) == {"webauthn_challenges"}
