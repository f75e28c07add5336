"""``/metrics``: Prometheus text for the bearer of IDSERVER_METRICS_TOKEN, counted where it happens.

In one test process the numbers are the process's (prometheus-client keeps them per process), so
these tests compare scrapes before and after; the served test at the end runs ``idserver serve``
with two gunicorn workers and checks that one scrape sums both.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from harness import complete_login
from harness import desktop_status
from prometheus_client import CollectorRegistry
from prometheus_client import multiprocess
from prometheus_client.parser import text_string_to_metric_families
from served import Served
from served import served_idserver
from served import server_environment
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from idserver import db as db_module
from idserver.crosslogin.models import LoginTransaction
from idserver.db import db

TOKEN = secrets.token_urlsafe(32)
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app_config(app_config):
    return {**app_config, "METRICS_TOKEN": TOKEN}


def samples(text_format: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape: (name, labels) → value."""
    found = {}
    for family in text_string_to_metric_families(text_format):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def scrape(client, headers=BEARER):
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return samples(response.get_data(as_text=True))


def value(scraped, name, **labels):
    return scraped.get((name, frozenset(labels.items())), 0.0)


def increase(before, after, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


# -- who may scrape -----------------------------------------------------------------------------
def test_metrics_answer_404_when_no_token_is_configured(app, client):
    app.config["METRICS_TOKEN"] = ""
    json = {"Accept": "application/json"}
    refused = client.get("/metrics", headers={**BEARER, **json})
    unknown = client.get("/no-such-page", headers=json)
    assert refused.status_code == unknown.status_code == 404
    assert refused.json == unknown.json  # like any path that does not exist
    assert "idserver_" not in refused.get_data(as_text=True)


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", f"Basic {TOKEN}", f"bearer{TOKEN}"],
    ids=["absent", "empty", "scheme-only", "scheme-and-blank", "basic", "no-space"],
)
def test_metrics_refuse_a_scrape_without_a_bearer_token(client, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"
    assert response.json["error_description"]
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="idserver-metrics"'
    assert response.headers["Cache-Control"] == "no-store"
    assert "idserver_" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "presented",
    [TOKEN[:-1], TOKEN + "x", TOKEN.upper() if TOKEN.upper() != TOKEN else "X" + TOKEN, "ä" * 43],
    ids=["shorter", "longer", "other-case", "non-ascii"],
)
def test_metrics_refuse_a_wrong_bearer_token(client, presented):
    response = client.get("/metrics", headers={"Authorization": f"Bearer {presented}"})
    assert response.status_code == 401
    assert response.json["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="idserver-metrics", error="invalid_token"'
    )
    assert "idserver_" not in response.get_data(as_text=True)


def test_metrics_answer_prometheus_text_to_the_token(client):
    response = client.get("/metrics", headers={"Authorization": f"bearer  {TOKEN} "})
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.headers["Cache-Control"] == "no-store"
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {
        "idserver_http_requests",
        "idserver_http_request_duration_seconds",
        "idserver_logins",
        "idserver_waiting_desktops",
    } <= names


@pytest.mark.parametrize("token", ["with space", "tab\tinside", "ümlaut"])
def test_refuses_to_start_with_a_token_that_is_not_a_bearer_token(app_config, token):
    from idserver import create_app
    from idserver.config import ConfigError

    with pytest.raises(ConfigError, match="IDSERVER_METRICS_TOKEN"):
        create_app({**app_config, "METRICS_TOKEN": token})


def test_production_refuses_a_short_metrics_token(app_config, monkeypatch):
    from idserver import create_app
    from idserver.config import ConfigError
    from idserver.keys.sealing import new_kek

    monkeypatch.setenv("IDSERVER_DATABASE_URL", app_config["DATABASE_URL"])
    production = {
        **app_config,
        "ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "KEY_ENCRYPTION_KEY": new_kek(),
    }
    with pytest.raises(ConfigError, match="IDSERVER_METRICS_TOKEN"):
        create_app({**production, "METRICS_TOKEN": "short"})
    # One line among all the others, not the first problem alone.
    with pytest.raises(ConfigError) as refused:
        create_app({**production, "SECRET_KEY": "too-short", "METRICS_TOKEN": "short"})
    assert "IDSERVER_METRICS_TOKEN must have 32 or more random characters" in refused.value.problems
    assert any("IDSERVER_SECRET_KEY" in line for line in refused.value.problems)
    create_app({**production, "METRICS_TOKEN": TOKEN})


def test_metrics_token_is_a_secret_setting_read_from_a_file(app_config, tmp_path, monkeypatch):
    from idserver import create_app
    from idserver.config import effective_config

    (tmp_path / "metrics_token").write_text(TOKEN + "\n")
    monkeypatch.setenv("IDSERVER_METRICS_TOKEN_FILE", str(tmp_path / "metrics_token"))
    overrides = {key: value for key, value in app_config.items() if key != "METRICS_TOKEN"}
    shown = effective_config(overrides, instance_path=str(tmp_path)).masked()
    assert shown["IDSERVER_METRICS_TOKEN"] == {"value": "***", "source": "file"}
    client = create_app(overrides).test_client()
    scrape = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert scrape.status_code == 200


# -- what is counted ----------------------------------------------------------------------------
def test_qr_login_and_token_exchange_are_counted_once(client, relying_party, enrolled_phone):
    before = scrape(client)
    complete_login(client, relying_party, enrolled_phone)
    after = scrape(client)

    assert increase(before, after, "idserver_logins_total", event="started", reason="") == 1
    assert increase(before, after, "idserver_logins_total", event="approved", reason="phone") == 1
    for reason in ("cancelled", "denied", "wrong_number", "other_network"):
        assert increase(before, after, "idserver_logins_total", event="denied", reason=reason) == 0
    grants = {
        (dict(labels)["client_id"], dict(labels)["grant_type"]): count
        for (name, labels), count in after.items()
        if name == "idserver_token_grants_total"
    }
    assert grants[(relying_party.client_id, "authorization_code")] == 1
    for endpoint, status in [
        ("oidc.authorize", "303"),
        ("api.scan", "200"),
        ("api.challenge", "200"),
        ("api.approve", "200"),
        ("crosslogin.continue_login", "303"),
        ("oidc.token", "200"),
    ]:
        labels = {"endpoint": endpoint, "status": status}
        assert increase(before, after, "idserver_http_requests_total", **labels) == 1, endpoint
        timed = increase(before, after, "idserver_http_request_duration_seconds_count", **labels)
        assert timed == 1, endpoint
    # the desktop asked for its status twice (before and after the approval)
    labels = {"endpoint": "crosslogin.desktop", "status": "200"}
    assert increase(before, after, "idserver_http_requests_total", **labels) == 2
    # the scrape before this one was counted under its endpoint name, never under its path
    assert (
        increase(
            before, after, "idserver_http_requests_total", endpoint="metrics.scrape", status="200"
        )
        == 1
    )
    assert not any("/" in dict(labels).get("endpoint", "") for _name, labels in after)


def test_unmatched_paths_are_counted_without_their_path(client):
    before = scrape(client)
    client.get(f"/no-such-page/{secrets.token_hex(8)}")
    after = scrape(client)
    labels = {"endpoint": "none", "status": "404"}
    assert increase(before, after, "idserver_http_requests_total", **labels) == 1


def test_denied_and_expired_logins_are_counted_by_reason(
    app, client, relying_party, enrolled_phone
):
    before = scrape(client)
    login_id = relying_party.start_login(client)
    status = desktop_status(client, login_id).json
    _, scanned = enrolled_phone.scan(status["phone_url"])
    wrong = "10" if status["number"] != "10" else "11"
    assert enrolled_phone.challenge(login_id, scanned.json["binding"], wrong).status_code == 400

    expiring = relying_party.start_login(client)
    with app.app_context():
        db.session.execute(
            update(LoginTransaction)
            .where(LoginTransaction.id == expiring)
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
        db.session.commit()
    assert desktop_status(client, expiring).json["status"] == "expired"
    after = scrape(client)

    assert increase(before, after, "idserver_logins_total", event="started", reason="") == 2
    labels = {"event": "denied", "reason": "wrong_number"}
    assert increase(before, after, "idserver_logins_total", **labels) == 1
    assert increase(before, after, "idserver_logins_total", event="expired", reason="") == 1


def test_enrolments_are_counted_as_succeeded_or_refused(client, phone, activation):
    before = scrape(client)
    wrong = client.post(
        "/api/v1/enrolments", json={"activation_id": activation[0], "code": "WRONG-CODE"}
    )
    assert wrong.status_code == 400
    assert phone.enrol(*activation).status_code == 201
    after = scrape(client)
    succeeded = {"outcome": "succeeded", "via": "activation", "reason": ""}
    refused = {"outcome": "refused", "via": "activation", "reason": "invalid_activation_code"}
    assert increase(before, after, "idserver_enrolments_total", **succeeded) == 1
    assert increase(before, after, "idserver_enrolments_total", **refused) == 1


def test_rate_limit_refusals_are_counted_by_limit(app, client, relying_party, phone, activation):
    app.config["RATE_LIMIT_LOGIN"] = "1/minute"
    app.config["RATE_LIMIT_ACTIVATION"] = "1/minute"
    before = scrape(client)
    relying_party.start_login(client)
    refused = client.get("/authorize", query_string=relying_party.authorize_params())
    assert refused.status_code == 429
    body = {"activation_id": activation[0], "code": activation[1]}
    assert phone.client.post("/api/v1/enrolments", json=body).status_code == 200
    assert phone.client.post("/api/v1/enrolments", json=body).status_code == 429
    after = scrape(client)
    assert (
        increase(before, after, "idserver_rate_limit_refusals_total", limit="rate_limit_login") == 1
    )
    assert (
        increase(before, after, "idserver_rate_limit_refusals_total", limit="rate_limit_activation")
        == 1
    )
    labels = {"endpoint": "oidc.authorize", "status": "429"}
    assert increase(before, after, "idserver_http_requests_total", **labels) == 1


def test_waiting_desktops_are_counted_while_their_poll_is_held(app, client, relying_party):
    app.config["LONG_POLL_SECONDS"] = 3
    login_id = relying_party.start_login(client)
    version = desktop_status(client, login_id).json["version"]
    before = value(scrape(client), "idserver_waiting_desktops")
    held = threading.Thread(
        target=desktop_status, args=(client, login_id), kwargs={"seen": version}
    )
    held.start()
    scraper = app.test_client()
    deadline = time.monotonic() + 2
    while value(scrape(scraper), "idserver_waiting_desktops") != before + 1:
        assert time.monotonic() < deadline, "the held poll was never counted"
        time.sleep(0.05)
    held.join()
    assert value(scrape(scraper), "idserver_waiting_desktops") == before


def test_database_pool_use_is_counted(app, client):
    with app.app_context():
        engine = db.engine
        database = engine.dialect.name
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))  # the pool's first connection sets its size
            during = scrape(client)
        after = scrape(client)
    size = value(after, "idserver_db_pool_size", database=database)
    assert size == engine.pool.size() > 0
    assert value(after, "idserver_db_pool_max_connections", database=database) > size
    checked_out = value(during, "idserver_db_pool_checked_out", database=database)
    assert checked_out - value(after, "idserver_db_pool_checked_out", database=database) == 1


def test_database_pool_use_stays_right_when_connections_break(
    app, client, relying_party, monkeypatch
):
    if not app.config["DATABASE_URL"].startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite has no server that could drop a connection")
    monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 0.0)  # every checkout pings first
    admin = create_engine(app.config["DATABASE_URL"])

    def terminate(backend: int) -> None:
        with admin.begin() as connection:
            assert connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})

    with app.app_context():
        engine = db.engine
        before = value(scrape(client), "idserver_db_pool_checked_out", database="postgresql")
        with engine.connect() as connection:  # dies while idle: the next checkout replaces it
            idle = connection.scalar(text("SELECT pg_backend_pid()"))
        terminate(idle)
        assert relying_party.start_login(client)
        with pytest.raises(OperationalError), engine.connect() as connection:  # dies in use
            terminate(connection.scalar(text("SELECT pg_backend_pid()")))
            connection.execute(text("SELECT 1"))
        with engine.connect() as connection:  # dies while idle, and the database is unreachable
            idle = connection.scalar(text("SELECT pg_backend_pid()"))
        terminate(idle)

        def unreachable(*_args: object) -> None:
            import psycopg

            raise psycopg.OperationalError("connection refused")

        event.listen(engine, "do_connect", unreachable)
        try:
            with pytest.raises(OperationalError), engine.connect():
                pass
        finally:
            event.remove(engine, "do_connect", unreachable)
        after = value(scrape(client), "idserver_db_pool_checked_out", database="postgresql")
    admin.dispose()
    assert after == before


# -- under gunicorn: several workers, one sum ---------------------------------------------------
def _serve(
    tmp_path: Path, server: str = "gunicorn", **extra_env: str
) -> contextlib.AbstractContextManager[Served]:
    base = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env = server_environment(tmp_path, base=base, METRICS_TOKEN=TOKEN)
    options = ("--server", server)
    return served_idserver({**env, **extra_env}, tmp_path, workers=2, options=options)


def _per_worker_requests(metrics_dir: Path, tmp_path: Path, endpoint: str) -> dict[str, float]:
    """Each worker's own count of 200 answers from ``endpoint``, read from its file alone."""
    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        alone = tmp_path / f"alone-{path.stem}"
        alone.mkdir(exist_ok=True)
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(alone))
        count = registry.get_sample_value(
            "idserver_http_requests_total", {"endpoint": endpoint, "status": "200"}
        )
        if count:
            counts[path.stem.split("_")[-1]] = count
    return counts


@pytest.mark.parametrize("server", ["gunicorn", "granian"])
def test_served_metrics_sum_the_requests_of_every_worker(tmp_path, server):
    temp = tmp_path / "tmp"  # where ``serve`` makes its fresh metrics folder
    temp.mkdir()
    with _serve(tmp_path, server, TMPDIR=str(temp)) as served:
        issuer = served.issuer
        (metrics_dir,) = temp.glob("idserver-metrics-*")
        assert metrics_dir.stat().st_mode & 0o777 == 0o700
        sent = 0
        per_worker: dict[str, float] = {}
        deadline = time.monotonic() + 60
        with ThreadPoolExecutor(max_workers=16) as pool:
            while len(per_worker) < 2:  # until both workers have answered some
                assert time.monotonic() < deadline, f"one worker answered all: {per_worker}"
                batch = list(
                    pool.map(lambda _: requests.get(f"{issuer}/jwks.json", timeout=10), range(32))
                )
                assert all(response.ok for response in batch)
                sent += len(batch)
                per_worker = _per_worker_requests(metrics_dir, tmp_path, "oidc.jwks")
        assert sum(per_worker.values()) == sent

        refused = requests.get(f"{issuer}/metrics", timeout=10)
        assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
        labels = {"endpoint": "oidc.jwks", "status": "200"}
        for _ in range(6):  # whichever worker answers the scrape, it reports the sum
            response = requests.get(f"{issuer}/metrics", headers=BEARER, timeout=10)
            assert response.status_code == 200
            scraped = samples(response.text)
            assert value(scraped, "idserver_http_requests_total", **labels) == sent
            assert value(scraped, "idserver_http_request_duration_seconds_count", **labels) == sent
    assert not metrics_dir.exists()  # removed when the server stopped


def test_served_metrics_start_from_zero_in_a_given_folder(tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    left_over = metrics_dir / "counter_1.db"
    left_over.write_bytes(b"an earlier run's numbers")
    with _serve(tmp_path, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)) as served:
        issuer = served.issuer
        assert not left_over.exists()
        response = requests.get(f"{issuer}/metrics", headers=BEARER, timeout=10)
        assert response.status_code == 200
        assert any(metrics_dir.glob("counter_*.db"))
    assert metrics_dir.is_dir()  # the operator's folder stays


def test_a_new_worker_drops_the_live_gauges_of_dead_workers(tmp_path, monkeypatch):
    """granian has no ``child_exit`` hook: each new worker drops what dead workers left."""
    from idserver.metrics import drop_dead_workers

    finished = subprocess.Popen(["true"])  # noqa: S607 -- a process that has ended, reaped
    finished.wait()
    dead = finished.pid
    alive = os.getpid()
    for pid in (dead, alive):
        (tmp_path / f"gauge_liveall_{pid}.db").write_bytes(b"")
    counter = tmp_path / f"counter_{dead}.db"
    counter.write_bytes(b"")  # counters of a dead worker still count
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    assert drop_dead_workers() == [dead]
    assert not (tmp_path / f"gauge_liveall_{dead}.db").exists()
    assert (tmp_path / f"gauge_liveall_{alive}.db").exists()
    assert counter.exists()
