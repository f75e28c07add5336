"""Every notification backend wakes a waiter when *another process* changes its login.

The waiter waits up to 60 s; it must return with the new version as soon as the change is
announced, which the test sees as the waiting thread finishing (no timing is asserted). The
change comes from a separate Python process running its own app, as another gunicorn worker
or another server would.
"""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

import pytest
from harness import RP_REDIRECT
from scale_instances import NEEDS_PG
from scale_instances import REDIS_URL
from scale_instances import instance_config
from scale_instances import new_instance
from scale_instances import shared_database
from sqlalchemy import update

from idserver import create_app
from idserver.crosslogin import events
from idserver.crosslogin import service
from idserver.crosslogin.models import LoginTransaction
from idserver.db import db
from idserver.oidc.clients import register_client
from idserver.oidc.views import requester_for

NEEDS_REDIS_ONLY = pytest.mark.skipif(
    not REDIS_URL, reason="set IDSERVER_TEST_REDIS_URL to test Redis pub/sub"
)


def change_in_this_process(config: dict[str, Any], login_id: str) -> None:
    """Run in a forked child: its own app bumps the login's version and announces it."""
    app = create_app(config)
    with app.app_context():
        db.session.execute(
            update(LoginTransaction)
            .where(LoginTransaction.id == login_id)
            .values(version=LoginTransaction.version + 1)
        )
        db.session.commit()
        events.notify(login_id)
        db.engine.dispose()


@pytest.mark.parametrize(
    "kind,redis",
    [
        pytest.param("sqlite", None, id="sqlite-watcher"),
        pytest.param("postgresql", None, marks=NEEDS_PG, id="postgresql-listen-notify"),
        pytest.param("sqlite", "configured", marks=NEEDS_REDIS_ONLY, id="redis-pubsub"),
        # Redis configured but down: waiters fall back to reading the database.
        pytest.param("sqlite", "redis://127.0.0.1:9/0", id="redis-down-fallback"),
    ],
)
def test_change_in_another_process_wakes_the_waiter(
    kind: str, redis: str | None, tmp_path: Any
) -> None:
    with shared_database(kind, tmp_path) as database_url:
        extra = {"REDIS_URL": REDIS_URL if redis == "configured" else redis} if redis else {}
        config = instance_config(database_url, tmp_path, **extra)
        app = new_instance(config)
        with app.app_context():
            db.create_all()
            client, _ = register_client(name="RP", redirect_uris=[RP_REDIRECT])
            tx, _ = service.create_transaction(
                client_id=client.client_id,
                params={},
                scope="",
                requester=requester_for(client, {}),
                desktop_ip="127.0.0.1",
                user_agent="test",
            )
            login_id = tx.id

        first_read = threading.Event()
        outcome: dict[str, int] = {}

        def read_version() -> int:
            db.session.expire_all()
            version = db.session.get(LoginTransaction, login_id).version
            db.session.close()
            first_read.set()  # registered and listening by now
            return version

        def wait() -> None:
            with app.app_context():
                # Without a heartbeat it yields once: the version last read.
                (outcome["version"],) = events.watch_for_change(
                    login_id, read_version, seen=0, timeout=60
                )

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        try:
            assert first_read.wait(10)
            # spawn, not fork: a child forked while another thread (the listener, logging its
            # failure) holds a stream's lock would hang on its first log line
            other = multiprocessing.get_context("spawn").Process(
                target=change_in_this_process, args=(config, login_id)
            )
            other.start()
            other.join(timeout=60)
            assert other.exitcode == 0
            waiter.join(timeout=20)
            assert not waiter.is_alive(), "the waiter never heard of the other process's change"
            assert outcome["version"] == 1
        finally:
            with app.app_context():
                db.engine.dispose()
