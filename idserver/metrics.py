"""Prometheus metrics: counted where things happen, served at ``/metrics`` to a bearer token.

The service functions count their own events (``LOGINS.labels(...).inc()`` next to the state
transition that won); the request hooks here count every answer by Flask endpoint name and status
and time it. Nothing here reads the database or scrapes responses.

Under ``idserver serve`` every gunicorn worker writes its numbers to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode; ``serve`` creates a fresh
private folder for each start), and whichever worker answers a scrape sums all of them. Without
that variable (tests, ``flask run``) the numbers live in this process.

``/metrics`` answers only to ``Authorization: Bearer <IDSERVER_METRICS_TOKEN>`` (RFC 6750 §2.1);
with no token configured it does not exist (404), like any unknown path. Why a token on the main
port rather than a second listener: docs/operations.md, "Metrics".
"""

from __future__ import annotations

import glob
import hmac
import os
import time
from typing import Any

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import jsonify
from flask import request
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import Histogram
from prometheus_client import generate_latest
from prometheus_client import multiprocess
from prometheus_client import values
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .errors import NotFound

__all__ = [
    "DB_POOL_CHECKED_OUT",
    "DB_POOL_MAX_CONNECTIONS",
    "DB_POOL_SIZE",
    "ENROLMENTS",
    "LOGINS",
    "RATE_LIMIT_REFUSALS",
    "REQUESTS",
    "REQUEST_SECONDS",
    "TOKEN_GRANTS",
    "WAITING_DESKTOPS",
    "drop_dead_workers",
    "init_app",
    "multiprocess_mode",
]

bp = Blueprint("metrics", __name__)

REALM = "idserver-metrics"
COUNTED = "idserver.metrics.checked_out"  # in a pool record: its checkout was counted
UNMATCHED = "none"  # the endpoint label of requests no route matched (404, 405)
# From well under the 0.35 ms a trivial request should cost up to the 60 s worker timeout.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter(
    "idserver_http_requests",
    "HTTP requests answered, by Flask endpoint name (never the path) and status code.",
    ["endpoint", "status"],
)
REQUEST_SECONDS = Histogram(
    "idserver_http_request_duration_seconds",
    "Time from the request's first hook until its response started, by endpoint and status.",
    ["endpoint", "status"],
    buckets=LATENCY_BUCKETS,
)
LOGINS = Counter(
    "idserver_logins",
    "Login transactions: started, approved (reason: phone or passkey), denied (reason: "
    "cancelled, denied, wrong_number, other_network) and expired.",
    ["event", "reason"],
)
ENROLMENTS = Counter(
    "idserver_enrolments",
    "Devices enrolled (succeeded) or enrolments refused, by path (activation or pairing) and "
    "the refusal's error code.",
    ["outcome", "via", "reason"],
)
TOKEN_GRANTS = Counter(
    "idserver_token_grants",
    "Tokens issued at /token, by client_id and grant type.",
    ["client_id", "grant_type"],
)
RATE_LIMIT_REFUSALS = Counter(
    "idserver_rate_limit_refusals",
    "Requests refused (429) because a limit was reached, by the limit's setting name.",
    ["limit"],
)
WAITING_DESKTOPS = Gauge(
    "idserver_waiting_desktops",
    "Desktops whose status request is held right now (long polls in progress).",
    multiprocess_mode="livesum",
)
DB_POOL_CHECKED_OUT = Gauge(
    "idserver_db_pool_checked_out",
    "Database connections a worker has checked out of its pool right now.",
    ["database"],
    multiprocess_mode="liveall",
)
DB_POOL_SIZE = Gauge(
    "idserver_db_pool_size",
    "Connections a worker's pool keeps open.",
    ["database"],
    multiprocess_mode="liveall",
)
DB_POOL_MAX_CONNECTIONS = Gauge(
    "idserver_db_pool_max_connections",
    "The most connections a worker's pool hands out (pool size plus overflow); beyond it "
    "requests wait for a connection.",
    ["database"],
    multiprocess_mode="liveall",
)


def multiprocess_mode() -> bool:
    """Whether this process writes its numbers to ``PROMETHEUS_MULTIPROC_DIR``.

    prometheus-client decides when it is first imported, so the variable must be set before that
    (``idserver serve`` does so before it builds the application).
    """
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def drop_dead_workers() -> list[int]:
    """Drop the live gauges of workers that have exited (``multiprocess.mark_process_dead``).

    gunicorn calls it per worker from its ``child_exit`` hook; granian has no such hook, so
    each new worker calls this at its start, which also covers a worker started in place of
    one that died. Returns the process ids dropped.
    """
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return []
    dropped = []
    for path in glob.glob(os.path.join(folder, "gauge_live*_*.db")):
        pid = int(path.rsplit("_", 1)[1].removesuffix(".db"))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, folder)
            dropped.append(pid)
        except PermissionError:
            continue  # alive, another user's
    return sorted(set(dropped))


# -- requests ---------------------------------------------------------------------------------
# (endpoint, status) → its counter and histogram children: a plain dict read needs no lock, where
# ``labels()`` takes one on every call. Endpoint names and statuses are few, so it stays small.
_children: dict[tuple[str, int], tuple[Any, Any]] = {}


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _count_request(response: Response) -> Response:
    """Count and time the answer; a streamed answer (the long poll) is timed until it starts."""
    key = (request.endpoint or UNMATCHED, response.status_code)
    children = _children.get(key)
    if children is None:
        status = str(key[1])
        children = (REQUESTS.labels(key[0], status), REQUEST_SECONDS.labels(key[0], status))
        _children[key] = children
    children[0].inc()
    started = g.get("metrics_started")
    if started is not None:
        children[1].observe(time.perf_counter() - started)
    return response


# -- the database pool ------------------------------------------------------------------------
def _watch_pool(engine: Engine) -> None:
    """Keep the pool gauges current through SQLAlchemy's pool events, without a query.

    The gauges appear with the pool's first connection, so a process that never uses this
    engine (``idserver serve``'s master) adds no series.
    """
    database = engine.dialect.name
    gauges: dict[str, Any] = {}

    @event.listens_for(engine, "first_connect")
    def _first_connect(_dbapi_connection: Any, _record: Any) -> None:
        pool: Any = engine.pool
        size = pool.size() if hasattr(pool, "size") else 0
        # QueuePool keeps its overflow limit only in a private attribute; a negative one is none.
        overflow = getattr(pool, "_max_overflow", 0)
        DB_POOL_SIZE.labels(database).set(size)
        DB_POOL_MAX_CONNECTIONS.labels(database).set(size + overflow if overflow >= 0 else 0)

    pool: Any = engine.pool
    if hasattr(pool, "checkedin") and pool.checkedin() + pool.checkedout() > 0:
        # Already connected before it was watched (the key store prepares at start-up):
        # "first_connect" has fired, so the sizes are set now.
        _first_connect(None, None)

    def checked_out() -> Any:
        gauge = gauges.get("checked_out")
        if gauge is None:
            gauge = gauges["checked_out"] = DB_POOL_CHECKED_OUT.labels(database)
        return gauge

    # SQLAlchemy also checks in a connection whose checkout failed (a reconnect that did not
    # work): only a checkout this listener counted is counted back. ``record_info`` outlives an
    # invalidated connection, so one that breaks while in use is counted back too.
    @event.listens_for(engine, "checkout")
    def _checkout(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        record.record_info[COUNTED] = True
        checked_out().inc()

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        if record.record_info.pop(COUNTED, False):
            checked_out().dec()


# -- the scrape -------------------------------------------------------------------------------
def _refuse(error: str, description: str, challenge: str) -> Response:
    """401 for the scraper (RFC 6750 §3); like OAuth's, its descriptions are for operators,
    in English."""
    response = jsonify(error=error, error_description=description)
    response.status_code = 401
    response.headers["WWW-Authenticate"] = challenge
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/metrics")
def scrape() -> Response:
    """The Prometheus text format, for ``Authorization: Bearer <IDSERVER_METRICS_TOKEN>``."""
    expected = current_app.config["METRICS_TOKEN"]
    if not expected:
        raise NotFound()
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        # RFC 6750 §3.1: no error code in the challenge when no token was presented at all.
        return _refuse("unauthorized", "A bearer token is required.", f'Bearer realm="{REALM}"')
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        return _refuse(
            "invalid_token",
            "The bearer token is not valid.",
            f'Bearer realm="{REALM}", error="invalid_token"',
        )
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=os.environ["PROMETHEUS_MULTIPROC_DIR"])
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return Response(
        body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"}
    )


def init_app(app: Flask) -> None:
    """Serve ``/metrics``, time every request from its first hook, and watch the pool."""
    app.register_blueprint(bp)
    # First of all before_request hooks, so refusals by later hooks are timed too.
    app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)
    app.after_request(_count_request)
    _watch_pool(app.extensions["idserver.db"][0])
