"""Attacks on the clerk console and the account pages: forgotten clerk sessions, enumerating
residents through the search, and forged forms on every state-changing route.

Every refusal also checks that nothing changed in the database.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from harness import changed_tables

from idserver.audit.models import AuditEvent
from idserver.db import db
from idserver.passkeys.models import Credential
from idserver.sessions import SELF_CLIENT_ID
from idserver.sessions import BrowserSession

sys.path.insert(0, str(Path(__file__).parents[1] / "admin"))
from clerk_session import log_in  # noqa: E402
from clerk_session import sign_in_clerk  # noqa: E402

# Sending a browser to log in starts a login transaction (and counts it for the rate limit).
LOGIN_BOOKKEEPING = {"login_transactions", "clients", "rate_limit_counters"}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _idle_for(browser, seconds: int) -> None:
    with browser.session_transaction() as session:
        session["seen"] = int(time.time()) - seconds


def _open_sessions(app) -> int:
    with app.app_context():
        return db.session.query(BrowserSession).filter(BrowserSession.ended_at.is_(None)).count()


# -- the clerk's shorter idle timeout (OWASP ASVS 5.0 V7.3.1, privileged users) ---------------
def test_rejects_clerk_session_idle_longer_than_a_clerks_may_be(app, runner, tmp_path, db_state):
    clerk = sign_in_clerk(app, runner, tmp_path)
    clerk_idle = app.config["CLERK_SESSION_IDLE_SECONDS"]
    assert clerk_idle < app.config["SESSION_IDLE_SECONDS"]
    # idle longer than a clerk may be, but not as long as a citizen may
    _idle_for(clerk.browser, clerk_idle + 5)
    assert _open_sessions(app) == 1
    before = db_state()
    response = clerk.browser.get("/admin")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("http://localhost/login/")
    # the session is ended for good, also for the clerk's own account pages
    assert changed_tables(before, db_state()) <= LOGIN_BOOKKEEPING | {"browser_sessions"}
    assert _open_sessions(app) == 0
    assert clerk.browser.get("/account").status_code == 303


def test_a_citizen_session_idle_as_long_stays_open(app, client, enrolled_phone):
    log_in(client, enrolled_phone, page="/account")
    _idle_for(client, app.config["CLERK_SESSION_IDLE_SECONDS"] + 5)
    assert client.get("/account").status_code == 200
    assert _open_sessions(app) == 1


def test_a_recently_active_clerk_session_stays_open(app, runner, tmp_path):
    clerk = sign_in_clerk(app, runner, tmp_path)
    _idle_for(clerk.browser, app.config["CLERK_SESSION_IDLE_SECONDS"] - 30)
    assert clerk.browser.get("/admin").status_code == 200


# -- enumeration through the resident search (OWASP ASVS 5.0 V2.4.1) --------------------------
def test_rejects_resident_searches_past_the_clerks_search_limit(
    app, runner, tmp_path, citizen, db_state
):
    app.config["RATE_LIMIT_CLERK_SEARCH"] = "3/minute"
    clerk = sign_in_clerk(app, runner, tmp_path)
    for name in ("Muster", "Erika", "Schmidt"):
        assert clerk.browser.get(f"/admin?name={name}").status_code == 200
    # opening the empty search form is no search and is never refused
    assert clerk.browser.get("/admin").status_code == 200
    before = db_state()
    refused = clerk.browser.get("/admin?postcode=44137")
    assert refused.status_code == 429
    assert "Erika" not in refused.get_data(as_text=True)
    assert db_state() == before  # no audit event, no counter bumped
    assert clerk.browser.get("/admin").status_code == 200

    # counted per clerk: a colleague at the next desk can still search
    colleague = sign_in_clerk(app, runner, tmp_path, given_name="Bert")
    found = colleague.browser.get("/admin?name=Erika")
    assert found.status_code == 200
    assert "Mustermann" in found.get_data(as_text=True)
    with app.app_context():
        searches = db.session.query(AuditEvent).filter(AuditEvent.event == "clerk_action").all()
        assert sum(e.data.get("action") == "search" for e in searches) == 4


# -- forged forms on every state-changing route of the account pages and the console -----------
def _state_changing_routes(app) -> list[tuple[str, str]]:
    """Found in the URL map, so a new form cannot be forgotten here."""
    return sorted(
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.split(".")[0] in ("account", "admin")
        for method in rule.methods & UNSAFE_METHODS
    )


@pytest.fixture
def signed_in(app, runner, tmp_path, citizen):
    """A supervisor's browser: a session for both the console and the supervisor's own account,
    a pairing started, and real ids for every route parameter."""
    clerk = sign_in_clerk(app, runner, tmp_path, role="supervisor")
    started = clerk.post("/account/pairings")
    assert started.status_code == 303, started.get_data(as_text=True)
    pairing_id = started.headers["Location"].rsplit("/", 1)[-1]
    with app.app_context():
        device_id = db.session.query(Credential).filter_by(citizen_id=clerk.citizen_id).one().id
    values = {
        "<citizen_id>": citizen.id,
        "<int:device_id>": str(device_id),
        "<pairing_id>": pairing_id,
        "<client_id>": SELF_CLIENT_ID,
    }
    return clerk, values


def _path(rule: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        rule = rule.replace(placeholder, value)
    assert "<" not in rule, f"no value for a parameter of {rule}"
    return rule


FORGERIES = {
    "no_token": ({}, {}),
    "forged_token": ({"csrf_token": "forged"}, {}),
    "token_sent_from_another_site": (None, {"Sec-Fetch-Site": "cross-site"}),
    "token_sent_from_another_origin": (None, {"Origin": "https://evil.example"}),
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_rejects_forged_requests_on_every_account_and_clerk_form(app, signed_in, db_state, forgery):
    clerk, values = signed_in
    token = clerk.csrf()
    routes = _state_changing_routes(app)
    assert len(routes) >= 15 and ("POST", "/admin/residents") in routes
    form, headers = FORGERIES[forgery]
    form = {"csrf_token": token} if form is None else form
    for method, rule in routes:
        before = db_state()
        response = clerk.browser.open(
            _path(rule, values),
            method=method,
            data={**form, "confirm": "yes", "name": "Forged", "given_name": "Forged"},
            headers=headers,
        )
        assert response.status_code == 403, (method, rule, response.status_code)
        assert "csrf_failed" in response.get_data(as_text=True), (method, rule)
        assert db_state() == before, (method, rule)
    # the session survived the forgeries and still works with its real token
    assert clerk.browser.get("/admin").status_code == 200
