"""Clerks are accounts with a role: added, listed and disabled with the ``idserver`` command."""

from __future__ import annotations

from clerk_session import add_clerk
from clerk_session import run_cli
from clerk_session import sign_in_clerk
from sqlalchemy import select

from idserver.audit.models import AuditEvent
from idserver.citizens.models import Citizen
from idserver.clerks import Clerk
from idserver.db import db


def _events(app):
    with app.app_context():
        return [
            (e.event, e.actor, e.subject, e.data)
            for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        ]


def test_clerk_add_creates_a_citizen_record_a_clerk_and_an_activation_code(app, runner):
    added = add_clerk(runner, role="supervisor")
    assert added["role"] == "supervisor" and added["display_name"] == "Clara Schreiber"
    assert added["activation_url"] == f"http://localhost/activate/{added['activation_id']}"
    assert len(added["code"]) == 19 and added["expires_at"] and added["disabled_at"] is None
    with app.app_context():
        clerk = db.session.get(Clerk, added["id"])
        citizen = db.session.get(Citizen, added["citizen_id"])
        assert clerk is not None and clerk.citizen_id == citizen.id
        # the clerk's address of record is the citizens' office, from the settings
        assert (citizen.street, citizen.postcode, citizen.city) == (
            app.config["OFFICE_STREET"],
            app.config["OFFICE_POSTCODE"],
            app.config["OFFICE_CITY"],
        )
        assert citizen.email == "clara.schreiber@musterstadt.example"
    assert [(event, actor, subject) for event, actor, subject, _ in _events(app)] == [
        ("clerk_added", "operator", added["citizen_id"]),
        ("activation_issued", "operator", added["citizen_id"]),
    ]


def test_clerk_add_rejects_a_bad_email_and_stores_nothing(runner, db_state):
    before = db_state()
    code, error = run_cli(
        runner, "clerk", "add", "--given-name", "A", "--family-name", "B", "--email", "nope"
    )
    assert code == 1 and error["error"] == "invalid_citizen"
    assert db_state() == before


def test_clerk_add_rejects_an_unknown_role_and_stores_nothing(runner, db_state):
    before = db_state()
    result = runner.invoke(
        args=[
            "clerk",
            "add",
            "--given-name",
            "A",
            "--family-name",
            "B",
            "--email",
            "a@b.example",
            "--role",
            "root",  # "admin" is a role now (the relying parties' administrators)
        ]
    )
    assert result.exit_code != 0
    assert db_state() == before


def test_clerk_list_and_disable(app, runner):
    first = add_clerk(runner, given_name="Clara")
    second = add_clerk(runner, given_name="Jonas", role="supervisor")
    code, listed = run_cli(runner, "clerk", "list")
    assert code == 0
    assert [(c["id"], c["role"], c["disabled_at"]) for c in listed] == [
        (first["id"], "clerk", None),
        (second["id"], "supervisor", None),
    ]
    code, disabled = run_cli(runner, "clerk", "disable", first["id"])
    assert code == 0 and disabled["disabled_at"]
    code, again = run_cli(runner, "clerk", "disable", first["id"])
    assert code == 0 and again["disabled_at"] == disabled["disabled_at"]
    disabling = [e for e in _events(app) if e[0] == "clerk_disabled"]
    assert disabling == [
        ("clerk_disabled", "operator", first["citizen_id"], {"clerk_id": first["id"]})
    ]
    code, error = run_cli(runner, "clerk", "disable", "no-such-clerk")
    assert code == 1 and error["error"] == "not_found"


def test_a_disabled_clerk_is_refused_at_once(app, runner, tmp_path, db_state):
    clerk = sign_in_clerk(app, runner, tmp_path)
    assert clerk.browser.get("/admin").status_code == 200
    assert run_cli(runner, "clerk", "disable", clerk.clerk_id)[0] == 0
    before = db_state()
    refused = clerk.browser.get("/admin?name=Schreiber")
    assert refused.status_code == 403
    assert "not_a_clerk" in refused.get_data(as_text=True)
    assert db_state() == before
