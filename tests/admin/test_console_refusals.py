"""Clerk-only pages refuse anonymous browsers, citizens and forged forms, changing nothing."""

from __future__ import annotations

import pytest
from clerk_session import log_in
from clerk_session import sign_in_clerk
from harness import changed_tables

ROUTES = [
    ("GET", "/admin"),
    ("GET", "/admin/residents/new"),
    ("POST", "/admin/residents"),
    ("GET", "/admin/residents/<citizen_id>"),
    ("POST", "/admin/residents/<citizen_id>/letter"),
    ("POST", "/admin/residents/<citizen_id>/revoke-devices"),
    ("POST", "/admin/residents/<citizen_id>/delete"),
    ("GET", "/admin/audit"),
    ("GET", "/admin/clients"),
    ("GET", "/admin/clients/<client_id>"),
    ("POST", "/admin/clients/<client_id>/addresses"),
    ("POST", "/admin/clients/<client_id>/disable"),
    ("POST", "/admin/clients/<client_id>/enable"),
    ("POST", "/admin/clients/<client_id>/rotate-secret"),
    ("POST", "/admin/clients/<client_id>/delete"),
]
POSTS = [route for route in ROUTES if route[0] == "POST"]
# Sending a browser to log in starts a login transaction (and counts it for the rate limit).
LOGIN_BOOKKEEPING = {"login_transactions", "clients", "rate_limit_counters"}
FORM = {
    "given_name": "Max",
    "family_name": "Muster",
    "birthdate": "1990-01-31",
    "street": "Weg 2",
    "postcode": "12345",
    "city": "Musterstadt",
    "confirm": "yes",
    "language": "de",
}


def _send(browser, method, rule, citizen_id, **data):
    path = rule.replace("<citizen_id>", citizen_id).replace("<client_id>", "some-client")
    if method == "GET":
        return browser.get(path)
    return browser.post(path, data={**FORM, **data})


def _give_token(browser):
    """A valid form token in the browser's session, as any of our pages would hand out."""
    with browser.session_transaction() as session:
        session["csrf"] = "a-valid-token"
    return "a-valid-token"


def test_the_list_covers_every_console_route(app):
    served = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("admin.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert served == set(ROUTES)


@pytest.mark.parametrize(("method", "rule"), ROUTES)
def test_anonymous_browsers_are_sent_to_log_in(client, citizen, db_state, method, rule):
    token = _give_token(client)
    before = db_state()
    response = _send(client, method, rule, citizen.id, csrf_token=token)
    assert response.status_code == 303
    if method == "GET":
        location = response.headers["Location"]
        assert location.startswith("http://localhost/login/")
        assert changed_tables(before, db_state()) <= LOGIN_BOOKKEEPING
    else:
        # a form sent without a session starts nothing: back to the console's start page
        assert response.headers["Location"] == "http://localhost/admin"
        assert db_state() == before


@pytest.mark.parametrize(("method", "rule"), ROUTES)
def test_citizens_are_refused(app, citizen, enrolled_phone, db_state, method, rule):
    browser = app.test_client()
    log_in(browser, enrolled_phone)  # Erika logs in to Bürger-ID, but is no clerk
    token = _give_token(browser)
    before = db_state()
    response = _send(browser, method, rule, citizen.id, csrf_token=token)
    assert response.status_code == 403
    assert "not_a_clerk" in response.get_data(as_text=True)
    assert db_state() == before


@pytest.mark.parametrize(("method", "rule"), POSTS)
@pytest.mark.parametrize("token", [None, "forged"])
def test_forged_forms_are_refused(app, runner, tmp_path, citizen, db_state, method, rule, token):
    clerk = sign_in_clerk(app, runner, tmp_path, role="supervisor")
    clerk.csrf()  # the browser has a real token; the forged request does not send it
    before = db_state()
    data = {} if token is None else {"csrf_token": token}
    response = _send(clerk.browser, method, rule, citizen.id, **data)
    assert response.status_code == 403
    assert "csrf_failed" in response.get_data(as_text=True)
    assert db_state() == before


@pytest.mark.parametrize(("method", "rule"), [r for r in ROUTES if "<citizen_id>" in r[1]])
def test_unknown_residents_are_not_found(app, runner, tmp_path, db_state, method, rule):
    clerk = sign_in_clerk(app, runner, tmp_path, role="supervisor")
    token = clerk.csrf()
    before = db_state()
    response = _send(clerk.browser, method, rule, "no-such-resident", csrf_token=token)
    assert response.status_code == 404
    assert db_state() == before
