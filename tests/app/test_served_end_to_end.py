"""``idserver serve`` plus the command line: a script enrols a citizen and logs in, over HTTP.

This is the production path: gunicorn (or granian, ``--server granian``) workers, the
JSON-printing ``idserver`` CLI and the ``idserver-phone`` soft phone as separate processes, a
relying party speaking plain HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet
from served import idserver_cli
from served import phone_cli
from served import served_idserver
from served import server_environment

SERVERS = ("gunicorn", "granian")


@pytest.fixture(params=SERVERS)
def served(request, tmp_path):
    # a blank every second, so that a held long poll shows its keep-alive within a test
    env = server_environment(tmp_path, LONG_POLL_KEEPALIVE_SECONDS="1")
    options = ("--server", request.param)
    with served_idserver(env, tmp_path, workers=2, options=options) as server:
        yield server.issuer, server.env


def test_script_enrols_a_citizen_and_logs_in_through_the_served_idp(served, tmp_path):
    issuer, env = served
    citizen = idserver_cli(
        env,
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
    letter = idserver_cli(env, "activation", "issue", citizen["id"])
    redirect_uri = "http://localhost:8001/callback"
    client = idserver_cli(
        env,
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
    enrolled = phone_cli(
        env,
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

    # The desktop waits for news: its request is held, with a keep-alive blank every second
    # (streamed at once, so that a proxy sees the request is alive) until the phone approves.
    held = desktop.get(
        login_url,
        params={"seen": status["version"]},
        headers={"Accept": "application/json"},
        stream=True,
        timeout=30,
    )
    body = held.iter_content(chunk_size=1)
    assert next(body) == b" "
    approved = phone_cli(
        env,
        "--key-file",
        key_file,
        "approve",
        status["phone_url"],
        "--number",
        status["number"],
    )
    assert approved["status"] == "approved"

    waited = json.loads(b"".join(body))  # the first news: scanned (or already approved)
    while waited["status"] == "scanned":  # as desktop-login.js: ask again after news
        waited = desktop.get(
            login_url, params={"seen": waited["version"]}, headers={"Accept": "application/json"}
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


def test_served_idp_opens_no_control_socket(tmp_path):
    """gunicorn's control socket sits at one path per user, shared by every instance: off."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**server_environment(tmp_path), "HOME": str(home)}
    env.pop("XDG_RUNTIME_DIR", None)
    with served_idserver(env, tmp_path) as server:
        assert server.answers("/readyz")
        assert not (home / ".gunicorn").exists()
