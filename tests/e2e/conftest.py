"""Real servers and a real browser: what the end-to-end tests stand on.

Bürger-ID and the demo portals (the two OIDC ones, and the SAML one where xmlsec1 is
installed) run once per module behind werkzeug's threaded server, each at
``http://localhost:PORT`` (WebAuthn does not accept an IP address as RP ID). Every test
gets its own residents and two fresh browser contexts of one Chromium: a ``desktop`` and a
``phone`` (a Pixel 7 profile). Each has one page with its own Chrome DevTools virtual
authenticator – the stand-in for the phone's secure element or the computer's platform
authenticator – so a WebAuthn call on that page is answered without a person.

Pages are in German (``de-DE``, ``Accept-Language: de``). Every step can be photographed
into ``tests/e2e/artifacts/<test>/``; with ``E2E_DOCS_SCREENSHOTS=1`` the curated ones are
also copied to ``docs/screenshots/`` for the README.

Every screenshot is also an accessibility check: axe-core (``node_modules/axe-core``, fetched
by ``make install``) runs on the page with the WCAG 2.1 A and AA rules, and a violation is a
problem like a CSP violation – the test fails listing each one. Without axe-core the checks are
skipped, and ``tests/e2e/test_accessibility.py`` says why.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from portals import ERIKA  # the resident inside a parking zone, as in tests/demo_portal
from served import LiveServer
from sqlalchemy import func
from sqlalchemy import select

from demo_portal import create_portal
from demo_portal.jobs import PORTAL as JOBS
from demo_portal.parking import PORTAL as PARKING
from idserver import create_app
from idserver.admin.letter import activation_link
from idserver.citizens.models import ActivationCode
from idserver.citizens.service import activation_url
from idserver.citizens.service import issue_activation_code
from idserver.citizens.service import register_citizen
from idserver.clerks import add_clerk
from idserver.db import db
from idserver.oidc.clients import register_client
from idserver.passkeys.models import Credential
from idserver.saml import add_service_provider

from .chromium import launch_chromium

ARTIFACTS = Path(__file__).with_name("artifacts")
AXE_SCRIPT = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# Runs in the page after axe.min.js; the violations as plain data, one entry per element.
RUN_AXE = """async (tags) => {
  const only = {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]};
  const result = await axe.run(document, only);
  return result.violations.flatMap((rule) => rule.nodes.map((node) => ({
    id: rule.id, impact: rule.impact, help: rule.help, target: node.target.join(" "),
    summary: node.failureSummary})));
}"""
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TIMEOUT_MS = 15_000
PORTALS = {"parking": (PARKING, "Bewohnerparkausweis"), "jobs": (JOBS, "Bewerberportal")}
SAML_PORTAL = "dogtax"  # known to Bürger-ID by its metadata; needs xmlsec1
GERMAN = {
    "locale": "de-DE",
    "timezone_id": "Europe/Berlin",
    "extra_http_headers": {"Accept-Language": "de"},
}
ENGLISH = {
    "locale": "en-GB",
    "timezone_id": "Europe/Berlin",
    "extra_http_headers": {"Accept-Language": "en"},
}
LANGUAGES = {"de": GERMAN, "en": ENGLISH}
VIRTUAL_AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


# -- servers --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Letter:
    """What the citizens' office mails: the activation link and the code."""

    citizen_id: str
    activation_url: str
    code: str

    @property
    def link(self) -> str:
        """The link in the letter's QR code (the code in its fragment)."""
        return activation_link(self.activation_url, self.code)


@dataclass
class Stack:
    """Bürger-ID and the portals, served (``dogtax`` only where xmlsec1 is installed)."""

    idp: Flask
    issuer: str
    portals: dict[str, str]  # kind → base URL

    def add_resident(self, **fields: str) -> Letter:
        """Register a resident and issue an activation code, as a clerk would."""
        with self.idp.app_context():
            citizen = register_citizen(**fields)
            record, code = issue_activation_code(citizen.id)
            return Letter(citizen.id, activation_url(record), code)

    def add_clerk(self, **fields: str) -> Letter:
        """Register a clerk of the citizens' office, with the letter for their own phone."""
        with self.idp.app_context():
            added = add_clerk(role="supervisor", **fields)
            return Letter(added.clerk.citizen_id, activation_url(added.activation), added.code)

    def expire_letter(self, letter: Letter) -> None:
        """Let the letter's activation code run out, as if weeks had passed."""
        with self.idp.app_context():
            query = select(ActivationCode).where(ActivationCode.citizen_id == letter.citizen_id)
            for record in db.session.scalars(query):
                record.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
            db.session.commit()

    def passkey_count(self, citizen_id: str, *, active_only: bool = False) -> int:
        with self.idp.app_context():
            query = select(func.count()).select_from(Credential)
            query = query.where(Credential.citizen_id == citizen_id)
            if active_only:
                query = query.where(Credential.revoked_at.is_(None))
            return int(db.session.scalar(query) or 0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("e2e-stack")
    idp_server = LiveServer()
    portal_servers = {kind: LiveServer() for kind in PORTALS}
    if shutil.which("xmlsec1") is not None:
        portal_servers[SAML_PORTAL] = LiveServer()
    idp = create_app(
        {
            "ISSUER": idp_server.url,
            "DATABASE_URL": f"sqlite:///{folder}/idserver.sqlite3",
            "KEYS_DIR": str(folder / "idserver-keys"),
            "SECRET_KEY": "e2e-secret-" + "x" * 32,
            # Every enrolment and login of the module comes from 127.0.0.1; throttling is
            # tested elsewhere and must not decide which browser test passes.
            "RATE_LIMIT_ACTIVATION": "1000/minute",
            "RATE_LIMIT_LOGIN": "1000/minute",
            "RATE_LIMIT_APPROVAL": "1000/minute",
        }
    )
    with idp.app_context():
        db.create_all()
    idp_server.start(idp)
    for kind, server in portal_servers.items():
        if kind == SAML_PORTAL:
            server.start(_saml_portal(idp, idp_server.url, server.url, folder))
            continue
        portal, client_name = PORTALS[kind]
        with idp.app_context():
            client, secret = register_client(
                name=client_name,
                redirect_uris=[f"{server.url}/callback"],
                post_logout_redirect_uris=[f"{server.url}/logged-out"],
                scope=portal.scope,
            )
        app = create_portal(
            kind,
            {
                "ISSUER": idp_server.url,
                "CLIENT_ID": client.client_id,
                "CLIENT_SECRET": secret,
                "BASE_URL": server.url,
                "INSTANCE_PATH": str(folder / kind),
                "SECRET_KEY": f"e2e-{kind}-" + "y" * 32,
            },
        )
        server.start(app)
    yield Stack(idp, idp_server.url, {kind: s.url for kind, s in portal_servers.items()})
    for server in (*portal_servers.values(), idp_server):
        server.stop()
    with idp.app_context():
        db.engine.dispose()


def _saml_portal(idp: Flask, issuer: str, base_url: str, folder: Path) -> Flask:
    """The Hundesteuer-Anmeldung, registered with Bürger-ID by the metadata it publishes."""
    app = create_portal(
        SAML_PORTAL,
        {
            "ISSUER": issuer,
            "BASE_URL": base_url,
            "INSTANCE_PATH": str(folder / SAML_PORTAL),
            "SECRET_KEY": f"e2e-{SAML_PORTAL}-" + "y" * 32,
        },
    )
    metadata = app.test_client().get("/saml/metadata").get_data(as_text=True)
    with idp.app_context():
        add_service_provider(metadata, source="e2e")
    return app


# -- the browser ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def chromium(playwright_driver: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    browser = launch_chromium(playwright_driver, tmp_path_factory.mktemp("chromium-home"))
    yield browser
    browser.close()


@dataclass
class Album:
    """Numbered screenshots of one test, in the order they were taken, desktop and phone."""

    folder: Path
    taken: int = 0

    def path(self, device: str, step: str) -> Path:
        self.taken += 1
        return self.folder / f"{self.taken:02d}-{device}-{step}.png"


@pytest.fixture
def album(request: pytest.FixtureRequest) -> Album:
    folder = ARTIFACTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return Album(folder)


@dataclass
class Device:
    """A browser context with one page and its virtual authenticator: a computer or a phone."""

    name: str
    context: Any
    page: Any
    cdp: Any
    authenticator_id: str
    album: Album
    full_page: bool = False
    problems: list[str] = field(default_factory=list)
    axe: str | None = None  # axe-core's source, if installed
    checked: list[str] = field(default_factory=list)  # where axe ran, for the record

    def shoot(self, step: str, *, docs_name: str | None = None) -> bytes:
        """Screenshot into the artifacts; ``docs_name`` also for the README.

        A computer's screenshot is its viewport – what a camera pointed at it sees; a phone's
        is the whole page, as a person scrolling it would read it.
        """
        self.check_accessibility(step)
        path = self.album.path(self.name, step)
        png: bytes = self.page.screenshot(path=path, scale="css", full_page=self.full_page)
        if docs_name and os.environ.get("E2E_DOCS_SCREENSHOTS") == "1":
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_SCREENSHOTS / docs_name)
        return png

    def check_accessibility(self, step: str) -> None:
        """Run axe-core's WCAG 2.1 A/AA rules on the page as it is now; violations are problems.

        The script goes in through DevTools (``page.evaluate``), which the page's CSP does not
        govern – the pages themselves allow no inline script.
        """
        if self.axe is None:
            return
        self.page.wait_for_load_state()
        if not self.page.evaluate("typeof window.axe !== 'undefined'"):
            self.page.evaluate(self.axe)
        violations = self.page.evaluate(RUN_AXE, WCAG_21_AA)
        self.checked.append(f"{step}: {self.page.url}")
        for found in violations:
            self.problems.append(
                f"axe {found['id']} ({found['impact']}) on {step} {self.page.url}: "
                f"{found['target']} – {found['help']}. {found['summary']}"
            )

    def set_user_verified(self, verified: bool) -> None:
        """Whether the next fingerprint/face/screen-lock check succeeds."""
        self.cdp.send(
            "WebAuthn.setUserVerified",
            {"authenticatorId": self.authenticator_id, "isUserVerified": verified},
        )

    def passkeys(self) -> list[dict[str, Any]]:
        """The credentials the authenticator holds."""
        answer = self.cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": self.authenticator_id}
        )
        return list(answer["credentials"])

    def watch(self) -> None:
        """Record what must never happen: CSP violations, script errors, server errors."""

        def console(message: Any) -> None:
            if "Content Security Policy" in message.text:
                self.problems.append(f"CSP: {message.text}")

        def response(answer: Any) -> None:
            if answer.status >= 500:
                self.problems.append(f"HTTP {answer.status}: {answer.request.method} {answer.url}")

        self.page.on("console", console)
        self.page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        self.page.on("response", response)


def axe_source() -> str | None:
    """axe-core as ``make install`` fetched it (``tools/vendor.py``); None without npm."""
    return AXE_SCRIPT.read_text(encoding="utf-8") if AXE_SCRIPT.is_file() else None


def open_device(
    browser: Any, name: str, album: Album, options: dict[str, Any], *, language: str = "de"
) -> Device:
    context = browser.new_context(**LANGUAGES[language], **options)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": VIRTUAL_AUTHENTICATOR})
    device = Device(name, context, page, cdp, added["authenticatorId"], album, axe=axe_source())
    device.watch()
    return device


CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[CALL_REPORT] = report
    return report


def close_device(device: Device, request: pytest.FixtureRequest) -> None:
    """Close the context; a test that passed must also have left no problem behind."""
    device.context.close()
    call = request.node.stash.get(CALL_REPORT, None)
    if device.problems and call is not None and call.passed:
        pytest.fail(f"{device.name}:\n  " + "\n  ".join(device.problems))
    for problem in device.problems:
        print(f"{device.name}: {problem}")  # shown with the test's own failure


DESKTOP = {"viewport": {"width": 1280, "height": 900}}


def phone_profile(playwright_driver: Any) -> dict[str, Any]:
    profile = dict(playwright_driver.devices["Pixel 7"])
    profile.pop("default_browser_type", None)
    return profile


@pytest.fixture
def desktop(chromium: Any, album: Album, request: pytest.FixtureRequest) -> Iterator[Device]:
    device = open_device(chromium, "desktop", album, DESKTOP)
    yield device
    close_device(device, request)


@pytest.fixture
def phone(
    chromium: Any, playwright_driver: Any, album: Album, request: pytest.FixtureRequest
) -> Iterator[Device]:
    device = open_device(chromium, "phone", album, phone_profile(playwright_driver))
    device.full_page = True
    yield device
    close_device(device, request)


# -- residents ------------------------------------------------------------------------------


@pytest.fixture
def letter(stack: Stack) -> Letter:
    """Erika's activation letter (a new resident for every test)."""
    return stack.add_resident(**ERIKA)
