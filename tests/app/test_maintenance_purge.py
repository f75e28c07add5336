"""Retention: ``idserver maintenance purge`` deletes what has ended, keeps what is live.

Every kind of row is made three ways: ended longer ago than the retention period (deleted),
ended more recently (kept) and still usable (kept). Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from harness import complete_login
from harness import postgres_schema
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from idserver import create_app
from idserver.account.consents import list_services
from idserver.account.models import ConsentWithdrawal
from idserver.account.models import Pairing
from idserver.admin.models import MaintenanceRun
from idserver.admin.retention import PURGE_JOB
from idserver.admin.retention import PURGE_LOCK_KEY
from idserver.admin.retention import purge_expired_data
from idserver.audit.models import AuditEvent
from idserver.citizens.models import ActivationAttempt
from idserver.citizens.models import ActivationCode
from idserver.citizens.models import Citizen
from idserver.citizens.service import register_citizen
from idserver.crosslogin.models import LoginTransaction
from idserver.crosslogin.models import Requester
from idserver.db import db
from idserver.db import utcnow
from idserver.limits import RateLimitCounter
from idserver.oidc.clients import register_client
from idserver.oidc.clients import self_client
from idserver.oidc.models import AuthorizationCode
from idserver.oidc.models import LogoutDelivery
from idserver.oidc.models import PushedAuthorizationRequest
from idserver.oidc.models import RefreshToken
from idserver.oidc.models import Token
from idserver.oidc.models import UsedAssertion
from idserver.passkeys.models import Challenge
from idserver.saml.models import SamlRequest
from idserver.sessions import SELF_CLIENT_ID
from idserver.sessions import BrowserSession

BIN = Path(sys.executable).parent
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def _run(runner: Any, *args: str) -> tuple[int, Any]:
    result = runner.invoke(args=list(args))
    return result.exit_code, json.loads(result.output) if result.output.strip() else None


def _token(citizen_id, client_id, *, issued, claims=("name",), revoked=None, ttl=600):
    return Token(
        access_token_hash=secrets.token_hex(32),
        client_id=client_id,
        citizen_id=citizen_id,
        scope="openid profile",
        claims=list(claims),
        issued_at=issued,
        expires_at=issued + dt.timedelta(seconds=ttl),
        revoked_at=revoked,
    )


def _login(client_id, *, expires, citizen_id=None):
    return LoginTransaction(
        id=secrets.token_urlsafe(24),
        state="consumed",
        browser_hash=secrets.token_hex(32),
        client_id=client_id,
        request_params={},
        scope="openid",
        requester=Requester(
            name="Bewohnerparkausweis",
            claims=("sub",),
            proximity_policy=None,
            site_url="http://localhost:8001/",
            form_origin="http://localhost:8001",
            answers_endings=True,
        ).as_json(),
        number="42",
        desktop_ip="203.0.113.7",
        desktop_user_agent="Mozilla/5.0 (X11; Linux x86_64)",
        phone_ip="198.51.100.9",
        citizen_id=citizen_id,
        expires_at=expires,
    )


def _rows_ending(citizen_id: str, client_id: str, at: dt.datetime, tag: str) -> dict[str, Any]:
    """One row of every transient kind that stopped being usable at ``at``."""
    return {
        "authorization_codes": AuthorizationCode(
            code_hash=secrets.token_hex(32),
            client_id=client_id,
            citizen_id=citizen_id,
            redirect_uri="https://rp.example/cb",
            scope="openid",
            code_challenge="x" * 43,
            code_challenge_method="S256",
            auth_time=0,
            expires_at=at,
            used_at=at - dt.timedelta(seconds=30),
        ),
        "login_transactions": _login(client_id, expires=at, citizen_id=citizen_id),
        "browser_sessions": BrowserSession(
            id=secrets.token_urlsafe(32),
            citizen_id=citizen_id,
            expires_at=at + HOUR,
            ended_at=at,
            acr="phone",
            amr=["hwk"],
        ),
        "webauthn_challenges": Challenge(
            id=secrets.token_urlsafe(24),
            purpose="login",
            challenge=secrets.token_bytes(32),
            subject=tag,
            expires_at=at,
        ),
        "pairings": Pairing(
            id=secrets.token_urlsafe(24),
            citizen_id=citizen_id,
            state="expired",
            number="17",
            expires_at=at,
        ),
        "used_client_assertions": UsedAssertion(
            client_id=client_id, jti=secrets.token_hex(8), expires_at=at
        ),
        "pushed_authorization_requests": PushedAuthorizationRequest(
            request_uri_hash=secrets.token_hex(32),
            client_id=client_id,
            params={"client_id": client_id},
            expires_at=at,
        ),
        "saml_requests": SamlRequest(
            sp_id=secrets.token_hex(8),
            request_id=f"_{tag}-{secrets.token_hex(8)}",
            expires_at=at,
        ),
        "logout_deliveries": LogoutDelivery(
            client_id=client_id,
            sid=secrets.token_hex(16),
            sub=secrets.token_hex(16),
            delivered_at=at,
        ),
        "activation_attempts": ActivationAttempt(address=f"192.0.2.{len(tag)}", at=at),
        "refresh_tokens": RefreshToken(
            token_hash=secrets.token_hex(32),
            family_id=secrets.token_hex(16),
            client_id=client_id,
            citizen_id=citizen_id,
            scope="openid offline_access",
            expires_at=at + HOUR,
            idle_expires_at=at,
        ),
    }


def _ids(app, model) -> set[Any]:
    key = model.__mapper__.primary_key[0]
    with app.app_context():
        return set(db.session.scalars(select(key)))


def _key(row) -> Any:
    return row.__mapper__.primary_key_from_instance(row)[0]


def test_purge_deletes_each_kind_once_ended_long_enough_and_keeps_the_rest(
    app, runner, citizen, relying_party
):
    now = utcnow()
    with app.app_context():
        old = _rows_ending(citizen.id, relying_party.client_id, now - 25 * HOUR, "old")
        young = _rows_ending(citizen.id, relying_party.client_id, now - 23 * HOUR, "young")
        live = _rows_ending(citizen.id, relying_party.client_id, now + HOUR, "live")
        live["authorization_codes"].used_at = None
        live["login_transactions"].state = "pending"
        live["browser_sessions"].ended_at = None
        live["pairings"].state = "pending"
        live["activation_attempts"].at = now - dt.timedelta(minutes=30)
        # an old login that a live session still names (the account page marks its device)
        named = _login(relying_party.client_id, expires=now - 30 * HOUR, citizen_id=citizen.id)
        live["named_login"] = named
        live["named_session"] = BrowserSession(
            id=secrets.token_urlsafe(32),
            citizen_id=citizen.id,
            expires_at=now + HOUR,
            acr="phone",
            amr=["hwk"],
            login_id=named.id,
        )
        # a session that simply ran out long ago, never ended explicitly
        old["expired_session"] = BrowserSession(
            id=secrets.token_urlsafe(32),
            citizen_id=citizen.id,
            expires_at=now - 25 * HOUR,
            acr="phone",
            amr=[],
        )
        old["counter"] = RateLimitCounter(key="idserver/203.0.113.7", count=3, expires_at=now)
        live["counter"] = RateLimitCounter(
            key="idserver/198.51.100.9", count=3, expires_at=now + HOUR
        )
        # activation codes follow the residents' retention (the clerk console lists them)
        days = app.config["RETENTION_DAYS"]
        codes = {}
        for name, used, expires in [
            ("used_long_ago", now - (days + 1) * DAY, now - days * DAY),
            ("expired_long_ago", None, now - (days + 1) * DAY),
            ("used_recently", now - (days - 1) * DAY, now + DAY),
            ("expired_recently", None, now - (days - 1) * DAY),
            ("open", None, now + DAY),
        ]:
            codes[name] = ActivationCode(
                citizen_id=citizen.id,
                code_hash=secrets.token_hex(32),
                expires_at=expires,
                used_at=used,
            )
        gone = register_citizen(
            given_name="Gone",
            family_name="Beispiel",
            birthdate="1950-01-01",
            street="Weg 1",
            postcode="12345",
            city="Musterstadt",
        )
        gone.deleted_at = now - (days + 1) * DAY
        db.session.add_all([*old.values(), *young.values(), *live.values(), *codes.values()])
        db.session.commit()
        deleted_keys = {(type(r), _key(r)) for r in old.values()}
        kept_keys = {(type(r), _key(r)) for r in [*young.values(), *live.values()]}
        gone_id = gone.id

    code, report = _run(runner, "maintenance", "purge")

    assert code == 0, report
    assert report["purge_after_hours"] == 24 and report["retention_days"] == 90
    assert report["deleted"] == {
        "authorization_codes": 1,
        "login_transactions": 1,
        "browser_sessions": 2,
        "webauthn_challenges": 1,
        "pairings": 1,
        "used_client_assertions": 1,
        "logout_deliveries": 1,
        "pushed_authorization_requests": 1,
        "refresh_tokens": 1,
        "activation_attempts": 1,
        "rate_limit_counters": 1,
        "saml_requests": 1,
        "activation_codes": 2,
        "tokens": 0,
        "residents": 1,
    }
    for model, key in deleted_keys:
        assert key not in _ids(app, model), model
    for model, key in kept_keys:
        assert key in _ids(app, model), model
    codes_left = _ids(app, ActivationCode)
    assert {codes[n].id for n in ("used_recently", "expired_recently", "open")} <= codes_left
    assert not {codes[n].id for n in ("used_long_ago", "expired_long_ago")} & codes_left
    assert gone_id not in _ids(app, Citizen) and citizen.id in _ids(app, Citizen)

    # one audit event, counts and settings only; the chain still verifies
    with app.app_context():
        event = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "maintenance_purged")
        ).one()
        assert event.actor == "operator" and event.subject is None
        assert event.data == {
            "deleted": report["deleted"],
            "purge_after_hours": 24,
            "retention_days": 90,
        }
    assert _run(runner, "audit", "verify") == (0, {"ok": True})

    # nothing left to delete: no change, no second event
    code, again = _run(runner, "maintenance", "purge")
    assert code == 0 and not any(again["deleted"].values())
    with app.app_context():
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.event == "maintenance_purged")
            )
            == 1
        )


def test_purge_after_zero_hours_deletes_at_once_but_keeps_the_attempts_hour(app, citizen):
    app.config["PURGE_AFTER_HOURS"] = 0
    now = utcnow()
    with app.app_context():
        recent = ActivationAttempt(address="192.0.2.1", at=now - dt.timedelta(minutes=59))
        hour_ago = ActivationAttempt(address="192.0.2.1", at=now - dt.timedelta(minutes=61))
        challenge = Challenge(
            id="c" * 20, purpose="login", challenge=b"x" * 32, expires_at=now - dt.timedelta(1e-3)
        )
        db.session.add_all([recent, hour_ago, challenge])
        db.session.commit()
        report = purge_expired_data()
        assert report["deleted"]["activation_attempts"] == 1
        assert report["deleted"]["webauthn_challenges"] == 1
        assert db.session.scalars(select(ActivationAttempt.id)).all() == [recent.id]


def test_purge_keeps_the_tokens_a_citizens_list_of_services_is_made_of(app, citizen, relying_party):
    now = utcnow()
    old = now - 30 * HOUR
    rp = relying_party.client_id
    with app.app_context():
        self_client()  # Bürger-ID's own client: its tokens are never listed
        other, _secret = register_client(
            name="Bibliothek", redirect_uris=["https://lib.example/cb"], scope="openid profile"
        )
        first = _token(citizen.id, rp, issued=old - 3 * HOUR, claims=["name", "address"])
        repeated = _token(citizen.id, rp, issued=old - 2 * HOUR, claims=["name"])
        newest_dead = _token(citizen.id, rp, issued=old - HOUR, claims=["name"])
        live = _token(citizen.id, rp, issued=now - dt.timedelta(minutes=1), claims=["name"])
        own = _token(citizen.id, SELF_CLIENT_ID, issued=old, claims=[])
        # consent to the other service was withdrawn after its token (revoked, not expired)
        withdrawn = _token(
            citizen.id, other.client_id, issued=old - HOUR, revoked=old, ttl=30 * 86400
        )
        db.session.add_all([first, repeated, newest_dead, live, own, withdrawn])
        db.session.add(
            ConsentWithdrawal(citizen_id=citizen.id, client_id=other.client_id, withdrawn_at=old)
        )
        db.session.commit()
        services_before = list_services(citizen.id)
        assert [(s.client_id, sorted(s.claims)) for s in services_before] == [
            (rp, ["address", "name"])
        ]

        report = purge_expired_data()

        assert report["deleted"]["tokens"] == 4
        # ``first`` alone released the address; ``live`` is usable and the newest
        assert set(db.session.scalars(select(Token.id))) == {first.id, live.id}
        assert list_services(citizen.id) == services_before
        assert purge_expired_data()["deleted"]["tokens"] == 0

        # once every token has expired, the newest and the one with the address stay
        db.session.execute(update(Token).values(expires_at=old))
        db.session.commit()
        assert purge_expired_data()["deleted"]["tokens"] == 0
        assert list_services(citizen.id) == services_before


def test_purge_keeps_a_fresh_login_usable_and_the_chain_verifies(
    app, runner, client, relying_party, enrolled_phone
):
    tokens = complete_login(client, relying_party, enrolled_phone)
    with app.app_context():
        login_ids = _ids(app, LoginTransaction)
    code, report = _run(runner, "maintenance", "purge")
    assert code == 0 and not any(report["deleted"].values())
    assert _ids(app, LoginTransaction) == login_ids
    userinfo = client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert userinfo.status_code == 200 and userinfo.json["sub"]

    # a day and more later everything the login left goes, but the list of services stays
    with app.app_context():
        later = utcnow() + 25 * HOUR
        report = purge_expired_data(now=later)
        assert report["deleted"]["login_transactions"] == len(login_ids)
        assert report["deleted"]["authorization_codes"] == 1
        assert report["deleted"]["browser_sessions"] == 1
        assert report["deleted"]["tokens"] == 0  # the one token is the service's record
        assert db.session.scalar(select(func.count()).select_from(LoginTransaction)) == 0
    assert _run(runner, "audit", "verify") == (0, {"ok": True})


def test_purge_deletes_in_batches(app, relying_party):
    now = utcnow()
    with app.app_context():
        db.session.add_all(
            _login(relying_party.client_id, expires=now - 30 * HOUR) for _ in range(7)
        )
        db.session.commit()
        report = purge_expired_data(batch_size=2)
        assert report["deleted"]["login_transactions"] == 7
        assert db.session.scalar(select(func.count()).select_from(LoginTransaction)) == 0


def _old_challenge(app) -> str:
    with app.app_context():
        challenge = Challenge(
            id=secrets.token_urlsafe(24),
            purpose="login",
            challenge=b"x" * 32,
            expires_at=utcnow() - 30 * HOUR,
        )
        db.session.add(challenge)
        db.session.commit()
        return challenge.id


def test_a_second_purge_skips_while_one_holds_the_lock(app, runner):
    challenge = _old_challenge(app)
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "postgresql":
            # another instance's purge: the same advisory lock, held by another connection
            other = engine.connect()
            assert other.scalar(select(func.pg_try_advisory_lock(PURGE_LOCK_KEY)))

            def release():
                other.scalar(select(func.pg_advisory_unlock(PURGE_LOCK_KEY)))
                other.close()
        else:
            # another instance's purge: its lease in maintenance_runs
            db.session.add(
                MaintenanceRun(name=PURGE_JOB, holder="other", leased_until=utcnow() + HOUR)
            )
            db.session.commit()

            def release():
                db.session.get(MaintenanceRun, PURGE_JOB).leased_until = utcnow() - HOUR
                db.session.commit()  # a lease that ran out: its holder died

    assert _run(runner, "maintenance", "purge") == (0, {"skipped": "another purge is running"})
    assert challenge in _ids(app, Challenge)
    with app.app_context():
        release()
    code, report = _run(runner, "maintenance", "purge")
    assert code == 0 and report["deleted"]["webauthn_challenges"] == 1
    assert challenge not in _ids(app, Challenge)
    with app.app_context():
        run = db.session.get(MaintenanceRun, PURGE_JOB)
        assert run.finished_at is not None and run.leased_until is None


def test_the_periodic_purge_runs_once_per_interval(app):
    _old_challenge(app)
    with app.app_context():
        assert purge_expired_data(due_after=HOUR)["deleted"]["webauthn_challenges"] == 1
        waiting = _old_challenge(app)
        assert purge_expired_data(due_after=HOUR) == {"skipped": "not due"}
        assert waiting in _ids(app, Challenge)
        assert purge_expired_data(due_after=dt.timedelta(0))["deleted"]["webauthn_challenges"] == 1


# -- inside ``idserver serve`` ----------------------------------------------------------------
DATABASES = ["sqlite"] + (["postgresql"] if os.environ.get("IDSERVER_TEST_DATABASE_URL") else [])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(params=DATABASES)
def served_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/served.sqlite3"
        return
    with postgres_schema() as url:
        yield url


def test_idserver_serve_purges_periodically(served_url, tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "IDSERVER_ISSUER": f"http://localhost:{port}",
        "IDSERVER_DATABASE_URL": served_url,
        "IDSERVER_KEYS_DIR": str(tmp_path / "keys"),
        "IDSERVER_SECRET_KEY": secrets.token_urlsafe(32),
        "IDSERVER_PURGE_INTERVAL_SECONDS": "1",
        "IDSERVER_PURGE_AFTER_HOURS": "0",
    }
    process = subprocess.Popen(
        [BIN / "idserver", "serve", "--port", str(port), "--workers", "2", "--threads", "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"http://localhost:{port}/readyz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "did not start"
            time.sleep(0.2)
        app = create_app(
            {
                "ISSUER": env["IDSERVER_ISSUER"],
                "DATABASE_URL": served_url,
                "KEYS_DIR": env["IDSERVER_KEYS_DIR"],
                "SECRET_KEY": env["IDSERVER_SECRET_KEY"],
            }
        )
        challenge = _old_challenge(app)
        deadline = time.monotonic() + 20
        while True:
            with app.app_context():
                events = db.session.scalars(
                    select(AuditEvent).where(AuditEvent.event == "maintenance_purged")
                ).all()
            if events:  # recorded after the last batch is deleted
                break
            assert time.monotonic() < deadline, "the served process did not purge"
            time.sleep(0.2)
        assert challenge not in _ids(app, Challenge)
        with app.app_context():
            assert [e.actor for e in events] == ["system"]
            assert events[0].data["deleted"]["webauthn_challenges"] == 1
            assert db.session.get(MaintenanceRun, PURGE_JOB).finished_at is not None
            db.engine.dispose()
        assert _run(app.test_cli_runner(), "audit", "verify") == (0, {"ok": True})
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_the_purge_has_an_advisory_lock_key_of_its_own():
    from idserver.audit.service import ADVISORY_LOCK_KEY
    from idserver.db_migrate import MIGRATION_LOCK_KEY

    assert len({PURGE_LOCK_KEY, ADVISORY_LOCK_KEY, MIGRATION_LOCK_KEY}) == 3
    assert 0 < PURGE_LOCK_KEY < 2**63  # a PostgreSQL bigint
