"""Attacks on assurance levels (threat model OI19): a login claimed at a level it did not reach.

A relying party that asks for ``substantial`` gets it only from a resident proofed in person,
approving with a device the operator rates that high; otherwise the login ends and the relying
party hears ``unmet_authentication_requirements``, never a code at a lower level.
"""

from __future__ import annotations

from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
from harness import ISSUER
from harness import complete_login
from harness import desktop_status
from sqlalchemy import func
from sqlalchemy import select

from idserver.audit.models import AuditEvent
from idserver.crosslogin.models import LoginTransaction
from idserver.db import db
from idserver.oidc.models import AuthorizationCode
from idserver.sessions import BrowserSession

SUBSTANTIAL = "urn:buergerid:loa:substantial"
RAISED = {"ASSURANCE_IN_PERSON": "substantial", "ASSURANCE_SYNCED_PASSKEY": "substantial"}


def _error_query(response) -> dict[str, list[str]]:
    assert response.status_code == 303, response.get_data(as_text=True)
    location = urlsplit(response.headers["Location"])
    assert location.path == "/callback"
    return parse_qs(location.query)


@pytest.mark.parametrize(
    "acr_values",
    [
        SUBSTANTIAL,  # no configured level reaches it (every mapping is low by default)
        "http://eidas.europa.eu/LoA/high",
        "urn:buergerid:loa:SUBSTANTIAL urn:buergerid:loa:highest",  # only unknown values
        "STORK-QAA-Level-3",  # a SAML name, not an acr value
    ],
)
def test_rejects_acr_values_no_login_can_meet(client, relying_party, db_state, acr_values):
    before = db_state()
    params = relying_party.authorize_params(acr_values=acr_values)
    query = _error_query(client.get("/authorize?" + urlencode(params)))
    assert query["error"] == ["unmet_authentication_requirements"]
    assert query["state"] == [relying_party.state] and query["iss"] == [ISSUER]
    assert db_state() == before  # no login started


def _counts(app) -> dict[str, int]:
    with app.app_context():
        return {
            model.__name__: db.session.scalar(select(func.count()).select_from(model))
            for model in (AuthorizationCode, BrowserSession)
        }


def test_rejects_a_low_citizen_asking_for_substantial(app, client, relying_party, enrolled_phone):
    """The operator rates in-person proofing and synced passkeys substantial, but this resident
    was registered without a proofing record: the approval is refused and ends the login."""
    app.config.update(RAISED)
    login_id = relying_party.start_login(client, acr_values=SUBSTANTIAL)
    before = _counts(app)
    status = desktop_status(client, login_id).json
    approved = enrolled_phone.approve(status["phone_url"], status["number"])
    assert approved.status_code == 403
    assert approved.json["error"] == "level_too_low"
    assert "Vertrauensniveau" in approved.json["error_description"]  # what the phone shows
    status = desktop_status(client, login_id).json
    assert status["status"] == "denied"
    query = _error_query(client.get(status["continue_url"]))
    assert query["error"] == ["unmet_authentication_requirements"]
    assert query["state"] == [relying_party.state]
    assert "code" not in query
    assert _counts(app) == before  # no code, no session
    with app.app_context():
        tx = db.session.get(LoginTransaction, login_id)
        assert tx.state == "consumed" and tx.deny_reason == "level_too_low"
        assert tx.citizen_id is None and tx.approved_at is None and tx.level is None
        denial = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "login_denied")
        ).one()
        assert denial.data["required_level"] == "substantial" and denial.data["level"] == "low"


def test_rejects_approving_again_after_a_level_refusal(app, client, relying_party, enrolled_phone):
    app.config.update(RAISED)
    login_id = relying_party.start_login(client, acr_values=SUBSTANTIAL)
    status = desktop_status(client, login_id).json
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 403
    _, again = enrolled_phone.scan(status["phone_url"])
    assert again.status_code >= 400 and again.json["error"] in ("login_ended", "qr_stale")
    assert desktop_status(client, login_id).json["status"] == "denied"


def test_acr_is_the_achieved_level_not_the_requested_one(
    app, client, relying_party, enrolled_phone
):
    """Tampering with ``acr_values`` (adding higher levels beside a low one) buys nothing: any
    value will do, so the lowest is what is met, and the ID token names the level reached."""
    app.config.update(RAISED)
    tokens = complete_login(
        client,
        relying_party,
        enrolled_phone,
        acr_values=f"http://eidas.europa.eu/LoA/high {SUBSTANTIAL} urn:buergerid:loa:low",
    )
    claims = relying_party.verify_id_token(client, tokens["id_token"])
    assert claims["acr"] == "http://eidas.europa.eu/LoA/low"


def test_rejects_repeated_acr_values(client, relying_party, db_state):
    """A second ``acr_values`` (parameter pollution, RFC 6749 §3.1) cannot lower the first."""
    before = db_state()
    params = list(relying_party.authorize_params(acr_values=SUBSTANTIAL).items())
    params.append(("acr_values", "urn:buergerid:loa:low"))
    query = _error_query(client.get("/authorize?" + urlencode(params)))
    assert query["error"] == ["invalid_request"]
    assert db_state() == before
