"""The second leg of ``/authorize`` (``/authorize/resume/<login_id>``) answers once, and only
the browser that started the login (threat model QR4, QR5, QR6).

The leg consumes the login with a conditional UPDATE before it answers; everything it will not
answer (a login still waiting, another browser's, one answered already) changes nothing.
"""

from __future__ import annotations

from urllib.parse import parse_qs
from urllib.parse import urlsplit

from harness import ISSUER
from harness import RP_REDIRECT
from harness import desktop_status
from sqlalchemy import select

from idserver.db import db
from idserver.oidc.models import AuthorizationCode


def _codes(app):
    with app.app_context():
        return db.session.scalars(select(AuthorizationCode.id)).all()


def _approved(client, relying_party, phone):
    login_id = relying_party.start_login(client)
    status = desktop_status(client, login_id).json
    assert phone.approve(status["phone_url"], status["number"]).status_code == 200
    return login_id


def test_rejects_resuming_a_login_that_is_not_approved(
    app, client, relying_party, enrolled_phone, db_state
):
    login_id = relying_party.start_login(client)
    status = desktop_status(client, login_id).json
    _, scanned = enrolled_phone.scan(status["phone_url"])
    assert scanned.status_code == 200
    before = db_state()
    resumed = client.get(f"/authorize/resume/{login_id}")
    # no answer for the relying party: back to the login page, which is still waiting
    assert resumed.status_code == 303
    assert resumed.headers["Location"] == f"{ISSUER}/login/{login_id}/continue"
    followed = client.get(resumed.headers["Location"])
    assert followed.headers["Location"] == f"{ISSUER}/login/{login_id}"
    assert db_state() == before
    assert _codes(app) == []


def test_rejects_resuming_another_browsers_login(
    app, client, relying_party, enrolled_phone, db_state
):
    login_id = _approved(client, relying_party, enrolled_phone)
    attacker = app.test_client()
    own_login = relying_party.start_login(attacker)
    # no cookie, then the attacker's genuine cookie presented under the victim's login
    before = db_state()
    assert attacker.get(f"/authorize/resume/{login_id}").status_code == 404
    own_secret = attacker.get_cookie(f"login-{own_login}").value
    attacker.set_cookie(f"login-{login_id}", own_secret)
    refused = attacker.get(f"/authorize/resume/{login_id}", headers={"Accept": "application/json"})
    assert (refused.status_code, refused.json["error"]) == (404, "login_not_found")
    assert db_state() == before
    assert _codes(app) == []
    # the login was not spent: its own browser still gets the code
    answered = client.get(f"/authorize/resume/{login_id}")
    assert answered.status_code == 303
    assert answered.headers["Location"].startswith(RP_REDIRECT + "?code=")


def test_rejects_replaying_the_resume_after_the_code_was_issued(
    app, client, relying_party, enrolled_phone, db_state
):
    login_id = _approved(client, relying_party, enrolled_phone)
    secret = client.get_cookie(f"login-{login_id}").value
    answered = client.get(f"/authorize/resume/{login_id}")
    assert answered.headers["Location"].startswith(RP_REDIRECT + "?code=")
    assert client.get_cookie(f"login-{login_id}") is None  # the answer drops the login cookie
    [code] = _codes(app)
    # the same request replayed with the login cookie it carried (a copied cookie, or a
    # browser that kept it), from a browser without the session the answer started
    replayer = app.test_client()
    replayer.set_cookie(f"login-{login_id}", secret)
    before = db_state()
    replayed = replayer.get(f"/authorize/resume/{login_id}")
    assert replayed.status_code == 303
    assert not replayed.headers["Location"].startswith(RP_REDIRECT)
    ended = replayer.get(replayed.headers["Location"], headers={"Accept": "application/json"})
    assert (ended.status_code, ended.json["error"]) == (400, "login_ended")
    assert db_state() == before
    assert _codes(app) == [code]


def test_rejects_a_second_answer_for_a_denied_login(
    app, client, relying_party, enrolled_phone, db_state
):
    login_id = relying_party.start_login(client)
    status = desktop_status(client, login_id).json
    _, scanned = enrolled_phone.scan(status["phone_url"])
    binding = scanned.json["binding"]
    denied = enrolled_phone.client.post(
        f"/api/v1/logins/{login_id}/deny", json={"binding": binding}
    )
    assert denied.status_code in (200, 204)
    first = client.get(f"/authorize/resume/{login_id}")
    query = parse_qs(urlsplit(first.headers["Location"]).query)
    assert query["error"] == ["access_denied"] and query["state"] == [relying_party.state]
    # the login cookie stays (for "Show a new code"); the answer does not come twice
    before = db_state()
    again = client.get(f"/authorize/resume/{login_id}")
    assert again.status_code == 303
    assert again.headers["Location"] == f"{ISSUER}/login/{login_id}/continue"
    assert client.get(again.headers["Location"]).status_code == 400  # the ended page
    assert db_state() == before
