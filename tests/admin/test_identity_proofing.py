"""The clerk records an identity check in person at registration (issue 17 item 3).

Document type, day and office are what ``idserver.assurance`` rates as identity proofing.
"""

from __future__ import annotations

import datetime as dt

import pytest
from clerk_session import sign_in_clerk
from sqlalchemy import select

from idserver.audit.models import AuditEvent
from idserver.citizens.models import Citizen
from idserver.db import db

RESIDENT_FORM = {
    "given_name": "Max",
    "family_name": "Mustermann",
    "birthdate": "31.01.1990",
    "street": "Kreuzstraße 5",
    "postcode": "44139",
    "city": "Dortmund",
    "email": "",
}


def test_register_a_resident_with_an_identity_check_in_person(app, runner, tmp_path):
    clerk = sign_in_clerk(app, runner, tmp_path)
    form = {**RESIDENT_FORM, "proofing_document": "passport", "proofed_on": "02.11.2026"}
    registered = clerk.post("/admin/residents", form)
    assert registered.status_code == 303
    citizen_id = registered.headers["Location"].rsplit("/", 1)[-1]
    with app.app_context():
        stored = db.session.get(Citizen, citizen_id)
        assert (stored.proofing_document, stored.proofed_on, stored.proofing_office) == (
            "passport",
            dt.date(2026, 11, 2),
            app.config["OFFICE_NAME"],
        )
        action = db.session.scalars(
            select(AuditEvent).where(AuditEvent.subject == citizen_id)
        ).first()
        assert action.data["proofing_document"] == "passport"
    detail = clerk.browser.get(registered.headers["Location"]).get_data(as_text=True)
    assert "Passport, checked on" in detail


def test_register_without_an_identity_check_records_none(app, runner, tmp_path):
    clerk = sign_in_clerk(app, runner, tmp_path)
    registered = clerk.post("/admin/residents", RESIDENT_FORM)
    assert registered.status_code == 303
    citizen_id = registered.headers["Location"].rsplit("/", 1)[-1]
    with app.app_context():
        stored = db.session.get(Citizen, citizen_id)
        assert stored.proofing_document is None and stored.proofed_on is None
    assert "none recorded" in clerk.browser.get(registered.headers["Location"]).get_data(
        as_text=True
    )


@pytest.mark.parametrize(
    ("document", "day", "field"),
    [
        ("driving_licence", "02.11.2026", "proofing_document"),  # not an identity document here
        ("id_card", "", "proofed_on"),
        ("id_card", "31.02.2026", "proofed_on"),
        ("id_card", "01.01.2999", "proofed_on"),
    ],
)
def test_register_refuses_a_bad_identity_check_and_stores_nothing(
    app, runner, tmp_path, db_state, document, day, field
):
    clerk = sign_in_clerk(app, runner, tmp_path)
    form = {**RESIDENT_FORM, "proofing_document": document, "proofed_on": day}
    token = clerk.csrf()
    before = db_state()
    refused = clerk.browser.post("/admin/residents", data={**form, "csrf_token": token})
    assert refused.status_code == 400
    assert f'id="{field}-error"' in refused.get_data(as_text=True)
    assert db_state() == before
