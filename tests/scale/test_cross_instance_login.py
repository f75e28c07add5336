"""Two Bürger-ID instances behind one load balancer: a login may touch both.

Instances A and B share the database and the keys folder, nothing else. The desktop talks to
A; the phone's requests and the relying party's token exchange land on B. A's long poll must
learn of the approval made on B through the shared notification (PostgreSQL LISTEN/NOTIFY,
Redis pub/sub, or the SQLite watcher when both share one SQLite file).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
import requests
from harness import ERIKA
from harness import RP_REDIRECT
from harness import Phone
from joserfc import jwt
from joserfc.jwk import KeySet
from scale_instances import NEEDS_PG
from scale_instances import NEEDS_REDIS
from scale_instances import REDIS_URL
from scale_instances import instance_config
from scale_instances import new_instance
from scale_instances import served
from scale_instances import shared_database

from idserver.citizens.service import issue_activation_code
from idserver.citizens.service import register_citizen
from idserver.db import db
from idserver.oidc.clients import register_client
from idserver.phone.authenticator import SoftAuthenticator

JSON = {"Accept": "application/json"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@pytest.mark.parametrize(
    "kind,notifications",
    [
        pytest.param("postgresql", "database", marks=NEEDS_PG, id="postgresql-listen-notify"),
        pytest.param("postgresql", "redis", marks=NEEDS_REDIS, id="postgresql-redis"),
        pytest.param("sqlite", "database", id="sqlite-watcher"),
    ],
)
def test_login_spans_two_instances(kind: str, notifications: str, tmp_path: Any) -> None:
    with shared_database(kind, tmp_path) as database_url:
        extra: dict[str, Any] = {"LONG_POLL_SECONDS": 60}
        if notifications == "redis":
            extra["REDIS_URL"] = REDIS_URL
        config = instance_config(database_url, tmp_path, **extra)
        instance_a, instance_b = new_instance(config), new_instance(config)
        with instance_a.app_context():
            db.create_all()
            citizen = register_citizen(**ERIKA)
            activation, code = issue_activation_code(citizen.id)
            activation_id = activation.id
            client, client_secret = register_client(
                name="Bewohnerparkausweis", redirect_uris=[RP_REDIRECT], scope="openid profile"
            )
            client_id = client.client_id
        phone = Phone(instance_a.test_client(), SoftAuthenticator())
        assert phone.enrol(activation_id, code).status_code == 201
        try:
            with served(instance_a) as at_a, served(instance_b) as at_b:
                _log_in_across(at_a, at_b, phone, client_id, client_secret)
        finally:
            for instance in (instance_a, instance_b):
                with instance.app_context():
                    db.engine.dispose()


def _log_in_across(
    at_a: str, at_b: str, phone: Phone, client_id: str, client_secret: str | None
) -> None:
    desktop = requests.Session()  # the browser: only ever talks to instance A
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(12)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": RP_REDIRECT,
        "scope": "openid profile",
        "state": "s-1",
        "nonce": nonce,
        "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
    }
    started = desktop.get(f"{at_a}/authorize?{urlencode(params)}", allow_redirects=False)
    assert started.status_code == 303, started.text
    login_path = _path(started.headers["Location"])
    status = desktop.get(at_a + login_path, headers=JSON, timeout=10).json()

    # The phone (instance B) scans and asks for its challenge.
    frame = urlsplit(status["phone_url"])
    query = parse_qs(frame.query)
    api = f"{at_b}/api/v1/logins/{status['login_id']}"
    scanned = requests.post(
        f"{api}/scan", json={"t": query["t"][0], "h": query["h"][0]}, timeout=10
    )
    assert scanned.status_code == 200, scanned.text
    binding = scanned.json()["binding"]
    issued = requests.post(
        f"{api}/challenge", json={"binding": binding, "number": status["number"]}, timeout=10
    )
    assert issued.status_code == 200, issued.text

    # The desktop (instance A) now waits for news from version `seen` on.
    seen = desktop.get(at_a + login_path, headers=JSON, timeout=10).json()["version"]
    waited: dict[str, Any] = {}
    poll = threading.Thread(
        target=lambda: waited.update(
            desktop.get(f"{at_a}{login_path}?seen={seen}", headers=JSON, timeout=90).json()
        )
    )
    poll.start()
    credential = phone.authenticator.get_assertion(issued.json()["options"], origin=phone.origin)
    approved = requests.post(
        f"{api}/approve",
        json={"binding": binding, "number": status["number"], "credential": credential},
        timeout=10,
    )
    assert approved.status_code == 200, approved.text
    # The long poll is held for 60 s; it answers well before that only if B's approval
    # reached A through the shared notification.
    poll.join(timeout=20)
    assert not poll.is_alive(), "instance A never heard of the approval made on instance B"
    assert waited["status"] == "approved"

    back = desktop.get(at_a + _path(waited["continue_url"]), allow_redirects=False, timeout=10)
    assert back.status_code == 303, back.text
    answer = parse_qs(urlsplit(back.headers["Location"]).query)
    assert answer["state"] == ["s-1"]

    # The relying party's back end reaches instance B.
    tokens = requests.post(
        f"{at_b}/token",
        data={
            "grant_type": "authorization_code",
            "code": answer["code"][0],
            "redirect_uri": RP_REDIRECT,
            "code_verifier": verifier,
        },
        auth=(client_id, client_secret or ""),
        timeout=10,
    )
    assert tokens.status_code == 200, tokens.text
    for base in (at_a, at_b):  # both instances publish the same keys
        keys = KeySet.import_key_set(requests.get(f"{base}/jwks.json", timeout=10).json())
        claims = jwt.decode(tokens.json()["id_token"], keys, algorithms=["ES256"]).claims
        assert claims["aud"] == client_id and claims["nonce"] == nonce
        assert claims["given_name"] == "Erika"
