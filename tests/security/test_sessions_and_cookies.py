"""Attacks on browser state: cookies, sessions, cross-site requests (OWASP ASVS 5.0 V3, V7)."""

from __future__ import annotations

import datetime as dt
import re
import time
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest
from harness import ERIKA
from harness import ISSUER
from harness import RP_REDIRECT
from harness import RelyingParty
from harness import changed_tables
from harness import desktop_status
from harness import snapshot
from sqlalchemy import update

from idserver import create_app
from idserver.account.pairing import create_pairing
from idserver.citizens.service import register_citizen
from idserver.crosslogin.models import LoginTransaction
from idserver.db import db
from idserver.oidc.clients import register_client
from idserver.sessions import BrowserSession

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
HTTPS = {"base_url": "https://localhost"}
STALE_FRAME = "t=1&h=" + "A" * 43


def _set_cookies(response):
    jar = SimpleCookie()
    for header in response.headers.getlist("Set-Cookie"):
        jar.load(header)
    return jar


def _log_in_to_account(browser, phone):
    started = browser.get("/account")
    assert started.status_code == 303
    login_id = started.headers["Location"].rsplit("/", 1)[-1]
    status = desktop_status(browser, login_id).json
    assert phone.approve(status["phone_url"], status["number"]).status_code == 200
    landed = browser.get(desktop_status(browser, login_id).json["continue_url"])
    assert landed.headers["Location"] == f"{ISSUER}/account"
    assert browser.get("/account").status_code == 200
    return landed


def _state(app, login_id):
    with app.app_context():
        return db.session.get(LoginTransaction, login_id).state


@pytest.fixture
def https_app(app_config, tmp_path):
    app = create_app({**app_config, "ISSUER": "https://localhost", "KEYS_DIR": str(tmp_path / "k")})
    with app.app_context():
        db.create_all()
        registered, secret = register_client(name="RP", redirect_uris=[RP_REDIRECT])
    yield app, RelyingParty(app, registered.client_id, secret)
    with app.app_context():
        db.engine.dispose()


def test_login_cookie_cannot_be_set_or_read_by_other_hosts_or_scripts(https_app):
    # __Host- prefix: Secure, Path=/, no Domain, so no sibling host can plant or read it.
    app, relying_party = https_app
    https = {"base_url": "https://localhost"}
    browser = app.test_client()
    response = browser.get("/authorize?" + urlencode(relying_party.authorize_params()), **https)
    assert response.status_code == 303
    login_id = response.headers["Location"].rsplit("/", 1)[-1]
    jar = _set_cookies(response)
    morsel = jar[f"__Host-login-{login_id}"]
    assert morsel["secure"] and morsel["httponly"] and morsel["path"] == "/"
    assert morsel["samesite"] == "Lax" and not morsel["domain"]
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert app.config["SESSION_COOKIE_NAME"] == "__Host-session"
    # the same secret under the unprefixed name (as a sibling host could set it) is refused
    intruder = app.test_client()
    intruder.set_cookie(f"login-{login_id}", morsel.value)
    with app.app_context():
        before = db.session.get(LoginTransaction, login_id).version
    status = intruder.get(f"/login/{login_id}", headers={"Accept": "application/json"}, **https)
    assert status.status_code == 404
    with app.app_context():
        assert db.session.get(LoginTransaction, login_id).version == before


def test_rejects_login_cookie_of_another_login(app, relying_party, db_state):
    victim_browser, attacker_browser = app.test_client(), app.test_client()
    victim_login = relying_party.start_login(victim_browser)
    attacker_login = relying_party.start_login(attacker_browser)
    attacker_secret = attacker_browser.get_cookie(f"login-{attacker_login}").value
    # the attacker's genuine browser secret, presented under the victim's login
    attacker_browser.set_cookie(f"login-{victim_login}", attacker_secret)
    before = db_state()
    assert desktop_status(attacker_browser, victim_login).status_code == 404
    assert attacker_browser.get(f"/login/{victim_login}/continue").status_code == 404
    assert db_state() == before


def test_phone_binding_cookie_is_scoped_to_its_login_and_strict(
    app, client, relying_party, phone, db_state
):
    login_id = relying_party.start_login(client)
    phone_url = desktop_status(client, login_id).json["phone_url"]
    page = phone.client.get(phone_url.replace(ISSUER, ""))
    assert page.status_code == 200
    morsel = _set_cookies(page)[f"phone-{login_id}"]
    assert (
        morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == f"/q/{login_id}"
    )
    # scanning the frame again from a second phone without that cookie is refused
    before = db_state()
    other = app.test_client().get(phone_url.replace(ISSUER, ""))
    assert other.status_code == 400
    assert db_state() == before


def _scanned_over_https(app, relying_party):
    """A login started and scanned over https; (login id, phone URL, the phone's Set-Cookie)."""
    started = app.test_client().get(
        "/authorize?" + urlencode(relying_party.authorize_params()), **HTTPS
    )
    login_id = started.headers["Location"].rsplit("/", 1)[-1]
    browser_cookie = _set_cookies(started)[f"__Host-login-{login_id}"].value
    browser = app.test_client()
    browser.set_cookie(f"__Host-login-{login_id}", browser_cookie)
    status = browser.get(f"/login/{login_id}", headers={"Accept": "application/json"}, **HTTPS)
    phone_url = status.json["phone_url"].removeprefix("https://localhost")
    phone = app.test_client()
    page = phone.get(phone_url, **HTTPS)
    assert page.status_code == 200, page.get_data(as_text=True)
    return login_id, phone_url, phone, _set_cookies(page)


def test_phone_binding_cookie_carries_the_host_prefix_under_https(https_app):
    # __Host-: Secure, Path=/, no Domain, so no sibling host (http or https) can plant it; the
    # login id in the name keeps it to its login, as Path=/q/<id> does on plain-http demos.
    app, relying_party = https_app
    login_id, _, phone, jar = _scanned_over_https(app, relying_party)
    assert f"phone-{login_id}" not in jar
    morsel = jar[f"__Host-phone-{login_id}"]
    assert morsel["secure"] and morsel["httponly"] and morsel["samesite"] == "Strict"
    assert morsel["path"] == "/" and not morsel["domain"]
    # the phone holding it is recognised on a reload, even from a frame that is no longer fresh
    assert phone.get(f"/q/{login_id}?{STALE_FRAME}", **HTTPS).status_code == 200


def test_rejects_phone_binding_cookie_without_the_host_prefix_under_https(https_app):
    # Cookie tossing: a sibling http host sets phone-<id> (no prefix) in the victim's phone
    # browser with the attacker's binding, hoping it skips the fresh-QR check and joins the
    # attacker's scanned login. Over https only the __Host- name is read.
    app, relying_party = https_app
    login_id, phone_url, _, jar = _scanned_over_https(app, relying_party)
    binding = jar[f"__Host-phone-{login_id}"].value
    victim = app.test_client()
    victim.set_cookie(f"phone-{login_id}", binding, path=f"/q/{login_id}")
    before = snapshot(app)
    for url in (f"/q/{login_id}?{STALE_FRAME}", phone_url):
        refused = victim.get(url, **HTTPS)
        assert refused.status_code == 400
        assert b"__Host-phone-" not in b"".join(
            h.encode() for h in refused.headers.getlist("Set-Cookie")
        )
    assert snapshot(app) == before


def test_rejects_pairing_binding_cookie_without_the_host_prefix_under_https(https_app):
    # The same for the new device's pairing cookie (account pairing, /pair/<id>).
    app, _ = https_app
    with app.app_context():
        citizen = register_citizen(**ERIKA)
        pairing_id = create_pairing(citizen.id).id
    device = app.test_client()
    page = device.get(f"/pair/{pairing_id}", **HTTPS).get_data(as_text=True)
    token = CSRF_FIELD.search(page).group(1)
    claimed = device.post(f"/pair/{pairing_id}/claim", data={"csrf_token": token}, **HTTPS)
    assert claimed.status_code == 303
    jar = _set_cookies(claimed)
    assert f"pair-{pairing_id}" not in jar
    morsel = jar[f"__Host-pair-{pairing_id}"]
    assert morsel["secure"] and morsel["httponly"] and morsel["samesite"] == "Strict"
    assert morsel["path"] == "/" and not morsel["domain"]
    status = f"/pair/{pairing_id}/status"
    assert device.get(status, **HTTPS).json["status"] == "claimed"
    intruder = app.test_client()
    intruder.set_cookie(f"pair-{pairing_id}", morsel.value, path=f"/pair/{pairing_id}")
    before = snapshot(app)
    refused = intruder.get(status, headers={"Accept": "application/json"}, **HTTPS)
    assert refused.status_code == 400
    assert refused.json["error"] == "not_bound"
    assert snapshot(app) == before


def test_session_is_rotated_at_login_so_a_planted_cookie_stays_anonymous(
    app, enrolled_phone, db_state
):
    # Session fixation: the attacker plants their own (validly signed) session cookie first.
    attacker = app.test_client()
    attacker.get(f"/login/{'x' * 32}")  # any page
    attacker.get("/lost")  # a page with a form gives the session a CSRF token
    planted = attacker.get_cookie("session")
    assert planted is not None
    victim = app.test_client()
    victim.set_cookie("session", planted.value)
    _log_in_to_account(victim, enrolled_phone)
    assert victim.get_cookie("session").value != planted.value
    before = db_state()
    still_anonymous = attacker.get("/account")
    assert still_anonymous.status_code == 303  # sent to log in, not into the victim's account
    assert changed_tables(before, db_state()) <= {"login_transactions", "rate_limit_counters"}


def test_rejects_session_idle_for_too_long(app, client, enrolled_phone, db_state):
    _log_in_to_account(client, enrolled_phone)
    with client.session_transaction() as session:
        session["seen"] = int(time.time()) - app.config["SESSION_IDLE_SECONDS"] - 5
    before = db_state()
    response = client.get("/account")
    assert response.status_code == 303  # log in again
    # the idle session is ended for good; the redirect starts a fresh login
    assert changed_tables(before, db_state()) == {
        "browser_sessions",
        "login_transactions",
        "rate_limit_counters",
    }
    with app.app_context():
        assert db.session.query(BrowserSession).one().ended_at is not None


def test_rejects_session_past_its_absolute_lifetime(app, client, enrolled_phone, db_state):
    _log_in_to_account(client, enrolled_phone)
    with app.app_context():
        db.session.execute(
            update(BrowserSession).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(1))
        )
        db.session.commit()
    before = db_state()
    assert client.get("/account").status_code == 303
    assert changed_tables(before, db_state()) == {"login_transactions", "rate_limit_counters"}


def test_rejects_cancel_without_csrf_token(app, client, relying_party, db_state):
    login_id = relying_party.start_login(client)
    page = client.get(f"/login/{login_id}").get_data(as_text=True)
    token = CSRF_FIELD.search(page).group(1)
    before = db_state()
    for form in ({}, {"csrf_token": "forged"}):
        refused = client.post(f"/login/{login_id}/cancel", data=form)
        assert refused.status_code == 403
    assert db_state() == before
    assert _state(app, login_id) == "pending"
    # with the page's token the cancel works, and answers 303 See Other (no re-POST on reload)
    done = client.post(f"/login/{login_id}/cancel", data={"csrf_token": token})
    assert done.status_code == 303
    assert _state(app, login_id) == "denied"


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
    ],
)
def test_rejects_cancel_posted_from_another_site(app, client, relying_party, db_state, headers):
    login_id = relying_party.start_login(client)
    token = CSRF_FIELD.search(client.get(f"/login/{login_id}").get_data(as_text=True)).group(1)
    before = db_state()
    response = client.post(f"/login/{login_id}/cancel", data={"csrf_token": token}, headers=headers)
    assert response.status_code == 403
    assert db_state() == before


@pytest.mark.parametrize("path", ["/passkey/options", "/passkey"])
@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"]
)
def test_rejects_simple_cross_site_requests_to_json_endpoints(
    client, relying_party, db_state, path, content_type
):
    # The content types an HTML form (or a no-cors fetch) can send without a CORS preflight.
    login_id = relying_party.start_login(client)
    before = db_state()
    response = client.post(f"/login/{login_id}{path}", data="{}", content_type=content_type)
    assert response.status_code == 415
    assert db_state() == before


def test_pages_refuse_to_be_framed_or_sniffed(client, relying_party, db_state):
    login_id = relying_party.start_login(client)
    before = db_state()
    for path in ("/", f"/login/{login_id}", "/activate/x", "/.well-known/openid-configuration"):
        response = client.get(path)
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    desktop_csp = client.get(f"/login/{login_id}").headers["Content-Security-Policy"]
    # the cancel form may end at the relying party, and nowhere else
    assert "form-action 'self' http://localhost:8001;" in desktop_csp
    assert db_state() == before
