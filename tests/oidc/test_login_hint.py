"""``login_hint`` (OIDC Core 1.0 §3.1.2.1; issue 15, item 1): the pairwise ``sub`` a relying
party got earlier names the only citizen who may approve the login.

Another citizen approving ends the login (``other_account``): the phone is told, the computer
says so, and the relying party gets ``access_denied`` with its own description. A hint that
names nobody of this relying party changes nothing (tests/security/test_login_hint_probing.py).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from harness import ISSUER
from harness import complete_login
from harness import desktop_status
from sqlalchemy import select
from sqlalchemy import update

from idserver.audit.models import AuditEvent
from idserver.crosslogin.models import LoginTransaction
from idserver.db import db
from idserver.oidc.errors import DENIAL_DESCRIPTIONS


def _known_sub(client: Any, relying_party: Any, phone: Any) -> str:
    """A first login: the relying party learns this citizen's ``sub``."""
    tokens = complete_login(client, relying_party, phone)
    return str(relying_party.verify_id_token(client, tokens["id_token"])["sub"])


def test_the_named_citizen_approves_as_usual(client, relying_party, enrolled_phone):
    sub = _known_sub(client, relying_party, enrolled_phone)
    tokens = complete_login(client, relying_party, enrolled_phone, login_hint=sub)
    assert relying_party.verify_id_token(client, tokens["id_token"])["sub"] == sub


def test_another_citizen_approving_ends_the_login_as_other_account(
    app, client, relying_party, enrolled_phone, other_citizen_phone
):
    sub = _known_sub(client, relying_party, enrolled_phone)
    login_id = relying_party.start_login(client, login_hint=sub)
    status = desktop_status(client, login_id).json
    refused = other_citizen_phone.approve(status["phone_url"], status["number"])
    assert refused.status_code == 403
    assert refused.json["error"] == "other_account"
    assert "einer anderen Person" in refused.json["error_description"]
    # the computer shows why, in its own words
    status = desktop_status(client, login_id).json
    assert status["status"] == "denied" and status["reason"] == "other_account"
    page = client.get(f"/login/{login_id}?lang=de").get_data(as_text=True)
    assert "einer anderen Person" in page
    # the relying party is told, once, with its own description; no code, no session
    answer = client.get(status["continue_url"])
    assert answer.status_code == 303
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["error"] == ["access_denied"]
    assert query["error_description"] == [DENIAL_DESCRIPTIONS["other_account"]]
    assert query["state"] == [relying_party.state] and query["iss"] == [ISSUER]
    assert "code" not in query
    with app.app_context():
        tx = db.session.get(LoginTransaction, login_id)
        assert tx.citizen_id is None and tx.approved_at is None
        denial = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "login_denied")
        ).all()[-1]
        assert denial.data["reason"] == "other_account"


def test_a_hint_for_one_client_names_nobody_at_another(
    app, client, relying_party, enrolled_phone, other_citizen_phone
):
    from harness import register_relying_party

    sub = _known_sub(client, relying_party, enrolled_phone)
    other_party = register_relying_party(app)
    # Erika's sub at the first service means nothing to the second: anyone may approve
    tokens = complete_login(client, other_party, other_citizen_phone, login_hint=sub)
    assert other_party.verify_id_token(client, tokens["id_token"])["sub"] != sub


def test_a_new_code_keeps_the_hint(app, client, relying_party, enrolled_phone, citizen):
    sub = _known_sub(client, relying_party, enrolled_phone)
    login_id = relying_party.start_login(client, login_hint=sub)
    with app.app_context():
        db.session.execute(
            update(LoginTransaction)
            .where(LoginTransaction.id == login_id)
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
        db.session.commit()
    page = client.get(f"/login/{login_id}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    renewed = client.post(f"/login/{login_id}/renew", data={"csrf_token": token.group(1)})
    assert renewed.status_code == 303
    new_id = renewed.headers["Location"].rsplit("/", 1)[-1]
    with app.app_context():
        new = db.session.get(LoginTransaction, new_id)
        assert new_id != login_id and new.requesting.expected_citizen_id == citizen.id


def test_another_citizens_passkey_on_the_computer_ends_the_login_too(
    app, client, relying_party, enrolled_phone, other_citizen_phone
):
    sub = _known_sub(client, relying_party, enrolled_phone)
    login_id = relying_party.start_login(client, login_hint=sub)
    begun = client.post(f"/login/{login_id}/passkey/options", json={})
    assert begun.status_code == 200
    credential = other_citizen_phone.authenticator.get_assertion(
        begun.json["options"], origin=other_citizen_phone.origin
    )
    refused = client.post(
        f"/login/{login_id}/passkey",
        json={"ceremony_id": begun.json["ceremony_id"], "credential": credential},
    )
    assert refused.status_code == 403 and refused.json["error"] == "other_account"
    status = desktop_status(client, login_id).json
    assert status["status"] == "denied" and status["reason"] == "other_account"
    with app.app_context():
        assert db.session.get(LoginTransaction, login_id).citizen_id is None
