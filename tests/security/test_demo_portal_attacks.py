"""Attacks on the relying-party side: the demo portals' login callback, ID tokens, sessions, forms.

The portals and a live Bürger-ID are the fixtures of tests/portals.py, as in tests/demo_portal.
Every refusal checks that neither the portal's nor Bürger-ID's database changed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
from harness import changed_tables
from harness import snapshot
from joserfc import jwt
from joserfc.jwk import ECKey
from portals import ERIKA
from portals import PORTAL_URLS
from portals import enrolled_resident
from portals import portal_snapshot

from idserver.keys import key_store

PARKING = PORTAL_URLS["parking"]
JOBS = PORTAL_URLS["jobs"]
STATE_PREFIX = "_state_buergerid_"
CSRF_EXEMPT_ROUTES = {"/backchannel-logout"}  # the signed logout token is the proof


@pytest.fixture
def unchanged(idp) -> Callable[..., Callable[[], None]]:
    """``check = unchanged(portal)`` … ``check()``: neither database changed meanwhile."""

    def start(*portals: Any) -> Callable[[], None]:
        before = [portal_snapshot(p) for p in portals], snapshot(idp.app)

        def check() -> None:
            assert [portal_snapshot(p) for p in portals] == before[0], "a portal changed"
            assert snapshot(idp.app) == before[1], "Bürger-ID's database changed"

        return check

    return start


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    return parts._replace(query=urlencode({**_query(url), **changes})).geturl()


def _signed_in(browser, portal) -> bool:
    return browser.page(portal, "/about").status == 200


# -- the authorization response (OIDC Core §3.1.2.7, RFC 9700 §2.1, §4.5) ---------------------
def test_rejects_a_callback_delivered_to_a_browser_that_started_no_login(
    browser, second_browser, parking, erika, unchanged
):
    """Login CSRF: the attacker's own authorization response, planted in the victim's browser."""
    attackers_callback = browser.authorize(parking, erika.phone)
    second_browser.open(parking)
    check = unchanged(parking)
    answer = second_browser.get(attackers_callback)
    assert answer.status == 400 and 'data-error="login_failed"' in answer.text
    assert not _signed_in(second_browser, parking)
    check()  # the code was not even redeemed


def test_rejects_a_stolen_code_injected_into_the_attackers_own_login(
    browser, second_browser, parking, erika, unchanged
):
    """Code injection: PKCE binds the code to the browser that started its login."""
    victims_callback = browser.authorize(parking, erika.phone)
    second_browser.open(parking)
    started = second_browser.page(parking, "/login")
    assert started.status == 302 and started.location
    attackers_state = _query(started.location)["state"]
    check = unchanged(parking)
    answer = second_browser.get(_with_query(victims_callback, state=attackers_state))
    assert answer.status == 400 and 'data-error="login_failed"' in answer.text
    assert not _signed_in(second_browser, parking)
    check()
    # the victim's own login is unharmed by the attempt
    assert browser.get(victims_callback).status == 303
    assert _signed_in(browser, parking)


def test_rejects_a_replayed_callback(browser, parking, erika, unchanged):
    callback = browser.authorize(parking, erika.phone)
    assert browser.get(callback).status == 303
    check = unchanged(parking)
    answer = browser.get(callback)
    assert answer.status == 400 and 'data-error="login_failed"' in answer.text
    check()


# -- ID token validation (OIDC Core §3.1.3.7), against a hostile token endpoint -----------------
class _TokenEndpoint(BaseHTTPRequestHandler):
    answer: dict[str, Any] = {}

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps(type(self).answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile_token_endpoint() -> Iterator[type[_TokenEndpoint]]:
    """A token endpoint that answers whatever the test puts in ``answer``."""
    handler = type("Hostile", (_TokenEndpoint,), {"answer": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/token"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler
    server.shutdown()
    server.server_close()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(case: str, *, idp, portal, nonce: str) -> str | None:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": idp.issuer,
        "sub": "attacker",
        "aud": portal.config["CLIENT_ID"],
        "exp": now + 300,
        "iat": now,
        "nonce": nonce,
    }
    with idp.app.app_context():
        key = key_store().signing_key()
    header = {"alg": "ES256", "kid": key.kid}
    if case == "no_id_token":
        return None
    if case == "signed_by_another_key":
        return jwt.encode(header, claims, ECKey.generate_key("P-256"))
    if case == "unsigned":
        return _b64(b'{"alg":"none"}') + "." + _b64(json.dumps(claims).encode()) + "."
    if case == "hmac_signed_with_the_public_key":
        secret = json.dumps(key.as_dict(private=False)).encode()
        signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'kid': key.kid}).encode())}." + _b64(
            json.dumps(claims).encode()
        )
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"
    changes: dict[str, dict[str, Any]] = {
        "well_formed": {},
        "from_another_issuer": {"iss": "https://evil.example"},
        "for_another_client": {"aud": "another-portal"},
        "expired": {"exp": now - 600, "iat": now - 1200},
        "with_another_nonce": {"nonce": "not-the-one-we-sent"},
        "without_nonce": {"nonce": None},
    }
    claims.update(changes[case])
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(header, claims, key)


def _answer_with(case: str, hostile, browser, idp, portal, phone) -> str:
    """Log in up to the callback, with the portal redeeming codes at ``hostile``."""
    with portal.app_context():
        client = portal.extensions["demo_portal.oidc"].create_client("buergerid")
        client.load_server_metadata()
        client.server_metadata["token_endpoint"] = hostile.url
    callback = browser.authorize(portal, phone)
    with browser.open(portal).session_transaction() as session:
        state = next(v for k, v in session.items() if k.startswith(STATE_PREFIX))
    id_token = _forge(case, idp=idp, portal=portal, nonce=state["data"]["nonce"])
    hostile.answer = {"access_token": "forged", "token_type": "Bearer", "expires_in": 60}
    if id_token is not None:
        hostile.answer["id_token"] = id_token
    return callback


FORGED_ID_TOKENS = [
    "no_id_token",
    "signed_by_another_key",
    "unsigned",
    "hmac_signed_with_the_public_key",
    "from_another_issuer",
    "for_another_client",
    "expired",
    "with_another_nonce",
    "without_nonce",
]


@pytest.mark.parametrize("case", FORGED_ID_TOKENS)
def test_rejects_forged_id_tokens(
    case, browser, idp, parking, erika, hostile_token_endpoint, unchanged
):
    callback = _answer_with(case, hostile_token_endpoint, browser, idp, parking, erika.phone)
    check = unchanged(parking)
    answer = browser.get(callback)
    assert answer.status == 400 and 'data-error="login_failed"' in answer.text, answer.text
    assert not _signed_in(browser, parking)
    check()


def test_the_hostile_token_endpoint_is_believed_when_its_id_token_is_well_formed(
    browser, idp, parking, erika, hostile_token_endpoint
):
    """The control for the test above: only the forged detail makes the difference."""
    callback = _answer_with(
        "well_formed", hostile_token_endpoint, browser, idp, parking, erika.phone
    )
    assert browser.get(callback).status == 303
    assert _signed_in(browser, parking)


# -- the portal's session ------------------------------------------------------------------------
def _cookie(browser, portal) -> str:
    client = browser.open(portal)
    cookie = client.get_cookie(portal.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    return cookie.value


def _plant(browser, portal, value: str) -> None:
    browser.open(portal).set_cookie(portal.config["SESSION_COOKIE_NAME"], value)


def test_rejects_a_session_cookie_planted_before_login(
    browser, second_browser, idp, parking, erika, unchanged
):
    """Session fixation: a cookie from before the login stays anonymous after the login."""
    callback = browser.authorize(parking, erika.phone)
    planted = _cookie(browser, parking)  # the pre-login session, holding the login's state
    assert browser.get(callback).status == 303
    assert _cookie(browser, parking) != planted and _signed_in(browser, parking)
    _plant(second_browser, parking, planted)
    check = unchanged(parking)
    assert second_browser.page(parking, "/about").status == 303
    check()
    # Nor can the copy finish that login again. Its cookie still holds the state, so the portal
    # does send the code once more: Bürger-ID refuses the reused code and revokes the tokens
    # bought with it (RFC 9700 §4.5) - its only change; the portal's database stays as it was.
    before = portal_snapshot(parking), snapshot(idp.app)
    assert second_browser.get(callback).status == 400
    assert not _signed_in(second_browser, parking)
    assert portal_snapshot(parking) == before[0]
    assert changed_tables(before[1], snapshot(idp.app)) == {"tokens"}


def test_rejects_a_copied_session_cookie_after_logout(
    browser, second_browser, parking, erika, unchanged
):
    page = browser.sign_in(parking, erika.phone)
    copied = _cookie(browser, parking)
    browser.submit(parking, "/logout", page)
    assert not _signed_in(browser, parking)
    _plant(second_browser, parking, copied)
    check = unchanged(parking)
    answer = second_browser.page(parking, "/about")
    assert answer.status == 303  # sent to log in: the session ended with the logout
    check()


# -- forged forms, and another resident's permit or application (IDOR) ---------------------------
def _forms(portal) -> list[tuple[str, str]]:
    """Every state-changing route, from the URL map, so a new form cannot be forgotten."""
    return sorted(
        (method, rule.rule)
        for rule in portal.url_map.iter_rules()
        for method in rule.methods & {"POST", "PUT", "PATCH", "DELETE"}
    )


def _query_position(portal) -> str:
    from demo_portal.jobs.service import open_positions

    with portal.app_context():
        return open_positions()[0].id


def _permit(browser, portal) -> str:
    page = browser.page(portal, "/")
    issued = browser.submit(portal, "/permits", page, plate="DO-EM 1984")
    assert issued.status == 303 and issued.location, issued.text
    return issued.location.rsplit("/", 1)[-1]


def _application(browser, portal) -> str:
    position = _query_position(portal)
    page = browser.page(portal, f"/positions/{position}")
    sent = browser.submit(
        portal, f"/positions/{position}/apply", page, cover_letter="Ich bewerbe mich. " * 10
    )
    assert sent.status == 303 and sent.location, sent.text
    return sent.location.rsplit("/", 1)[-1]


@pytest.mark.parametrize("kind", ["parking", "jobs"])
@pytest.mark.parametrize("token", [None, "forged"])
def test_rejects_forged_forms_on_every_portal_form(request, kind, token, browser, erika, unchanged):
    portal = request.getfixturevalue(kind)
    browser.sign_in(portal, erika.phone)
    ids = {"<permit_id>": _permit(browser, portal)} if kind == "parking" else {}
    if kind == "jobs":
        ids["<application_id>"] = _application(browser, portal)
        ids["<position_id>"] = _query_position(portal)
    forms = _forms(portal)
    assert ("POST", "/logout") in forms and len(forms) >= 3
    for method, rule in forms:
        path = rule
        for placeholder, value in ids.items():
            path = path.replace(placeholder, value)
        check = unchanged(portal)
        data = {} if token is None else {"csrf_token": token}
        answer = browser.request(method, portal.config["BASE_URL"] + path, data=data)
        if rule in CSRF_EXEMPT_ROUTES:
            # Server to server, without cookies: no logout token, no change (RP14).
            assert answer.status == 400 and '"invalid_request"' in answer.text, rule
        else:
            assert answer.status == 400 and 'data-error="csrf_rejected"' in answer.text, rule
        check()
    assert _signed_in(browser, portal)


def test_only_the_back_channel_logout_is_exempt_from_csrf(parking):
    from demo_portal.csrf import EXEMPT_ENDPOINTS

    assert set(EXEMPT_ENDPOINTS) == {"backchannel.logout"}
    exempt = {
        rule.rule for rule in parking.url_map.iter_rules() if rule.endpoint in EXEMPT_ENDPOINTS
    }
    assert exempt == CSRF_EXEMPT_ROUTES


def test_rejects_cancelling_another_residents_permit(
    browser, second_browser, parking, erika, idp, tmp_path, unchanged
):
    browser.sign_in(parking, erika.phone)
    permit_id = _permit(browser, parking)
    other = enrolled_resident(idp, tmp_path, {**ERIKA, "given_name": "Eva"})
    page = second_browser.sign_in(parking, other.phone)
    check = unchanged(parking)
    for path in (f"/permits/{permit_id}", f"/permits/{permit_id}/qr.svg"):
        assert second_browser.page(parking, path).status == 404
    cancel = second_browser.submit(parking, f"/permits/{permit_id}/cancel", page)
    assert cancel.status == 404
    check()


def test_rejects_withdrawing_another_residents_application(
    browser, second_browser, jobs, erika, idp, tmp_path, unchanged
):
    browser.sign_in(jobs, erika.phone)
    application_id = _application(browser, jobs)
    other = enrolled_resident(idp, tmp_path, {**ERIKA, "given_name": "Eva"})
    page = second_browser.sign_in(jobs, other.phone)
    check = unchanged(jobs)
    assert second_browser.page(jobs, f"/applications/{application_id}").status == 404
    withdraw = second_browser.submit(jobs, f"/applications/{application_id}/withdraw", page)
    assert withdraw.status == 404
    check()


# -- the windscreen QR code: a short signed reference (RP11) ------------------------------------
def test_rejects_a_forged_short_permit_reference(browser, parking, erika, unchanged):
    """A reference with a guessed, altered or borrowed tag is refused as invalid, not looked up."""
    from demo_portal.page import Page

    browser.sign_in(parking, erika.phone)
    issued = browser.submit(parking, "/permits", browser.page(parking, "/"), plate="DO-EM 1984")
    page = browser.get(issued.location)
    element = Page(page.text).by_id("permit-reference")
    assert element is not None
    genuine = element.text.strip()
    number, tag = genuine.rsplit(".", 1)
    other = number[:-1] + ("A" if number[-1] != "A" else "B")
    forged = [
        f"{number}.{tag[:-1]}{'A' if tag[-1] != 'A' else 'B'}",  # one character of the tag
        f"{other}.{tag}",  # the genuine tag on another number
        f"{number}.",
        number,  # the number alone, passed off as a scanned code
        f"{number}.{tag}{tag}",
        f"{number}.{'A' * 64}",
    ]
    check = unchanged(parking)
    for reference in forged:
        answer = browser.get(f"{PARKING}/check?" + urlencode({"ref": reference}))
        assert answer.status == 200 and 'data-result="invalid"' in answer.text, reference
    check()
    assert 'data-result="valid"' in browser.get(f"{PARKING}/check?ref={genuine}").text
