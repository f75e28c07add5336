"""A served Bürger-ID for relying-party libraries, a citizen's phone and a desktop browser.

Bürger-ID runs once per module behind werkzeug's threaded server at ``http://localhost:PORT``
(WebAuthn refuses an IP address as RP ID). The relying-party library under test speaks to it
over HTTP exactly as it would to a deployment; only its two users are played here: the
desktop browser (a ``requests.Session`` that follows the redirects a browser would) and the
reference soft phone (``idserver.phone.PhoneClient``), which scans the QR code's URL, types
the number the desktop shows and signs with its passkey.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from served import LiveServer

from idserver import create_app
from idserver.citizens.service import activation_url
from idserver.citizens.service import issue_activation_code
from idserver.citizens.service import register_citizen
from idserver.db import db
from idserver.keys import key_store
from idserver.oidc.clients import register_client
from idserver.phone.client import PhoneClient

TIMEOUT = 15


@dataclass(frozen=True)
class RegisteredClient:
    """What an operator hands an integrator: the client's id, secret and URIs."""

    client_id: str
    client_secret: str
    redirect_uri: str
    post_logout_redirect_uri: str


@dataclass
class IdP:
    """The served Bürger-ID of a module, and what a clerk and an operator do there."""

    app: Flask
    issuer: str
    folder: Path

    def add_client(self, name: str, **registration: Any) -> RegisteredClient:
        """Register a relying party as ``idserver client add`` does (``registration`` as its
        options); redirect URIs on a port of its own, so no two clients share one."""
        base = f"http://localhost:{9000 + len(list(self.folder.glob('client-*')))}"
        (self.folder / f"client-{name}").touch()
        redirect_uri, goodbye = f"{base}/callback", f"{base}/logged-out"
        registration.setdefault("scope", "openid profile email address")
        with self.app.app_context():
            client, secret = register_client(
                name=name,
                redirect_uris=[redirect_uri],
                post_logout_redirect_uris=[goodbye],
                **registration,
            )
        assert secret
        return RegisteredClient(client.client_id, secret, redirect_uri, goodbye)

    def enrolled_phone(self, name: str) -> PhoneClient:
        """A new resident, given an activation letter, enrols the reference soft phone."""
        with self.app.app_context():
            citizen = register_citizen(
                given_name="Erika",
                family_name="Mustermann",
                birthdate="1984-08-12",
                street="Kampstraße 12",
                postcode="44137",
                city="Dortmund",
                email="erika@example.org",
            )
            record, code = issue_activation_code(citizen.id)
            url = activation_url(record)
        phone = PhoneClient(self.issuer, self.folder / f"phone-{name}.json")
        assert phone.enrol(url, code, name=f"{name} phone")["revocation_code"]
        return phone


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdP]:
    folder = tmp_path_factory.mktemp("interop")
    server = LiveServer()
    app = create_app(
        {
            "ISSUER": server.url,
            "DATABASE_URL": f"sqlite:///{folder}/idserver.sqlite3",
            "KEYS_DIR": str(folder / "keys"),
            "SECRET_KEY": "interop-secret-" + "x" * 32,
            # Every request of the module comes from 127.0.0.1; throttling is tested elsewhere.
            "RATE_LIMIT_ACTIVATION": "1000/minute",
            "RATE_LIMIT_LOGIN": "1000/minute",
            "RATE_LIMIT_APPROVAL": "1000/minute",
            "RATE_LIMIT_TOKEN": "1000/minute",
        }
    )
    with app.app_context():
        db.create_all()
        key_store().prepare()  # as `idserver serve` does once the schema is there
    server.start(app)
    yield IdP(app, server.url, folder)
    server.stop()
    with app.app_context():
        db.engine.dispose()


class Browser:
    """The citizen's desktop browser: follows what the relying party and Bürger-ID send it."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.session = requests.Session()

    def log_in(self, authorization_url: str, phone: PhoneClient) -> str:
        """Open the relying party's authorization URL, let ``phone`` approve the QR-code login
        with the number shown, and return the URL Bürger-ID redirects back to (the callback)."""
        started = self.session.get(authorization_url, allow_redirects=False, timeout=TIMEOUT)
        assert started.status_code == 303, started.text
        login_url = started.headers["Location"]
        assert login_url.startswith(f"{self.issuer}/login/"), login_url
        status = self._status(login_url)
        approved = phone.approve(status["phone_url"], status["number"])
        assert approved["status"] == "approved", approved
        status = self._status(login_url)
        assert status["status"] == "approved", status
        back = self.session.get(status["continue_url"], allow_redirects=False, timeout=TIMEOUT)
        assert back.status_code == 303, back.text
        return back.headers["Location"]

    def log_out(self, end_session_url: str) -> str:
        """Follow the relying party's logout URL; where Bürger-ID sends the browser after."""
        assert urlsplit(end_session_url).path == "/logout", end_session_url
        ended = self.session.get(end_session_url, allow_redirects=False, timeout=TIMEOUT)
        assert ended.status_code == 303, ended.text
        return ended.headers["Location"]

    def has_session(self) -> bool:
        """Whether Bürger-ID still knows this browser: its account page answers, not a login."""
        account = self.session.get(f"{self.issuer}/account", allow_redirects=False, timeout=5)
        return account.status_code == 200

    def _status(self, login_url: str) -> dict[str, Any]:
        answer = self.session.get(
            login_url, headers={"Accept": "application/json"}, timeout=TIMEOUT
        )
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]


@pytest.fixture
def browser(idp: IdP) -> Browser:
    return Browser(idp.issuer)
