"""Attacks on refresh tokens: replay of a stolen token, racing uses, and token confusion."""

from __future__ import annotations

import threading
from typing import Any

from harness import OFFLINE
from harness import changed_tables
from harness import complete_login
from harness import refresh
from sqlalchemy import func
from sqlalchemy import select

from idserver.audit.models import AuditEvent
from idserver.db import db
from idserver.oidc.models import RefreshToken
from idserver.oidc.models import Token

RACERS = 6
COUNTERS = {"rate_limit_counters"}  # count every try, right or wrong


def _all_revoked(app: Any) -> bool:
    with app.app_context():
        rows = [*db.session.scalars(select(RefreshToken)), *db.session.scalars(select(Token))]
    return all(row.revoked_at is not None for row in rows)


def _reuse_events(app: Any) -> int:
    with app.app_context():
        statement = select(func.count()).where(AuditEvent.event == "refresh_token_reused")
        return db.session.scalar(statement) or 0


def test_a_stolen_refresh_token_used_first_by_the_thief_dies_with_its_family(
    app, client, offline_party, enrolled_phone
):
    stolen = complete_login(client, offline_party, enrolled_phone, **OFFLINE)["refresh_token"]
    thief = refresh(app.test_client(), offline_party, stolen)  # with the RP's leaked secret too
    assert thief.status_code == 200
    # the relying party presents its (now used) token: a reuse, which ends the family
    legit = refresh(client, offline_party, stolen)
    assert legit.status_code == 400 and legit.json["error"] == "invalid_grant"
    assert _all_revoked(app) and _reuse_events(app) == 1
    later = refresh(app.test_client(), offline_party, thief.json["refresh_token"])
    assert later.status_code == 400 and later.json["error"] == "invalid_grant"
    bearer = {"Authorization": f"Bearer {thief.json['access_token']}"}
    assert client.get("/userinfo", headers=bearer).status_code == 401


def test_concurrent_uses_of_one_refresh_token_rotate_it_once_then_revoke_the_family(
    app, client, offline_party, enrolled_phone
):
    token = complete_login(client, offline_party, enrolled_phone, **OFFLINE)["refresh_token"]
    barrier = threading.Barrier(RACERS)
    responses: list[Any] = [None] * RACERS

    def racer(index: int) -> None:
        browser = app.test_client()
        barrier.wait()
        responses[index] = refresh(browser, offline_party, token)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(r is not None for r in responses), "a racing request never finished"
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [400] * (RACERS - 1), [r.json for r in responses]
    assert {r.json["error"] for r in responses if r.status_code == 400} == {"invalid_grant"}
    with app.app_context():
        children = db.session.scalar(
            select(func.count()).where(RefreshToken.parent_id.is_not(None))
        )
    assert children == 1  # exactly one use won
    assert _all_revoked(app) and _reuse_events(app) >= 1  # the others were reuses


def test_rejects_tokens_of_the_wrong_kind(app, client, offline_party, enrolled_phone, db_state):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    before = db_state()
    as_refresh = refresh(client, offline_party, tokens["access_token"])
    assert as_refresh.status_code == 400 and as_refresh.json["error"] == "invalid_grant"
    bearer = {"Authorization": f"Bearer {tokens['refresh_token']}"}
    assert client.get("/userinfo", headers=bearer).status_code == 401
    assert changed_tables(before, db_state()) <= COUNTERS


def test_rejects_guessing_client_secrets_at_introspection_and_revocation(
    app, client, offline_party, enrolled_phone, db_state
):
    tokens = complete_login(client, offline_party, enrolled_phone, **OFFLINE)
    app.config["RATE_LIMIT_TOKEN"] = "2/minute"  # one budget for /token, /revoke, /introspect
    for path in ("/introspect", "/revoke"):
        guess = client.post(
            path, data={"token": tokens["access_token"]}, auth=(offline_party.client_id, "guess")
        )
        assert guess.status_code == 401 and guess.json["error"] == "invalid_client"
    before = db_state()
    for path in ("/introspect", "/revoke", "/token"):
        blocked = client.post(
            path,
            data={"token": tokens["refresh_token"], "grant_type": "refresh_token"},
            auth=(offline_party.client_id, offline_party.client_secret),
        )
        assert blocked.status_code == 429 and blocked.json["error"] == "too_many_requests"
    assert db_state() == before  # nothing revoked, nothing rotated
