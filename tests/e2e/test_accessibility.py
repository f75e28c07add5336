"""Every page of every flow, checked by axe-core against WCAG 2.1 A and AA, in both languages.

One walk per language and device (a computer and a Pixel 7 phone): a resident registers with the
letter, opens the portals, logs in, applies, looks at what the portal knows, manages the
Bürger-ID account, blocks a lost phone; a clerk uses the console; and the error pages a person
may meet (404, a used and an expired activation link, a cancelled login, a QR code the phone
may not use, wrong input). ``test_browser.py`` checks its pages too (in German). Every
``shoot`` runs axe on the page as shown (``conftest.Device.check_accessibility``); the test
fails listing each violation with rule, element and help text.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from portals import ERIKA
from saml_sp import SP_ACS
from saml_sp import SamlServiceProvider

from .chromium import missing_requirement
from .conftest import AXE_SCRIPT

if (_missing := missing_requirement()) is not None:
    pytest.skip(_missing, allow_module_level=True)
if not AXE_SCRIPT.is_file():
    pytest.skip(
        f"accessibility checks need axe-core ({AXE_SCRIPT} missing): run `make install` "
        "with npm available",
        allow_module_level=True,
    )

from playwright.sync_api import expect  # noqa: E402

from idserver.saml import add_service_provider  # noqa: E402

from .conftest import DESKTOP  # noqa: E402
from .conftest import TIMEOUT_MS  # noqa: E402
from .conftest import Album  # noqa: E402
from .conftest import Device  # noqa: E402
from .conftest import Stack  # noqa: E402
from .conftest import close_device  # noqa: E402
from .conftest import open_device  # noqa: E402
from .conftest import phone_profile  # noqa: E402

pytestmark = pytest.mark.e2e

CLERK = {"given_name": "Klara", "family_name": "Sachbearbeiter", "email": "klara@example.org"}


@pytest.fixture(params=["de", "en"])
def language(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["desktop", "phone"])
def device(
    request: pytest.FixtureRequest,
    chromium: Any,
    playwright_driver: Any,
    album: Album,
    language: str,
) -> Iterator[Device]:
    kind = request.param
    options = DESKTOP if kind == "desktop" else phone_profile(playwright_driver)
    opened = open_device(chromium, kind, album, options, language=language)
    opened.full_page = kind == "phone"
    yield opened
    close_device(opened, request)


def sign_in_at_portal(device: Device, stack: Stack, portal: str, path: str = "/") -> None:
    """From a portal page through the Bürger-ID login page, with the device's own passkey."""
    page = device.page
    page.goto(stack.portals[portal] + path)
    page.locator("main a.button[href^='/login']").first.click()
    page.wait_for_url(re.compile(re.escape(stack.issuer) + r"/login/[^/?]+$"))
    expect(page.locator("#qr svg")).to_be_visible(timeout=TIMEOUT_MS)
    device.shoot(f"{portal}-login")
    page.click("#passkey-button")
    page.wait_for_url(re.compile(re.escape(stack.portals[portal]) + r"/(?!callback)"))


def sign_in_at_bürger_id(device: Device, stack: Stack, path: str) -> None:
    page = device.page
    page.goto(stack.issuer + path)
    page.wait_for_url(re.compile(re.escape(stack.issuer) + r"/login/[^/?]+$"))
    page.click("#passkey-button")
    page.wait_for_url(stack.issuer + path)


def sign_in_at_saml_service(device: Device, stack: Stack, folder: Path) -> None:
    """A pysaml2 SP ("Hundesteuer") sends the browser to /saml/sso; the signed answer goes to
    its ACS, which the browser here only pretends to reach."""
    page = device.page
    idp_metadata = page.request.get(stack.issuer + "/saml/metadata").text()
    sp = SamlServiceProvider(folder, idp_metadata, requested=("givenName",))
    with stack.idp.app_context():
        add_service_provider(sp.metadata(), source="e2e")
    page.route(SP_ACS, lambda route: route.fulfill(status=200, body="SAML answer received"))
    page.goto(stack.issuer + sp.redirect_request(f"{stack.issuer}/saml/metadata"))
    page.wait_for_url(re.compile(re.escape(stack.issuer) + r"/login/[^/?]+$"))
    page.click("#passkey-button")
    page.wait_for_url(SP_ACS)


def test_every_page_meets_wcag_21_aa(
    stack: Stack, device: Device, language: str, tmp_path: Path
) -> None:
    page = device.page
    issuer = stack.issuer
    for_readme = language == "de" and device.name == "desktop"  # the README shows German

    # Bürger-ID's public pages and its "not found" page.
    for path, step in (
        ("/", "home"),
        ("/barrierefreiheit", "accessibility-statement"),
        ("/lost", "lost"),
        ("/no-such-page", "not-found"),
    ):
        page.goto(issuer + path)
        device.shoot(
            step,
            docs_name="11-desktop-accessibility.png"
            if for_readme and step == "accessibility-statement"
            else None,
        )

    # The activation letter: an expired link, a working one, and the same link once used.
    expired = stack.add_resident(**ERIKA)
    stack.expire_letter(expired)
    page.goto(expired.activation_url)
    page.fill("#code", expired.code)
    page.click("#activate-form button[type=submit]")
    expect(page.locator("#status.status-error")).not_to_be_empty(timeout=TIMEOUT_MS)
    device.shoot("activation-expired")
    letter = stack.add_resident(**ERIKA)
    page.goto(letter.activation_url)
    device.shoot("activation")
    page.fill("#code", letter.code)
    page.fill("#device-name", "Erikas Gerät")
    page.click("#activate-form button[type=submit]")
    expect(page.locator("#done")).to_be_visible(timeout=TIMEOUT_MS)
    revocation_code = page.locator("#revocation-code").inner_text().strip()
    device.shoot("activation-done")
    page.goto(letter.activation_url)
    page.fill("#code", letter.code)
    page.click("#activate-form button[type=submit]")
    expect(page.locator("#status.status-error")).not_to_be_empty(timeout=TIMEOUT_MS)
    device.shoot("activation-used")

    # The portals, signed out.
    for portal, path in (("parking", "/"), ("parking", "/check"), ("jobs", "/")):
        page.goto(stack.portals[portal] + path)
        device.shoot(f"{portal}-start")

    # A login cancelled at the computer ends on the portal's error page.
    page.goto(stack.portals["parking"])
    page.locator("main a.button[href^='/login']").first.click()
    page.wait_for_url(re.compile(re.escape(issuer) + r"/login/[^/?]+$"))
    cancelled_login = page.url.rsplit("/", 1)[-1]
    page.locator("form[action$='/cancel'] button").click()
    expect(page.locator("[data-error=access_denied]")).to_be_visible(timeout=TIMEOUT_MS)
    device.shoot("portal-login-cancelled")
    # A QR code the phone may not use (forged, stale, of an ended login): the phone's error page.
    page.goto(f"{issuer}/q/{cancelled_login}?t=1&h={'A' * 43}")
    expect(page.locator(".error-code code")).not_to_be_empty()
    device.shoot("phone-qr-refused")

    # The phone's confirmation page, opened from "Can't scan the code?".
    page.goto(stack.portals["parking"])
    page.locator("main a.button[href^='/login']").first.click()
    page.wait_for_url(re.compile(re.escape(issuer) + r"/login/[^/?]+$"))
    phone_url = page.locator("#phone-link").get_attribute("href")
    assert phone_url
    page.goto(phone_url)
    # Opened in the browser that started the login, the link first explains (issue 14.3).
    expect(page.locator("#phone-on-computer")).to_be_visible()
    device.shoot("phone-link-on-the-computer")
    page.locator("#confirm-here").click()
    expect(page.locator("#approve-form")).to_be_visible()
    device.shoot("phone-confirmation")
    page.fill("#number", "")
    page.click("#approve-form button[type=submit]")
    expect(page.locator("#status")).not_to_be_empty()
    device.shoot("phone-confirmation-no-number")

    # Signed in at the parking portal: apply, the permit, what the portal knows, sign out.
    sign_in_at_portal(device, stack, "parking")
    expect(page.locator("#eligible")).to_be_visible()
    device.shoot("parking-signed-in")
    page.fill("#plate", "")
    page.locator("#eligible button[type=submit]").click()
    device.shoot("parking-plate-missing")
    page.fill("#plate", "DO-EM 1984")
    page.locator("#eligible button[type=submit]").click()
    expect(page.locator("#permit-status")).to_be_visible()
    device.shoot("parking-permit")
    page.goto(stack.portals["parking"] + "/about")
    device.shoot("parking-about")

    # The applicant portal: a position, the application, and signing out.
    sign_in_at_portal(device, stack, "jobs", "/positions/2025-017")
    device.shoot("jobs-position")
    page.fill("#cover_letter", "Zu kurz.")
    page.locator("main form.stacked-form button[type=submit]").click()
    device.shoot("jobs-cover-letter-too-short")
    page.fill("#cover_letter", "Sehr geehrte Damen und Herren, ich bewerbe mich gern. " * 3)
    page.locator("main form.stacked-form button[type=submit]").click()
    page.wait_for_url(re.compile(re.escape(stack.portals["jobs"]) + r"/applications/"))
    device.shoot("jobs-application")
    page.locator("form[action$='/logout'] button").click()
    page.wait_for_url(re.compile(re.escape(stack.portals["jobs"]) + "/logged-out"))
    device.shoot("jobs-logged-out")

    # The Bürger-ID account: devices, removing one, adding one, logging out.
    sign_in_at_bürger_id(device, stack, "/account")
    if shutil.which("xmlsec1"):  # a SAML service on the list too (from the same browser)
        sign_in_at_saml_service(device, stack, tmp_path)
        page.goto(issuer + "/account")
        expect(page.locator("#services h3", has_text="Hundesteuer")).to_be_visible()
    device.shoot("account")
    page.locator(".device-list a[href$='/revoke']").first.click()
    device.shoot("account-remove-device")
    page.go_back()
    # a refused name is shown at its field; withdrawing consent asks first
    page.locator(".device-list form.rename input[name=name]").first.fill("   ")
    page.locator(".device-list form.rename button[type=submit]").first.click()
    expect(page.locator(".device-list input[aria-invalid=true]")).to_be_visible()
    device.shoot("account-rename-refused")
    page.goto(issuer + "/account")
    page.locator("#services a[href$='/withdraw']").first.click()
    page.wait_for_url(re.compile(re.escape(issuer) + r"/account/services/[^/]+/withdraw$"))
    device.shoot("account-withdraw-consent")
    page.goto(issuer + "/account")
    page.locator("form[action$='/account/pairings'] button[type=submit]").click()
    page.wait_for_url(re.compile(re.escape(issuer) + r"/account/pairings/"))
    device.shoot("account-add-device")
    page.goto(issuer + "/account")
    page.locator("form[action$='/account/logout'] button[type=submit]").click()
    page.wait_for_url(issuer + "/account/logged-out")
    device.shoot("account-logged-out")

    # A lost phone: a wrong revocation code, then the right one.
    page.goto(issuer + "/lost")
    page.fill("#code", "AAAA-BBBB-CCCC")
    page.locator("form[action$='/lost'] button[type=submit]").click()
    device.shoot("lost-wrong-code")
    page.fill("#code", revocation_code)
    page.locator("form[action$='/lost'] button[type=submit]").click()
    page.wait_for_url(issuer + "/lost/done")
    device.shoot("lost-done")

    # The clerk console: finding, registering and looking at a resident, the audit log.
    device.cdp.send("WebAuthn.clearCredentials", {"authenticatorId": device.authenticator_id})
    clerk_letter = stack.add_clerk(**CLERK)
    page.goto(clerk_letter.activation_url)
    page.fill("#code", clerk_letter.code)
    page.click("#activate-form button[type=submit]")
    expect(page.locator("#done")).to_be_visible(timeout=TIMEOUT_MS)
    sign_in_at_bürger_id(device, stack, "/admin")
    device.shoot("console-find")
    page.fill("#name", "Mustermann")
    page.locator("form.search button[type=submit]").click()
    device.shoot("console-found")
    page.locator(".records a").first.click()
    device.shoot(
        "console-resident", docs_name="12-desktop-clerk-console.png" if for_readme else None
    )
    with page.expect_download():
        page.locator("form[data-letter] button[type=submit]").click()
    expect(page.locator(".flashes .notice")).to_be_visible(timeout=TIMEOUT_MS)
    device.shoot("console-letter-issued")
    page.goto(issuer + "/admin/residents/new")
    device.shoot("console-register")
    page.locator("form.resident-form button[type=submit]").click()
    device.shoot("console-register-errors")
    page.goto(issuer + "/admin/audit")
    page.locator("details.audit-raw summary").first.click()
    device.shoot("console-audit")

    assert len(device.checked) >= 30, device.checked


def test_the_saml_portal_meets_wcag_21_aa(stack: Stack, device: Device) -> None:
    """The Hundesteuer-Anmeldung (SAML): its start page, the Bürger-ID login it leads to, the
    form prefilled from the SAML attributes (empty, refused, accepted), and the page after the
    Single Logout."""
    if "dogtax" not in stack.portals:
        pytest.skip("the SAML portal needs xmlsec1")
    page = device.page
    portal = stack.portals["dogtax"]
    page.goto(portal + "/")
    device.shoot("dogtax-start")

    letter = stack.add_resident(**ERIKA)
    page.goto(letter.activation_url)
    page.fill("#code", letter.code)
    page.fill("#device-name", "Erikas Gerät")
    page.click("#activate-form button[type=submit]")
    expect(page.locator("#done")).to_be_visible(timeout=TIMEOUT_MS)

    page.goto(portal + "/")
    page.locator("main a.button[href^='/login']").first.click()
    page.wait_for_url(re.compile(re.escape(stack.issuer) + r"/login/[^/?]+$"))
    expect(page.locator("#qr svg")).to_be_visible(timeout=TIMEOUT_MS)
    device.shoot("dogtax-login")
    page.click("#passkey-button")
    page.wait_for_url(portal + "/")  # Bürger-ID's page posted the SAML answer to the ACS
    expect(page.locator("#owner-given_name")).to_have_value(ERIKA["given_name"])
    device.shoot("dogtax-form")
    page.locator("#dog-form button[type=submit]").click()
    expect(page.locator("#dog_name-error")).to_be_visible()
    device.shoot("dogtax-form-refused")
    page.fill("#dog_name", "Bello")
    page.fill("#breed", "Dackel")
    page.fill("#kept_since", "2024-05-01")
    page.locator("#dog-form button[type=submit]").click()
    expect(page.locator("#my-dogs")).to_be_visible()
    device.shoot("dogtax-registered")
    page.locator("form[action$='/logout'] button").click()
    page.wait_for_url(portal + "/saml/slo")  # Bürger-ID's LogoutResponse, posted back
    device.shoot("dogtax-logged-out")
    assert len(device.checked) >= 6, device.checked
