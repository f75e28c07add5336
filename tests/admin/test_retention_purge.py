"""Retention: ``idserver citizen purge`` erases residents deleted longer ago than the setting.

The audit log holds ids only, so its chain stays complete and verifiable after the rows go.
"""

from __future__ import annotations

import datetime as dt

from clerk_session import run_cli
from clerk_session import sign_in_clerk
from sqlalchemy import select

from idserver.audit.models import AuditEvent
from idserver.citizens.models import ActivationCode
from idserver.citizens.models import Citizen
from idserver.citizens.service import register_citizen
from idserver.db import db
from idserver.db import utcnow
from idserver.passkeys.models import Credential


def _resident(app, given_name, deleted_days_ago=None):
    with app.app_context():
        resident = register_citizen(
            given_name=given_name,
            family_name="Beispiel",
            birthdate="1970-01-01",
            street="Weg 1",
            postcode="12345",
            city="Musterstadt",
        )
        if deleted_days_ago is not None:
            resident.deleted_at = utcnow() - dt.timedelta(days=deleted_days_ago)
            db.session.commit()
        return resident.id


def _backdate_deletion(app, citizen_id, days):
    with app.app_context():
        db.session.get(Citizen, citizen_id).deleted_at = utcnow() - dt.timedelta(days=days)
        db.session.commit()


def test_purge_erases_only_residents_past_retention_and_the_chain_verifies(
    app, runner, tmp_path, client, citizen, enrolled_phone
):
    # A supervisor deletes Erika (who has a phone) in the console; then the retention passes.
    supervisor = sign_in_clerk(app, runner, tmp_path, role="supervisor")
    supervisor.browser.get(f"/admin/residents/{citizen.id}")
    supervisor.post(f"/admin/residents/{citizen.id}/delete", {"confirm": "yes"})
    _backdate_deletion(app, citizen.id, app.config["RETENTION_DAYS"] + 1)
    recent = _resident(app, "Recent", deleted_days_ago=app.config["RETENTION_DAYS"] - 1)
    active = _resident(app, "Active")
    with app.app_context():
        events_about_erika = db.session.scalars(
            select(AuditEvent.id).where(AuditEvent.subject == citizen.id).order_by(AuditEvent.id)
        ).all()
    assert events_about_erika

    code, report = run_cli(runner, "citizen", "purge")
    assert code == 0
    assert report["residents"] == 1 and report["retention_days"] == 90
    assert report["credentials"] == 1 and report["activation_codes"] == 1
    assert report["revocation_codes"] == 1 and report["clerks"] == 0

    with app.app_context():
        remaining = set(db.session.scalars(select(Citizen.id)))
        assert citizen.id not in remaining
        assert {recent, active, supervisor.citizen_id} <= remaining
        assert not db.session.scalars(
            select(Credential).where(Credential.citizen_id == citizen.id)
        ).all()
        assert not db.session.scalars(
            select(ActivationCode).where(ActivationCode.citizen_id == citizen.id)
        ).all()
        # the audit entries about Erika stay (they hold her id, nothing personal)
        assert (
            db.session.scalars(
                select(AuditEvent.id)
                .where(AuditEvent.subject == citizen.id)
                .order_by(AuditEvent.id)
            ).all()
            == events_about_erika
        )
        purged = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "residents_purged")
        ).one()
        assert purged.actor == "operator" and purged.data["count"] == 1
    assert run_cli(runner, "audit", "verify") == (0, {"ok": True})

    # nothing left to purge: no change, no event
    code, again = run_cli(runner, "citizen", "purge")
    assert code == 0 and again["residents"] == 0
    with app.app_context():
        assert (
            len(
                db.session.scalars(
                    select(AuditEvent).where(AuditEvent.event == "residents_purged")
                ).all()
            )
            == 1
        )
    assert run_cli(runner, "audit", "verify") == (0, {"ok": True})


def test_purge_follows_the_retention_setting(app, runner):
    app.config["RETENTION_DAYS"] = 7
    resident = _resident(app, "Old", deleted_days_ago=8)
    code, report = run_cli(runner, "citizen", "purge")
    assert code == 0 and report["residents"] == 1 and report["retention_days"] == 7
    with app.app_context():
        assert db.session.get(Citizen, resident) is None
