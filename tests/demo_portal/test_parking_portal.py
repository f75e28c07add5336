"""Bewohnerparkausweis: eligibility from the address claim, permits, and the warden's check."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from demo_portal.parking import service
from demo_portal.parking.models import Permit

PARKING = "http://localhost:8101"


def _permit_id(location: str) -> str:
    match = re.fullmatch(rf"{PARKING}/permits/([0-9a-f-]+)", location)
    assert match, location
    return match.group(1)


def _token(page_text: str) -> str:
    match = re.search(r'id="permit-token">([^<]+)</pre>', page_text)
    assert match, "no token on the page"
    return match.group(1)


def _check(browser, token: str) -> str:
    page = browser.get(f"{PARKING}/check?" + f"token={token}")
    assert page.status == 200
    match = re.search(r'data-result="([^"]+)"', page.text)
    assert match, "no check result"
    return match.group(1)


def _apply(browser, parking, plate: str = "DO-EM 1984"):
    return browser.submit(parking, "/permits", browser.page(parking, "/"), plate=plate)


@pytest.fixture
def signed_in_erika(browser, parking, erika):
    browser.sign_in(parking, erika.phone)
    return browser


def test_resident_inside_a_zone_is_offered_a_permit(browser, parking, erika):
    page = browser.sign_in(parking, erika.phone)
    assert 'id="eligible" data-zone="KV"' in page.text
    assert "Kreuzviertel" in page.text and 'name="plate"' in page.text


def test_resident_outside_every_zone_gets_an_explanation(browser, parking, max_outside):
    page = browser.sign_in(parking, max_outside.phone)
    assert page.status == 200 and 'id="not-eligible"' in page.text
    assert "Benninghofer Straße 20" in page.text
    assert "liegt in keiner unserer Bewohnerparkzonen" in page.text
    assert 'name="plate"' not in page.text


def test_rejects_permit_for_resident_outside_every_zone(browser, parking, max_outside, portal_rows):
    page = browser.sign_in(parking, max_outside.phone)
    before = portal_rows(parking)
    answer = browser.submit(parking, "/permits", page, plate="DO-MX 7")
    assert answer.status == 403 and 'data-error="not_eligible"' in answer.text
    assert portal_rows(parking) == before


def test_permit_is_issued_shown_and_checks_valid(signed_in_erika, parking):
    browser = signed_in_erika
    answer = _apply(browser, parking, plate=" do em1984 ")
    assert answer.status == 303
    permit_id = _permit_id(answer.location)
    page = browser.get(answer.location)
    assert "DO-EM 1984" in page.text and 'data-status="valid"' in page.text
    assert re.search(r"KV-\d{4}-[A-Z2-9]{6}", page.text)
    today = dt.date.today()
    assert today.strftime("%d.%m.%Y") in page.text
    assert service.one_year_from(today).strftime("%d.%m.%Y") in page.text

    qr = browser.portals[PARKING].get(f"/permits/{permit_id}/qr.svg")
    assert qr.status_code == 200 and qr.mimetype == "image/svg+xml"
    assert b"<svg" in qr.data and b"<script" not in qr.data and b"style=" not in qr.data

    token = _token(page.text)
    assert _check(browser, token) == "valid"
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "ES256" and header["typ"] == "permit+jwt"


def test_token_holds_no_personal_data(signed_in_erika, parking):
    page = signed_in_erika.get(_apply(signed_in_erika, parking).location)
    claims = json.loads(base64.urlsafe_b64decode(_token(page.text).split(".")[1] + "=="))
    assert set(claims) == {"iss", "jti", "plate", "zone", "zone_name", "nbf", "exp", "iat"}
    assert claims["iss"] == PARKING


def test_cancelled_permit_checks_cancelled(signed_in_erika, parking):
    browser = signed_in_erika
    location = _apply(browser, parking).location
    permit_page = browser.get(location)
    token = _token(permit_page.text)
    answer = browser.submit(parking, f"/permits/{_permit_id(location)}/cancel", permit_page)
    assert answer.status == 303 and answer.location == location
    page = browser.get(location)
    assert 'data-status="cancelled"' in page.text and "wurde zurückgegeben" in page.text
    assert _check(browser, token) == "cancelled"
    assert (
        browser.portals[PARKING].get(f"/permits/{_permit_id(location)}/qr.svg").status_code == 404
    )


def test_after_cancelling_a_new_permit_can_be_issued(signed_in_erika, parking):
    browser = signed_in_erika
    first = _apply(browser, parking).location
    browser.submit(parking, f"/permits/{_permit_id(first)}/cancel", browser.get(first))
    second = _apply(browser, parking, plate="DO-EM 2025")
    assert second.status == 303 and second.location != first
    overview = browser.page(parking, "/")
    assert overview.text.count("/permits/") >= 3  # both listed, the new one linked as current


def test_rejects_second_active_permit(signed_in_erika, parking, portal_rows):
    _apply(signed_in_erika, parking)
    before = portal_rows(parking)
    # The form is gone once a permit is held; a second POST is refused by the database rule.
    answer = signed_in_erika.post(
        f"{PARKING}/permits",
        {"csrf_token": signed_in_erika.page(parking, "/about").csrf_token(), "plate": "DO-XY 1"},
    )
    assert answer.status == 409 and 'data-error="already_holding"' in answer.text
    assert portal_rows(parking) == before


@pytest.mark.parametrize(
    ("typed", "normalised"),
    [
        ("DO-AB 123", "DO-AB 123"),
        ("do ab 123", "DO-AB 123"),
        ("DO-AB123", "DO-AB 123"),
        ("B-A 1", "B-A 1"),
        ("lö-ab 99", "LÖ-AB 99"),
        ("DO–E 42E", "DO-E 42E"),
        ("M-XY 1234", "M-XY 1234"),
        ("HH-A 9H", "HH-A 9H"),
    ],
)
def test_normalises_number_plates(typed, normalised):
    assert service.normalise_plate(typed) == normalised


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "DOAB123",
        "DO-AB",
        "DO-AB 0123",
        "DO-ABC 1",
        "DORT-AB 1",
        "ABC-DE 1234",
        "DO-1 AB",
        "<b>",
    ],
)
def test_rejects_malformed_number_plates(signed_in_erika, parking, portal_rows, typed):
    before = portal_rows(parking)
    answer = _apply(signed_in_erika, parking, plate=typed)
    assert answer.status == 422 and 'id="plate-error"' in answer.text
    assert "<b>" not in answer.text  # what was typed comes back escaped
    assert portal_rows(parking) == before


def _forged_tokens(genuine: str) -> list[str]:
    head, claims, signature = genuine.split(".")
    payload = json.loads(base64.urlsafe_b64decode(claims + "=="))

    def encode(document: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()

    other_key = ECKey.generate_key("P-256", private=True)
    return [
        f"{head}.{encode({**payload, 'plate': 'DO-XX 1'})}.{signature}",
        f"{head}.{encode({**payload, 'exp': payload['exp'] + 10 * 365 * 86400})}.{signature}",
        f"{encode({'alg': 'none', 'typ': 'permit+jwt'})}.{claims}.",
        jwt.encode({"alg": "ES256", "typ": "permit+jwt"}, payload, other_key),
        f"{head}.{claims}.{signature[:-6]}",
        "not-a-token",
        genuine + "x",
    ]


def test_rejects_tampered_permit_tokens(signed_in_erika, parking):
    page = signed_in_erika.get(_apply(signed_in_erika, parking).location)
    genuine = _token(page.text)
    assert _check(signed_in_erika, genuine) == "valid"
    for forged in _forged_tokens(genuine):
        assert _check(signed_in_erika, forged) == "invalid", forged


def test_rejects_token_of_another_portal_instance(signed_in_erika, parking):
    """Signed with the right key but naming another issuer."""
    page = signed_in_erika.get(_apply(signed_in_erika, parking).location)
    claims = json.loads(base64.urlsafe_b64decode(_token(page.text).split(".")[1] + "=="))
    with parking.app_context():
        key = service.signing_key()
    header = {"alg": "ES256", "typ": "permit+jwt", "kid": key.kid}
    forged = jwt.encode(header, {**claims, "iss": "http://localhost:9999"}, key)
    assert _check(signed_in_erika, forged) == "invalid"


def test_expired_permit_checks_expired(parking):
    with parking.app_context():
        from demo_portal.db import db

        start = dt.date.today() - dt.timedelta(days=400)
        permit = Permit(
            number="KV-2020-OLD123",
            holder_sub="someone",
            holder_name="Erika Mustermann",
            address="Kreuzstraße 5, 44139 Dortmund",
            zone_id="KV",
            zone_name="Kreuzviertel",
            plate="DO-EM 1984",
            valid_from=start,
            valid_until=service.one_year_from(start),
        )
        db.session.add(permit)
        db.session.commit()
        token = service.permit_token(permit)
        assert service.check_permit_token(token).result == "expired"


def test_check_page_without_token_shows_the_form(browser, parking):
    browser.open(parking)
    page = browser.page(parking, "/check")
    assert page.status == 200 and 'name="token"' in page.text and "check-result" not in page.text


def test_public_key_is_published_for_offline_checks(signed_in_erika, parking):
    page = signed_in_erika.get(_apply(signed_in_erika, parking).location)
    jwks = signed_in_erika.portals[PARKING].get("/jwks.json").json
    (key,) = jwks["keys"]
    assert "d" not in key and key["alg"] == "ES256"
    decoded = jwt.decode(_token(page.text), ECKey.import_key(key), algorithms=["ES256"])
    assert decoded.claims["plate"] == "DO-EM 1984"


def test_others_cannot_see_or_cancel_a_permit(
    browser, second_browser, parking, erika, max_outside, portal_rows
):
    browser.sign_in(parking, erika.phone)
    permit_id = _permit_id(_apply(browser, parking).location)
    stranger = second_browser
    page = stranger.sign_in(parking, max_outside.phone)
    before = portal_rows(parking)
    assert stranger.page(parking, f"/permits/{permit_id}").status == 404
    assert stranger.page(parking, f"/permits/{permit_id}/qr.svg").status == 404
    answer = stranger.submit(parking, f"/permits/{permit_id}/cancel", page)
    assert answer.status == 404
    assert portal_rows(parking) == before


def test_signed_out_visitor_sees_the_zones(browser, parking):
    browser.open(parking)
    page = browser.page(parking, "/")
    assert "Kreuzviertel" in page.text and "Kreuzstraße" in page.text
    assert 'name="plate"' not in page.text


def test_pages_carry_a_strict_content_security_policy(parking, idp):
    response = parking.test_client().get("/")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert f"form-action 'self' {idp.issuer}" in policy
    assert b"<script" not in response.data and b"style=" not in response.data


def _reference(page_text: str) -> str:
    from demo_portal.page import Page

    element = Page(page_text).by_id("permit-reference")
    assert element is not None, "no reference on the page"
    return element.text.strip()


def _check_by(browser, **query: str) -> str:
    from urllib.parse import urlencode

    from demo_portal.page import Page

    page = browser.get(f"{PARKING}/check?" + urlencode(query))
    assert page.status == 200
    found = Page(page.text).with_attribute("data-result")
    assert found is not None, "no check result"
    return found.attrs["data-result"]


def test_the_qr_code_holds_a_short_signed_reference(signed_in_erika, parking):
    browser = signed_in_erika
    location = _apply(browser, parking).location
    page = browser.get(location)
    reference = _reference(page.text)
    number = re.search(r"KV-\d{4}-[A-Z2-9]{6}", page.text).group(0)
    assert reference.startswith(number + ".") and len(reference) < 40
    assert _check_by(browser, ref=reference) == "valid"
    qr = browser.portals[PARKING].get(f"/permits/{_permit_id(location)}/qr.svg").data
    size = re.search(rb'viewBox="0 0 (\d+) (\d+)"|width="(\d+)"', qr)
    assert size is not None
    modules = int(next(g for g in size.groups() if g)) // 4 - 4  # scale 4, border 2
    assert modules <= 41, f"QR code of {modules} modules: too dense for a windscreen"


def test_a_typed_permit_number_is_looked_up(signed_in_erika, parking):
    browser = signed_in_erika
    location = _apply(browser, parking).location
    page = browser.get(location)
    number = re.search(r"KV-\d{4}-[A-Z2-9]{6}", page.text).group(0)
    assert _check_by(browser, number=number) == "valid"
    assert _check_by(browser, number=" " + number.lower() + " ") == "valid"
    browser.submit(parking, f"/permits/{_permit_id(location)}/cancel", page)
    assert _check_by(browser, number=number) == "cancelled"


def test_an_unknown_permit_number_is_unknown_not_forged(browser, parking):
    browser.open(parking)
    page = browser.get(f"{PARKING}/check?number=KV-2025-NOSUCH")
    assert 'data-result="unknown"' in page.text
    assert "Nicht im Register" in page.text and "gefälscht" not in page.text


def test_expired_permit_number_checks_expired(parking):
    with parking.app_context():
        from demo_portal.db import db

        start = dt.date.today() - dt.timedelta(days=400)
        permit = Permit(
            number="KV-2020-OLD234",
            holder_sub="someone",
            holder_name="Erika Mustermann",
            address="Kreuzstraße 5, 44139 Dortmund",
            zone_id="KV",
            zone_name="Kreuzviertel",
            plate="DO-EM 1984",
            valid_from=start,
            valid_until=service.one_year_from(start),
        )
        db.session.add(permit)
        db.session.commit()
        assert service.check_permit_number("KV-2020-OLD234").result == "expired"
        assert service.check_permit_reference(service.permit_reference(permit)).result == "expired"
