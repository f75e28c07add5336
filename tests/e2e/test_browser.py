"""A citizen with a computer and a phone, in a real browser.

Each test is one story from the threat model or the user guide, told through the pages a
person sees: the activation letter typed on the phone, the QR code read by a camera (zxing-cpp
on the desktop's screenshot pixels), the number read off the desktop and typed on the phone,
the passkey confirmed by the phone's authenticator. Expected texts are read from the pages'
own ``data-msg-*`` attributes, so the tests hold in every language.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest

from .chromium import missing_requirement

if (_missing := missing_requirement()) is not None:
    pytest.skip(_missing, allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402

from .camera import read_qr_codes  # noqa: E402
from .conftest import TIMEOUT_MS  # noqa: E402
from .conftest import Device  # noqa: E402
from .conftest import Letter  # noqa: E402
from .conftest import Stack  # noqa: E402

pytestmark = pytest.mark.e2e

PLATE = "DO-EM 1984"
COVER_LETTER = (
    "Sehr geehrte Damen und Herren, seit zwölf Jahren berate ich Menschen am Telefon und am "
    "Schalter. Ich möchte diese Erfahrung gern in den Bürgerdiensten einbringen."
)
POSITION = "2025-017"
QR_MAX_AGE_SECONDS = 2  # a shorter window than the default 5 s keeps the stale-QR test quick


# -- what a person does ---------------------------------------------------------------------
def enrol(
    device: Device,
    letter: Letter,
    *,
    name: str = "Erikas Telefon",
    shots: bool = False,
    scanned: bool = False,
) -> str:
    """Open the letter's address and type the code, or open its QR code's link (``scanned``,
    the code in the fragment); create the passkey; returns the revocation code."""
    page = device.page
    if scanned:
        page.goto(letter.link)
        expect(page.locator("#code")).to_have_value(letter.code)
        assert page.url == letter.activation_url  # the fragment is gone from the address bar
    else:
        page.goto(letter.activation_url)
        page.fill("#code", letter.code)
    page.fill("#device-name", name)
    if shots:
        device.shoot("activate-code", docs_name="01-phone-activate.png")
    page.click("#activate-form button[type=submit]")
    expect(page.locator("#done")).to_be_visible(timeout=TIMEOUT_MS)
    revocation_code = page.locator("#revocation-code").inner_text().strip()
    if shots:
        device.shoot("activate-done", docs_name="02-phone-revocation-code.png")
    return revocation_code


def open_login(device: Device, stack: Stack, portal: str, path: str = "/") -> None:
    """Open a portal page and follow its "Sign in with Bürger-ID" button to the login page."""
    page = device.page
    page.goto(stack.portals[portal] + path)
    page.locator("main a.button[href^='/login']").first.click()
    page.wait_for_url(re.compile(re.escape(stack.issuer) + r"/login/[^/?]+$"))
    expect(page.locator("#qr svg")).to_be_visible(timeout=TIMEOUT_MS)


def scan_qr(
    desktop: Device,
    phone: Device,
    stack: Stack,
    *,
    step: str = "login-qr",
    docs_name: str | None = None,
) -> str:
    """The phone's camera reads the desktop's screen; the phone opens what it read."""
    url = read_screen(desktop, step=step, docs_name=docs_name)
    phone.page.goto(url)
    return url


def read_screen(desktop: Device, *, step: str, docs_name: str | None = None) -> str:
    """The URL in the QR code on the desktop's screen, decoded from screenshot pixels."""
    for _attempt in range(3):
        codes = read_qr_codes(desktop.shoot(step, docs_name=docs_name))
        if codes:
            return codes[0]
        desktop.page.wait_for_timeout(300)  # caught mid-redraw: look again
    raise AssertionError("no QR code readable on the desktop's screen")


def shown_number(desktop: Device) -> str:
    """The two-digit number as the person at the computer sees it."""
    number = desktop.page.locator("#number").inner_text().strip()
    assert re.fullmatch(r"[0-9]{2}", number), number
    return number


def confirm_on_phone(phone: Device, number: str, *, docs_name: str | None = None) -> None:
    """Type the number and press "Confirm login"; the authenticator does the rest."""
    phone.page.fill("#number", number)
    if docs_name:
        phone.shoot("confirm", docs_name=docs_name)
    phone.page.click("#approve-form button[type=submit]")


def data(device: Device, selector: str, name: str) -> str:
    """A ``data-*`` attribute: the page's own text for a situation, in the page's language."""
    value = device.page.locator(selector).get_attribute(f"data-{name}")
    assert value, f"{selector} has no data-{name}"
    return value


def wait_for_portal(device: Device, stack: Stack, portal: str) -> None:
    base = re.escape(stack.portals[portal])
    device.page.wait_for_url(re.compile(base + r"/(?!callback)[^?]*(\?.*)?$"), timeout=TIMEOUT_MS)


# -- (a) activation -------------------------------------------------------------------------
def test_phone_enrols_with_the_code_from_the_letter(
    stack: Stack, phone: Device, letter: Letter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    revocation_code = enrol(phone, letter, shots=True, scanned=True)

    assert re.fullmatch(r"[A-Z0-9]{4}(-[A-Z0-9]{4}){2}", revocation_code), revocation_code
    assert phone.page.locator("#activate-form").is_hidden()
    assert len(phone.passkeys()) == 1
    assert phone.passkeys()[0]["isResidentCredential"]
    assert stack.passkey_count(letter.citizen_id) == 1
    # The QR code's fragment never reached the server: its log has the page, not the code.
    assert "/activate/<activation_id>" in caplog.text
    assert letter.code not in caplog.text and revocation_code not in caplog.text


# -- (b) the QR login at the parking portal -------------------------------------------------
class Traffic:
    """What a page loads: main-frame navigations and the requests whose URL matches."""

    def __init__(self, page: Any, pattern: str) -> None:
        self.pattern = re.compile(pattern)
        self.requests: list[Any] = []
        self.navigations: list[str] = []
        page.on("request", self._request)
        page.on("framenavigated", self._navigated)

    def _request(self, request: Any) -> None:
        if self.pattern.search(request.url):
            self.requests.append(request)

    def _navigated(self, frame: Any) -> None:
        if frame.parent_frame is None:
            self.navigations.append(frame.url)


def answered_while_waiting(poll: Any, event: Any) -> bool:
    """True if ``poll`` was sent before ``event`` was sent and answered after it."""
    sent = poll.timing["startTime"]
    answered = sent + poll.timing["responseStart"]
    return bool(sent < event.timing["startTime"] < answered)


def test_desktop_logs_in_to_the_parking_portal_by_scanning_the_qr_code(
    stack: Stack, desktop: Device, phone: Device, letter: Letter
) -> None:
    enrol(phone, letter)
    polls = Traffic(desktop.page, r"/login/[^/?]+\?seen=")
    scans = Traffic(phone.page, r"/q/[^/?]+\?")
    desktop.page.goto(stack.portals["parking"])
    desktop.shoot("portal")
    open_login(desktop, stack, "parking")

    url = scan_qr(desktop, phone, stack, docs_name="03-desktop-login-qr.png")
    assert url.startswith(f"{stack.issuer}/q/")
    expect(desktop.page.locator("#status")).to_have_text(data(desktop, "#login", "msg-scanned"))
    confirm_on_phone(phone, shown_number(desktop), docs_name="04-phone-confirm.png")
    expect(phone.page.locator("#status")).to_have_text(
        data(phone, "#approve-form", "msg-approved"), timeout=TIMEOUT_MS
    )
    phone.shoot("confirmed", docs_name="05-phone-confirmed.png")

    # The desktop hears the news on requests it holds open (the long poll); nobody reloads.
    wait_for_portal(desktop, stack, "parking")
    assert any(answered_while_waiting(poll, scans.requests[0]) for poll in polls.requests)
    assert len([url for url in polls.navigations if "/login/" in url]) == 1
    expect(desktop.page.locator(".signed-in")).to_contain_text("Erika Mustermann")
    expect(desktop.page.locator("#eligible")).to_be_visible()
    desktop.page.fill("#plate", PLATE)
    desktop.page.locator("#eligible button[type=submit]").click()
    expect(desktop.page.locator("#permit-status")).to_be_visible()
    assert desktop.page.locator(".plate").inner_text().strip() == PLATE
    desktop.shoot("permit", docs_name="06-desktop-permit.png")


# -- (c) the applicant portal knows the same person under another name ---------------------
def log_in_by_qr(
    desktop: Device, phone: Device, stack: Stack, portal: str, path: str = "/"
) -> None:
    """The whole QR login, from the portal's sign-in button back to the portal."""
    open_login(desktop, stack, portal, path)
    scan_qr(desktop, phone, stack, step=f"{portal}-login-qr")
    confirm_on_phone(phone, shown_number(desktop))
    expect(phone.page.locator("#status")).to_have_text(
        data(phone, "#approve-form", "msg-approved"), timeout=TIMEOUT_MS
    )
    wait_for_portal(desktop, stack, portal)


def pseudonym(device: Device, stack: Stack, portal: str) -> str:
    device.page.goto(stack.portals[portal] + "/about")
    return device.page.locator("#sub").inner_text().strip()


def test_applicant_portal_knows_the_same_resident_under_another_pseudonym(
    stack: Stack, desktop: Device, phone: Device, letter: Letter
) -> None:
    enrol(phone, letter)
    log_in_by_qr(desktop, phone, stack, "jobs", f"/positions/{POSITION}")
    assert desktop.page.url == f"{stack.portals['jobs']}/positions/{POSITION}"
    desktop.page.fill("#cover_letter", COVER_LETTER)
    desktop.page.locator("main form.stacked-form button[type=submit]").click()
    desktop.page.wait_for_url(re.compile(re.escape(stack.portals["jobs"]) + r"/applications/"))
    desktop.shoot("application")
    jobs_sub = pseudonym(desktop, stack, "jobs")
    desktop.shoot("jobs-about")

    log_in_by_qr(desktop, phone, stack, "parking")
    parking_sub = pseudonym(desktop, stack, "parking")
    desktop.shoot("parking-about", docs_name="07-desktop-pseudonym.png")

    assert jobs_sub and parking_sub
    assert jobs_sub != parking_sub


# -- (d) a wrong number ends the login ------------------------------------------------------
def test_wrong_number_on_the_phone_cancels_the_login_on_both_screens(
    stack: Stack, desktop: Device, phone: Device, letter: Letter
) -> None:
    enrol(phone, letter)
    signatures = phone.passkeys()[0]["signCount"]
    open_login(desktop, stack, "parking")
    scan_qr(desktop, phone, stack)
    wrong = f"{(int(shown_number(desktop)) + 37) % 100:02d}"

    confirm_on_phone(phone, wrong)

    reason = desktop.page.locator("#ended-reason[role=alert]")
    expect(reason).to_have_text(data(desktop, "#login", "msg-wrong-number"), timeout=TIMEOUT_MS)
    expect(desktop.page.locator("#qr svg")).to_have_count(0)
    expect(desktop.page.locator("#renew-button")).to_be_visible()
    desktop.shoot("wrong-number", docs_name="08-desktop-wrong-number.png")
    expect(phone.page.locator("#approve-form")).to_be_hidden()
    expect(phone.page.locator("#status")).not_to_be_empty()
    phone.shoot("wrong-number")
    assert phone.passkeys()[0]["signCount"] == signatures  # the passkey was never asked
    # The reason stays until the citizen acts (WCAG 2.2.1): no redirect by itself, even after
    # the old 2.5 s pause; "Back to …" then tells the portal "access_denied".
    desktop.page.wait_for_timeout(4000)
    assert desktop.page.url.startswith(f"{stack.issuer}/login/")
    expect(reason).to_be_visible()
    desktop.page.locator("#back-button").click()
    desktop.page.wait_for_url(re.compile(re.escape(stack.portals["parking"])), timeout=TIMEOUT_MS)
    expect(desktop.page.locator("[data-error=access_denied]")).to_be_visible()


# -- (e) a photo of an old QR code ----------------------------------------------------------
def test_rejects_a_qr_code_from_an_old_screenshot(
    stack: Stack, desktop: Device, phone: Device, letter: Letter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(stack.idp.config, "QR_MAX_AGE_SECONDS", QR_MAX_AGE_SECONDS)
    step = stack.idp.config["QR_STEP_SECONDS"]
    enrol(phone, letter)
    open_login(desktop, stack, "parking")
    countdown = desktop.page.locator("#countdown").inner_text()
    old = read_screen(desktop, step="login-qr-saved")
    # The frame number is the time it was shown (in steps); wait until it is too old.
    shown_at = int(parse_qs(urlsplit(old).query)["t"][0]) * step
    time.sleep(max(0.0, shown_at + QR_MAX_AGE_SECONDS + step + 0.2 - time.time()))

    phone.page.goto(old)

    expect(phone.page.locator(".error-code code")).to_have_text("qr_stale")
    phone.shoot("stale-qr", docs_name="09-phone-stale-qr.png")
    expect(desktop.page.locator("#status")).to_be_empty()  # nobody has opened the login
    expect(desktop.page.locator("#countdown")).not_to_have_text(countdown)  # time runs on
    # The code on the screen now is fresh, and works.
    scan_qr(desktop, phone, stack, step="login-qr-fresh")
    expect(phone.page.locator("#approve-form")).to_be_visible()
    expect(desktop.page.locator("#status")).to_have_text(data(desktop, "#login", "msg-scanned"))


# -- (f) (g) passkey logins without a QR code -----------------------------------------------
def test_phone_logs_in_on_itself_with_its_passkey(
    stack: Stack, phone: Device, letter: Letter
) -> None:
    enrol(phone, letter)
    signatures = phone.passkeys()[0]["signCount"]
    open_login(phone, stack, "parking")
    phone.shoot("login")

    phone.page.click("#passkey-button")

    wait_for_portal(phone, stack, "parking")
    expect(phone.page.locator("#eligible")).to_be_visible()
    phone.shoot("portal")
    assert phone.passkeys()[0]["signCount"] > signatures


def test_computer_logs_in_with_its_own_passkey(
    stack: Stack, desktop: Device, letter: Letter
) -> None:
    enrol(desktop, letter, name="Erikas Laptop")
    signatures = desktop.passkeys()[0]["signCount"]
    open_login(desktop, stack, "parking")

    desktop.page.click("#passkey-button")

    wait_for_portal(desktop, stack, "parking")
    expect(desktop.page.locator("#eligible")).to_be_visible()
    assert desktop.passkeys()[0]["signCount"] > signatures
    # Signing out of the portal signs out of Bürger-ID too, and comes back.
    desktop.page.locator("form[action$='/logout'] button").click()
    desktop.page.wait_for_url(re.compile(re.escape(stack.portals["parking"]) + "/logged-out"))
    expect(desktop.page.locator("#logout-confirmed")).to_be_visible()


# -- (h) a phone that is removed or blocked ---------------------------------------------------
def test_phone_removed_in_the_account_can_no_longer_confirm_a_login(
    stack: Stack, desktop: Device, phone: Device, letter: Letter
) -> None:
    enrol(phone, letter)
    phone.page.goto(f"{stack.issuer}/account")
    phone.page.wait_for_url(re.compile(re.escape(stack.issuer) + r"/login/[^/?]+$"))
    phone.page.click("#passkey-button")
    phone.page.wait_for_url(f"{stack.issuer}/account")
    phone.shoot("account", docs_name="10-phone-account.png")
    phone.page.locator(".device-list a[href$='/revoke']").click()
    phone.shoot("remove-device")
    phone.page.locator("form[action$='/revoke'] button[type=submit]").click()
    phone.page.wait_for_url(f"{stack.issuer}/account/logged-out")
    assert stack.passkey_count(letter.citizen_id, active_only=True) == 0

    open_login(desktop, stack, "parking")
    scan_qr(desktop, phone, stack)
    confirm_on_phone(phone, shown_number(desktop))

    expect(phone.page.locator("#status.status-error")).not_to_be_empty(timeout=TIMEOUT_MS)
    phone.shoot("refused")
    expect(desktop.page.locator("#status")).to_have_text(data(desktop, "#login", "msg-scanned"))
    assert desktop.page.url.startswith(f"{stack.issuer}/login/")


def test_phone_blocked_with_the_revocation_code_can_no_longer_log_in(
    stack: Stack, phone: Device, letter: Letter
) -> None:
    revocation_code = enrol(phone, letter)
    phone.page.goto(f"{stack.issuer}/lost")
    phone.page.fill("#code", revocation_code.lower())
    phone.page.locator("form[action$='/lost'] button[type=submit]").click()
    phone.page.wait_for_url(f"{stack.issuer}/lost/done")
    phone.shoot("blocked")
    assert stack.passkey_count(letter.citizen_id, active_only=True) == 0

    open_login(phone, stack, "parking")
    phone.page.click("#passkey-button")

    expect(phone.page.locator("#status")).not_to_be_empty(timeout=TIMEOUT_MS)
    phone.shoot("refused")
    assert phone.page.url.startswith(f"{stack.issuer}/login/")


# -- (i) without user verification ----------------------------------------------------------
def test_rejects_enrolment_without_user_verification(
    stack: Stack, phone: Device, letter: Letter
) -> None:
    phone.set_user_verified(False)
    page = phone.page
    page.goto(letter.activation_url)
    page.fill("#code", letter.code)
    page.click("#activate-form button[type=submit]")

    expect(page.locator("#status.status-error")).to_have_text(
        data(phone, "#activate-form", "msg-failed"), timeout=TIMEOUT_MS
    )
    phone.shoot("no-user-verification")
    expect(page.locator("#done")).to_be_hidden()
    assert stack.passkey_count(letter.citizen_id) == 0
    # The letter still works once the fingerprint is recognised.
    phone.set_user_verified(True)
    page.click("#activate-form button[type=submit]")
    expect(page.locator("#done")).to_be_visible(timeout=TIMEOUT_MS)
    assert stack.passkey_count(letter.citizen_id) == 1


def test_rejects_approval_without_user_verification(
    stack: Stack, desktop: Device, phone: Device, letter: Letter
) -> None:
    enrol(phone, letter)
    open_login(desktop, stack, "parking")
    scan_qr(desktop, phone, stack)
    phone.set_user_verified(False)

    confirm_on_phone(phone, shown_number(desktop))

    expect(phone.page.locator("#status.status-error")).to_have_text(
        data(phone, "#approve-form", "msg-failed"), timeout=TIMEOUT_MS
    )
    phone.shoot("no-user-verification")
    expect(desktop.page.locator("#status")).to_have_text(data(desktop, "#login", "msg-scanned"))
    assert desktop.page.url.startswith(f"{stack.issuer}/login/")
    # A second try with the fingerprint recognised goes through.
    phone.set_user_verified(True)
    phone.page.click("#approve-form button[type=submit]")
    wait_for_portal(desktop, stack, "parking")


# -- giving up at the computer --------------------------------------------------------------
def test_cancel_on_the_login_page_returns_to_the_portal(stack: Stack, desktop: Device) -> None:
    open_login(desktop, stack, "parking")

    desktop.page.locator("form[action$='/cancel'] button").click()

    desktop.page.wait_for_url(re.compile(re.escape(stack.portals["parking"])), timeout=5_000)
    expect(desktop.page.locator("[data-error=access_denied]")).to_be_visible()
    assert not desktop.problems


def test_form_post_answer_is_posted_to_the_portal_by_the_pages_script(
    stack: Stack, desktop: Device
) -> None:
    """``response_mode=form_post``: the answer page's own script file sends the form (the CSP
    allows no inline script, and form-action the portal's origin)."""
    page = desktop.page
    portal = stack.portals["parking"]
    page.goto(portal)
    sign_in = page.locator("main a.button[href^='/login']").first.get_attribute("href")
    # The portal's own authorization request (its session keeps state and verifier), with
    # response_mode=form_post added.
    started = page.request.get(portal + str(sign_in), max_redirects=0)
    page.goto(started.headers["location"] + "&response_mode=form_post")
    expect(page.locator("#qr svg")).to_be_visible(timeout=TIMEOUT_MS)

    callback = stack.portals["parking"] + "/callback"
    with page.expect_request(
        lambda sent: sent.url == callback and sent.method == "POST", timeout=TIMEOUT_MS
    ) as posted:
        page.locator("form[action$='/cancel'] button").click()
    fields = parse_qs(posted.value.post_data or "")
    assert fields["error"] == ["access_denied"]
    assert fields["iss"] == [stack.issuer]
    assert fields["state"]
    assert not desktop.problems


# -- (i) the clerk console --------------------------------------------------------------------
def _contrast(first: list[int], second: list[int]) -> float:
    """WCAG 2.1 contrast ratio of two sRGB colours (0–255 each)."""

    def luminance(colour: list[int]) -> float:
        channels = [v / 255 for v in colour[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


# Computed colours may be oklch(…) (KERN): a canvas pixel gives them as sRGB.
TO_RGB = """(colour) => {
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 1;
    const context = canvas.getContext("2d");
    context.fillStyle = colour;
    context.fillRect(0, 0, 1, 1);
    return Array.from(context.getImageData(0, 0, 1, 1).data.slice(0, 3));
}"""


def test_clerk_prints_a_letter_and_the_page_then_shows_it(
    stack: Stack, desktop: Device, letter: Letter, tmp_path: Any
) -> None:
    clerk = stack.add_clerk(given_name="Clara", family_name="Schreiber", email="c@example.org")
    enrol(desktop, clerk, name="Diensthandy")
    page = desktop.page
    page.goto(f"{stack.issuer}/admin/residents/{letter.citizen_id}")
    page.wait_for_url(re.compile(re.escape(stack.issuer) + r"/login/[^/?]+$"))
    page.click("#passkey-button")
    page.wait_for_url(f"{stack.issuer}/admin/residents/{letter.citizen_id}")
    open_letters = page.locator("#codes-heading + .table-wrap td.state-open")
    expect(open_letters).to_have_count(1)  # the letter the resident was registered with

    # The language drop-down shows where it is and that it opens (WCAG 1.4.11: 3:1).
    wrapper = page.locator(".kern-form-input__select-wrapper:has(#language)")
    found = wrapper.evaluate(
        """(box) => {
            const toRgb = """
        + TO_RGB
        + """;
            const own = getComputedStyle(box), after = getComputedStyle(box, "::after");
            let behind = box.parentElement;
            while (getComputedStyle(behind).backgroundColor === "rgba(0, 0, 0, 0)") {
                behind = behind.parentElement;
            }
            return {
                width: parseFloat(own.borderBottomWidth),
                border: toRgb(own.borderBottomColor),
                page: toRgb(getComputedStyle(behind).backgroundColor),
                surface: toRgb(own.backgroundColor),
                arrow: after.content === "none" ? null : toRgb(after.backgroundColor),
            };
        }"""
    )
    assert found["width"] >= 1, found
    assert _contrast(found["border"], found["page"]) >= 3, found
    assert _contrast(found["border"], found["surface"]) >= 3, found
    assert found["arrow"] is not None and _contrast(found["arrow"], found["surface"]) >= 3, found

    with page.expect_download() as download:
        page.locator("form[data-letter] button[type=submit]").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.read_bytes().startswith(b"%PDF-")
    # Without a click, the page now lists the new letter and says so.
    expect(open_letters).to_have_count(2, timeout=TIMEOUT_MS)
    expect(page.locator(".flashes .notice")).to_contain_text(re.compile(r"\d"))
    desktop.shoot("console-letter-issued")

    # The audit log reads as sentences; the raw entry opens on request.
    page.goto(f"{stack.issuer}/admin/audit")
    first = page.locator("details.audit-raw").first
    expect(first.locator("code.audit-data")).not_to_be_visible()
    first.locator("summary").click()
    expect(first.locator("code.audit-data")).to_be_visible()
    assert "clerk_action" not in page.locator("p.audit-sentence").all_inner_texts()
