"""How a login that ends without approval is shown and answered (issue 14, items 1 and 2).

The reason stays on the computer's screen until the person acts (WCAG 2.2.1); the relying
party gets ``access_denied`` with a distinct, documented ``error_description`` for each way
a login can end (docs/relying-parties.md).
"""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from harness import ISSUER
from harness import desktop_status
from sqlalchemy import update

from idserver.crosslogin.models import LoginTransaction
from idserver.crosslogin.views import DENIAL_DESCRIPTIONS
from idserver.db import db

ELSEWHERE = "198.51.100.23"


class Elements(HTMLParser):
    """Every element with an id: its tag, attributes and text (enough for these pages)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, Any]] = {}
        self._open: list[dict[str, Any]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        if element["attrs"].get("id"):
            self.by_id[str(element["attrs"]["id"])] = element
        if tag not in ("input", "br", "img", "meta", "link"):
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element["text"] += data


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def _redirect_query(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 303, response.get_data(as_text=True)
    return parse_qs(urlsplit(response.headers["Location"]).query)


def _expire(app: Any, login_id: str) -> None:
    with app.app_context():
        db.session.execute(
            update(LoginTransaction)
            .where(LoginTransaction.id == login_id)
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
        db.session.commit()


def _end_login(how: str, app: Any, desktop: Any, login_id: str, phone: Any) -> None:
    """End the login ``how``; the phone (when it takes part) is a real soft phone."""
    status = desktop_status(desktop, login_id).json
    if how == "expired":
        _expire(app, login_id)
        return
    if how == "cancelled":
        page = desktop.get(f"/login/{login_id}").get_data(as_text=True)
        cancelled = desktop.post(f"/login/{login_id}/cancel", data={"csrf_token": csrf_token(page)})
        assert cancelled.status_code == 303
        return
    if how == "other_network":
        app.config["PROXIMITY_POLICY"] = "deny"
        phone.client.environ_base["REMOTE_ADDR"] = ELSEWHERE
        assert phone.scan(status["phone_url"])[1].status_code == 403
        return
    _, scanned = phone.scan(status["phone_url"])
    binding = scanned.json["binding"]
    if how == "wrong_number":
        wrong = "11" if status["number"] != "11" else "12"
        assert phone.challenge(login_id, binding, wrong).status_code == 400
    else:
        denied = phone.client.post(f"/api/v1/logins/{login_id}/deny", json={"binding": binding})
        assert denied.status_code in (200, 204), denied.get_data(as_text=True)


@pytest.mark.parametrize("how", ["denied", "wrong_number", "cancelled", "other_network", "expired"])
def test_each_ending_reaches_the_relying_party_with_its_own_description(
    app, client, relying_party, enrolled_phone, how
):
    login_id = relying_party.start_login(client)
    _end_login(how, app, client, login_id, enrolled_phone)
    status = desktop_status(client, login_id).json
    assert status["status"] == ("expired" if how == "expired" else "denied")
    query = _redirect_query(client.get(status["continue_url"]))
    assert query["error"] == ["access_denied"]
    assert query["error_description"] == [DENIAL_DESCRIPTIONS[how]]
    assert query["state"] == [relying_party.state] and query["iss"] == [ISSUER]


def test_the_documented_descriptions_are_distinct_and_in_the_relying_party_guide():
    assert len(set(DENIAL_DESCRIPTIONS.values())) == len(DENIAL_DESCRIPTIONS) == 5
    with open("docs/relying-parties.md", encoding="utf-8") as guide:
        text = guide.read()
    for reason, description in DENIAL_DESCRIPTIONS.items():
        assert f"`{description}`" in text, reason


def test_wrong_number_keeps_its_reason_on_screen_with_both_ways_on(
    app, client, relying_party, enrolled_phone
):
    login_id = relying_party.start_login(client)
    _end_login("wrong_number", app, client, login_id, enrolled_phone)
    html = client.get(f"/login/{login_id}?lang=de").get_data(as_text=True)
    page = Elements(html)
    # the reason in an alert region, rendered by the server and not to be redirected away
    reason = page.by_id["ended-reason"]
    assert reason["attrs"]["role"] == "alert"
    assert "falsche Zahl" in reason["text"]
    assert "hidden" not in page.by_id["ended"]["attrs"]
    assert page.by_id["back-button"]["attrs"]["href"] == f"{ISSUER}/login/{login_id}/continue"
    assert "Zurück zu" in page.by_id["back-button"]["text"]
    assert "Neuen Code anzeigen" in page.by_id["renew-button"]["text"]
    # the script no longer leaves on its own after a denial
    script = app.test_client().get("/static/js/desktop-login.js").get_data(as_text=True)
    assert "setTimeout(function () { window.location.assign" not in script
    # nothing has been sent to the application yet: "Zurück zu …" does it
    query = _redirect_query(client.get(f"/login/{login_id}/continue"))
    assert query["error_description"] == [DENIAL_DESCRIPTIONS["wrong_number"]]


def test_a_live_login_renders_the_ending_box_hidden(client, relying_party):
    login_id = relying_party.start_login(client)
    page = Elements(client.get(f"/login/{login_id}").get_data(as_text=True))
    assert "hidden" in page.by_id["ended"]["attrs"]
    assert page.by_id["ended-reason"]["text"].strip() == ""
