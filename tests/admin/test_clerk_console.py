"""The clerk console: find and register residents, revoke devices, delete, read the audit log.

Each clerk is added with the CLI, enrols a soft phone with the activation code like any
resident, and logs in to /admin through the QR login.
"""

from __future__ import annotations

import json
import re

import pytest
from clerk_session import log_in
from clerk_session import run_cli
from clerk_session import sign_in_clerk
from harness import complete_login
from harness import desktop_status
from page import html_of
from sqlalchemy import select

from idserver.audit.models import AuditEvent
from idserver.citizens.models import Citizen
from idserver.citizens.service import import_citizens
from idserver.db import db
from idserver.passkeys.models import Credential
from idserver.sessions import BrowserSession

RESIDENT_LINK = re.compile(r'href="/admin/residents/([0-9a-f-]{36})"')


def _clerk_actions(app, actor=None):
    with app.app_context():
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "clerk_action").order_by(AuditEvent.id)
        ).all()
        return [
            (e.data["action"], e.subject, e.data)
            for e in events
            if actor is None or e.actor == actor
        ]


def _residents_on(page):
    return RESIDENT_LINK.findall(page.get_data(as_text=True))


def test_a_clerk_logs_in_with_their_own_passkey(app, runner, tmp_path):
    clerk = sign_in_clerk(app, runner, tmp_path)
    page = clerk.browser.get("/admin")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Clara Schreiber" in text and "Stadt Musterstadt" in text
    with app.app_context():
        session = db.session.scalars(select(BrowserSession)).one()
        assert session.citizen_id == clerk.citizen_id


def test_search_by_name_postcode_and_birthdate(app, runner, tmp_path, citizen, enrolled_phone):
    clerk = sign_in_clerk(app, runner, tmp_path)
    by_name = clerk.browser.get("/admin?name=erika+muster")
    assert by_name.status_code == 200
    assert _residents_on(by_name) == [citizen.id]
    row = by_name.get_data(as_text=True)
    assert "Kampstraße 12, 44137 Dortmund" in row and citizen.id in row
    assert re.search(r'class="number-cell">1<', row)  # Erika's one active device
    assert _residents_on(clerk.browser.get("/admin?postcode=441")) == [citizen.id]
    assert _residents_on(clerk.browser.get("/admin?birthdate=12.08.1984")) == [citizen.id]
    assert _residents_on(clerk.browser.get("/admin?birthdate=1984-08-12&postcode=44137")) == [
        citizen.id
    ]
    assert _residents_on(clerk.browser.get("/admin?name=Erika&postcode=99999")) == []
    # a search term with SQL wildcards matches literally
    assert _residents_on(clerk.browser.get("/admin?name=%25")) == []
    searches = [data for action, _, data in _clerk_actions(app) if action == "search"]
    assert len(searches) == 6
    assert searches[0]["fields"] == ["name"] and searches[0]["shown"] == [citizen.id]
    assert "erika" not in json.dumps(searches).lower()  # the query text is never recorded


def test_an_empty_or_malformed_search_shows_no_one_and_records_nothing(
    app, runner, tmp_path, citizen, db_state
):
    clerk = sign_in_clerk(app, runner, tmp_path)
    before = db_state()
    assert _residents_on(clerk.browser.get("/admin")) == []
    malformed = clerk.browser.get("/admin?birthdate=gestern")
    assert malformed.status_code == 200 and 'aria-invalid="true"' in malformed.get_data(
        as_text=True
    )
    assert db_state() == before


def _register(app, *names):
    with app.app_context():
        rows = [
            {
                "given_name": given,
                "family_name": family,
                "birthdate": "1970-01-01",
                "street": "Weg 1",
                "postcode": "12345",
                "city": "Musterstadt",
            }
            for given, family in names
        ]
        import_citizens(json.dumps(rows), fmt="json")
        found = db.session.scalars(select(Citizen).order_by(Citizen.family_name)).all()
        return {c.given_name: c.id for c in found}


def test_search_finds_umlauts_and_their_spelling_without(app, runner, tmp_path):
    # A clerk types what the resident says or what the foreign document shows: "Mueller" and
    # "Müller" are the same name (DIN 5007-2), both ways, and ä/ae, ö/oe, ü/ue, ß/ss alike.
    ids = _register(
        app,
        ("Jürgen", "Müller"),
        ("Juergen", "Mueller"),
        ("Käthe", "Strauß"),
        ("Goetz", "Schoenberg"),
        ("Renée", "Weiß"),
        ("Hans", "Meier"),
    )
    clerk = sign_in_clerk(app, runner, tmp_path)
    both_muellers = sorted([ids["Jürgen"], ids["Juergen"]])
    for typed in ("Mueller", "Müller", "MÜLLER", "jürgen müller", "juergen"):
        assert sorted(_residents_on(clerk.browser.get(f"/admin?name={typed}"))) == both_muellers
    assert _residents_on(clerk.browser.get("/admin?name=Strauss")) == [ids["Käthe"]]
    assert _residents_on(clerk.browser.get("/admin?name=Kaethe+Strauß")) == [ids["Käthe"]]
    assert _residents_on(clerk.browser.get("/admin?name=Götz+Schönberg")) == [ids["Goetz"]]
    assert _residents_on(clerk.browser.get("/admin?name=renee+weiss")) == [ids["Renée"]]
    assert _residents_on(clerk.browser.get("/admin?name=Muller")) == []  # not a spelling of ü
    page = html_of(clerk.browser.get("/admin?name=Mueller"))
    assert [
        a.words for a in page.find("a") if RESIDENT_LINK.match(f'href="{a.attrs["href"]}"')
    ] == [
        "Mueller, Juergen",
        "Müller, Jürgen",
    ]


def test_the_search_name_follows_a_changed_name(app, runner, tmp_path):
    ids = _register(app, ("Erik", "Schmidt"))
    with app.app_context():
        db.session.get(Citizen, ids["Erik"]).family_name = "Schäfer"
        db.session.commit()
    clerk = sign_in_clerk(app, runner, tmp_path)
    assert _residents_on(clerk.browser.get("/admin?name=schaefer")) == [ids["Erik"]]
    assert _residents_on(clerk.browser.get("/admin?name=schmidt")) == []


def test_every_drop_down_sits_in_kerns_bordered_wrapper(app, runner, tmp_path, citizen):
    # KERN draws the border and the arrow of a select on its wrapper (WCAG 1.4.11); a bare
    # .kern-form-input__select has neither.
    clerk = sign_in_clerk(app, runner, tmp_path, role="supervisor")
    for path in ("/admin/audit", f"/admin/residents/{citizen.id}"):
        selects = html_of(clerk.browser.get(path)).find("select")
        assert selects, path
        for select_element in selects:
            assert select_element.parents[-1].attrs.get("class") == (
                "kern-form-input__select-wrapper"
            ), path


def test_search_results_are_paginated(app, runner, tmp_path):
    with app.app_context():
        import_citizens(
            json.dumps(
                [
                    {
                        "given_name": f"Person{n:02d}",
                        "family_name": "Beispiel",
                        "birthdate": "1970-01-01",
                        "street": "Weg 1",
                        "postcode": "12345",
                        "city": "Musterstadt",
                    }
                    for n in range(25)
                ]
            ),
            fmt="json",
        )
    clerk = sign_in_clerk(app, runner, tmp_path)
    first = clerk.browser.get("/admin?name=beispiel")
    second = clerk.browser.get("/admin?name=beispiel&page=2")
    assert len(_residents_on(first)) == 20 and len(_residents_on(second)) == 5
    assert not set(_residents_on(first)) & set(_residents_on(second))
    assert "25 residents found" in first.get_data(as_text=True)
    assert 'href="/admin?name=beispiel&amp;page=2"' in first.get_data(as_text=True)


RESIDENT_FORM = {
    "given_name": "Max",
    "family_name": "Mustermann",
    "birthdate": "31.01.1990",
    "street": "Kreuzstraße 5",
    "postcode": "44139",
    "city": "Dortmund",
    "email": "",
}


def test_register_a_resident(app, runner, tmp_path):
    clerk = sign_in_clerk(app, runner, tmp_path)
    registered = clerk.post("/admin/residents", RESIDENT_FORM)
    assert registered.status_code == 303
    citizen_id = registered.headers["Location"].rsplit("/", 1)[-1]
    with app.app_context():
        stored = db.session.get(Citizen, citizen_id)
        assert (stored.given_name, stored.birthdate.isoformat(), stored.email) == (
            "Max",
            "1990-01-31",
            None,
        )
    detail = clerk.browser.get(registered.headers["Location"])
    assert detail.status_code == 200
    text = detail.get_data(as_text=True)
    assert "The resident has been registered" in text and "Kreuzstraße 5" in text
    assert ("register", citizen_id) in [(a, s) for a, s, _ in _clerk_actions(app)]


def test_register_refuses_invalid_input_and_stores_nothing(app, runner, tmp_path, db_state):
    clerk = sign_in_clerk(app, runner, tmp_path)
    token = clerk.csrf()
    before = db_state()
    refused = clerk.browser.post(
        "/admin/residents",
        data={
            "csrf_token": token,
            "given_name": "Max",
            "family_name": "",
            "birthdate": "2999-01-01",
            "street": "Kreuzstraße 5",
            "postcode": "44139",
            "city": "Dortmund",
            "email": "no-at-sign",
        },
    )
    assert refused.status_code == 400
    text = refused.get_data(as_text=True)
    for field in ("family_name", "birthdate", "email"):
        assert f'id="{field}-error"' in text
    assert 'value="Kreuzstraße 5"' in text  # what was typed is kept
    assert db_state() == before


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("postcode", "4413", "Please enter the postcode with its five digits."),
        ("postcode", "441390", "Please enter the postcode with its five digits."),
        ("postcode", "D-44139", "Please enter the postcode with its five digits."),
        ("birthdate", "31.02.1980", "This date does not exist. Please check the day and month."),
        ("birthdate", "1980-02-30", "This date does not exist. Please check the day and month."),
        ("birthdate", "29.02.1983", "This date does not exist. Please check the day and month."),
        ("birthdate", "12/08/1984", "Please enter the date of birth as DD.MM.YYYY."),
        ("birthdate", "01.01.2999", "This date of birth is not possible."),
    ],
)
def test_register_refuses_a_bad_postcode_or_date_and_says_which(
    app, runner, tmp_path, db_state, field, value, message
):
    clerk = sign_in_clerk(app, runner, tmp_path)
    token = clerk.csrf()
    before = db_state()
    refused = clerk.browser.post(
        "/admin/residents", data={"csrf_token": token, **RESIDENT_FORM, field: value}
    )
    assert refused.status_code == 400
    page = html_of(refused)
    (error,) = page.find("p", id=f"{field}-error")
    assert error.words == message
    (invalid,) = [e for e in page.find("input") if e.attrs.get("aria-invalid") == "true"]
    assert invalid.attrs["id"] == field and invalid.attrs["value"] == value
    assert db_state() == before


def test_a_leap_day_is_a_date(app, runner, tmp_path):
    clerk = sign_in_clerk(app, runner, tmp_path)
    registered = clerk.post("/admin/residents", {**RESIDENT_FORM, "birthdate": "29.02.1984"})
    assert registered.status_code == 303


def test_searching_for_a_date_that_does_not_exist_says_so(app, runner, tmp_path, citizen, db_state):
    clerk = sign_in_clerk(app, runner, tmp_path)
    before = db_state()
    page = html_of(clerk.browser.get("/admin?birthdate=31.02.1980"))
    (error,) = page.find("p", id="birthdate-error")
    assert error.words == "This date does not exist. Please check the day and month."
    assert db_state() == before


def test_revoking_devices_stops_logins_and_ends_sessions(
    app, runner, tmp_path, client, relying_party, citizen, enrolled_phone
):
    complete_login(client, relying_party, enrolled_phone)  # Erika has a session now
    clerk = sign_in_clerk(app, runner, tmp_path)
    revoked = clerk.post(f"/admin/residents/{citizen.id}/revoke-devices")
    assert revoked.status_code == 303
    assert revoked.headers["Location"] == f"http://localhost/admin/residents/{citizen.id}"
    detail = clerk.browser.get(revoked.headers["Location"]).get_data(as_text=True)
    assert "1 device(s) revoked and 1 session(s) ended." in detail
    assert "state-revoked" in detail
    with app.app_context():
        credential = db.session.scalars(
            select(Credential).where(Credential.citizen_id == citizen.id)
        ).one()
        assert credential.revoked_at is not None
        sessions = db.session.scalars(
            select(BrowserSession).where(BrowserSession.citizen_id == citizen.id)
        ).all()
        assert sessions and all(s.ended_at is not None for s in sessions)
    # the phone cannot log in any more
    browser = app.test_client()
    login_id = relying_party.start_login(browser)
    status = desktop_status(browser, login_id).json
    refused = enrolled_phone.approve(status["phone_url"], status["number"])
    assert refused.status_code in (400, 403) and refused.json["error"] == "unknown_device"
    actions = _clerk_actions(app, clerk.actor)
    assert (
        "revoke_devices",
        citizen.id,
        {"action": "revoke_devices", "credential_ids": [credential.id]},
    ) in actions
    with app.app_context():
        device_events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "device_revoked")
        ).all()
        assert [(e.actor, e.subject, e.data["credential_id"]) for e in device_events] == [
            (clerk.actor, citizen.id, credential.id)
        ]


def test_a_supervisor_marks_a_resident_deleted(
    app, runner, tmp_path, relying_party, citizen, enrolled_phone, db_state
):
    supervisor = sign_in_clerk(app, runner, tmp_path, role="supervisor")
    path = f"/admin/residents/{citizen.id}/delete"
    token = supervisor.csrf()
    before = db_state()
    unconfirmed = supervisor.browser.post(path, data={"csrf_token": token})
    assert unconfirmed.status_code == 303 and db_state() == before
    deleted = supervisor.browser.post(path, data={"csrf_token": token, "confirm": "yes"})
    assert deleted.status_code == 303
    with app.app_context():
        stored = db.session.get(Citizen, citizen.id)
        assert stored.deleted_at is not None
        devices = db.session.scalars(select(Credential).where(Credential.citizen_id == citizen.id))
        assert all(c.revoked_at for c in devices)
    detail = supervisor.browser.get(deleted.headers["Location"]).get_data(as_text=True)
    assert "marked deleted" in detail.lower()
    assert f'action="/admin/residents/{citizen.id}/letter"' not in detail
    browser = app.test_client()
    login_id = relying_party.start_login(browser)
    status = desktop_status(browser, login_id).json
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code != 200
    # deleting again changes nothing
    before = db_state()
    again = supervisor.browser.post(path, data={"csrf_token": token, "confirm": "yes"})
    assert again.status_code == 303 and db_state() == before
    actions = [a for a, s, _ in _clerk_actions(app, supervisor.actor) if s == citizen.id]
    assert actions.count("delete_resident") == 1


def test_a_plain_clerk_may_not_delete_residents(app, runner, tmp_path, citizen, db_state):
    clerk = sign_in_clerk(app, runner, tmp_path)
    token = clerk.csrf()
    assert 'name="confirm"' not in clerk.browser.get(f"/admin/residents/{citizen.id}").get_data(
        as_text=True
    )
    before = db_state()
    refused = clerk.browser.post(
        f"/admin/residents/{citizen.id}/delete", data={"csrf_token": token, "confirm": "yes"}
    )
    assert refused.status_code == 403 and "not_allowed" in refused.get_data(as_text=True)
    assert db_state() == before


def test_a_clerks_own_record_cannot_be_deleted(app, runner, tmp_path, db_state):
    supervisor = sign_in_clerk(app, runner, tmp_path, role="supervisor")
    token = supervisor.csrf()
    before = db_state()
    refused = supervisor.browser.post(
        f"/admin/residents/{supervisor.citizen_id}/delete",
        data={"csrf_token": token, "confirm": "yes"},
    )
    assert refused.status_code == 409
    assert db_state() == before


def test_the_audit_log_viewer(app, runner, tmp_path, citizen):
    clerk = sign_in_clerk(app, runner, tmp_path)
    clerk.browser.get(f"/admin/residents/{citizen.id}")
    page = clerk.browser.get("/admin/audit")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Verified: the audit log is complete and unchanged." in text
    numbers = [int(n) for n in re.findall(r'<th scope="row">(\d+)</th>', text)]
    assert numbers == sorted(numbers, reverse=True) and len(numbers) >= 4  # newest first
    filtered = clerk.browser.get(f"/admin/audit?event=clerk_action&subject={citizen.id}")
    rows = re.findall(r'<th scope="row">(\d+)</th>', filtered.get_data(as_text=True))
    assert len(rows) == 1  # the view of Erika's record
    views = [d for a, _, d in _clerk_actions(app, clerk.actor) if a == "view_audit"]
    assert views == [
        {"action": "view_audit", "page": 1},
        {
            "action": "view_audit",
            "page": 1,
            "filter_event": "clerk_action",
            "filter_subject": citizen.id,
        },
    ]
    clerk.browser.get("/admin/audit?subject=Mustermann")
    assert _clerk_actions(app, clerk.actor)[-1][2]["filter_subject"] == "(no match)"


def test_the_audit_log_viewer_shows_tampering(app, runner, tmp_path):
    clerk = sign_in_clerk(app, runner, tmp_path)
    with app.app_context():
        first = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).first()
        first.actor = "someone-else"
        db.session.commit()
        first_id = first.id
    text = clerk.browser.get("/admin/audit").get_data(as_text=True)
    assert "The audit log has been tampered with." in text
    assert f"First broken entry: #{first_id}" in text


def test_every_clerk_action_is_audited_and_the_chain_verifies(
    app, runner, tmp_path, citizen, enrolled_phone
):
    supervisor = sign_in_clerk(app, runner, tmp_path, role="supervisor")
    supervisor.browser.get("/admin?name=Mustermann")
    registered = supervisor.post(
        "/admin/residents",
        {
            "given_name": "Max",
            "family_name": "Muster",
            "birthdate": "1990-01-31",
            "street": "Weg 2",
            "postcode": "12345",
            "city": "Musterstadt",
        },
    )
    new_id = registered.headers["Location"].rsplit("/", 1)[-1]
    supervisor.browser.get(registered.headers["Location"])
    assert supervisor.post(f"/admin/residents/{new_id}/letter").status_code == 200
    supervisor.post(f"/admin/residents/{citizen.id}/revoke-devices")
    supervisor.post(f"/admin/residents/{new_id}/delete", {"confirm": "yes"})
    supervisor.browser.get("/admin/audit")
    actions = _clerk_actions(app)
    assert {action for action, _, _ in actions} == {
        "search",
        "register",
        "view_resident",
        "issue_letter",
        "revoke_devices",
        "delete_resident",
        "view_audit",
    }
    with app.app_context():
        actors = set(
            db.session.scalars(select(AuditEvent.actor).where(AuditEvent.event == "clerk_action"))
        )
        dump = json.dumps([e.data for e in db.session.scalars(select(AuditEvent))])
    assert actors == {supervisor.actor}
    for personal in ("Mustermann", "Muster", "Weg 2", "Kampstraße", "1990-01-31"):
        assert personal not in dump
    code, report = run_cli(runner, "audit", "verify")
    assert (code, report) == (0, {"ok": True})


def test_after_logging_in_a_clerk_lands_on_the_page_they_asked_for(app, runner, tmp_path):
    clerk = sign_in_clerk(app, runner, tmp_path)
    browser = app.test_client()
    finished = log_in(browser, clerk.phone, page="/admin/audit")
    assert finished.headers["Location"] == "http://localhost/admin/audit"
    assert browser.get("/admin/audit").status_code == 200
