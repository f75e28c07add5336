"""Pooled database connections: cheap while busy, and replaced when they died while idle.

Checking every connection before use (``pool_pre_ping``) would cost a round trip on each of
the twenty-odd checkouts of a login; ``idserver.db`` pings only connections that idled. One
that the database dropped meanwhile (a restart, an idle timeout) is replaced, unseen.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine
from sqlalchemy import text

from idserver import db as db_module
from idserver.db import db


def test_connection_dropped_while_idle_is_replaced_before_use(
    app, client, relying_party, monkeypatch
):
    if not app.config["DATABASE_URL"].startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite has no server that could drop a connection")
    monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 0.0)  # "idle" at once, not after 10 s
    with app.app_context():
        db.engine.dispose()  # the pool now opens exactly one connection
        backend = db.session.scalar(text("SELECT pg_backend_pid()"))
        db.session.close()
        assert db.engine.pool.checkedin() == 1
    admin = create_engine(app.config["DATABASE_URL"])
    with admin.begin() as connection:
        assert connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    admin.dispose()
    # the next request's checkout finds the connection dead and opens a new one
    assert relying_party.start_login(client)
    with app.app_context():
        assert db.session.scalar(text("SELECT pg_backend_pid()")) != backend
        db.session.close()
