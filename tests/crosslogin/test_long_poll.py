"""The desktop's long poll: held until its login changes or ends, kept open by blanks.

A waiting desktop costs one held request and nothing else: it is answered as soon as its login
changes, and it asks again only after news (docs/architecture.md, "The long poll").
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from harness import desktop_status


class HeldPoll(threading.Thread):
    """The desktop's ``GET /login/<id>?seen=N``, sent from its own thread (it blocks)."""

    def __init__(self, browser: Any, login_id: str, seen: int) -> None:
        super().__init__(daemon=True)
        self.browser, self.login_id, self.seen = browser, login_id, seen
        self.seconds = 0.0
        self.response: Any = None
        self.text = ""

    def run(self) -> None:
        started = time.monotonic()
        self.response = desktop_status(self.browser, self.login_id, seen=self.seen)
        # The answer is streamed: read it here, where the server side runs, as a server does.
        self.text = self.response.get_data(as_text=True)
        self.seconds = time.monotonic() - started

    def body(self) -> str:
        return self.text


def test_held_poll_answers_at_once_when_the_phone_scans(app, client, relying_party, enrolled_phone):
    app.config["LONG_POLL_SECONDS"] = 60  # far longer than the test may take
    login_id = relying_party.start_login(client)
    first = desktop_status(client, login_id).json
    poll = HeldPoll(client, login_id, first["version"])
    poll.start()
    poll.join(timeout=0.5)
    assert poll.is_alive()  # nothing has happened yet: the request is held
    _, scanned = enrolled_phone.scan(first["phone_url"])
    assert scanned.status_code == 200
    poll.join(timeout=10)
    assert not poll.is_alive()
    assert poll.response.status_code == 200
    assert poll.response.headers["Cache-Control"] == "no-store"
    news = json.loads(poll.body())
    assert news["status"] == "scanned"
    assert news["version"] > first["version"]


def test_held_poll_answers_at_once_when_the_login_is_approved(
    app, client, relying_party, enrolled_phone
):
    app.config["LONG_POLL_SECONDS"] = 60
    login_id = relying_party.start_login(client)
    first = desktop_status(client, login_id).json
    login_id, scanned = enrolled_phone.scan(first["phone_url"])
    binding = scanned.json["binding"]
    seen = desktop_status(client, login_id).json["version"]
    poll = HeldPoll(client, login_id, seen)
    poll.start()
    issued = enrolled_phone.challenge(login_id, binding, first["number"])
    assert issued.status_code == 200
    poll.join(timeout=0.5)
    assert poll.is_alive()  # a challenge handed to the phone is no news for the desktop
    credential = enrolled_phone.authenticator.get_assertion(
        issued.json["options"], origin=enrolled_phone.origin
    )
    approved = enrolled_phone.client.post(
        f"/api/v1/logins/{login_id}/approve",
        json={"binding": binding, "number": first["number"], "credential": credential},
    )
    assert approved.status_code == 200
    poll.join(timeout=10)
    assert not poll.is_alive()
    assert poll.seconds < 10
    news = json.loads(poll.body())
    assert news["status"] == "approved"
    assert news["continue_url"].endswith(f"/login/{login_id}/continue")


def test_held_poll_sends_blanks_while_nothing_happens(app, client, relying_party):
    # Proxies close a request that stays silent longer than their read timeout.
    app.config["LONG_POLL_SECONDS"] = 3
    app.config["LONG_POLL_KEEPALIVE_SECONDS"] = 1
    login_id = relying_party.start_login(client)
    first = desktop_status(client, login_id).json
    response = desktop_status(client, login_id, seen=first["version"])
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert body.startswith("  ")  # one blank a second, before the answer
    assert json.loads(body)["version"] == first["version"]  # whitespace is valid JSON


def test_poll_with_an_old_version_answers_without_waiting(
    app, client, relying_party, enrolled_phone
):
    app.config["LONG_POLL_SECONDS"] = 60
    login_id = relying_party.start_login(client)
    first = desktop_status(client, login_id).json
    enrolled_phone.scan(first["phone_url"])
    started = time.monotonic()
    news = desktop_status(client, login_id, seen=first["version"])
    assert time.monotonic() - started < 5
    assert news.json["status"] == "scanned"


def test_held_poll_is_refused_to_another_browser(app, client, relying_party, db_state):
    app.config["LONG_POLL_SECONDS"] = 60
    login_id = relying_party.start_login(client)
    seen = desktop_status(client, login_id).json["version"]
    stranger = app.test_client()
    before = db_state()
    started = time.monotonic()
    refused = desktop_status(stranger, login_id, seen=seen)
    assert time.monotonic() - started < 5  # refused before anything is held
    assert refused.status_code == 404
    assert refused.json["error"] == "login_not_found"
    assert db_state() == before
