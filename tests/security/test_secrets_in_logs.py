"""Secrets and personal data in logs (threat X3): everything a resident, a clerk and a relying
party do, logged at DEBUG, and no code, token, secret, name, address or birthdate in the log.

Each test first checks that the log it reads really has the requests in it (an empty log would
hide nothing), then looks for every secret and personal datum the run handled.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import secrets
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pypdf
import pytest
import requests
import zxingcpp
from harness import RP_REDIRECT
from harness import desktop_status
from served import idserver_cli
from served import phone_cli
from served import served_idserver
from served import server_environment
from werkzeug.serving import make_server

from idserver.db import db
from idserver.logs import ACCESS_LOGGER
from idserver.logs import HUSHED_LOGGERS
from idserver.oidc.models import Client

sys.path.insert(0, str(Path(__file__).parents[1] / "admin"))
from clerk_session import CSRF_FIELD  # noqa: E402
from clerk_session import sign_in_clerk  # noqa: E402

GOODBYE = "http://localhost:8001/goodbye"
# Plain ASCII and unusual, so a hit cannot be a coincidence and JSON escapes nothing.
RESIDENT = {
    "given_name": "Zenzi",
    "family_name": "Quellbrunner",
    "birthdate": "1971-03-29",
    "street": "Ulmenweg 77",
    "postcode": "86150",
    "city": "Obergrasmaning",
    "email": "zenzi.q@example.org",
}


@pytest.fixture
def app_config(app_config):
    return {**app_config, "LOG_LEVEL": "DEBUG", "LOG_FORMAT": "json"}


@pytest.fixture
def every_logger_at_debug(caplog) -> Iterator[None]:
    """Root and every logger at DEBUG, but for those ``idserver.logs`` holds above it."""
    caplog.set_level(logging.DEBUG)

    def hushed(name: str) -> bool:
        return any(name == quiet or name.startswith(quiet + ".") for quiet in HUSHED_LOGGERS)

    saved = {}
    for name in list(logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        if not hushed(name):
            saved[name] = logger.level
            logger.setLevel(logging.DEBUG)
    for name, floor in HUSHED_LOGGERS.items():
        assert logging.getLogger(name).getEffectiveLevel() >= floor, name
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def _personal_data() -> list[str]:
    german_birthdate = ".".join(reversed(RESIDENT["birthdate"].split("-")))
    return [*RESIDENT.values(), german_birthdate, f"{RESIDENT['street']}, {RESIDENT['city']}"]


def _secret_forms(secret: str) -> list[str]:
    """A secret as written, without its dashes, and each JWT part of a token on its own."""
    forms = {secret, secret.replace("-", "")}
    if secret.count(".") == 2:  # a JWT: its payload alone carries the personal claims
        forms.update(part for part in secret.split(".") if len(part) > 16)
    return sorted(form for form in forms if form)


def _assert_nothing_leaked(log: str, secret_values: dict[str, str]) -> None:
    for what, secret in secret_values.items():
        for form in _secret_forms(secret):
            assert form not in log, f"the log holds the {what}"
    for datum in _personal_data():
        if datum == RESIDENT["postcode"]:
            assert not re.search(rf"(?<![0-9A-Za-z]){datum}(?![0-9A-Za-z])", log), datum
        else:
            assert datum.lower() not in log.lower(), f"the log holds {datum!r}"


def _letter_link(pdf_bytes: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf_bytes))
    [link] = [
        barcode.text
        for image in reader.pages[0].images
        for barcode in zxingcpp.read_barcodes(image.image)
    ]
    return link


# -- in the application, every logger at DEBUG -----------------------------------------------
def test_logs_carry_no_secrets_or_personal_data(
    app, runner, tmp_path, relying_party, phone, capsys, caplog, every_logger_at_debug
):
    with app.app_context():
        db.session.get(Client, relying_party.client_id).post_logout_redirect_uris = [GOODBYE]
        db.session.commit()
    secret_values = {"client secret": relying_party.client_secret}

    # A clerk signs in, registers the resident, searches for her and prints her letter.
    clerk = sign_in_clerk(app, runner, tmp_path)
    secret_values["clerk's revocation code"] = clerk.phone.revocation_code
    form = {**RESIDENT, "birthdate": "29.03.1971"}
    registered = clerk.post("/admin/residents", form)
    assert registered.status_code == 303, registered.get_data(as_text=True)
    citizen_id = registered.headers["Location"].rsplit("/", 1)[-1]
    found = clerk.browser.get(
        "/admin?" + urlencode({"name": RESIDENT["family_name"], "birthdate": "1971-03-29"})
    )
    assert found.status_code == 200 and citizen_id in found.get_data(as_text=True)
    assert clerk.browser.get(f"/admin/residents/{citizen_id}").status_code == 200
    letter = clerk.post(f"/admin/residents/{citizen_id}/letter")
    assert letter.status_code == 200

    # The resident scans the letter's QR code: the browser asks for the page without the
    # fragment; an older letter's link (code in the query) is answered too.
    link = _letter_link(letter.data)
    page, _, fragment = link.partition("#")
    code = parse_qs(fragment)["code"][0]
    activation_id = urlsplit(page).path.rsplit("/", 1)[-1]
    secret_values["activation code"] = code
    assert phone.client.get(urlsplit(page).path).status_code == 200
    assert phone.client.get(f"/activate/{activation_id}?code={code}").status_code == 303
    wrong = phone.client.post(
        "/api/v1/enrolments", json={"activation_id": activation_id, "code": "ZZZZ-ZZZZ-ZZZZ-ZZZZ"}
    )
    assert wrong.status_code == 400
    assert phone.enrol(activation_id, code).status_code == 201
    secret_values["revocation code"] = phone.revocation_code

    # A relying party logs her in by QR code, redeems the code (twice: the replay is refused),
    # reads userinfo (header and query), and logs her out with the ID token as hint.
    browser = app.test_client()
    login_id = relying_party.start_login(browser)
    status = desktop_status(browser, login_id).json
    secret_values["phone URL's MAC"] = parse_qs(urlsplit(status["phone_url"]).query)["h"][0]
    assert phone.approve(status["phone_url"], status["number"]).status_code == 200
    redirected = browser.get(desktop_status(browser, login_id).json["continue_url"])
    authorization_code = parse_qs(urlsplit(redirected.headers["Location"]).query)["code"][0]
    secret_values["authorization code"] = authorization_code
    tokens = relying_party.exchange(browser, authorization_code)
    assert tokens.status_code == 200, tokens.json
    secret_values["access token"] = tokens.json["access_token"]
    secret_values["ID token"] = tokens.json["id_token"]
    bearer = {"Authorization": f"Bearer {tokens.json['access_token']}"}
    assert browser.get("/userinfo", headers=bearer).json["family_name"] == "Quellbrunner"
    browser.get("/userinfo?" + urlencode({"access_token": tokens.json["access_token"]}))
    assert relying_party.exchange(browser, authorization_code).status_code == 400
    logout = {"id_token_hint": tokens.json["id_token"], "post_logout_redirect_uri": GOODBYE}
    assert browser.get("/logout?" + urlencode({**logout, "state": "bye"})).status_code == 303

    # She reports her phone lost, with the revocation code.
    lost_page = app.test_client()
    token = CSRF_FIELD.search(lost_page.get("/lost").get_data(as_text=True)).group(1)
    lost = lost_page.post("/lost", data={"csrf_token": token, "code": phone.revocation_code})
    assert lost.headers["Location"].endswith("/lost/done")

    stderr = capsys.readouterr().err
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    routes = {line.get("route") for line in lines if line["logger"] == ACCESS_LOGGER}
    assert {
        "/admin/residents",
        "/admin/residents/<citizen_id>/letter",
        "/activate/<activation_id>",
        "/api/v1/enrolments",
        "/token",
        "/userinfo",
        "/logout",
        "/lost",
    } <= routes
    assert any(line["logger"].startswith("idserver.oidc") for line in lines)  # the replay
    assert len(caplog.records) > len(lines) / 2
    everything = stderr + "\n" + caplog.text
    _assert_nothing_leaked(everything, secret_values)


def test_development_server_logs_no_query_strings(app, capsys, caplog):
    """Werkzeug's server (``flask run``, the browser tests) would log each request's full URL."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="urllib3")  # the test's own client logs what it asks
    hint = "eyJhbGciOiJFUzI1NiJ9." + secrets.token_urlsafe(40) + ".c2ln"
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/logout?id_token_hint={hint}"
        assert requests.get(url, timeout=10).status_code == 400
    finally:
        server.shutdown()
        thread.join(timeout=10)
    stderr = capsys.readouterr().err
    assert '"message": "GET /logout 400"' in stderr and '"query": "\\u2026"' in stderr
    assert hint not in stderr and hint not in caplog.text
    assert "id_token_hint" not in stderr + caplog.text


# -- a real ``idserver serve`` ----------------------------------------------------------------
def test_served_logs_carry_no_secrets_or_personal_data(tmp_path):
    """gunicorn and the application write one format, one access line per request."""
    env = server_environment(tmp_path, LOG_LEVEL="DEBUG", LOG_FORMAT="json")
    with served_idserver(env, tmp_path) as served:
        secret_values = _served_flow(served.env, served.issuer, tmp_path)
        log_path = served.log

    log = log_path.read_text()
    not_json = [line for line in log.splitlines() if not line.startswith('{"ts": ')]
    assert not not_json, "one format for every line, but: " + "\n".join(not_json[:5])
    lines = [json.loads(line) for line in log.splitlines()]
    assert any(line["logger"] == "gunicorn.error" for line in lines)
    access = [line for line in lines if line["logger"] == ACCESS_LOGGER]
    routes = [line["route"] for line in access]
    assert routes.count("/logout") == 1 and routes.count("/token") == 1  # one line per request
    assert {"/activate/<activation_id>", "/api/v1/enrolments", "/userinfo"} <= set(routes)
    assert all(re.fullmatch(r"[0-9a-f]{32}", line["request_id"]) for line in access)
    assert not [line for line in lines if line["logger"] == "gunicorn.access"]
    _assert_nothing_leaked(log, secret_values)


def _served_flow(env: dict[str, str], issuer: str, tmp_path: Path) -> dict[str, str]:
    """The resident enrols with the QR link, logs in; the RP redeems, reads, logs out."""
    added = idserver_cli(
        env,
        "citizen",
        "add",
        *(
            arg
            for name, value in RESIDENT.items()
            for arg in (f"--{name.replace('_', '-')}", value)
        ),
    )
    letter = idserver_cli(env, "activation", "issue", added["id"])
    client = idserver_cli(
        env,
        "client",
        "add",
        "--name",
        "Portal",
        "--redirect-uri",
        RP_REDIRECT,
        "--post-logout-redirect-uri",
        GOODBYE,
        "--scope",
        "openid profile address birthdate",
    )
    link = letter["activation_link"]
    assert requests.get(link, timeout=5).status_code == 200  # the fragment stays in the client
    old_style = f"{letter['activation_url']}?code={letter['code']}"
    assert requests.get(old_style, timeout=5, allow_redirects=False).status_code == 303
    key_file = str(tmp_path / "phone.json")
    enrolled = phone_cli(env, "--key-file", key_file, "enrol", link)

    desktop = requests.Session()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    params = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": RP_REDIRECT,
        "scope": "openid profile address birthdate",
        "state": secrets.token_urlsafe(12),
        "nonce": secrets.token_urlsafe(12),
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
    }
    start = desktop.get(f"{issuer}/authorize?{urlencode(params)}", allow_redirects=False)
    login_url = start.headers["Location"]
    status = desktop.get(login_url, headers={"Accept": "application/json"}).json()
    phone_cli(
        env,
        "--key-file",
        key_file,
        "approve",
        status["phone_url"],
        "--number",
        status["number"],
    )
    waited = desktop.get(
        login_url, params={"seen": status["version"]}, headers={"Accept": "application/json"}
    ).json()
    back = desktop.get(waited["continue_url"], allow_redirects=False)
    code = parse_qs(urlsplit(back.headers["Location"]).query)["code"][0]
    tokens = requests.post(
        f"{issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": RP_REDIRECT,
            "code_verifier": verifier,
        },
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    ).json()
    userinfo = requests.get(
        f"{issuer}/userinfo",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=5,
    ).json()
    assert userinfo["family_name"] == RESIDENT["family_name"]
    logout = desktop.get(
        f"{issuer}/logout",
        params={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": GOODBYE},
        allow_redirects=False,
    )
    assert logout.status_code == 303
    return {
        "activation code": letter["code"],
        "revocation code": enrolled["revocation_code"],
        "client secret": client["client_secret"],
        "authorization code": code,
        "access token": tokens["access_token"],
        "ID token": tokens["id_token"],
        "phone URL's MAC": parse_qs(urlsplit(status["phone_url"]).query)["h"][0],
    }
