"""Finding the way: the start page's links, what to do after registering, logging in on a phone.

Issue 14.4: the account and lost-phone pages must be reachable from the start page; after
registration the citizen learns what to do with the revocation code and what comes next; and
``/account`` opened on a phone offers logging in with that phone before a QR code it cannot scan.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from account_browser import CitizenBrowser
from account_browser import NewDevice
from harness import ISSUER
from harness import Phone
from page import Element
from page import Html
from page import html_of

from idserver.crosslogin.views import on_phone
from idserver.phone.authenticator import SoftAuthenticator

STATIC = Path(__file__).parents[2] / "idserver" / "static"
ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def _links(page: Html) -> dict[str, str]:
    return {a.attrs.get("href", ""): a.words for a in page.find("a")}


def _position(page: Html, element: Element) -> int:
    return next(i for i, e in enumerate(page.elements) if e is element)


# -- the start page ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lang", "account", "lost", "help_"),
    [
        ("en", "My account", "Lost your phone?", "Help"),
        ("de", "Mein Konto", "Handy verloren?", "Hilfe"),
    ],
)
def test_start_page_leads_to_the_account_lost_phone_and_help(client, lang, account, lost, help_):
    response = client.get("/", headers={"Accept-Language": lang})
    assert response.status_code == 200
    page = html_of(response)
    links = _links(page)
    assert links[f"{ISSUER}/account"] == account
    assert links[f"{ISSUER}/lost"] == lost
    assert links["/barrierefreiheit"]  # the accessibility statement, in the help section too
    (help_section,) = page.find("section", id="help")
    assert page.find("h2", id="help-heading")[0].words == help_
    assert any(
        a.attrs.get("href") == "/barrierefreiheit" and help_section in a.parents
        for a in page.find("a")
    )
    (heading,) = page.find("h1")
    assert "Bürger-ID" in heading.words
    # what Bürger-ID is, before the links
    (intro, *_rest) = page.find("p")
    assert _position(page, intro) < _position(page, page.find("nav", class_="start-links")[0])


def test_start_page_help_names_the_configured_office(app, client):
    app.config["OFFICE_NAME"] = "Bürgerbüro Nordstadt"
    app.config["OFFICE_CONTACT"] = "Telefon 0123 456789"
    html = client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    help_section = html.split('id="help"')[1]
    assert "Bürgerbüro Nordstadt" in help_section
    assert "Telefon 0123 456789" in help_section


# -- after registering ------------------------------------------------------------------------
def _after_enrolment(page: Html) -> Element:
    (done,) = page.find("section", id="done")
    (after,) = page.find("div", class_="after-enrolment")
    assert done in after.parents  # shown together with the code, once it is there
    return after


def _assert_next_steps(page: Html, after: Element, scan_with: str) -> None:
    assert "Print this page or write the code down on paper." in after.words
    assert "Keep it apart from your phone" in after.words
    assert f"when a service shows a QR code, scan it with {scan_with}" in after.words
    inside = [a for a in page.find("a") if after in a.parents]
    assert {a.attrs["href"] for a in inside} >= {f"{ISSUER}/account", f"{ISSUER}/lost"}
    # printing needs JavaScript: the button stays hidden without it, and no inline script
    (button,) = [b for b in page.find("button") if after in b.parents]
    assert button.attrs["type"] == "button"
    assert "data-print" in button.attrs and "hidden" in button.attrs
    assert button.words == "Print the revocation code"
    scripts = page.find("script")
    assert all(s.attrs.get("src") for s in scripts)
    assert any(s.attrs["src"].endswith("/static/js/print-page.js") for s in scripts)


def test_activation_page_says_what_to_do_with_the_code_and_what_comes_next(client, activation):
    activation_id, _code = activation
    response = client.get(f"/activate/{activation_id}", headers={"Accept-Language": "en"})
    page = html_of(response)
    _assert_next_steps(page, _after_enrolment(page), "this phone")


def test_new_device_page_says_what_to_do_with_the_code_and_what_comes_next(
    app, client, enrolled_phone, tmp_path
):
    browser = CitizenBrowser(client)
    browser.log_in(enrolled_phone)
    pairing_id = browser.start_pairing()
    device = NewDevice(Phone(app.test_client(), SoftAuthenticator(path=tmp_path / "new.json")))
    assert device.claim(pairing_id).status_code == 303
    page = html_of(device.client.get(f"/pair/{pairing_id}"))
    _assert_next_steps(page, _after_enrolment(page), "this device")


def test_print_button_and_print_stylesheet_exist():
    script = (STATIC / "js" / "print-page.js").read_text()
    assert "window.print()" in script and "[data-print]" in script
    css = (STATIC / "css" / "buergerid.css").read_text()
    printed = css.split("@media print", 1)[1]
    assert ".no-print" in printed and "#done" in printed


# -- /account on a phone ------------------------------------------------------------------------
def _login_page(client, user_agent: str) -> Html:
    headers = {"User-Agent": user_agent, "Accept-Language": "en"}
    started = client.get("/account", headers=headers)
    assert started.status_code == 303
    assert started.headers["Location"].startswith(f"{ISSUER}/login/")
    response = client.get(started.headers["Location"].removeprefix(ISSUER), headers=headers)
    assert response.status_code == 200
    return html_of(response)


@pytest.mark.parametrize("user_agent", [ANDROID, IPHONE])
def test_account_on_a_phone_offers_this_phone_first(client, user_agent):
    page = _login_page(client, user_agent)
    (button,) = page.find("button", id="passkey-button")  # the same-device passkey login
    assert button.words == "Log in with this phone"
    assert "kern-btn--primary" in button.attrs["class"].split()
    (qr,) = page.find("div", id="qr")
    assert _position(page, button) < _position(page, qr)
    # the login's status is announced next to the button, not below the QR code
    (status,) = page.find("p", id="status")
    assert _position(page, button) < _position(page, status) < _position(page, qr)
    assert not [b for b in page.find("button") if b.words == "Use my digital key instead"]


def test_account_on_a_computer_keeps_the_qr_code_first(client):
    page = _login_page(client, DESKTOP)
    (button,) = page.find("button", id="passkey-button")
    assert button.words == "Use my digital key instead"
    (qr,) = page.find("div", id="qr")
    assert _position(page, qr) < _position(page, button)
    assert not [b for b in page.find("button") if b.words == "Log in with this phone"]


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [(ANDROID, True), (IPHONE, True), (DESKTOP, False), ("", False), ("curl/8.5", False)],
)
def test_recognises_phones_by_their_user_agent(user_agent, expected):
    assert on_phone(user_agent) is expected
