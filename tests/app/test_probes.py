"""``/healthz`` and ``/readyz``: what an orchestrator sees when the database, schema, keys or
Redis fail. Failures are real: a database behind a relay the test cuts, a SQLite folder that
vanishes, a schema one migration behind, a Redis port nobody listens on."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from flask import Flask
from harness import ISSUER
from harness import postgres_schema
from sqlalchemy import text
from sqlalchemy.engine import make_url

from idserver import create_app
from idserver.db import db
from idserver.db import make_engine
from idserver.db_migrate import alembic_config
from idserver.db_migrate import upgrade
from idserver.health import PROBE_PATHS

SETTLED = {"database": "ok", "migrations": "ok", "keys": "ok", "redis": "not configured"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _probe(app: Flask, path: str) -> Any:
    response = app.test_client().get(path)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.mimetype == "application/json"
    assert "Set-Cookie" not in response.headers
    return response


def _migrated(config: dict[str, Any]) -> Flask:
    app = create_app(config)
    upgrade(app)
    return app


@pytest.fixture
def served_app(app_config: dict[str, Any]) -> Iterator[Flask]:
    app = _migrated(app_config)
    yield app
    with app.app_context():
        db.engine.dispose()


def test_both_probes_answer_200_with_every_check_named(served_app):
    assert _probe(served_app, "/healthz").json == {"status": "ok"}
    ready = _probe(served_app, "/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "ready", "checks": SETTLED}


def test_probe_paths_are_the_probe_routes(served_app):
    routes = {r.rule for r in served_app.url_map.iter_rules() if r.endpoint.startswith("health.")}
    assert routes == PROBE_PATHS


def test_readyz_fails_while_the_sqlite_folder_is_gone_and_healthz_does_not(app_config, tmp_path):
    folder = tmp_path / "data"
    app = _migrated({**app_config, "DATABASE_URL": f"sqlite:///{folder}/idserver.sqlite3"})
    assert _probe(app, "/readyz").status_code == 200

    with app.app_context():
        db.engine.dispose()  # open files would keep the moved database usable
    folder.rename(tmp_path / "data-gone")
    unready = _probe(app, "/readyz")
    assert unready.status_code == 503
    assert unready.json["status"] == "unavailable"
    assert unready.json["checks"]["database"] == "failed"
    assert unready.json["checks"]["migrations"] == "skipped"
    assert unready.json["checks"]["keys"] == "ok"
    assert _probe(app, "/healthz").status_code == 200

    (tmp_path / "data-gone").rename(folder)
    assert _probe(app, "/readyz").status_code == 200


class _Relay:
    """A TCP relay to the database that the test can cut and restore, like a network or a
    database server going away and coming back."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = _closed_port()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._track(listener)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._track(client)
            self._track(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("IDSERVER_TEST_DATABASE_URL"), reason="needs PostgreSQL")
def test_readyz_fails_while_postgresql_is_unreachable_and_healthz_does_not(tmp_path):
    with postgres_schema() as schema_url:
        url = make_url(schema_url)
        relay = _Relay(url.host or "127.0.0.1", url.port or 5432)
        relayed = url.set(host="127.0.0.1", port=relay.port)
        _readyz_follows_the_relay(tmp_path, relay, relayed.render_as_string(hide_password=False))


def _readyz_follows_the_relay(tmp_path: Any, relay: _Relay, url: str) -> None:
    config = {
        "ISSUER": ISSUER,
        "DATABASE_URL": url,
        "KEYS_DIR": str(tmp_path / "keys"),
        "SECRET_KEY": "test-secret-" + "x" * 32,
    }
    app = _migrated(config)
    try:
        assert _probe(app, "/readyz").status_code == 200

        relay.cut()
        unready = _probe(app, "/readyz")
        assert unready.status_code == 503
        assert unready.json["checks"]["database"] == "failed"
        assert _probe(app, "/healthz").json == {"status": "ok"}

        relay.restore()
        assert _probe(app, "/readyz").json == {"status": "ready", "checks": SETTLED}
    finally:
        relay.cut()
        with app.app_context():
            db.engine.dispose()


def test_readyz_names_no_secret_of_an_unreachable_database(app_config, caplog):
    port = _closed_port()
    url = f"postgresql+psycopg://idserver:pw-s3cret-9731@127.0.0.1:{port}/idserver"
    app = create_app({**app_config, "DATABASE_URL": url})
    with caplog.at_level(logging.INFO, logger="idserver.health"):
        unready = _probe(app, "/readyz")
    assert unready.status_code == 503
    assert unready.json == {
        "status": "unavailable",
        "checks": {
            "database": "failed",
            "migrations": "skipped",
            "keys": "skipped",  # they live in the database, which never answered
            "redis": "not configured",
        },
    }
    body = unready.get_data(as_text=True)
    for secret_or_detail in ("pw-s3cret-9731", "idserver:", str(port), "psycopg", "refused"):
        assert secret_or_detail not in body
    assert "database failed" in caplog.text  # the reason goes to the log …
    assert "pw-s3cret-9731" not in caplog.text  # … without the password


def test_readyz_fails_while_the_schema_is_behind_the_migrations(app_config):
    app = create_app(app_config)
    config = alembic_config(app.config["DATABASE_URL"])
    script = ScriptDirectory.from_config(config)
    previous = script.get_revision(script.get_current_head()).down_revision
    engine = make_engine(app.config["DATABASE_URL"])
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, previous)
    engine.dispose()

    behind = _probe(app, "/readyz")
    assert behind.status_code == 503
    assert behind.json["status"] == "unavailable"
    assert behind.json["checks"]["database"] == "ok"
    assert behind.json["checks"]["migrations"] == "failed"
    assert _probe(app, "/healthz").status_code == 200

    upgrade(app)  # an instance turns ready as soon as the schema is upgraded
    assert _probe(app, "/readyz").json == {"status": "ready", "checks": SETTLED}
    with app.app_context():
        db.engine.dispose()


def test_readyz_fails_when_the_signing_key_cannot_be_read(app_config):
    app = _migrated({**app_config, "KEYS_REFRESH_SECONDS": 0})  # re-read on every use
    try:
        assert _probe(app, "/readyz").json == {"status": "ready", "checks": SETTLED}
        # The active ES256 ID-token key's row no longer opens under the KEK: its sealed private
        # key is bound to its kid, so a row whose kid was changed reads like one sealed elsewhere.
        engine = make_engine(app.config["DATABASE_URL"])
        with engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE signing_keys SET kid = 'tampered' "
                    "WHERE active_purpose = 'id_token' AND alg = 'ES256'"
                )
            )
        engine.dispose()
        unready = _probe(app, "/readyz")
    finally:
        with app.app_context():
            db.engine.dispose()
    assert unready.status_code == 503
    assert unready.json["checks"]["keys"] == "failed"
    assert unready.json["checks"]["database"] == "ok"


def test_readyz_names_an_unreachable_redis_but_stays_ready(app_config):
    # Limits and notifications fall back to the database while Redis is down (tests/ops/
    # test_faults.py): the instance can serve, so the load balancer must keep sending traffic.
    app = _migrated({**app_config, "REDIS_URL": f"redis://127.0.0.1:{_closed_port()}/0"})
    degraded = _probe(app, "/readyz")
    assert degraded.status_code == 200
    assert degraded.json == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "keys": "ok", "redis": "failed"},
    }
    assert _probe(app, "/healthz").status_code == 200
    with app.app_context():
        db.engine.dispose()


@pytest.mark.skipif(not os.environ.get("IDSERVER_TEST_REDIS_URL"), reason="needs Redis")
def test_readyz_pings_the_configured_redis(app_config):
    app = _migrated({**app_config, "REDIS_URL": os.environ["IDSERVER_TEST_REDIS_URL"]})
    assert _probe(app, "/readyz").json == {"status": "ready", "checks": {**SETTLED, "redis": "ok"}}
    with app.app_context():
        db.engine.dispose()
