"""What the tests share besides fixtures: a soft phone, a relying party, database snapshots.

No mocks of our own code: requests go through Flask's test client into the real app, the
phone is a real software authenticator, and tokens are verified against the served JWKS.
Fixtures that hand these out live in tests/conftest.py.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from types import EllipsisType
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import create_engine
from sqlalchemy import inspect
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.engine import make_url

from idserver.citizens.models import Citizen
from idserver.db import db
from idserver.phone.authenticator import SoftAuthenticator

ISSUER = "http://localhost"
ORIGIN = "http://localhost"
RP_REDIRECT = "http://localhost:8001/callback"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


JWT_REDIRECT = "http://localhost:8003/callback"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@contextlib.contextmanager
def postgres_schema(prefix: str = "t_") -> Iterator[str]:
    """A fresh, empty schema in the test PostgreSQL database; its URL. Dropped afterwards."""
    base = make_url(os.environ["IDSERVER_TEST_DATABASE_URL"])
    schema = prefix + secrets.token_hex(6)
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        url = base.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def snapshot(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, so a test can assert that a refusal changed nothing."""
    with app.app_context():
        engine = db.engine
        tables = [t for t in inspect(engine).get_table_names() if not t.startswith("alembic")]
        state = {}
        with engine.connect() as connection:
            for name in tables:
                query = text(f'SELECT * FROM "{name}"')  # noqa: S608 -- names from the inspector
                state[name] = sorted((tuple(row) for row in connection.execute(query)), key=repr)
        return state


def changed_tables(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


@dataclass
class Phone:
    """A soft phone that talks to the app through the test client, as a phone would."""

    client: FlaskClient
    authenticator: SoftAuthenticator
    origin: str = ORIGIN
    revocation_code: str | None = None
    enrolments: list[dict[str, Any]] = field(default_factory=list)

    def enrol(self, activation_id: str, code: str, *, name: str = "Erikas Telefon") -> Any:
        begun = self.client.post(
            "/api/v1/enrolments", json={"activation_id": activation_id, "code": code}
        )
        assert begun.status_code == 200, begun.json
        credential = self.authenticator.create_credential(begun.json["options"], origin=self.origin)
        finished = self.client.post(
            f"/api/v1/enrolments/{begun.json['enrolment_id']}",
            json={"credential": credential, "name": name},
        )
        if finished.status_code == 201:
            self.revocation_code = finished.json["revocation_code"]
        return finished

    def scan(self, phone_url: str) -> Any:
        parts = urlsplit(phone_url)
        query = parse_qs(parts.query)
        login_id = parts.path.rsplit("/", 1)[-1]
        return login_id, self.client.post(
            f"/api/v1/logins/{login_id}/scan", json={"t": query["t"][0], "h": query["h"][0]}
        )

    def challenge(self, login_id: str, binding: str, number: str) -> Any:
        return self.client.post(
            f"/api/v1/logins/{login_id}/challenge", json={"binding": binding, "number": number}
        )

    def approve(self, phone_url: str, number: str, **assertion_options: Any) -> Any:
        login_id, scanned = self.scan(phone_url)
        assert scanned.status_code == 200, scanned.json
        binding = scanned.json["binding"]
        issued = self.challenge(login_id, binding, number)
        assert issued.status_code == 200, issued.json
        credential = self.authenticator.get_assertion(
            issued.json["options"], origin=self.origin, **assertion_options
        )
        return self.client.post(
            f"/api/v1/logins/{login_id}/approve",
            json={"binding": binding, "number": number, "credential": credential},
        )


@dataclass
class RelyingParty:
    app: Flask
    client_id: str
    client_secret: str
    redirect_uri: str = RP_REDIRECT
    scope: str = "openid profile"

    def authorize_params(self, **overrides: Any) -> dict[str, str]:
        self.verifier = secrets.token_urlsafe(48)
        self.state = secrets.token_urlsafe(12)
        self.nonce = secrets.token_urlsafe(12)
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": b64(hashlib.sha256(self.verifier.encode()).digest()),
            "code_challenge_method": "S256",
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v is not None}

    def start_login(self, browser: FlaskClient, **overrides: Any) -> str:
        """Send ``browser`` to /authorize; returns the login id it lands on."""
        response = browser.get("/authorize?" + urlencode(self.authorize_params(**overrides)))
        assert response.status_code == 303, response.get_data(as_text=True)
        location = response.headers["Location"]
        assert location.startswith(f"{ISSUER}/login/")
        return location.rsplit("/", 1)[-1]

    def approved_code(self, browser: FlaskClient, phone: Phone, **overrides: Any) -> str:
        """Run a login that ``phone`` approves; returns the authorization code the RP receives."""
        login_id = self.start_login(browser, **overrides)
        status = desktop_status(browser, login_id).json
        assert phone.approve(status["phone_url"], status["number"]).status_code == 200
        continue_url = desktop_status(browser, login_id).json["continue_url"]
        location = browser.get(continue_url).headers["Location"]
        return parse_qs(urlsplit(location).query)["code"][0]

    def exchange(
        self,
        browser: FlaskClient,
        code: str,
        *,
        auth: tuple[str, str] | None | EllipsisType = ...,
        assertion: str | None = None,
        **overrides: Any,
    ) -> Any:
        """POST /token for ``code``: HTTP Basic with the registered secret unless ``auth`` says
        otherwise (``None``: none), or a ``private_key_jwt`` ``assertion``; ``overrides`` change
        or (``None``) drop form fields."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": self.verifier,
        }
        if assertion is not None:
            form.update(client_assertion_type=ASSERTION_TYPE, client_assertion=assertion)
            auth = None if auth is ... else auth
        form.update(overrides)
        form = {k: v for k, v in form.items() if v is not None}
        basic = (self.client_id, self.client_secret) if auth is ... else auth
        return browser.post("/token", data=form, auth=basic)

    def verify_id_token(self, browser: FlaskClient, id_token: str) -> dict[str, Any]:
        jwks = KeySet.import_key_set(browser.get("/jwks.json").json)
        token = jwt.decode(id_token, jwks, algorithms=["ES256"])
        registry = jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": ISSUER},
            aud={"essential": True, "value": self.client_id},
            nonce={"essential": True, "value": self.nonce},
            exp={"essential": True},
            sub={"essential": True},
        )
        registry.validate(token.claims)
        assert token.header["kid"]
        return token.claims


def desktop_status(browser: FlaskClient, login_id: str, **params: Any) -> Any:
    query = ("?" + urlencode(params)) if params else ""
    return browser.get(f"/login/{login_id}{query}", headers={"Accept": "application/json"})


def complete_login(
    browser: FlaskClient, rp: RelyingParty, phone: Phone, **overrides: Any
) -> dict[str, Any]:
    """The whole happy path; returns the token response."""
    login_id = rp.start_login(browser, **overrides)
    status = desktop_status(browser, login_id).json
    approved = phone.approve(status["phone_url"], status["number"])
    assert approved.status_code == 200, approved.json
    status = desktop_status(browser, login_id).json
    assert status["status"] == "approved"
    redirected = browser.get(status["continue_url"])
    assert redirected.status_code == 303
    query = parse_qs(urlsplit(redirected.headers["Location"]).query)
    assert query["state"] == [rp.state]
    assert query["iss"] == [ISSUER]
    tokens = rp.exchange(browser, query["code"][0])
    assert tokens.status_code == 200, tokens.json
    return tokens.json


ERIKA = {
    "given_name": "Erika",
    "family_name": "Mustermann",
    "birthdate": "1984-08-12",
    "street": "Kampstraße 12",
    "postcode": "44137",
    "city": "Dortmund",
}


def register_resident(app: Flask, **overrides: str) -> Citizen:
    """Erika Mustermann (or whoever ``overrides`` make her) in the residents' register."""
    from idserver.citizens.service import register_citizen

    with app.app_context():
        return register_citizen(**{**ERIKA, **overrides})


def enrol_resident(app: Flask, phone: Phone, **overrides: str) -> Citizen:
    """A resident with an activation letter whose code ``phone`` redeems."""
    from idserver.citizens.service import issue_activation_code

    citizen = register_resident(app, **overrides)
    with app.app_context():
        record, code = issue_activation_code(citizen.id)
    enrolled = phone.enrol(record.id, code)
    assert enrolled.status_code == 201, enrolled.json
    return citizen


def register_relying_party(
    app: Flask, *, redirect_uri: str = RP_REDIRECT, scope: str = "openid profile"
) -> RelyingParty:
    """The resident-parking service as a registered client (client_secret_basic)."""
    from idserver.oidc.clients import register_client

    with app.app_context():
        client, secret = register_client(
            name="Bewohnerparkausweis", redirect_uris=[redirect_uri], scope=scope
        )
    assert secret
    return RelyingParty(app, client.client_id, secret, redirect_uri=redirect_uri, scope=scope)


def citizen_count(app: Flask) -> int:
    with app.app_context():
        return len(db.session.scalars(select(Citizen)).all())


def refresh(
    browser: FlaskClient,
    rp: RelyingParty,
    refresh_token: str,
    *,
    auth: tuple[str, str] | None | EllipsisType = ...,
    **form: str,
) -> Any:
    """POST /token with ``grant_type=refresh_token``, HTTP Basic unless ``auth`` says otherwise."""
    basic = (rp.client_id, rp.client_secret) if auth is ... else auth
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **form}
    return browser.post("/token", data=data, auth=basic)


OFFLINE = {"scope": "openid profile offline_access", "prompt": "consent"}


def proof_in_person(app: Any, citizen_id: str, document: str = "id_card") -> None:
    """Record that a clerk checked the resident's ``document`` in person (assurance levels)."""
    import datetime as dt

    from idserver.citizens.models import Citizen

    with app.app_context():
        citizen = db.session.get(Citizen, citizen_id)
        citizen.proofing_document = document
        citizen.proofed_on = dt.date(2026, 11, 2)
        citizen.proofing_office = "Bürgerbüro Musterstadt"
        db.session.commit()


def logout_deliveries(app: Any) -> list[Any]:
    """The logout outbox's rows (OIDC and SAML), oldest first."""
    from sqlalchemy import select

    from idserver.oidc.models import LogoutDelivery

    with app.app_context():
        return list(db.session.scalars(select(LogoutDelivery).order_by(LogoutDelivery.id)))


def make_logouts_due(app: Any) -> None:
    """Every pending logout delivery due now (instead of waiting out its backoff)."""
    from sqlalchemy import update

    from idserver.db import utcnow
    from idserver.oidc.models import LogoutDelivery

    with app.app_context():
        db.session.execute(update(LogoutDelivery).values(next_attempt_at=utcnow()))
        db.session.commit()
