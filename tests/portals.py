"""Fixtures: a live Bürger-ID on a real socket, the two demo portals, residents with soft phones.

A pytest plugin (``pytest_plugins`` in tests/conftest.py): the portal tests and the security
suite's attacks on the portals use the same fixtures.

The portals' Authlib clients fetch discovery, JWKS and tokens over real HTTP from the live
Bürger-ID. The browser is two halves that share nothing but the URLs they pass on: a
``requests.Session`` at Bürger-ID and the portal's Flask test client at the portal.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from demo_portal import create_portal
from demo_portal.db import db as portal_db
from idserver import create_app
from idserver.citizens.service import activation_url
from idserver.citizens.service import issue_activation_code
from idserver.citizens.service import register_citizen
from idserver.db import db
from idserver.oidc.clients import register_client
from idserver.phone import PhoneClient

PORTAL_URLS = {"parking": "http://localhost:8101", "jobs": "http://localhost:8102"}
SCOPES = {"parking": "openid profile address", "jobs": "openid profile email birthdate"}
HTTP_TIMEOUT = 15


# -- Bürger-ID, served ----------------------------------------------------------------------
@dataclass
class LiveIdp:
    app: Flask
    issuer: str

    def register_portal(self, kind: str, base_url: str) -> tuple[str, str]:
        with self.app.app_context():
            client, secret = register_client(
                name=kind,
                redirect_uris=[f"{base_url}/callback"],
                post_logout_redirect_uris=[f"{base_url}/logged-out"],
                scope=SCOPES[kind],
            )
            assert secret
            return client.client_id, secret

    def add_resident(self, **fields: Any) -> tuple[str, str, str]:
        """Register a resident; returns (citizen id, activation URL, code)."""
        with self.app.app_context():
            citizen = register_citizen(**fields)
            record, code = issue_activation_code(citizen.id)
            return citizen.id, activation_url(record), code


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[LiveIdp]:
    """Bürger-ID behind werkzeug's threaded server on a free port, issuer http://localhost:PORT."""
    served: dict[str, Flask] = {}
    server = make_server(
        "127.0.0.1", 0, lambda environ, start: served["app"](environ, start), threaded=True
    )
    issuer = f"http://localhost:{server.server_port}"
    app = create_app(
        {
            "ISSUER": issuer,
            "DATABASE_URL": f"sqlite:///{tmp_path}/idserver.sqlite3",
            "KEYS_DIR": str(tmp_path / "idserver-keys"),
            "SECRET_KEY": "live-idp-secret-" + "x" * 32,
        }
    )
    with app.app_context():
        db.create_all()
    served["app"] = app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield LiveIdp(app, issuer)
    server.shutdown()
    thread.join(timeout=10)
    with app.app_context():
        db.engine.dispose()


# -- portals --------------------------------------------------------------------------------
def make_portal(idp: LiveIdp, kind: str, tmp_path: Path) -> Flask:
    base_url = PORTAL_URLS[kind]
    client_id, secret = idp.register_portal(kind, base_url)
    app = create_portal(
        kind,
        {
            "ISSUER": idp.issuer,
            "CLIENT_ID": client_id,
            "CLIENT_SECRET": secret,
            "BASE_URL": base_url,
            "INSTANCE_PATH": str(tmp_path / "portals" / kind),
            "SECRET_KEY": f"{kind}-secret-" + "y" * 32,
        },
    )
    app.config["TESTING"] = True
    return app


@pytest.fixture
def parking(idp: LiveIdp, tmp_path: Path) -> Flask:
    return make_portal(idp, "parking", tmp_path)


@pytest.fixture
def jobs(idp: LiveIdp, tmp_path: Path) -> Flask:
    return make_portal(idp, "jobs", tmp_path)


# -- residents and their phones -------------------------------------------------------------
@dataclass
class Resident:
    citizen_id: str
    phone: PhoneClient


ERIKA = {
    "given_name": "Erika",
    "family_name": "Mustermann",
    "birthdate": "1984-08-12",
    "street": "Kreuzstraße 5",
    "postcode": "44139",
    "city": "Dortmund",
    "email": "erika@example.org",
}
MAX = {
    "given_name": "Max",
    "family_name": "Mustermann",
    "birthdate": "2009-03-01",
    "street": "Benninghofer Straße 20",
    "postcode": "44267",
    "city": "Dortmund",
    "email": "max@example.org",
}


def enrolled_resident(idp: LiveIdp, tmp_path: Path, fields: dict[str, str]) -> Resident:
    citizen_id, url, code = idp.add_resident(**fields)
    phone = PhoneClient(idp.issuer, tmp_path / "phones" / f"{citizen_id}.json")
    phone.enrol(url, code, name=f"{fields['given_name']}s Telefon")
    return Resident(citizen_id, phone)


@pytest.fixture
def erika(idp: LiveIdp, tmp_path: Path) -> Resident:
    """Lives in Kreuzstraße, inside the Kreuzviertel zone."""
    return enrolled_resident(idp, tmp_path, ERIKA)


@pytest.fixture
def max_outside(idp: LiveIdp, tmp_path: Path) -> Resident:
    """Lives in Benninghofen, outside every zone; 16 years old."""
    return enrolled_resident(idp, tmp_path, MAX)


# -- the browser ----------------------------------------------------------------------------
@dataclass
class Page:
    status: int
    location: str | None
    text: str

    def csrf_token(self) -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', self.text)
        assert match, "no CSRF token on the page"
        return match.group(1)


@dataclass
class Browser:
    """One citizen's browser: cookies at Bürger-ID in ``idp_session``, at portals in clients."""

    idp: LiveIdp
    portals: dict[str, FlaskClient] = field(default_factory=dict)
    idp_session: requests.Session = field(default_factory=requests.Session)

    def open(self, app: Flask) -> FlaskClient:
        base_url = app.config["BASE_URL"]
        if base_url not in self.portals:
            self.portals[base_url] = app.test_client()
        return self.portals[base_url]

    def _portal(self, url: str) -> tuple[FlaskClient, str]:
        parts = urlsplit(url)
        client = self.portals[f"{parts.scheme}://{parts.netloc}"]
        return client, parts.path + (f"?{parts.query}" if parts.query else "")

    def request(self, method: str, url: str, **kwargs: Any) -> Page:
        if url.startswith(self.idp.issuer + "/"):
            response = self.idp_session.request(
                method, url, allow_redirects=False, timeout=HTTP_TIMEOUT, **kwargs
            )
            return Page(response.status_code, response.headers.get("Location"), response.text)
        client, path = self._portal(url)
        answer = client.open(path, method=method, **kwargs)
        location = answer.headers.get("Location")
        if location and location.startswith("/"):
            parts = urlsplit(url)
            location = f"{parts.scheme}://{parts.netloc}{location}"
        return Page(answer.status_code, location, answer.get_data(as_text=True))

    def get(self, url: str, **kwargs: Any) -> Page:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, data: dict[str, str]) -> Page:
        return self.request("POST", url, data=data)

    def follow(self, page: Page, *, stop_at_login: bool = True) -> tuple[str | None, Page]:
        """Follow redirects across both sites; stop at Bürger-ID's QR page or a plain page."""
        url = None
        while page.status in (301, 302, 303, 307, 308):
            assert page.location
            url = page.location
            if stop_at_login and re.match(re.escape(self.idp.issuer) + r"/login/[^/?]+$", url):
                return url, page
            page = self.get(url)
        return url, page

    def status(self, login_url: str) -> dict[str, Any]:
        response = self.idp_session.get(
            login_url, headers={"Accept": "application/json"}, timeout=HTTP_TIMEOUT
        )
        assert response.status_code == 200, response.text
        return response.json()

    def authorize(self, app: Flask, phone: PhoneClient, *, next_path: str = "/") -> str:
        """Portal → Bürger-ID → the phone approves; returns the callback URL, not yet visited."""
        self.open(app)
        base_url = app.config["BASE_URL"]
        login_url, page = self.follow(self.get(f"{base_url}/login?next={next_path}"))
        assert login_url and login_url.startswith(f"{self.idp.issuer}/login/"), page.text
        status = self.status(login_url)
        phone.approve(status["phone_url"], status["number"])
        status = self.status(login_url)
        assert status["status"] == "approved", status
        answer = self.get(status["continue_url"])
        assert answer.status == 303 and answer.location, answer.text
        assert answer.location.startswith(f"{base_url}/callback?"), answer.location
        return answer.location

    def sign_in(self, app: Flask, phone: PhoneClient, *, next_path: str = "/") -> Page:
        """The whole login, ending on the portal page the resident wanted."""
        _url, page = self.follow(self.get(self.authorize(app, phone, next_path=next_path)))
        assert page.status == 200, page.text
        return page

    def page(self, app: Flask, path: str) -> Page:
        return self.get(app.config["BASE_URL"] + path)

    def submit(self, app: Flask, path: str, form_page: Page, **fields: str) -> Page:
        """POST a form of ``form_page`` with its CSRF token, as the browser would."""
        return self.post(
            app.config["BASE_URL"] + path, {"csrf_token": form_page.csrf_token(), **fields}
        )


@pytest.fixture
def browser(idp: LiveIdp) -> Browser:
    return Browser(idp)


@pytest.fixture
def second_browser(idp: LiveIdp) -> Browser:
    """Another citizen's browser: no cookies shared with ``browser``."""
    return Browser(idp)


# -- state snapshots: refusals change nothing ---------------------------------------------------
def portal_snapshot(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a portal."""
    with app.app_context():
        state = {}
        with portal_db.engine.connect() as connection:
            for table in app.config["PORTAL"].metadata.sorted_tables:
                rows = connection.execute(table.select())
                state[table.name] = sorted((tuple(row) for row in rows), key=repr)
        return state


@pytest.fixture
def portal_rows() -> Callable[[Flask], dict[str, list[tuple[Any, ...]]]]:
    """``before = portal_rows(app)`` … ``assert portal_rows(app) == before``."""
    return portal_snapshot
