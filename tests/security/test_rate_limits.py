"""Rate limits (OWASP ASVS 5.0 V2.4.1, V6.3.1; RFC 10027 "Rate Limits"): a refusal is a 429
that changes nothing, and the counters are shared by every worker."""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
import requests
from flask import Flask
from harness import changed_tables
from harness import desktop_status
from harness import snapshot
from limits import parse_many
from scale.scale_instances import served
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import select

from idserver import create_app
from idserver.citizens.models import ActivationAttempt
from idserver.citizens.models import ActivationCode
from idserver.crosslogin.models import LoginTransaction
from idserver.db import db
from idserver.limits import KEY_PREFIX
from idserver.limits import DatabaseStorage
from idserver.limits import RateLimitCounter
from idserver.oidc.clients import register_client
from idserver.oidc.clients import self_client

from .conftest import scan_login
from .hostile import assertion

RACERS = 40  # requests fired at the same moment, from one address
REDIS_TEST_URL = os.environ.get("IDSERVER_TEST_REDIS_URL")
REDIS_TEST_DB = 14  # a database of its own on the shared server; keys also name a fresh address


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
        # counted before acting, one upsert per window (minute and hour), kept: it failed
        assert touched == ["INSERT", "INSERT"]
    finally:
        event.remove(engine, "before_cursor_execute", _statement)


# -- concurrent requests: counted before acting, so at most the limit gets through ------------
@dataclass
class Worker:
    """A Bürger-ID worker on the test's database, served over HTTP with a thread per request.

    Requests arrive through a trusted proxy from ``address``, a fresh documentation address, so
    counters in a shared Redis are this test's alone.
    """

    app: Flask
    url: str
    address: str
    markers: list[str] = field(default_factory=list)  # what names this test's Redis keys

    def counted(self, setting: str, key: str, scope: str) -> list[int]:
        """The count in each window of ``setting`` for ``key``, from the worker's storage."""
        with self.app.app_context():
            storage = self.app.extensions["idserver.limiter"].storage
            return [
                storage.get(item.key_for(KEY_PREFIX, key, scope))
                for item in parse_many(self.app.config[setting])
            ]


@pytest.fixture(
    params=[
        "database",
        pytest.param(
            "redis",
            marks=pytest.mark.skipif(
                not REDIS_TEST_URL, reason="set IDSERVER_TEST_REDIS_URL to count in Redis too"
            ),
        ),
    ]
)
def worker(
    request: pytest.FixtureRequest, app: Flask, app_config: dict[str, Any]
) -> Iterator[Worker]:
    extra: dict[str, Any] = {"TRUST_PROXY": True}
    if request.param == "redis":
        assert REDIS_TEST_URL
        extra["REDIS_URL"] = f"{REDIS_TEST_URL.rsplit('/', 1)[0]}/{REDIS_TEST_DB}"
    served_app = create_app({**app_config, **extra})
    served_app.config["TESTING"] = True
    address = f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    with served(served_app) as url:
        yield (running := Worker(served_app, url, address, [address]))
    if request.param == "redis":
        store = redis.Redis.from_url(extra["REDIS_URL"])
        for marker in running.markers:
            for key in store.scan_iter(match=f"*/{marker}/*"):
                store.delete(key)
        store.close()
    with served_app.app_context():
        db.engine.dispose()


def flood(worker: Worker, send: Callable[[requests.Session, int], Any]) -> list[Any]:
    """``send(session, i)`` from RACERS threads released at the same moment; their responses."""
    barrier = threading.Barrier(RACERS)
    responses: list[Any] = [None] * RACERS

    def racer(index: int) -> None:
        with requests.Session() as http:
            http.headers["X-Forwarded-For"] = worker.address
            barrier.wait()
            responses[index] = send(http, index)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(r is not None for r in responses), "a racing request never finished"
    return responses


def statuses(responses: list[Any]) -> dict[int, int]:
    """How many responses had each status; a server error fails the test with its answer."""
    failed = [r.text for r in responses if r.status_code >= 500]
    assert not failed, failed[0]
    codes = [r.status_code for r in responses]
    return {code: codes.count(code) for code in set(codes)}


def rows(app: Flask, statement: Any) -> int:
    with app.app_context():
        return db.session.scalar(statement) or 0


def test_rejects_concurrent_logins_beyond_the_limit(worker, app, relying_party, db_state):
    worker.app.config["RATE_LIMIT_LOGIN"] = "10/minute;300/hour"
    urls = [
        f"{worker.url}/authorize?{urlencode(relying_party.authorize_params())}"
        for _ in range(RACERS)
    ]
    before = db_state()
    answers = flood(worker, lambda http, i: http.get(urls[i], allow_redirects=False))
    assert statuses(answers) == {303: 10, 429: RACERS - 10}
    assert rows(app, select(func.count()).select_from(LoginTransaction)) == 10
    assert changed_tables(before, db_state()) <= {"login_transactions", "rate_limit_counters"}
    assert worker.counted("RATE_LIMIT_LOGIN", worker.address, "login") == [10, 10]
    # the refused ones took nothing: one more is refused and changes nothing either
    before = db_state()
    again = requests.get(
        urls[0], headers={"X-Forwarded-For": worker.address}, allow_redirects=False, timeout=60
    )
    assert again.status_code == 429
    assert db_state() == before
    assert worker.counted("RATE_LIMIT_LOGIN", worker.address, "login") == [10, 10]


@pytest.mark.parametrize(
    ("limits", "allowed"),
    [
        ({"RATE_LIMIT_ACTIVATION": "10/minute;50/hour"}, 10),
        ({"RATE_LIMIT_ACTIVATION": "1000/minute", "ACTIVATION_MAX_ATTEMPTS_PER_ADDRESS": 20}, 20),
    ],
    ids=["per-minute", "per-hour-in-the-database"],
)
def test_rejects_concurrent_activation_guesses_beyond_the_limit(
    worker, app, activation, db_state, limits, allowed
):
    worker.app.config.update(limits)
    guesses = [f"AAAA-BBBB-CCCC-{i:04d}" for i in range(RACERS)]
    answers = flood(
        worker,
        lambda http, i: http.post(
            f"{worker.url}/api/v1/enrolments",
            json={"activation_id": activation[0], "code": guesses[i]},
        ),
    )
    checked = [r for r in answers if r.status_code == 400]
    assert len(checked) == allowed
    assert {r.json()["error"] for r in checked} == {"invalid_activation_code"}
    assert statuses(answers) == {400: allowed, 429: RACERS - allowed}
    attempts = select(func.count()).select_from(ActivationAttempt)
    assert rows(app, attempts.where(ActivationAttempt.address == worker.address)) == allowed
    # the code's own bound holds too: it counted exactly ACTIVATION_MAX_ATTEMPTS wrong tries
    with app.app_context():
        code = db.session.get(ActivationCode, activation[0])
        assert code.failed_attempts == app.config["ACTIVATION_MAX_ATTEMPTS"]
    if "ACTIVATION_MAX_ATTEMPTS_PER_ADDRESS" not in limits:
        assert worker.counted("RATE_LIMIT_ACTIVATION", worker.address, "activation") == [10, 10]
    before = db_state()
    right = requests.post(
        f"{worker.url}/api/v1/enrolments",
        json={"activation_id": activation[0], "code": activation[1]},
        headers={"X-Forwarded-For": worker.address},
        timeout=60,
    )
    assert right.status_code == 429
    assert db_state() == before


def test_rejects_concurrent_token_guesses_beyond_the_limit(
    worker, app, client, relying_party, enrolled_phone, db_state
):
    worker.app.config["RATE_LIMIT_TOKEN"] = "10/minute;200/hour"
    code = relying_party.approved_code(client, enrolled_phone)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": relying_party.redirect_uri,
        "code_verifier": relying_party.verifier,
    }
    before = db_state()
    answers = flood(
        worker,
        lambda http, i: http.post(
            f"{worker.url}/token", data=form, auth=(relying_party.client_id, f"guess-{i}")
        ),
    )
    assert statuses(answers) == {401: 10, 429: RACERS - 10}
    assert {r.json()["error"] for r in answers} == {"invalid_client", "too_many_requests"}
    assert worker.counted("RATE_LIMIT_TOKEN", worker.address, "token") == [10, 10]
    assert changed_tables(before, db_state()) <= {"rate_limit_counters"}
    before = db_state()
    genuine = requests.post(
        f"{worker.url}/token",
        data=form,
        auth=(relying_party.client_id, relying_party.client_secret),
        headers={"X-Forwarded-For": worker.address},
        timeout=60,
    )
    assert genuine.status_code == 429
    assert db_state() == before  # the code is not burned


def test_rejects_concurrent_approvals_beyond_the_limit(
    worker, app, relying_party, enrolled_phone, citizen, db_state
):
    app.config["RATE_LIMIT_LOGIN"] = "1000/minute;1000/hour"
    worker.app.config["RATE_LIMIT_APPROVAL"] = "3/minute;60/hour"
    worker.markers.append(citizen.id)
    approvals = []
    for _ in range(RACERS):
        login = scan_login(app.test_client(), relying_party, enrolled_phone)
        options = login.challenge().json["options"]
        credential = enrolled_phone.authenticator.get_assertion(
            options, origin=enrolled_phone.origin, sign_count_override=0
        )
        approvals.append(
            (
                f"{worker.url}/api/v1/logins/{login.login_id}/approve",
                {"binding": login.binding, "number": login.number, "credential": credential},
            )
        )
    before = db_state()
    answers = flood(worker, lambda http, i: http.post(approvals[i][0], json=approvals[i][1]))
    assert statuses(answers) == {200: 3, 429: RACERS - 3}
    approved = select(func.count()).select_from(LoginTransaction)
    assert rows(app, approved.where(LoginTransaction.state == "approved")) == 3
    assert worker.counted("RATE_LIMIT_APPROVAL", citizen.id, "approval") == [3, 3]
    after = db_state()
    # the refused approvals burned nothing: only the three approved logins changed
    changed = [
        row for row in before["login_transactions"] if row not in after["login_transactions"]
    ]
    assert len(changed) == 3
