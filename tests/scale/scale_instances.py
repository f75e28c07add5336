"""Helpers for the scale tests: shared databases and Bürger-ID instances served over HTTP."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from harness import postgres_schema
from werkzeug.serving import make_server

from idserver import create_app

PG_URL = os.environ.get("IDSERVER_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("IDSERVER_TEST_REDIS_URL")
NEEDS_PG = pytest.mark.skipif(
    not PG_URL, reason="set IDSERVER_TEST_DATABASE_URL (PostgreSQL) to run this"
)
NEEDS_REDIS = pytest.mark.skipif(
    not (PG_URL and REDIS_URL),
    reason="set IDSERVER_TEST_DATABASE_URL and IDSERVER_TEST_REDIS_URL to run this",
)


@contextlib.contextmanager
def shared_database(kind: str, tmp_path: Any) -> Iterator[str]:
    """``sqlite`` (one file) or ``postgresql`` (one schema) for several instances."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/shared.sqlite3"
    else:
        with postgres_schema("scale_") as url:
            yield url


def instance_config(database_url: str, tmp_path: Any, **extra: Any) -> dict[str, Any]:
    """What two instances of one deployment share: database, keys, secret, issuer."""
    return {
        "ISSUER": "http://localhost",
        "DATABASE_URL": database_url,
        "KEYS_DIR": str(tmp_path / "shared-keys"),
        "SECRET_KEY": "scale-secret-" + "x" * 32,
        **extra,
    }


@contextlib.contextmanager
def served(app: Flask) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 with a thread per request; its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def new_instance(config: dict[str, Any]) -> Flask:
    app = create_app(config)
    app.config["TESTING"] = True
    return app
