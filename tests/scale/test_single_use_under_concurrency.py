"""Single-use transitions stay single-use when many requests race for them at once.

Each race fires the *same* request from many threads, released together by a barrier, against
a real database (SQLite file, and PostgreSQL when ``IDSERVER_TEST_DATABASE_URL`` is set). The
database decides the winner (a conditional UPDATE, see ``crosslogin.service``): exactly one
request succeeds and the rows show exactly one effect.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from harness import desktop_status
from harness import postgres_schema
from sqlalchemy import func
from sqlalchemy import select

from idserver.audit.models import AuditEvent
from idserver.db import db
from idserver.oidc.models import Token

RACERS = 8
PG_URL = os.environ.get("IDSERVER_TEST_DATABASE_URL")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(
                not PG_URL, reason="set IDSERVER_TEST_DATABASE_URL to race on PostgreSQL too"
            ),
        ),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """Overrides the suite's fixture so PostgreSQL shows up as skipped, not absent."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/race.sqlite3"
        return
    with postgres_schema("race_") as url:
        yield url


def race(app: Any, send: Callable[[Any], Any]) -> list[Any]:
    """Call ``send(test_client)`` from RACERS threads at the same moment; their responses."""
    barrier = threading.Barrier(RACERS)
    responses: list[Any] = [None] * RACERS

    def racer(index: int) -> None:
        client = app.test_client()
        barrier.wait()
        responses[index] = send(client)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(r is not None for r in responses), "a racing request never finished"
    return responses


def count(app: Any, statement: Any) -> int:
    with app.app_context():
        return db.session.scalar(statement) or 0


def test_the_same_approval_wins_exactly_once(app, client, relying_party, enrolled_phone):
    login_id = relying_party.start_login(client)
    status = desktop_status(client, login_id).json
    number = status["number"]
    _, scanned = enrolled_phone.scan(status["phone_url"])
    binding = scanned.json["binding"]
    issued = enrolled_phone.challenge(login_id, binding, number)
    assert issued.status_code == 200, issued.json
    credential = enrolled_phone.authenticator.get_assertion(
        issued.json["options"], origin=enrolled_phone.origin
    )
    body = {"binding": binding, "number": number, "credential": credential}

    responses = race(app, lambda c: c.post(f"/api/v1/logins/{login_id}/approve", json=body))

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, [r.json for r in responses]
    assert all(400 <= s < 500 for s in statuses if s != 200), statuses
    assert desktop_status(client, login_id).json["status"] == "approved"
    approvals = select(func.count()).where(AuditEvent.event == "login_approved")
    assert count(app, approvals) == 1


def test_the_same_authorization_code_buys_exactly_one_token(
    app, client, relying_party, enrolled_phone
):
    login_id = relying_party.start_login(client)
    status = desktop_status(client, login_id).json
    approved = enrolled_phone.approve(status["phone_url"], status["number"])
    assert approved.status_code == 200, approved.json
    redirected = client.get(desktop_status(client, login_id).json["continue_url"])
    code = parse_qs(urlsplit(redirected.headers["Location"]).query)["code"][0]

    responses = race(app, lambda c: relying_party.exchange(c, code))

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, [r.json for r in responses]
    assert all(r.json["error"] == "invalid_grant" for r in responses if r.status_code != 200)
    assert count(app, select(func.count()).select_from(Token)) == 1
    issued = select(func.count()).where(AuditEvent.event == "token_issued")
    assert count(app, issued) == 1
