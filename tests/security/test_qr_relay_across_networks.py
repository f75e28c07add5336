"""The QR-relay attack seen from the network (RFC 10027 *Establish Proximity*).

The attacker starts a login on their own computer and gets the QR code to a victim, whose
phone scans it from the victim's network: the phone warns the victim (policy ``warn``), or
the login is refused (``deny``), and the audit log names both devices' networks.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from harness import RP_REDIRECT
from harness import RelyingParty
from harness import changed_tables
from harness import desktop_status
from sqlalchemy import select

from idserver.audit.models import AuditEvent
from idserver.crosslogin.models import LoginTransaction
from idserver.db import db
from idserver.oidc.clients import register_client
from idserver.oidc.models import AuthorizationCode
from idserver.passkeys.models import Credential

ATTACKER = "203.0.113.66"  # documentation addresses (RFC 5737)
VICTIM = "198.51.100.23"


def _relayed(app, relying_party, victim_phone):
    """A login started on the attacker's computer, and the victim's phone in its own network."""
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = ATTACKER
    login_id = relying_party.start_login(attacker)
    victim_phone.client.environ_base["REMOTE_ADDR"] = VICTIM
    return attacker, login_id, desktop_status(attacker, login_id).json


def _tx(app, login_id):
    with app.app_context():
        return db.session.get(LoginTransaction, login_id, populate_existing=True)


def _events(app, name):
    with app.app_context():
        return [e.data for e in db.session.scalars(select(AuditEvent)) if e.event == name]


def _nothing_approved(app):
    with app.app_context():
        assert db.session.scalars(select(Credential)).one().sign_count == 0
        assert db.session.scalars(select(AuthorizationCode)).all() == []


def test_warns_the_phone_when_the_desktop_is_on_another_network(app, relying_party, enrolled_phone):
    _, _, status = _relayed(app, relying_party, enrolled_phone)
    _, scanned = enrolled_phone.scan(status["phone_url"])
    assert scanned.status_code == 200
    assert scanned.json["context"]["same_network"] is False
    assert [w["code"] for w in scanned.json["warnings"]] == ["other_network"]
    # the phone's browser page shows it as an alert before the number is asked for
    _, _, status = _relayed(app, relying_party, enrolled_phone)
    page = enrolled_phone.client.get(status["phone_url"].replace("http://localhost", ""))
    html = page.get_data(as_text=True)
    assert 'role="alert"' in html
    assert html.index('role="alert"') < html.index('id="approve-form"')


def test_rejects_approval_from_another_network_under_deny_policy(
    app, relying_party, enrolled_phone, db_state
):
    app.config["PROXIMITY_POLICY"] = "deny"
    attacker, login_id, status = _relayed(app, relying_party, enrolled_phone)
    before = db_state()
    _, scanned = enrolled_phone.scan(status["phone_url"])
    assert scanned.status_code == 403
    assert scanned.json["error"] == "proximity_required"
    assert "binding" not in scanned.json
    # only the login itself ended (and that is audited): no binding, no approval, no code
    assert changed_tables(before, db_state()) == {"login_transactions", "audit_events"}
    tx = _tx(app, login_id)
    assert (tx.state, tx.deny_reason) == ("denied", "other_network")
    assert tx.phone_hash is None and tx.citizen_id is None and tx.challenge_nonce is None
    assert (tx.desktop_ip, tx.phone_ip) == (ATTACKER, VICTIM)
    _nothing_approved(app)
    # the attacker's computer learns only that it was refused, and its relying party too
    shown = desktop_status(attacker, login_id).json
    assert (shown["status"], shown["reason"]) == ("denied", "other_network")
    location = attacker.get(shown["continue_url"]).headers["Location"]
    assert parse_qs(urlsplit(location).query)["error"] == ["access_denied"]
    # scanning again changes nothing
    before = db_state()
    _, again = enrolled_phone.scan(status["phone_url"])
    assert again.status_code == 400 and again.json["error"] == "login_ended"
    assert db_state() == before


def test_rejects_approval_from_another_network_under_the_clients_deny_policy(
    app, enrolled_phone, db_state
):
    with app.app_context():
        registered, secret = register_client(
            name="Waffenbehörde", redirect_uris=[RP_REDIRECT], proximity_policy="deny"
        )
    strict = RelyingParty(app, registered.client_id, secret or "")
    _, login_id, status = _relayed(app, strict, enrolled_phone)
    before = db_state()
    _, scanned = enrolled_phone.scan(status["phone_url"])
    assert (scanned.status_code, scanned.json["error"]) == (403, "proximity_required")
    assert changed_tables(before, db_state()) == {"login_transactions", "audit_events"}
    assert _tx(app, login_id).state == "denied"
    _nothing_approved(app)


def test_rejects_challenge_from_another_network_after_the_policy_turned_deny(
    app, relying_party, enrolled_phone, db_state
):
    _, login_id, status = _relayed(app, relying_party, enrolled_phone)
    _, scanned = enrolled_phone.scan(status["phone_url"])
    assert scanned.status_code == 200
    app.config["PROXIMITY_POLICY"] = "deny"
    before = db_state()
    issued = enrolled_phone.challenge(login_id, scanned.json["binding"], status["number"])
    assert (issued.status_code, issued.json["error"]) == (403, "proximity_required")
    assert "options" not in issued.json
    assert changed_tables(before, db_state()) == {"login_transactions", "audit_events"}
    tx = _tx(app, login_id)
    assert (tx.state, tx.deny_reason, tx.challenges_issued) == ("denied", "other_network", 0)
    _nothing_approved(app)


def test_approval_from_another_network_is_audited_with_both_addresses(
    app, relying_party, enrolled_phone
):
    # Under "warn" a citizen who sits at the computer may still confirm; the audit log then
    # holds the evidence: both devices' networks, tied to the login's full addresses by its id.
    _, login_id, status = _relayed(app, relying_party, enrolled_phone)
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 200
    [approved] = _events(app, "login_approved")
    assert approved["login_id"] == login_id
    assert approved["desktop_network"] == "203.0.113.0/24"
    assert approved["phone_network"] == "198.51.100.0/24"
    assert approved["same_network"] is False
    tx = _tx(app, login_id)
    assert (tx.desktop_ip, tx.phone_ip) == (ATTACKER, VICTIM)
    # the log outlives personal data: networks, never the full addresses
    with app.app_context():
        dump = json.dumps([e.data for e in db.session.scalars(select(AuditEvent))])
    assert ATTACKER not in dump and VICTIM not in dump


def test_refusal_from_another_network_is_audited_with_both_addresses(
    app, relying_party, enrolled_phone
):
    app.config["PROXIMITY_POLICY"] = "deny"
    _, refused_login, status = _relayed(app, relying_party, enrolled_phone)
    assert enrolled_phone.scan(status["phone_url"])[1].status_code == 403
    app.config["PROXIMITY_POLICY"] = "warn"
    _, denied_login, status = _relayed(app, relying_party, enrolled_phone)
    _, scanned = enrolled_phone.scan(status["phone_url"])
    denied = enrolled_phone.client.post(
        f"/api/v1/logins/{denied_login}/deny", json={"binding": scanned.json["binding"]}
    )
    assert denied.status_code == 200
    events = {e["login_id"]: e for e in _events(app, "login_denied")}
    assert events[refused_login]["reason"] == "other_network"
    assert events[denied_login]["reason"] == "denied"
    for event in events.values():
        assert event["desktop_network"] == "203.0.113.0/24"
        assert event["phone_network"] == "198.51.100.0/24"
        assert event["same_network"] is False
