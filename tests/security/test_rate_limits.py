"""Rate limits (OWASP ASVS 5.0 V2.4.1, V6.3.1; RFC 10027 "Rate Limits"): a refusal is a 429
that changes nothing, and the counters are shared by every worker."""

from __future__ import annotations

import secrets
import socket
import threading
from urllib.parse import urlencode

import pytest
from harness import changed_tables
from harness import desktop_status
from harness import snapshot
from sqlalchemy import event
from sqlalchemy import select

from idserver import create_app
from idserver.account.service import self_client
from idserver.db import db
from idserver.limits import DatabaseStorage
from idserver.limits import RateLimitCounter
from idserver.oidc.clients import register_client

from .conftest import scan_login
from .hostile import assertion


def _enrol_start(client, activation_id, code):
    return client.post("/api/v1/enrolments", json={"activation_id": activation_id, "code": code})


def test_rejects_activation_guessing_beyond_the_rate_limit(app, phone, activation, db_state):
    app.config["RATE_LIMIT_ACTIVATION"] = "2/minute"
    for guess in ("AAAA-BBBB-CCCC-DDDD", "EEEE-FFFF-GGGG-HHHH"):
        assert _enrol_start(phone.client, activation[0], guess).status_code == 400
    before = db_state()
    blocked = _enrol_start(phone.client, *activation)  # even the right code, for now
    assert blocked.status_code == 429
    assert blocked.json["error"] == "too_many_requests"
    assert blocked.headers["Retry-After"] == "60"
    assert db_state() == before  # not counted, no challenge, no attempt row


def test_rejects_login_flooding_from_one_address(app, client, relying_party, db_state):
    app.config["RATE_LIMIT_LOGIN"] = "2/minute"
    with app.app_context():
        self_client()  # Bürger-ID's own client row, created on first use
    relying_party.start_login(app.test_client())
    relying_party.start_login(app.test_client())
    before = db_state()
    flooded = client.get("/authorize?" + urlencode(relying_party.authorize_params()))
    assert flooded.status_code == 429
    assert "Location" not in flooded.headers
    # the account pages start logins too, under the same limit
    assert client.get("/account").status_code == 429
    assert db_state() == before


def test_logins_from_other_addresses_are_not_affected(app, relying_party, db_state):
    app.config["RATE_LIMIT_LOGIN"] = "1/minute"
    relying_party.start_login(app.test_client())
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    before = db_state()
    response = other.get("/authorize?" + urlencode(relying_party.authorize_params()))
    assert response.status_code == 303
    assert changed_tables(before, db_state()) == {"login_transactions", "rate_limit_counters"}


def test_rejects_token_requests_after_repeated_failed_client_authentication(
    app, client, relying_party, enrolled_phone, db_state
):
    app.config["RATE_LIMIT_TOKEN"] = "2/minute"
    login_id = relying_party.start_login(client)
    status = desktop_status(client, login_id).json
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 200
    location = client.get(desktop_status(client, login_id).json["continue_url"]).headers["Location"]
    code = location.split("code=", 1)[1].split("&", 1)[0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": relying_party.redirect_uri,
        "code_verifier": relying_party.verifier,
    }
    for guess in ("guess-1", "guess-2"):
        assert (
            client.post("/token", data=form, auth=(relying_party.client_id, guess)).status_code
            == 401
        )
    before = db_state()
    blocked = client.post(
        "/token", data=form, auth=(relying_party.client_id, relying_party.client_secret)
    )
    assert blocked.status_code == 429
    assert blocked.is_json and blocked.json["error"] == "too_many_requests"
    assert db_state() == before  # the code is not burned; the RP can retry after the window


def test_failed_approvals_do_not_lock_the_citizen_out(
    app, client, relying_party, enrolled_phone, db_state
):
    # Counting failures per citizen would let anyone who knows a credential ID block its owner;
    # only approvals are counted.
    app.config["RATE_LIMIT_APPROVAL"] = "1/minute"
    login = scan_login(client, relying_party, enrolled_phone)
    key = enrolled_phone.authenticator.keys[0]
    for _ in range(3):
        options = login.challenge().json["options"]
        before = db_state()
        refused = login.approve(assertion(key, options, origin="https://evil.example"))
        assert refused.status_code == 400
        assert changed_tables(before, db_state()) == {"login_transactions"}
    options = login.challenge().json["options"]
    genuine = enrolled_phone.authenticator.get_assertion(options, origin=enrolled_phone.origin)
    assert login.approve(genuine).status_code == 200


def test_rate_limit_counters_are_shared_between_workers(app, app_config, relying_party, db_state):
    # A second application object on the same database plays a second gunicorn worker.
    app.config["RATE_LIMIT_LOGIN"] = "2/minute"
    second_worker = create_app({**app_config, "RATE_LIMIT_LOGIN": "2/minute"})
    relying_party.start_login(app.test_client())
    worker_two_browser = second_worker.test_client()
    assert (
        worker_two_browser.get(
            "/authorize?" + urlencode(relying_party.authorize_params())
        ).status_code
        == 303
    )
    before = db_state()
    third = app.test_client().get("/authorize?" + urlencode(relying_party.authorize_params()))
    assert third.status_code == 429
    assert db_state() == before
    with second_worker.app_context():
        db.engine.dispose()


def _redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_reachable(), reason="no Redis on 127.0.0.1:6379")
def test_rejects_login_flooding_with_counters_in_redis(app_config, db_state):
    redis_app = create_app(
        {**app_config, "REDIS_URL": "redis://127.0.0.1:6379/15", "RATE_LIMIT_LOGIN": "1/minute"}
    )
    with redis_app.app_context():
        db.create_all()
        registered, _ = register_client(name="RP", redirect_uris=["http://localhost:8001/callback"])
    browser = redis_app.test_client()
    # a fresh documentation address per run: counters in a shared Redis outlive the test
    browser.environ_base["REMOTE_ADDR"] = f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    params = {
        "response_type": "code",
        "client_id": registered.client_id,
        "redirect_uri": "http://localhost:8001/callback",
        "scope": "openid",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }
    assert browser.get("/authorize?" + urlencode(params)).status_code == 303
    before = snapshot(redis_app)
    assert browser.get("/authorize?" + urlencode(params)).status_code == 429
    assert snapshot(redis_app) == before
    with redis_app.app_context():
        assert db.session.scalars(select(RateLimitCounter)).all() == []  # counted in Redis
        db.engine.dispose()


def test_concurrent_hits_cannot_race_past_the_limit(app):
    # The database counter is one atomic upsert: parallel requests never lose a hit.
    storage = DatabaseStorage()
    key = "race-" + secrets.token_hex(4)
    counts: list[int] = []

    def hit() -> None:
        with app.app_context():
            for _ in range(10):
                counts.append(storage.incr(key, 60))

    threads = [threading.Thread(target=hit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(counts) == list(range(1, 41))
    with app.app_context():
        assert storage.get(key) == 40


def test_only_counted_requests_touch_the_rate_limit_counters(
    app, client, relying_party, enrolled_phone
):
    # Limits cost something only where they count: other requests neither read nor write one.
    with app.app_context():
        engine = db.engine
    touched: list[str] = []

    def _statement(_conn, _cursor, statement, *_args) -> None:
        if "rate_limit_counters" in statement:
            touched.append(statement.split(None, 1)[0])

    event.listen(engine, "before_cursor_execute", _statement)
    try:
        login_id = relying_party.start_login(client)  # counted: a new login
        assert touched
        touched.clear()
        status = desktop_status(client, login_id).json
        assert client.get(f"/login/{login_id}").status_code == 200
        assert client.get("/jwks.json").status_code == 200
        assert client.get("/.well-known/openid-configuration").status_code == 200
        login_id, scanned = enrolled_phone.scan(status["phone_url"])
        binding = scanned.json["binding"]
        assert enrolled_phone.challenge(login_id, binding, status["number"]).status_code == 200
        assert touched == []
        refused = client.post(
            "/token",
            data={"grant_type": "authorization_code", "code": "x", "redirect_uri": "x"},
            auth=(relying_party.client_id, "wrong-secret"),
        )
        assert refused.status_code == 401
        assert "SELECT" in touched and "INSERT" in touched  # checked, then counted
    finally:
        event.remove(engine, "before_cursor_execute", _statement)
