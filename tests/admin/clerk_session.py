"""A clerk added with the CLI, enrolled with a soft phone and logged in to the console.

Not a test module: the console tests import it (it sits beside them, on their import path).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from harness import ISSUER
from harness import Phone
from harness import desktop_status

from idserver.phone.authenticator import SoftAuthenticator

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def run_cli(runner: Any, *args: str) -> tuple[int, Any]:
    result = runner.invoke(args=list(args))
    output = result.stdout.strip()  # stderr has the logs
    return result.exit_code, json.loads(output) if output else None


def add_clerk(runner: Any, *, role: str = "clerk", given_name: str = "Clara") -> dict[str, Any]:
    code, added = run_cli(
        runner,
        "clerk",
        "add",
        "--given-name",
        given_name,
        "--family-name",
        "Schreiber",
        "--email",
        f"{given_name.lower()}.schreiber@musterstadt.example",
        "--role",
        role,
    )
    assert code == 0, added
    return added


def log_in(browser: FlaskClient, phone: Phone, page: str = "/admin") -> Any:
    """The QR login a console page starts, approved on ``phone``; returns the last redirect."""
    started = browser.get(page)
    assert started.status_code == 303, started.get_data(as_text=True)
    location = started.headers["Location"]
    assert location.startswith(f"{ISSUER}/login/")
    login_id = location.rsplit("/", 1)[-1]
    status = desktop_status(browser, login_id).json
    approved = phone.approve(status["phone_url"], status["number"])
    assert approved.status_code == 200, approved.json
    status = desktop_status(browser, login_id).json
    assert status["status"] == "approved"
    finished = browser.get(status["continue_url"])
    assert finished.status_code == 303
    return finished


@dataclass
class SignedInClerk:
    browser: FlaskClient
    phone: Phone
    clerk_id: str
    citizen_id: str

    @property
    def actor(self) -> str:
        return f"clerk:{self.clerk_id}"

    def csrf(self) -> str:
        """The form token, read from a console form as a browser would."""
        page = self.browser.get("/admin/residents/new")
        assert page.status_code == 200
        match = CSRF_FIELD.search(page.get_data(as_text=True))
        assert match
        return match.group(1)

    def post(self, path: str, data: dict[str, str] | None = None) -> Any:
        return self.browser.post(path, data={**(data or {}), "csrf_token": self.csrf()})


def sign_in_clerk(
    app: Flask, runner: Any, tmp_path: Path, *, role: str = "clerk", given_name: str = "Clara"
) -> SignedInClerk:
    added = add_clerk(runner, role=role, given_name=given_name)
    phone = Phone(app.test_client(), SoftAuthenticator(path=tmp_path / f"{given_name}-phone.json"))
    enrolled = phone.enrol(added["activation_id"], added["code"], name="Diensthandy")
    assert enrolled.status_code == 201, enrolled.json
    browser = app.test_client()
    browser.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"  # the console tests read English texts
    finished = log_in(browser, phone)
    assert finished.headers["Location"] == f"{ISSUER}/admin"
    return SignedInClerk(browser, phone, added["id"], added["citizen_id"])
