"""The audit log: every event lands in a chain that proves itself untouched or names the spot."""

from __future__ import annotations

import json

from harness import complete_login
from sqlalchemy import select
from sqlalchemy import text

from idserver.audit import record_event
from idserver.audit.models import AuditCheckpoint
from idserver.audit.models import AuditEvent
from idserver.db import db


def _events(app):
    with app.app_context():
        return [
            (e.id, e.event) for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        ]


def _verify(runner):
    result = runner.invoke(args=["audit", "verify"])
    return result.exit_code, json.loads(result.output)


def _sql(app, statement, **params):
    with app.app_context():
        db.session.execute(text(statement), params)
        db.session.commit()


def test_login_flow_is_audited_with_ids_only(app, client, relying_party, enrolled_phone):
    complete_login(client, relying_party, enrolled_phone)
    names = [name for _, name in _events(app)]
    assert names == ["activation_issued", "enrolment", "login_approved", "token_issued"]
    with app.app_context():
        dump = json.dumps([e.data for e in db.session.scalars(select(AuditEvent))])
    assert "Erika" not in dump and "Kampstraße" not in dump and "erika@" not in dump


def test_verify_passes_on_an_untouched_log(app, runner, client, relying_party, enrolled_phone):
    complete_login(client, relying_party, enrolled_phone)
    assert _verify(runner) == (0, {"ok": True})


def _chain_of(app, count):
    with app.app_context():
        for n in range(count):
            record_event("clerk_action", actor="clerk:test", action="search", n=n)
        db.session.commit()


def test_verify_names_an_edited_entry(app, runner):
    _chain_of(app, 6)
    _sql(app, "UPDATE audit_events SET actor = 'clerk:someone-else' WHERE id = 4")
    code, report = _verify(runner)
    assert code == 1 and report["first_bad_entry"] == 4
    assert report["reason"] == "entry was changed"


def test_verify_names_the_spot_of_a_deleted_entry(app, runner):
    _chain_of(app, 6)
    _sql(app, "DELETE FROM audit_events WHERE id = 3")
    code, report = _verify(runner)
    assert code == 1 and report["first_bad_entry"] == 4


def test_verify_names_reordered_entries(app, runner):
    _chain_of(app, 6)
    with app.app_context():
        rows = {
            e.id: (e.event, e.actor, e.data, e.prev_hash, e.hash, e.at)
            for e in db.session.scalars(select(AuditEvent))
        }
    # swap the contents of entries 2 and 5, hashes and all, as an attacker with SQL access could
    _sql(
        app,
        "UPDATE audit_events SET prev_hash = :p, hash = :h WHERE id = 2",
        p="x" * 64,
        h="y" * 64,
    )
    for target, source in ((5, 2), (2, 5)):
        _sql(
            app,
            "UPDATE audit_events SET data = :d, prev_hash = :p, hash = :h WHERE id = :i",
            d=json.dumps(rows[source][2]),
            p=rows[source][3],
            h=rows[source][4],
            i=target,
        )
    code, report = _verify(runner)
    assert code == 1 and report["first_bad_entry"] == 2


def test_checkpoint_catches_a_rewritten_chain(app, runner):
    app.config["AUDIT_CHECKPOINT_EVERY"] = 3
    _chain_of(app, 4)
    with app.app_context():
        assert db.session.scalars(select(AuditCheckpoint.event_id)).all() == [3]
        # rewrite entry 2 and recompute every hash after it: the chain itself looks fine
        from idserver.audit.service import _entry_hash

        entries = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        entries[1].data = {"action": "nothing to see"}
        previous = entries[0].hash
        for entry in entries[1:]:
            entry.prev_hash = previous
            entry.hash = _entry_hash(previous, entry)
            previous = entry.hash
        db.session.commit()
    code, report = _verify(runner)
    assert code == 1 and report["first_bad_entry"] == 3
    assert "checkpoint" in report["reason"]


def test_export_writes_json_lines(app, runner):
    _chain_of(app, 3)
    result = runner.invoke(args=["audit", "export"])
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["id"] for line in lines] == [1, 2, 3]
    assert lines[1]["prev_hash"] == lines[0]["hash"]


def test_key_rotation_is_audited(app, runner):
    assert runner.invoke(args=["keys", "rotate"]).exit_code == 0
    # one event per ID-token key rotated: the ES256 and the RS256 one
    assert [name for _, name in _events(app)] == ["key_rotated", "key_rotated"]
    with app.app_context():
        events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        assert [e.data["alg"] for e in events] == ["ES256", "RS256"]
    assert _verify(runner)[0] == 0
