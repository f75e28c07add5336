"""The reference soft phone over HTTP: enrolment, approval, denial, and what it refuses to sign."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from harness import RelyingParty
from harness import changed_tables
from harness import desktop_status
from sqlalchemy import select
from werkzeug.serving import make_server

from idserver import create_app
from idserver.admin.letter import activation_link
from idserver.citizens.service import activation_url
from idserver.citizens.service import issue_activation_code
from idserver.citizens.service import register_citizen
from idserver.crosslogin import qr
from idserver.crosslogin.models import LoginTransaction
from idserver.crosslogin.service import qr_key
from idserver.db import db
from idserver.oidc.clients import register_client
from idserver.passkeys.models import Credential
from idserver.phone.cli import main as phone_cli
from idserver.phone.client import FlaskTransport
from idserver.phone.client import PhoneClient
from idserver.phone.client import PhoneError
from idserver.phone.client import expected_approval_challenge


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def letter(app, citizen) -> tuple[str, str]:
    """(activation URL, code) as printed on the citizen's letter."""
    with app.app_context():
        record, code = issue_activation_code(citizen.id)
        return activation_url(record), code


@pytest.fixture
def transport(app) -> FlaskTransport:
    return FlaskTransport(app.test_client())


@pytest.fixture
def soft_phone(tmp_path, transport) -> PhoneClient:
    return PhoneClient(None, tmp_path / "phone" / "phone.json", session=transport)


@pytest.fixture
def enrolled(soft_phone, letter) -> PhoneClient:
    soft_phone.enrol(*letter, name="Erikas Telefon")
    return soft_phone


def _start_login(client, relying_party: RelyingParty) -> tuple[str, dict[str, Any]]:
    login_id = relying_party.start_login(client)
    return login_id, desktop_status(client, login_id).json


def _other_number(number: str) -> str:
    return "11" if number != "11" else "12"


def _state(app, login_id: str) -> str:
    with app.app_context():
        return db.session.get(LoginTransaction, login_id).state


# -- enrolment ------------------------------------------------------------------------------
def test_enrol_returns_revocation_code_and_keeps_key_private(app, soft_phone, letter):
    result = soft_phone.enrol(*letter, name="Erikas Telefon")

    assert result["revocation_code"]
    assert result["device"]["name"] == "Erikas Telefon"
    assert result["device"]["kind"] == "passkey"
    assert stat.S_IMODE(os.stat(soft_phone.key_file).st_mode) == 0o600
    [held] = soft_phone.credentials()
    assert held["rp_id"] == "localhost" and held["sign_count"] == 0
    assert "private_key" not in held
    with app.app_context():
        stored = db.session.scalars(select(Credential)).one()
        assert _b64(stored.credential_id) == held["credential_id"]
        assert stored.origin == "http://localhost"


def test_enrol_with_the_letters_qr_link_alone(soft_phone, letter):
    """The QR code's link carries the code in its fragment; the phone needs nothing else."""
    url, code = letter
    result = soft_phone.enrol(activation_link(url, code), name="Erikas Telefon")
    assert result["revocation_code"] and len(soft_phone.credentials()) == 1


def test_rejects_an_activation_url_without_a_code(soft_phone, letter, app, db_state):
    url, _code = letter
    before = db_state()
    with pytest.raises(PhoneError) as refused:
        soft_phone.enrol(url)
    assert refused.value.error == "invalid_url"
    assert soft_phone.credentials() == []
    assert db_state() == before


def test_rejects_wrong_activation_code_and_keeps_no_key(soft_phone, letter):
    url, code = letter
    with pytest.raises(PhoneError) as refused:
        soft_phone.enrol(url, "AAAA-BBBB-CCCC-DDDD" if code != "AAAA-BBBB-CCCC-DDDD" else "X")

    assert refused.value.error == "invalid_activation_code"
    assert refused.value.status == 400
    assert soft_phone.credentials() == []


def test_refuses_enrolment_options_for_a_foreign_rp_id(app, soft_phone, letter, transport):
    class ForeignRp:
        def post(self, url, *, json=None, headers=None):
            response = transport.post(url, json=json, headers=headers)
            body = response.json()
            if url.endswith("/api/v1/enrolments"):
                body["options"]["rp"]["id"] = "evil.example"
            return _Tampered(response.status_code, body)

        def get(self, url, *, headers=None):
            return transport.get(url, headers=headers)

    soft_phone.transport = ForeignRp()
    with pytest.raises(PhoneError) as refused:
        soft_phone.enrol(*letter)

    assert refused.value.error == "rp_id_mismatch"
    assert soft_phone.credentials() == []


def test_rejects_url_of_another_server_when_pinned(tmp_path, transport, letter):
    pinned = PhoneClient("https://id.buerger.example", tmp_path / "p.json", session=transport)
    with pytest.raises(PhoneError) as refused:
        pinned.enrol(*letter)
    assert refused.value.error == "wrong_server"


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/activate/",
        "http://localhost/something/else",
        "ftp://localhost/activate/abc",
        "not a url",
    ],
)
def test_rejects_malformed_activation_url(soft_phone, url):
    with pytest.raises(PhoneError) as refused:
        soft_phone.enrol(url, "ABCD-EFGH-JKMN-PQRS")
    assert refused.value.error == "invalid_url"


# -- logins ---------------------------------------------------------------------------------
def test_approve_completes_the_login(app, client, relying_party, enrolled):
    login_id, status = _start_login(client, relying_party)

    result = enrolled.approve(status["phone_url"], status["number"])

    assert result == {"status": "approved"}
    desktop = desktop_status(client, login_id).json
    assert desktop["status"] == "approved"
    assert desktop["continue_url"] == f"http://localhost/login/{login_id}/continue"
    assert enrolled.credentials()[0]["sign_count"] == 1
    redirected = client.get(desktop["continue_url"])
    assert redirected.status_code == 303
    assert redirected.headers["Location"].startswith(relying_party.redirect_uri + "?code=")


def test_scan_shows_who_asks_for_what(client, relying_party, enrolled):
    login_id, status = _start_login(client, relying_party)

    view = enrolled.scan(status["phone_url"])

    assert view.login_id == login_id
    assert view.server == "http://localhost"
    assert view.status == "scanned"
    assert view.context["client_name"] == "Bewohnerparkausweis"
    assert view.context["client_id"] == relying_party.client_id
    assert "number" not in view.context
    assert enrolled.status(view)["context"] == view.context
    assert stat.S_IMODE(os.stat(enrolled.bindings_file).st_mode) == 0o600


def test_approve_after_show_works_with_the_stale_qr_url(app, client, relying_party, enrolled):
    login_id, status = _start_login(client, relying_party)
    enrolled.scan(status["phone_url"])
    with app.app_context():
        tx = db.session.get(LoginTransaction, login_id)
        step = qr.current_step(app.config["QR_STEP_SECONDS"]) - 100
        stale_url = qr.frame_url("http://localhost", login_id, qr_key(tx), step)

    assert enrolled.approve(stale_url, status["number"]) == {"status": "approved"}
    assert _state(app, login_id) == "approved"


def test_rejects_stale_qr_url_on_a_phone_without_the_binding(app, client, relying_party, enrolled):
    login_id, _ = _start_login(client, relying_party)
    with app.app_context():
        tx = db.session.get(LoginTransaction, login_id)
        step = qr.current_step(app.config["QR_STEP_SECONDS"]) - 100
        stale_url = qr.frame_url("http://localhost", login_id, qr_key(tx), step)

    with pytest.raises(PhoneError) as refused:
        enrolled.scan(stale_url)
    assert refused.value.error == "qr_stale"
    assert _state(app, login_id) == "pending"


def test_deny_ends_the_login(app, client, relying_party, enrolled):
    login_id, status = _start_login(client, relying_party)

    assert enrolled.deny(status["phone_url"]) == {"status": "denied"}

    desktop = desktop_status(client, login_id).json
    assert desktop["status"] == "denied" and desktop["reason"] == "denied"
    assert enrolled.credentials()[0]["sign_count"] == 0


def test_stops_before_signing_a_login_from_another_network(
    app, client, relying_party, enrolled, transport
):
    # RFC 10027 QR relay: the computer is not where the phone is (127.0.0.1 vs. this).
    transport.test_client.environ_base["REMOTE_ADDR"] = "198.51.100.23"
    login_id, status = _start_login(client, relying_party)

    view = enrolled.scan(status["phone_url"])
    assert view.same_network is False
    assert [w["code"] for w in view.warnings] == ["other_network"]
    with pytest.raises(PhoneError) as refused:
        enrolled.approve(status["phone_url"], status["number"])

    assert refused.value.error == "other_network" and refused.value.status is None
    assert refused.value.description == view.warnings[0]["message"]
    assert _state(app, login_id) == "scanned"
    assert enrolled.credentials()[0]["sign_count"] == 0
    approved = enrolled.approve(status["phone_url"], status["number"], accept_other_network=True)
    assert approved == {"status": "approved"}


def test_rejects_wrong_number_and_cancels_the_login(app, client, relying_party, enrolled):
    login_id, status = _start_login(client, relying_party)

    with pytest.raises(PhoneError) as refused:
        enrolled.approve(status["phone_url"], _other_number(status["number"]))

    assert refused.value.error == "wrong_number"
    assert refused.value.status == 400
    assert enrolled.credentials()[0]["sign_count"] == 0
    desktop = desktop_status(client, login_id).json
    assert desktop["status"] == "denied" and desktop["reason"] == "wrong_number"


class _Tampered:
    """A response whose JSON body a hostile or broken server has changed."""

    def __init__(self, status_code: int, body: Any) -> None:
        self.status_code = status_code
        self.body = body

    def json(self) -> Any:
        return self.body


class _ChallengeTamperer:
    """Passes requests to the real app, but rewrites the answer to ``/challenge``."""

    def __init__(self, transport: FlaskTransport, tamper) -> None:
        self.transport = transport
        self.tamper = tamper
        self.urls: list[str] = []

    def post(self, url, *, json=None, headers=None):
        self.urls.append(url)
        response = self.transport.post(url, json=json, headers=headers)
        if not url.endswith("/challenge"):
            return response
        return _Tampered(response.status_code, self.tamper(response.json(), json["number"]))

    def get(self, url, *, headers=None):
        return self.transport.get(url, headers=headers)


def _other_challenge(issued: dict[str, Any], number: str) -> dict[str, Any]:
    issued["options"]["challenge"] = _b64(secrets.token_bytes(32))
    return issued


def _other_nonce(issued: dict[str, Any], number: str) -> dict[str, Any]:
    issued["challenge_inputs"]["nonce"] = _b64(secrets.token_bytes(32))
    return issued


def _other_context(issued: dict[str, Any], number: str) -> dict[str, Any]:
    """A consistent lie: a different client name, with the challenge recomputed to match."""
    inputs = issued["challenge_inputs"]
    inputs["context"] = {**inputs["context"], "client_name": "Steuerportal"}
    nonce = base64.urlsafe_b64decode(inputs["nonce"] + "==")
    issued["options"]["challenge"] = _b64(
        expected_approval_challenge(nonce, inputs["context"], number)
    )
    return issued


def _other_number_in_challenge(issued: dict[str, Any], number: str) -> dict[str, Any]:
    inputs = issued["challenge_inputs"]
    nonce = base64.urlsafe_b64decode(inputs["nonce"] + "==")
    issued["options"]["challenge"] = _b64(
        expected_approval_challenge(nonce, inputs["context"], _other_number(number))
    )
    return issued


def _foreign_rp_id(issued: dict[str, Any], number: str) -> dict[str, Any]:
    issued["options"]["rpId"] = "evil.example"
    return issued


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        (_other_challenge, "challenge_mismatch"),
        (_other_nonce, "challenge_mismatch"),
        (_other_number_in_challenge, "challenge_mismatch"),
        (_other_context, "context_mismatch"),
        (_foreign_rp_id, "rp_id_mismatch"),
    ],
)
def test_refuses_to_sign_a_tampered_challenge(
    app, client, relying_party, enrolled, transport, db_state, tamper, error
):
    login_id, status = _start_login(client, relying_party)
    tamperer = _ChallengeTamperer(transport, tamper)
    enrolled.transport = tamperer
    before = db_state()

    with pytest.raises(PhoneError) as refused:
        enrolled.approve(status["phone_url"], status["number"])

    assert refused.value.error == error
    assert refused.value.status is None
    assert not any(url.endswith("/approve") for url in tamperer.urls)
    assert enrolled.credentials()[0]["sign_count"] == 0
    assert _state(app, login_id) == "scanned"
    # only the scan and the issued nonce were written
    assert changed_tables(before, db_state()) <= {"login_transactions"}


def test_flask_transport_maps_urls_to_paths(transport):
    login_url = "http://localhost/api/v1/logins/" + "a" * 32
    read = transport.get(login_url + "?ignored=1", headers={"X-Login-Binding": "x"})
    assert read.status_code == 404
    assert read.json()["error"] == "login_not_found"
    denied = transport.post(login_url + "/deny", json={"binding": "x"})
    assert (denied.status_code, denied.json()["error"]) == (404, "login_not_found")


# -- the command line, against a live server ------------------------------------------------
@pytest.fixture
def live_server(tmp_path) -> Iterator[tuple[Any, str]]:
    """The real app served over HTTP on 127.0.0.1, with issuer ``http://localhost:<port>``."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    issuer = f"http://localhost:{port}"
    app = create_app(
        {
            "ISSUER": issuer,
            "DATABASE_URL": f"sqlite:///{tmp_path}/live.sqlite3",
            "KEYS_DIR": str(tmp_path / "live-keys"),
            "SECRET_KEY": "live-secret-" + "x" * 32,
        }
    )
    with app.app_context():
        db.create_all()
    server = make_server("127.0.0.1", port, app, fd=listener.fileno())
    listener.close()  # the server holds its own duplicate of the socket
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, issuer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        with app.app_context():
            db.engine.dispose()


def _pkce() -> dict[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = _b64(hashlib.sha256(verifier.encode()).digest())
    return {"code_challenge": challenge, "code_challenge_method": "S256"}


def _live_login(app, issuer: str) -> tuple[Any, str, dict[str, Any]]:
    """Start a login as a desktop browser would; returns (browser, login id, status JSON)."""
    with app.app_context():
        registered, _ = register_client(
            name="Portal", redirect_uris=["http://localhost:8001/cb"], scope="openid profile"
        )
    browser = app.test_client()
    query = {
        "response_type": "code",
        "client_id": registered.client_id,
        "redirect_uri": "http://localhost:8001/cb",
        "scope": "openid profile",
        "state": "s",
        "nonce": "n",
        **_pkce(),
    }
    started = browser.get("/authorize?" + urlencode(query), base_url=issuer)
    assert started.status_code == 303, started.get_data(as_text=True)
    login_id = started.headers["Location"].rsplit("/", 1)[-1]
    status = browser.get(
        f"/login/{login_id}", base_url=issuer, headers={"Accept": "application/json"}
    )
    return browser, login_id, status.json


def _invoke(key_file, *args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(phone_cli, ["--key-file", str(key_file), *args])
    return result.exit_code, json.loads(result.stdout)


def _letter(app: Any) -> tuple[str, str]:
    """A new resident's activation link and code, as the citizens' office would mail them."""
    with app.app_context():
        citizen = register_citizen(
            given_name="Max",
            family_name="Mustermann",
            birthdate="1980-01-02",
            street="Hauptstraße 1",
            postcode="10115",
            city="Berlin",
            email="max@example.org",
        )
        record, code = issue_activation_code(citizen.id)
        return activation_url(record), code


def test_cli_enrols_shows_and_approves(live_server, tmp_path):
    app, issuer = live_server
    key_file = tmp_path / "cli" / "phone.json"
    url, code = _letter(app)
    assert url.startswith(f"{issuer}/activate/")

    exit_code, enrolled = _invoke(key_file, "enrol", url, "--code", code, "--name", "CLI")
    assert exit_code == 0, enrolled
    assert enrolled["device"]["name"] == "CLI" and enrolled["revocation_code"]
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600

    exit_code, info = _invoke(key_file, "info")
    assert exit_code == 0
    [held] = info["credentials"]
    assert held == {"credential_id": held["credential_id"], "rp_id": "localhost", "sign_count": 0}
    assert "PRIVATE KEY" not in json.dumps(info)

    browser, login_id, status = _live_login(app, issuer)
    exit_code, shown = _invoke(key_file, "show", status["phone_url"])
    assert exit_code == 0, shown
    assert shown["status"] == "scanned" and shown["context"]["client_name"] == "Portal"

    exit_code, approved = _invoke(
        key_file, "approve", status["phone_url"], "--number", status["number"]
    )
    assert (exit_code, approved) == (0, {"status": "approved"})
    desktop = browser.get(
        f"/login/{login_id}", base_url=issuer, headers={"Accept": "application/json"}
    ).json
    assert desktop["status"] == "approved"
    assert desktop["continue_url"] == f"{issuer}/login/{login_id}/continue"

    exit_code, info = _invoke(key_file, "info")
    assert info["credentials"][0]["sign_count"] == 1


def test_cli_denies_and_reports_refusals_as_json(live_server, tmp_path):
    app, issuer = live_server
    key_file = tmp_path / "cli" / "phone.json"
    url, code = _letter(app)

    exit_code, refused = _invoke(key_file, "enrol", url, "--code", "WRON-GCOD-EWRO-NGXX")
    assert exit_code == 1
    assert refused["error"] == "invalid_activation_code" and refused["status"] == 400
    assert _invoke(key_file, "enrol", url, "--code", code)[0] == 0

    browser, login_id, status = _live_login(app, issuer)
    assert _invoke(key_file, "deny", status["phone_url"]) == (0, {"status": "denied"})
    exit_code, refused = _invoke(key_file, "approve", status["phone_url"], "--number", "42")
    assert exit_code == 1
    assert refused["error"] in ("login_ended", "qr_stale")

    browser, login_id, status = _live_login(app, issuer)
    wrong = _other_number(status["number"])
    exit_code, refused = _invoke(key_file, "approve", status["phone_url"], "--number", wrong)
    assert (exit_code, refused["error"]) == (1, "wrong_number")
    desktop = browser.get(
        f"/login/{login_id}", base_url=issuer, headers={"Accept": "application/json"}
    ).json
    assert desktop["status"] == "denied"


def test_python_dash_m_runs_the_cli(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "idserver.phone", "--key-file", str(tmp_path / "k.json"), "info"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == {"key_file": str(tmp_path / "k.json"), "credentials": []}
