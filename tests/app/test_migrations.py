"""The Alembic migrations build exactly the schema the models describe, and instances that
start together on an empty or old database all come up (one upgrades, the others wait)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import cbor2
import pytest
import requests
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from harness import RP_REDIRECT
from harness import Phone
from harness import RelyingParty
from harness import complete_login
from harness import enrol_resident
from harness import register_relying_party
from harness import register_resident
from harness import snapshot
from served import BIN
from served import Served
from served import free_port
from served import server_environment
from served import start_idserver
from sqlalchemy import select
from sqlalchemy import text

from idserver import create_app
from idserver.crosslogin.models import Requester
from idserver.crosslogin.service import create_transaction
from idserver.db import Base
from idserver.db import UTCDateTime
from idserver.db import db
from idserver.db import make_engine
from idserver.db_migrate import MIGRATION_LOCK_KEY
from idserver.db_migrate import alembic_config
from idserver.db_migrate import upgrade
from idserver.models import LoginTransaction
from idserver.models import Pairing
from idserver.oidc.clients import register_client
from idserver.oidc.models import AuthorizationCode
from idserver.oidc.models import Token
from idserver.oidc.views import requester_for
from idserver.passkeys.ceremonies import public_key_fingerprint
from idserver.passkeys.models import Credential
from idserver.phone.authenticator import SoftAuthenticator
from idserver.sessions import BrowserSession


def test_upgrade_from_empty_matches_the_models(app_config, tmp_path):
    app = create_app(app_config)
    assert upgrade(app) is not None
    engine = make_engine(app.config["DATABASE_URL"])
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


def test_upgrade_twice_is_harmless(app_config, tmp_path):
    app = create_app(app_config)
    assert upgrade(app) == upgrade(app)


def _es256_cose(x: int, y: int, **extra: bytes) -> bytes:
    cose = {1: 2, 3: -7, -1: 1, -2: x.to_bytes(32, "big"), -3: y.to_bytes(32, "big")}
    return cbor2.dumps({**cose, **({2: extra["kid"]} if "kid" in extra else {})})


# credentials and citizens as migration 0005 left them: the columns an insert must fill
OLD_CITIZENS = sa.table(
    "citizens",
    *(sa.column(name) for name in ("id", "given_name", "family_name", "street", "postcode")),
    sa.column("city"),
    sa.column("birthdate", sa.Date()),
    sa.column("created_at", UTCDateTime()),
)
OLD_CREDENTIALS = sa.table(
    "credentials",
    *(sa.column(name) for name in ("id", "credential_id", "citizen_id", "name", "kind")),
    *(sa.column(name) for name in ("public_key", "sign_count", "aaguid", "attestation_format")),
    *(sa.column(name) for name in ("attestation_object", "origin", "backup_eligible")),
    sa.column("backed_up"),
    sa.column("transports", sa.JSON()),
    sa.column("created_at", UTCDateTime()),
)


def test_upgrade_fingerprints_existing_keys_and_revokes_copies(app_config):
    # Before credentials.public_key_hash a key could be enrolled twice, or be no key at all: the
    # upgrade fingerprints every key and revokes the credential of a later copy or a bad key.
    app = create_app(app_config)
    url = app.config["DATABASE_URL"]
    engine = make_engine(url)
    config = alembic_config(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0005")
    shared = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    own = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    keys = {
        1: _es256_cose(shared.x, shared.y),
        2: _es256_cose(shared.x, shared.y, kid=b"copy"),  # the same key, spelt otherwise
        3: _es256_cose(shared.x, shared.y ^ 1),  # not on the curve
        4: _es256_cose(own.x, own.y),
    }
    now = dt.datetime.now(dt.UTC)
    citizen = {"id": "c1", "given_name": "Erika", "family_name": "Mustermann", "city": "Dortmund"}
    citizen |= {"street": "Kampstraße 12", "postcode": "44137", "birthdate": dt.date(1984, 8, 12)}
    device = {"citizen_id": "c1", "name": "Handy", "kind": "passkey", "sign_count": 0}
    device |= {"aaguid": "0" * 36, "attestation_format": "none", "attestation_object": b""}
    device |= {"origin": "http://localhost", "transports": [], "created_at": now}
    device |= {"backup_eligible": False, "backed_up": False}
    with engine.begin() as connection:
        connection.execute(sa.insert(OLD_CITIZENS).values(created_at=now, **citizen))
        for number, public_key in keys.items():
            connection.execute(
                sa.insert(OLD_CREDENTIALS).values(
                    id=number, credential_id=bytes([number]) * 16, public_key=public_key, **device
                )
            )

    upgrade(app)
    credentials = Base.metadata.tables["credentials"]
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                credentials.c.id,
                credentials.c.public_key_hash,
                credentials.c.revoked_at.is_not(None),
            ).order_by(credentials.c.id)
        ).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [
        (1, public_key_fingerprint(keys[1]), False),
        (2, None, True),
        (3, None, True),
        (4, public_key_fingerprint(keys[4]), False),
    ]


def test_upgrade_spells_the_search_names_of_existing_residents(app_config):
    # Residents registered before citizens.search_name are found by the clerk search too.
    app = create_app(app_config)
    url = app.config["DATABASE_URL"]
    engine = make_engine(url)
    config = alembic_config(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0009")
    now = dt.datetime.now(dt.UTC)
    address = {"street": "Kampstraße 12", "postcode": "44137", "city": "Dortmund"}
    with engine.begin() as connection:
        for number, (given, family) in enumerate([("Jürgen", "Müller"), ("Renée", "Strauß")]):
            connection.execute(
                sa.insert(OLD_CITIZENS).values(
                    id=f"c{number}",
                    given_name=given,
                    family_name=family,
                    birthdate=dt.date(1984, 8, 12),
                    created_at=now,
                    **address,
                )
            )
    upgrade(app)
    citizens = Base.metadata.tables["citizens"]
    with engine.connect() as connection:
        names = connection.execute(
            sa.select(citizens.c.search_name).order_by(citizens.c.id)
        ).scalars()
        assert list(names) == ["juergen mueller", "renee strauss"]
    engine.dispose()


# -- several instances starting at once ---------------------------------------------------------
OLD_REVISION = "0004"


def _head() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _revision(url: str) -> str | None:
    engine = make_engine(url)
    with engine.connect() as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
    engine.dispose()
    return revision


def _server_environment(database_url: str, tmp_path: Path) -> dict[str, str]:
    """One database, keys folder (a shared volume) and secret for every instance started."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("IDSERVER_")}
    return server_environment(tmp_path, database_url=database_url, base=base)


@pytest.fixture
def stop_servers():
    servers: list[Served] = []
    yield servers
    for served in servers:
        served.stop()


@pytest.mark.parametrize("start_from", ["empty", "old"])
def test_three_instances_starting_together_all_come_up(
    database_url, tmp_path, stop_servers, start_from
):
    """One upgrades the schema under the migration lock; the others wait, then find it done."""
    if start_from == "old":
        command.upgrade(alembic_config(database_url), OLD_REVISION)
        assert _revision(database_url) == OLD_REVISION
    env = _server_environment(database_url, tmp_path)
    servers = [start_idserver(env, tmp_path) for _ in range(3)]
    stop_servers.extend(servers)
    for served in servers:
        served.wait_until_ready(seconds=90)
    assert all(served.process.poll() is None for served in servers)
    assert _revision(database_url) == _head()
    # They raced for the first keys in the database too, and agree on one signing key per
    # ID-token algorithm.
    jwks = [requests.get(f"{s.issuer}/jwks.json", timeout=5).json() for s in servers]
    assert jwks[0] == jwks[1] == jwks[2]
    assert sorted(key["alg"] for key in jwks[0]["keys"]) == ["ES256", "RS256"]
    engine = make_engine(database_url)
    with engine.connect() as connection:
        purposes = connection.execute(text("SELECT purpose, kid FROM signing_keys")).all()
        salts = connection.execute(text("SELECT count(*) FROM server_secrets")).scalar_one()
    engine.dispose()
    assert sorted(purpose for purpose, _ in purposes) == ["audit", "id_token", "id_token"]
    assert {kid for purpose, kid in purposes if purpose == "id_token"} == {
        key["kid"] for key in jwks[0]["keys"]
    }
    assert salts == 1
    assert not list((tmp_path / "keys").glob("*.pem"))  # nothing in the keys folder


def test_upgrade_waits_for_the_migration_lock(app_config):
    """While another holds the lock (PostgreSQL: the advisory lock; SQLite: the write lock),
    an upgrade waits, and then finds the schema the other left."""
    app = create_app(app_config)
    url = app.config["DATABASE_URL"]
    holder = make_engine(url)
    connection = holder.connect()
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    result: list[str | None] = []
    upgrading = threading.Thread(target=lambda: result.append(upgrade(app)))
    upgrading.start()
    upgrading.join(timeout=2)
    try:
        assert upgrading.is_alive() and result == []
    finally:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
        connection.close()
        holder.dispose()
        upgrading.join(timeout=60)
    assert result == [_head()]


# -- idserver serve --no-migrate ----------------------------------------------------------------
def test_no_migrate_refuses_a_database_behind_head(database_url, tmp_path):
    command.upgrade(alembic_config(database_url), OLD_REVISION)
    env = _server_environment(database_url, tmp_path)
    result = subprocess.run(
        [BIN / "idserver", "serve", "--port", str(free_port()), "--no-migrate"],
        env={**env, "IDSERVER_ISSUER": "http://localhost:5000"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"the database is at revision {OLD_REVISION}, this version needs {_head()}: run "
        "`idserver db upgrade` first, or start without --no-migrate"
    )
    assert "Traceback" not in result.stderr
    assert _revision(database_url) == OLD_REVISION  # untouched


def test_no_migrate_serves_a_database_at_head(database_url, tmp_path, stop_servers):
    env = _server_environment(database_url, tmp_path)
    upgraded = subprocess.run(
        [BIN / "idserver", "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60
    )
    assert upgraded.returncode == 0, upgraded.stderr
    served = start_idserver(env, tmp_path, options=["--no-migrate"])
    stop_servers.append(served)
    served.wait_until_ready(seconds=90)


def _upgraded(app_config: dict[str, Any]) -> Flask:
    """An app on a database at head."""
    app = create_app(app_config)
    app.config["TESTING"] = True
    upgrade(app)
    return app


def test_upgrade_links_existing_sessions_codes_and_tokens_to_their_device(app_config):
    """Grants made before 0011 learn their device from their login, so revoking it ends them."""
    app = _upgraded(app_config)
    phone = Phone(app.test_client(), SoftAuthenticator())
    enrol_resident(app, phone)
    complete_login(app.test_client(), register_relying_party(app), phone)
    engine = make_engine(app.config["DATABASE_URL"])
    config = alembic_config(app.config["DATABASE_URL"])
    with engine.begin() as connection:  # back to the schema before the device was recorded
        config.attributes["connection"] = connection
        command.downgrade(config, "0010")
    engine.dispose()
    upgrade(app)
    with app.app_context():
        device = db.session.scalars(select(Credential.id)).one()
        for model in (BrowserSession, AuthorizationCode, Token):
            assert db.session.scalars(select(model.credential_pk)).all() == [device]
        # SQLite copies authorization_codes to change it: the tokens still know their code
        code = db.session.scalars(select(AuthorizationCode.id)).one()
        assert db.session.scalars(select(Token.code_id)).all() == [code]


def test_upgraded_database_rejects_an_unknown_state(app_config):
    """0013: the state columns of logins and pairings are checked by the database too."""
    app = _upgraded(app_config)
    citizen = register_resident(app)
    with app.app_context():
        client, _secret = register_client(
            name="Bewohnerparkausweis", redirect_uris=[RP_REDIRECT], scope="openid profile"
        )
        login, _browser = create_transaction(
            client_id=client.client_id,
            params={"scope": "openid"},
            scope="openid",
            requester=requester_for(client, {"scope": "openid"}),
            desktop_ip="192.0.2.1",
            user_agent="test",
        )
        expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
        pairing = Pairing(id="p" * 32, citizen_id=citizen.id, number="12", expires_at=expires_at)
        db.session.add(pairing)
        db.session.commit()
        rows = [(LoginTransaction, login.id), (Pairing, pairing.id)]
    before = snapshot(app)
    with app.app_context():
        for model, row_id in rows:
            with pytest.raises(sa.exc.IntegrityError):
                db.session.execute(sa.update(model).where(model.id == row_id).values(state="lost"))
            db.session.rollback()
        db.engine.dispose()
    assert snapshot(app) == before


def test_upgrade_gives_existing_logins_what_they_showed_of_their_client(app_config):
    """Logins made before 0015 keep showing and enforcing what their client's row said."""
    app = create_app(app_config)
    app.config["TESTING"] = True
    upgrade(app)
    with app.app_context():
        client, secret = register_client(
            name="Waffenbehörde",
            redirect_uris=[RP_REDIRECT],
            scope="openid profile birthdate",
            proximity_policy="deny",
        )
    browser = app.test_client()
    RelyingParty(app, client.client_id, secret).start_login(browser)
    with app.app_context():
        [given] = db.session.scalars(select(LoginTransaction.requester)).all()
    engine = make_engine(app.config["DATABASE_URL"])
    config = alembic_config(app.config["DATABASE_URL"])
    with engine.begin() as connection:  # back to the schema before logins kept their requester
        config.attributes["connection"] = connection
        command.downgrade(config, "0014")
    engine.dispose()
    upgrade(app)
    with app.app_context():
        [learnt] = db.session.scalars(select(LoginTransaction.requester)).all()
    # Fields added after 0015 (``language``) take their defaults in old rows.
    assert Requester.from_json(learnt) == Requester.from_json(given)
    assert given["name"] == "Waffenbehörde" and given["proximity_policy"] == "deny"
    assert given["claims"][:2] == ["sub", "name"]
