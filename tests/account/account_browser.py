"""A citizen's browser at ``/account``, and a new device joining through a pairing.

The browser logs in the way a citizen does: ``/account`` sends it to a QR-code login for
Bürger-ID itself, the enrolled soft phone approves it, and the browser continues into a
session. Forms and scripts send the session's CSRF token, read from the rendered page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask.testing import FlaskClient
from harness import ISSUER
from harness import ORIGIN
from harness import Phone
from harness import desktop_status

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
SHOWN_NUMBER = re.compile(r'<strong class="number"[^>]*>([0-9]{2})</strong>')


def csrf_token(client: FlaskClient, page: str = "/lost") -> str:
    """The token of this browser's session, from a page's form (any page has the same one)."""
    html = client.get(page).get_data(as_text=True)
    found = CSRF_FIELD.search(html)
    assert found, html
    return found.group(1)


@dataclass
class CitizenBrowser:
    client: FlaskClient

    def __post_init__(self) -> None:
        # The account tests read the English texts; tests/i18n checks the German ones.
        self.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"

    def log_in(self, phone: Phone, next_page: str = "/account") -> Any:
        """Open ``next_page``, log in with ``phone`` through the QR code, land on it again."""
        started = self.client.get(next_page)
        assert started.status_code == 303, started.get_data(as_text=True)
        login_id = started.headers["Location"].rsplit("/", 1)[-1]
        status = desktop_status(self.client, login_id).json
        approved = phone.approve(status["phone_url"], status["number"])
        assert approved.status_code == 200, approved.json
        status = desktop_status(self.client, login_id).json
        landed = self.client.get(status["continue_url"])
        assert landed.status_code == 303
        assert landed.headers["Location"] == ISSUER + next_page
        page = self.client.get(next_page)
        assert page.status_code == 200
        return page

    def post_form(self, path: str, data: dict[str, str] | None = None) -> Any:
        form = {"csrf_token": csrf_token(self.client), **(data or {})}
        return self.client.post(path, data=form)

    def post_json(self, path: str, body: dict[str, Any]) -> Any:
        return self.client.post(path, json=body, headers={"X-CSRF-Token": csrf_token(self.client)})

    def start_pairing(self) -> str:
        """ "Add another device": returns the pairing id from the page it leads to."""
        response = self.post_form("/account/pairings")
        assert response.status_code == 303, response.get_data(as_text=True)
        location = response.headers["Location"]
        assert location.startswith(f"{ISSUER}/account/pairings/")
        return location.rsplit("/", 1)[-1]

    def approve_pairing(self, pairing_id: str, number: str, phone: Phone, **options: Any) -> Any:
        """Type ``number`` and confirm with ``phone``'s passkey."""
        begun = self.post_json(f"/account/pairings/{pairing_id}/options", {"number": number})
        assert begun.status_code == 200, begun.json
        credential = phone.authenticator.get_assertion(
            begun.json["options"], origin=ORIGIN, **options
        )
        return self.post_json(
            f"/account/pairings/{pairing_id}/approve",
            {"number": number, "ceremony_id": begun.json["ceremony_id"], "credential": credential},
        )


@dataclass
class NewDevice:
    """A device without a passkey that joins through ``/pair/<id>``."""

    phone: Phone

    def __post_init__(self) -> None:
        self.phone.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"  # as CitizenBrowser

    @property
    def client(self) -> FlaskClient:
        return self.phone.client

    def claim(self, pairing_id: str) -> Any:
        page = self.client.get(f"/pair/{pairing_id}")
        assert page.status_code == 200, page.get_data(as_text=True)
        return self.client.post(
            f"/pair/{pairing_id}/claim", data={"csrf_token": csrf_token(self.client)}
        )

    def shown_number(self, pairing_id: str) -> str:
        html = self.client.get(f"/pair/{pairing_id}").get_data(as_text=True)
        found = SHOWN_NUMBER.search(html)
        assert found, html
        return found.group(1)

    def status(self, pairing_id: str) -> Any:
        return self.client.get(f"/pair/{pairing_id}/status", headers={"Accept": "application/json"})

    def begin_enrolment(self, pairing_id: str) -> Any:
        return self.client.post(
            f"/pair/{pairing_id}/enrolment/options",
            json={},
            headers={"X-CSRF-Token": csrf_token(self.client)},
        )

    def enrol(self, pairing_id: str, *, name: str = "Erikas Tablet") -> Any:
        begun = self.begin_enrolment(pairing_id)
        assert begun.status_code == 200, begun.json
        credential = self.phone.authenticator.create_credential(
            begun.json["options"], origin=ORIGIN
        )
        finished = self.client.post(
            f"/pair/{pairing_id}/enrolment",
            json={
                "enrolment_id": begun.json["enrolment_id"],
                "credential": credential,
                "name": name,
            },
            headers={"X-CSRF-Token": csrf_token(self.client)},
        )
        if finished.status_code == 201:
            self.phone.revocation_code = finished.json["revocation_code"]
        return finished
