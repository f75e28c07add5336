"""``idserver serve`` plus the command line: a script enrols a citizen and logs in, over HTTP.

This is the production path: gunicorn workers, the JSON-printing ``idserver`` CLI and the
``idserver-phone`` soft phone as separate processes, a relying party speaking plain HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "IDSERVER_ISSUER": f"http://localhost:{port}",
        "IDSERVER_DATABASE_URL": f"sqlite:///{tmp_path}/served.sqlite3",
        "IDSERVER_KEYS_DIR": str(tmp_path / "keys"),
        "IDSERVER_SECRET_KEY": secrets.token_urlsafe(32),
    }
    process = subprocess.Popen(
        [BIN / "idserver", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    issuer = env["IDSERVER_ISSUER"]
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{issuer}/.well-known/openid-configuration", timeout=1).ok:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail("idserver serve did not start")
        time.sleep(0.2)
    yield issuer, env
    process.terminate()
    process.wait(timeout=10)


def _cli(env, *args):
    result = subprocess.run(
        [BIN / args[0], *args[1:]], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_script_enrols_a_citizen_and_logs_in_through_the_served_idp(served, tmp_path):
    issuer, env = served
    citizen = _cli(
        env,
        "idserver",
        "citizen",
        "add",
        "--given-name",
        "Erika",
        "--family-name",
        "Mustermann",
        "--birthdate",
        "1984-08-12",
        "--street",
        "Kampstraße 12",
        "--postcode",
        "44137",
        "--city",
        "Dortmund",
        "--email",
        "erika@example.org",
    )
    letter = _cli(env, "idserver", "activation", "issue", citizen["id"])
    redirect_uri = "http://localhost:8001/callback"
    client = _cli(
        env,
        "idserver",
        "client",
        "add",
        "--name",
        "Bewohnerparkausweis",
        "--redirect-uri",
        redirect_uri,
        "--scope",
        "openid profile address",
    )
    key_file = str(tmp_path / "phone.json")
    enrolled = _cli(
        env,
        "idserver-phone",
        "--key-file",
        key_file,
        "enrol",
        letter["activation_url"],
        "--code",
        letter["code"],
    )
    assert enrolled["revocation_code"]

    # the desktop browser of a relying party's user
    desktop = requests.Session()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    params = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": redirect_uri,
        "scope": "openid profile address",
        "state": "s-1",
        "nonce": "n-1",
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
    }
    start = desktop.get(f"{issuer}/authorize?{urlencode(params)}", allow_redirects=False)
    assert start.status_code == 303
    login_url = start.headers["Location"]
    status = desktop.get(login_url, headers={"Accept": "application/json"}).json()

    approved = _cli(
        env,
        "idserver-phone",
        "--key-file",
        key_file,
        "approve",
        status["phone_url"],
        "--number",
        status["number"],
    )
    assert approved["status"] == "approved"

    waited = desktop.get(
        login_url, params={"seen": status["version"]}, headers={"Accept": "application/json"}
    ).json()
    assert waited["status"] == "approved"
    back = desktop.get(waited["continue_url"], allow_redirects=False)
    query = parse_qs(urlsplit(back.headers["Location"]).query)
    assert query["state"] == ["s-1"] and query["iss"] == [issuer]

    tokens = requests.post(
        f"{issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    ).json()
    jwks = KeySet.import_key_set(requests.get(f"{issuer}/jwks.json", timeout=5).json())
    claims = jwt.decode(tokens["id_token"], jwks, algorithms=["ES256"]).claims
    assert claims["iss"] == issuer and claims["aud"] == client["client_id"]
    assert claims["nonce"] == "n-1"
    assert claims["address"]["locality"] == "Dortmund"
    assert claims["given_name"] == "Erika"
