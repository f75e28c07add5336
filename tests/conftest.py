"""Fixtures: a fresh app and database per test, a soft phone, and a relying party.

The helpers they hand out (``Phone``, ``RelyingParty``, ``snapshot``, …) live in
tests/harness.py, which tests import; the live portals' fixtures are in tests/portals.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from harness import ISSUER
from harness import JWT_REDIRECT
from harness import RP_REDIRECT
from harness import Phone
from harness import RelyingParty
from harness import postgres_schema
from harness import snapshot
from joserfc.jwk import ECKey

from idserver import create_app
from idserver.citizens.models import Citizen
from idserver.citizens.service import issue_activation_code
from idserver.citizens.service import register_citizen
from idserver.db import db
from idserver.keys import key_store
from idserver.oidc.clients import register_client
from idserver.phone.authenticator import SoftAuthenticator

pytest_plugins = ("portals",)

DATABASES = ["sqlite"] + (["postgresql"] if os.environ.get("IDSERVER_TEST_DATABASE_URL") else [])


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A fresh, empty database per test: a SQLite file, or its own PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/idserver.sqlite3"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def app_config(tmp_path: Any, database_url: str) -> dict[str, Any]:
    return {
        "ISSUER": ISSUER,
        "DATABASE_URL": database_url,
        "KEYS_DIR": str(tmp_path / "keys"),
        "SECRET_KEY": "test-secret-" + "x" * 32,
    }


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Flask]:
    app = create_app(app_config)
    app.config["TESTING"] = True
    with app.app_context():
        db.create_all()
        key_store().prepare()  # as `idserver serve` does once the schema is there
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


# -- state snapshots: every refusal test asserts that nothing changed ------------------------------
@pytest.fixture
def db_state(app: Flask) -> Any:
    """``before = db_state()`` … ``assert db_state() == before``."""
    return lambda: snapshot(app)


# -- residents and phones -------------------------------------------------------------------
@pytest.fixture
def citizen(app: Flask) -> Citizen:
    with app.app_context():
        return register_citizen(
            given_name="Erika",
            family_name="Mustermann",
            birthdate="1984-08-12",
            street="Kampstraße 12",
            postcode="44137",
            city="Dortmund",
            email="erika@example.org",
        )


@pytest.fixture
def activation(app: Flask, citizen: Citizen) -> tuple[str, str]:
    """(activation_id, code) for ``citizen``."""
    with app.app_context():
        record, code = issue_activation_code(citizen.id)
        return record.id, code


@pytest.fixture
def phone(app: Flask, tmp_path: Any) -> Phone:
    return Phone(app.test_client(), SoftAuthenticator(path=tmp_path / "phone.json"))


@pytest.fixture
def enrolled_phone(phone: Phone, activation: tuple[str, str]) -> Phone:
    response = phone.enrol(*activation)
    assert response.status_code == 201, response.json
    return phone


# -- a relying party ----------------------------------------------------------------------------
@pytest.fixture
def other_citizen_phone(app: Flask, tmp_path: Any) -> Phone:
    """A second resident, Max, with an enrolled phone of his own ("Max Telefon")."""
    with app.app_context():
        other = register_citizen(
            given_name="Max",
            family_name="Mustermann",
            birthdate="1979-02-03",
            street="Hansastraße 3",
            postcode="44137",
            city="Dortmund",
        )
        record, code = issue_activation_code(other.id)
    phone = Phone(app.test_client(), SoftAuthenticator(path=tmp_path / "max.json"))
    assert phone.enrol(record.id, code, name="Max Telefon").status_code == 201
    return phone


@pytest.fixture
def relying_party(app: Flask) -> RelyingParty:
    with app.app_context():
        registered, secret = register_client(
            name="Bewohnerparkausweis",
            redirect_uris=[RP_REDIRECT],
            scope="openid profile address email birthdate",
        )
    assert secret
    return RelyingParty(app, registered.client_id, secret)


@pytest.fixture
def offline_party(app: Flask) -> RelyingParty:
    """A relying party registered for refresh tokens (``grant_types`` with ``refresh_token``)."""
    with app.app_context():
        registered, secret = register_client(
            name="Wohngeldantrag",
            redirect_uris=[RP_REDIRECT],
            scope="openid profile",
            grant_types=["refresh_token"],
        )
    assert secret
    return RelyingParty(app, registered.client_id, secret)


@pytest.fixture
def rp_key() -> ECKey:
    """The private key of a relying party that authenticates with ``private_key_jwt``."""
    return ECKey.generate_key("P-256", parameters={"kid": "rp-1", "alg": "ES256"})


@pytest.fixture
def jwt_client(app: Flask, rp_key: ECKey, tmp_path: Any) -> RelyingParty:
    """A relying party registered for ``private_key_jwt`` with ``rp_key``'s public JWKS."""
    jwks_file = tmp_path / "rp-jwks.json"
    jwks_file.write_text(json.dumps({"keys": [rp_key.as_dict(private=False)]}))
    with app.app_context():
        client, secret = register_client(
            name="Fachverfahren",
            redirect_uris=[JWT_REDIRECT],
            auth_method="private_key_jwt",
            jwks_file=str(jwks_file),
        )
    assert secret is None
    return RelyingParty(app, client.client_id, "", redirect_uri=JWT_REDIRECT)
