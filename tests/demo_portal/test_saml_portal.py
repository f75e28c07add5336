"""Hundesteuer-Anmeldung: the SAML-only demo portal, against the real Bürger-ID over HTTP.

The portal is a pysaml2 service provider; Bürger-ID knows it by the metadata it publishes at
/saml/metadata. The browser carries the signed AuthnRequest to Bürger-ID (HTTP-Redirect), the
phone approves, and Bürger-ID's page posts the signed Response back to the portal's ACS.
"""

from __future__ import annotations

import base64
import re
import shutil
import zlib
from pathlib import Path
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from flask import Flask
from portals import Browser
from portals import LiveIdp
from saml_sp import posted_fields

from demo_portal import create_portal
from idserver.saml import add_service_provider

pytestmark = pytest.mark.skipif(shutil.which("xmlsec1") is None, reason="xmlsec1 is missing")

DOGTAX = "http://localhost:8103"


@pytest.fixture
def dogtax(idp: LiveIdp, tmp_path: Path) -> Flask:
    app = create_portal(
        "dogtax",
        {
            "ISSUER": idp.issuer,
            "BASE_URL": DOGTAX,
            "INSTANCE_PATH": str(tmp_path / "portals" / "dogtax"),
            "SECRET_KEY": "dogtax-secret-" + "y" * 32,
        },
    )
    app.config["TESTING"] = True
    metadata = app.test_client().get("/saml/metadata").get_data(as_text=True)
    with idp.app.app_context():
        add_service_provider(metadata, source="test")
    return app


def _authn_request(url: str) -> str:
    encoded = parse_qs(urlsplit(url).query)["SAMLRequest"][0]
    return zlib.decompress(base64.b64decode(encoded), -15).decode()


def saml_answer(browser: Browser, app: Flask, phone) -> dict[str, str]:
    """Portal → Bürger-ID → phone; returns the fields Bürger-ID's page would post to the ACS."""
    browser.open(app)
    started = browser.get(f"{DOGTAX}/login?next=/")
    assert started.status == 303 and started.location, started.text
    assert "Signature=" in started.location and "SigAlg=" in started.location
    login_url, page = browser.follow(started)
    assert login_url and "/login/" in login_url, page.text
    status = browser.status(login_url)
    phone.approve(status["phone_url"], status["number"])
    status = browser.status(login_url)
    assert status["status"] == "approved", status
    answer = browser.get(status["continue_url"])
    assert answer.status == 200, answer.text
    assert f'action="{DOGTAX}/saml/acs"' in answer.text
    return posted_fields(answer.text)


def sign_in(browser: Browser, app: Flask, phone):
    fields = saml_answer(browser, app, phone)
    done = browser.post(f"{DOGTAX}/saml/acs", fields)
    assert done.status == 303 and done.location == f"{DOGTAX}/", done.text
    return browser.get(done.location)


def test_authn_request_speaks_bundid(browser, dogtax):
    browser.open(dogtax)
    started = browser.get(f"{DOGTAX}/login")
    xml = _authn_request(started.location)
    assert "STORK-QAA-Level-1" in xml
    assert "Stadt Dortmund – Hundesteuer" in xml
    for oid in ("2.5.4.42", "2.5.4.4", "1.2.40.0.10.2.1.1.55", "2.5.4.16"):
        assert f'Name="urn:oid:{oid}"' in xml


def test_the_phone_shows_the_service_and_the_attributes(browser, dogtax, erika):
    browser.open(dogtax)
    login_url, _page = browser.follow(browser.get(f"{DOGTAX}/login"))
    assert login_url
    view = erika.phone.scan(browser.status(login_url)["phone_url"])
    shown = str(view.context)
    assert "Stadt Dortmund – Hundesteuer" in shown
    assert "birthdate" in shown and "address" in shown and "email" not in shown


def test_resident_signs_in_and_the_form_is_prefilled(browser, dogtax, erika, portal_rows):
    page = sign_in(browser, dogtax, erika.phone)
    assert page.status == 200
    assert "Sie sind mit Bürger-ID angemeldet." in page.text
    for value in ("Erika", "Mustermann", "1984-08-12", "Kreuzstraße 5", "44139", "Dortmund"):
        assert f'value="{value}" readonly' in page.text
    assert portal_rows(dogtax)["saml_requests"] == []  # the request was used up
    answer = browser.post(
        f"{DOGTAX}/register",
        {
            "csrf_token": page.csrf_token(),
            "dog_name": "Bello",
            "breed": "Dackel",
            "kept_since": "2024-05-01",
        },
    )
    assert answer.status == 303
    assert "Bello (Dackel)" in browser.get(answer.location).text
    rows = portal_rows(dogtax)["dog_registrations"]
    assert len(rows) == 1 and "Erika Mustermann" in rows[0]


def test_the_pages_speak_german_and_english(dogtax):
    client = dogtax.test_client()
    english = client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert '<html lang="en">' in english and "Register a dog for the dog tax" in english
    german = client.get("/", headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert '<html lang="de">' in german and "Hund zur Hundesteuer anmelden" in german
    assert "<script" not in german  # no inline (or any) script on the portal's pages


def test_publishes_its_metadata_with_its_own_certificate(dogtax):
    xml = dogtax.test_client().get("/saml/metadata").get_data(as_text=True)
    assert f'entityID="{DOGTAX}/saml/metadata"' in xml
    assert f'Location="{DOGTAX}/saml/acs"' in xml and "X509Certificate" in xml
    key = Path(dogtax.instance_path) / "saml" / "sp.key"
    assert key.stat().st_mode & 0o077 == 0  # the private key is the portal's alone


INCOMPLETE = (
    {"dog_name": "", "breed": "Dackel", "kept_since": "2024-05-01"},
    {"dog_name": "Bello", "breed": "x" * 61, "kept_since": "2024-05-01"},
    {"dog_name": "Bello", "breed": "Dackel", "kept_since": "2999-01-01"},
    {"dog_name": "Bello", "breed": "Dackel", "kept_since": "gestern"},
)


def test_rejects_an_incomplete_dog_registration(browser, dogtax, erika, portal_rows):
    page = sign_in(browser, dogtax, erika.phone)  # once: a login takes a second
    before = portal_rows(dogtax)
    for fields in INCOMPLETE:
        answer = browser.post(f"{DOGTAX}/register", {"csrf_token": page.csrf_token(), **fields})
        assert answer.status == 422 and 'class="field-error"' in answer.text, fields
        assert portal_rows(dogtax) == before


def test_rejects_a_dog_registration_without_csrf_token(browser, dogtax, erika, portal_rows):
    sign_in(browser, dogtax, erika.phone)
    before = portal_rows(dogtax)
    answer = browser.post(
        f"{DOGTAX}/register", {"dog_name": "Bello", "breed": "Dackel", "kept_since": "2024-05-01"}
    )
    assert answer.status == 400 and 'data-error="csrf_rejected"' in answer.text
    assert portal_rows(dogtax) == before


def test_about_page_shows_the_attributes_and_level(browser, dogtax, erika):
    sign_in(browser, dogtax, erika.phone)
    about = browser.get(f"{DOGTAX}/about")
    assert "1984-08-12" in about.text and "STORK-QAA-Level-1" in about.text
    assert "erika@example.org" not in about.text  # never asked for


def test_saml_portal_refuses_a_forged_response(browser, dogtax, erika, portal_rows):
    fields = saml_answer(browser, dogtax, erika.phone)
    xml = base64.b64decode(fields["SAMLResponse"]).decode()
    forged = xml.replace("Erika", "Mallory")
    before = portal_rows(dogtax)
    answer = browser.post(
        f"{DOGTAX}/saml/acs",
        {"SAMLResponse": base64.b64encode(forged.encode()).decode(), **_relay(fields)},
    )
    assert answer.status == 400 and 'data-error="login_failed"' in answer.text
    assert portal_rows(dogtax) == before
    assert "Mallory" not in browser.get(f"{DOGTAX}/").text


def test_saml_portal_refuses_an_unsigned_response(browser, dogtax, erika, portal_rows):
    fields = saml_answer(browser, dogtax, erika.phone)
    xml = base64.b64decode(fields["SAMLResponse"]).decode()
    unsigned = re.sub(r"<(\w+:)?Signature[ >].*?</(\w+:)?Signature>", "", xml, flags=re.DOTALL)
    assert "SignatureValue" not in unsigned
    assert unsigned != xml
    before = portal_rows(dogtax)
    answer = browser.post(
        f"{DOGTAX}/saml/acs",
        {"SAMLResponse": base64.b64encode(unsigned.encode()).decode(), **_relay(fields)},
    )
    assert answer.status == 400
    assert portal_rows(dogtax) == before
    assert 'id="dog-form"' not in browser.get(f"{DOGTAX}/").text


def test_saml_portal_refuses_a_replayed_response(browser, dogtax, erika, portal_rows):
    fields = saml_answer(browser, dogtax, erika.phone)
    assert browser.post(f"{DOGTAX}/saml/acs", fields).status == 303
    before = portal_rows(dogtax)
    other = Browser(browser.idp)
    other.open(dogtax)
    answer = other.post(f"{DOGTAX}/saml/acs", fields)
    assert answer.status == 400
    assert portal_rows(dogtax) == before


def test_resident_signs_out_at_the_portal_and_at_buergerid(browser, dogtax, erika, portal_rows):
    page = sign_in(browser, dogtax, erika.phone)
    answer = browser.post(f"{DOGTAX}/logout", {"csrf_token": page.csrf_token()})
    assert answer.status == 303 and answer.location
    assert answer.location.startswith(f"{browser.idp.issuer}/saml/slo?")
    assert "Signature=" in answer.location
    assert portal_rows(dogtax)["portal_sessions"] == []
    slo = browser.get(answer.location)
    assert slo.status == 200, slo.text
    fields = posted_fields(slo.text)
    done = browser.post(f"{DOGTAX}/saml/slo", fields)
    assert done.status == 200 and 'id="logout-confirmed"' in done.text, done.text
    assert 'id="dog-form"' not in browser.get(f"{DOGTAX}/").text
    # Bürger-ID's session ended too: a new login asks the phone again.
    again = browser.follow(browser.get(f"{DOGTAX}/login"))[0]
    assert again and "/login/" in again


def _relay(fields: dict[str, str]) -> dict[str, str]:
    return {"RelayState": fields["RelayState"]}
