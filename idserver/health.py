"""Probes for orchestrators and load balancers: ``/healthz`` (liveness), ``/readyz`` (readiness).

``/healthz`` answers while the process serves requests, and touches nothing else: restart the
container when it fails. ``/readyz`` answers 200 only when this instance can do its work: the
database answers, its schema is at the migrations' head and the signing keys load (from the
database, where they live: a worker that has them keeps them while the database is away, one that
never had them reports them ``skipped`` while the database fails); send it no traffic while it
answers 503. Redis (``IDSERVER_REDIS_URL``) is reported but does not make an
instance unready: while it is down, rate limits count in the database and waiting desktops poll
the database (docs/operations.md, "Failure behaviour"), so taking every instance out of the load
balancer during a Redis outage would turn a degraded service into none. Both bodies name
each check and nothing more: no connection strings, no exception texts (those go to the log).

Readiness costs one ``SELECT 1`` per call (plus a Redis ``PING`` when configured). The schema
revision is compared with the head of ``idserver/migrations`` (read once, at the first probe) and
a match is remembered for ``MIGRATIONS_RECHECK_SECONDS``; a mismatch is looked at again on every
call, so an instance turns ready as soon as ``idserver db upgrade`` has run.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import jsonify
from sqlalchemy import text

from .db import db
from .db_migrate import alembic_config
from .keys import key_store

__all__ = ["PROBE_PATHS", "bp", "init_app"]

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

HEALTHZ = "/healthz"
READYZ = "/readyz"
# For the access log and anything else that should not count the probes' steady stream.
PROBE_PATHS = frozenset({HEALTHZ, READYZ})

EXTENSION = "idserver.health"
MIGRATIONS_RECHECK_SECONDS = 60.0
REDIS_TIMEOUT_SECONDS = 1.0

OK = "ok"
FAILED = "failed"
SKIPPED = "skipped"  # could not be checked because the database failed
NOT_CONFIGURED = "not configured"


@dataclass
class _Readiness:
    """What one application remembers between probes."""

    url: str
    heads: frozenset[str] | None = None
    redis: Any = None
    at_head_until: float = 0.0
    last: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def init_app(app: Flask) -> None:
    """Prepare the Redis client if Redis is configured."""
    readiness = _Readiness(url=app.config["DATABASE_URL"])
    if app.config.get("REDIS_URL"):
        import redis

        readiness.redis = redis.Redis.from_url(
            app.config["REDIS_URL"],
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
    app.extensions[EXTENSION] = readiness


def _probe_response(body: dict[str, Any], status: int) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get(HEALTHZ)
def healthz() -> Response:
    """Liveness: the process answers. No I/O."""
    return _probe_response({"status": "ok"}, 200)


@bp.get(READYZ)
def readyz() -> Response:
    """Readiness: database, migrations, keys and (if configured) Redis, each named in the body."""
    readiness: _Readiness = current_app.extensions[EXTENSION]
    checks: dict[str, str] = {}
    failures: dict[str, BaseException] = {}
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            checks["database"] = OK
            try:
                checks["migrations"] = _check_migrations(readiness, connection)
            except Exception as exc:  # noqa: BLE001 -- any failure makes the instance unready
                checks["migrations"], failures["migrations"] = FAILED, exc
    except Exception as exc:  # noqa: BLE001
        checks["database"], failures["database"] = FAILED, exc
        checks.setdefault("migrations", SKIPPED)
    try:
        key_store().signing_key()
        checks["keys"] = OK
    except Exception as exc:  # noqa: BLE001
        # The keys live in the database: without it they cannot be checked, only found missing.
        checks["keys"] = SKIPPED if checks["database"] == FAILED else FAILED
        failures["keys"] = exc
    if readiness.redis is None:
        checks["redis"] = NOT_CONFIGURED
    else:
        try:
            readiness.redis.ping()
            checks["redis"] = OK
        except Exception as exc:  # noqa: BLE001
            checks["redis"], failures["redis"] = FAILED, exc
    _log_changes(readiness, checks, failures)
    ready = all(value in (OK, NOT_CONFIGURED) for name, value in checks.items() if name != "redis")
    return _probe_response(
        {"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503
    )


def _check_migrations(readiness: _Readiness, connection: Any) -> str:
    if time.monotonic() < readiness.at_head_until:
        return OK
    # Imported here, not at start: alembic logs its plugins when loaded, which every CLI
    # command would print.
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    if readiness.heads is None:
        script = ScriptDirectory.from_config(alembic_config(readiness.url))
        readiness.heads = frozenset(script.get_heads())
    current = frozenset(MigrationContext.configure(connection).get_current_heads())
    if current != readiness.heads:
        raise RuntimeError(
            f"schema at {sorted(current) or 'no revision'}, code expects {sorted(readiness.heads)};"
            " run `idserver db upgrade`"
        )
    readiness.at_head_until = time.monotonic() + MIGRATIONS_RECHECK_SECONDS
    return OK


def _log_changes(
    readiness: _Readiness, checks: dict[str, str], failures: dict[str, BaseException]
) -> None:
    """Log a check when its result changes, not on every probe (they come every few seconds).

    Only the exception's class and message: the drivers put host and port in them, never the
    password of the URL.
    """
    with readiness.lock:
        for name, value in checks.items():
            if readiness.last.get(name) == value:
                continue
            readiness.last[name] = value
            if name in failures:
                exc = failures[name]
                log.warning("readiness: %s %s: %s: %s", name, value, type(exc).__name__, exc)
            elif value == OK:
                log.info("readiness: %s ok", name)
