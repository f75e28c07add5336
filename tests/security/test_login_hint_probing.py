"""Attacks with ``login_hint``: threat model OI20.

A relying party (or anyone who can send a browser to /authorize) uses ``login_hint`` to learn
whether a ``sub`` belongs to a citizen, or to get a login approved by the wrong person.
An unknown, foreign or malformed hint is ignored exactly as no hint: the same answer, the same
work (every candidate is compared, match or not), nothing stored that differs; a login meant for
one citizen and approved by another ends without a code or session.
"""

from __future__ import annotations

from typing import Any

import pytest
from harness import complete_login
from harness import desktop_status

from idserver.crosslogin.models import LoginTransaction
from idserver.db import db
from idserver.oidc import claims as oidc_claims


def _sub(client: Any, relying_party: Any, phone: Any) -> str:
    tokens = complete_login(client, relying_party, phone)
    return str(relying_party.verify_id_token(client, tokens["id_token"])["sub"])


def _started(app: Any, client: Any, relying_party: Any, **params: str) -> tuple[Any, dict]:
    login_id = relying_party.start_login(client, **params)
    with app.app_context():
        tx = db.session.get(LoginTransaction, login_id)
        shown = {
            "requester": {**tx.requester, "expected_citizen_id": None},
            "state": tx.state,
            "scope": tx.scope,
        }
    return login_id, shown


@pytest.mark.parametrize(
    "hint",
    [
        "A" * 43,  # shaped like a sub, names nobody
        "erika.mustermann@example.org",
        "",
        "x" * 5000,
        "ä" * 43,
    ],
)
def test_rejects_probing_with_an_unknown_login_hint_by_ignoring_it(
    app, client, relying_party, enrolled_phone, hint
):
    _sub(client, relying_party, enrolled_phone)
    _, without = _started(app, client, relying_party)
    login_id, with_hint = _started(app, client, relying_party, login_hint=hint)
    assert with_hint == without  # the same answer and the same login as without a hint
    with app.app_context():
        tx = db.session.get(LoginTransaction, login_id)
        assert tx.requesting.expected_citizen_id is None
    # anyone may approve it, as without a hint
    status = desktop_status(client, login_id).json
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 200


def test_rejects_timing_probes_a_known_and_an_unknown_sub_cost_the_same(
    app, client, relying_party, enrolled_phone, other_citizen_phone, monkeypatch
):
    known = _sub(client, relying_party, enrolled_phone)
    _sub(client, relying_party, other_citizen_phone)
    derived: list[str] = []
    real = oidc_claims.pairwise_subject

    def counting(citizen_id: str, *, client_id: str) -> str:
        derived.append(citizen_id)
        return real(citizen_id, client_id=client_id)

    monkeypatch.setattr(oidc_claims, "pairwise_subject", counting)
    with app.app_context():
        assert oidc_claims.hinted_citizen(known, client_id=relying_party.client_id)
        work_known = len(derived)
        derived.clear()
        assert oidc_claims.hinted_citizen("B" * 43, client_id=relying_party.client_id) is None
        work_unknown = len(derived)
    assert work_known == work_unknown == 2  # every candidate, whether one matches or not


def test_rejects_another_citizens_approval_of_a_hinted_login(
    app, client, relying_party, enrolled_phone, other_citizen_phone, db_state
):
    sub = _sub(client, relying_party, enrolled_phone)
    login_id = relying_party.start_login(client, login_hint=sub)
    status = desktop_status(client, login_id).json
    refused = other_citizen_phone.approve(status["phone_url"], status["number"])
    assert refused.status_code == 403 and refused.json["error"] == "other_account"
    before = db_state()
    # the login is over: neither the right phone nor a retry can revive it
    _, again = enrolled_phone.scan(status["phone_url"])
    assert again.status_code == 400 and again.json["error"] == "login_ended"
    assert db_state() == before
    with app.app_context():
        tx = db.session.get(LoginTransaction, login_id)
        assert tx.state == "denied" and tx.citizen_id is None
