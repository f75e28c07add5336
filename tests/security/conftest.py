"""Fixtures for attacks: a started enrolment, a login scanned by the citizen's phone, and more."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from harness import Phone
from harness import desktop_status


@dataclass
class Enrolment:
    """A begun enrolment: the id to finish it under and the creation options."""

    client: FlaskClient
    enrolment_id: str
    options: dict[str, Any]

    def finish(self, credential: Any, **body: Any) -> Any:
        return self.client.post(
            f"/api/v1/enrolments/{self.enrolment_id}", json={"credential": credential, **body}
        )


def begin_enrolment(client: FlaskClient, activation: tuple[str, str]) -> Enrolment:
    response = client.post(
        "/api/v1/enrolments", json={"activation_id": activation[0], "code": activation[1]}
    )
    assert response.status_code == 200, response.json
    return Enrolment(client, response.json["enrolment_id"], response.json["options"])


@pytest.fixture
def enrolment(phone: Phone, activation: tuple[str, str]) -> Enrolment:
    return begin_enrolment(phone.client, activation)


@dataclass
class ScannedLogin:
    """A login the relying party started in ``browser`` and the citizen's phone has scanned."""

    browser: FlaskClient
    phone: Phone
    login_id: str
    number: str
    binding: str
    phone_url: str

    def challenge(self, number: str | None = None) -> Any:
        return self.phone.challenge(self.login_id, self.binding, number or self.number)

    def approve(self, credential: Any, number: str | None = None) -> Any:
        return self.phone.client.post(
            f"/api/v1/logins/{self.login_id}/approve",
            json={
                "binding": self.binding,
                "number": number or self.number,
                "credential": credential,
            },
        )

    def status(self) -> dict[str, Any]:
        return desktop_status(self.browser, self.login_id).json


def scan_login(browser: FlaskClient, relying_party: Any, phone: Phone) -> ScannedLogin:
    login_id = relying_party.start_login(browser)
    status = desktop_status(browser, login_id).json
    _, scanned = phone.scan(status["phone_url"])
    assert scanned.status_code == 200, scanned.json
    return ScannedLogin(
        browser, phone, login_id, status["number"], scanned.json["binding"], status["phone_url"]
    )


@pytest.fixture
def scanned(client: FlaskClient, relying_party: Any, enrolled_phone: Phone) -> ScannedLogin:
    return scan_login(client, relying_party, enrolled_phone)


def wrong_number(number: str) -> str:
    return "11" if number != "11" else "12"
