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
from harness import complete_login
from harness import desktop_status
from sqlalchemy import update

from idserver.crosslogin.models import LoginTransaction
from idserver.db import db
from idserver.oidc.errors import DENIAL_DESCRIPTIONS

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
    if how == "other_account":
        # the login names Erika (login_hint); ``phone`` is Max's, and approves it
        assert phone.approve(status["phone_url"], status["number"]).status_code == 403
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


ENDINGS = ["denied", "wrong_number", "cancelled", "other_network", "other_account", "expired"]


@pytest.mark.parametrize("how", ENDINGS)
def test_each_ending_reaches_the_relying_party_with_its_own_description(
    app, client, relying_party, enrolled_phone, request, how
):
    phone = enrolled_phone
    hint = {}
    if how == "other_account":
        tokens = complete_login(client, relying_party, enrolled_phone)
        hint["login_hint"] = relying_party.verify_id_token(client, tokens["id_token"])["sub"]
        phone = request.getfixturevalue("other_citizen_phone")
    login_id = relying_party.start_login(client, **hint)
    _end_login(how, app, client, login_id, phone)
    status = desktop_status(client, login_id).json
    assert status["status"] == ("expired" if how == "expired" else "denied")
    query = _redirect_query(client.get(status["continue_url"]))
    assert query["error"] == ["access_denied"]
    assert query["error_description"] == [DENIAL_DESCRIPTIONS[how]]
    assert query["state"] == [relying_party.state] and query["iss"] == [ISSUER]


def test_the_documented_descriptions_are_distinct_and_in_the_relying_party_guide():
    # one per way a login ends: the five of issue 14 and other_account (login_hint, issue 15)
    assert set(DENIAL_DESCRIPTIONS) == set(ENDINGS)
    assert len(set(DENIAL_DESCRIPTIONS.values())) == len(DENIAL_DESCRIPTIONS) == 6
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


def _renew(browser: Any, login_id: str) -> Any:
    page = browser.get(f"/login/{login_id}").get_data(as_text=True)
    return browser.post(f"/login/{login_id}/renew", data={"csrf_token": csrf_token(page)})


def test_cancel_after_the_timeout_tells_the_relying_party_that_it_expired(
    app, client, relying_party
):
    login_id = relying_party.start_login(client)
    page = client.get(f"/login/{login_id}").get_data(as_text=True)
    _expire(app, login_id)
    cancelled = client.post(f"/login/{login_id}/cancel", data={"csrf_token": csrf_token(page)})
    assert cancelled.status_code == 303
    query = _redirect_query(client.get(cancelled.headers["Location"]))
    assert query["error"] == ["access_denied"]
    assert query["error_description"] == [DENIAL_DESCRIPTIONS["expired"]]
    assert query["state"] == [relying_party.state] and query["iss"] == [ISSUER]


def test_an_expired_login_offers_a_new_code_and_the_way_back(app, client, relying_party):
    login_id = relying_party.start_login(client)
    _expire(app, login_id)
    page = Elements(client.get(f"/login/{login_id}?lang=de").get_data(as_text=True))
    assert "abgelaufen" in page.by_id["ended-reason"]["text"]
    assert "Neuen Code anzeigen" in page.by_id["renew-button"]["text"]
    assert page.by_id["back-button"]["attrs"]["href"].endswith(f"/login/{login_id}/continue")


def test_a_new_code_is_a_fresh_login_for_the_same_request_end_to_end(
    app, client, relying_party, enrolled_phone
):
    old_id = relying_party.start_login(client)
    _expire(app, old_id)
    renewed = _renew(client, old_id)
    assert renewed.status_code == 303
    new_id = renewed.headers["Location"].rsplit("/", 1)[-1]
    assert new_id != old_id and renewed.headers["Location"] == f"{ISSUER}/login/{new_id}"
    with app.app_context():
        old = db.session.get(LoginTransaction, old_id)
        new = db.session.get(LoginTransaction, new_id)
        assert new.request_params == old.request_params and new.client_id == old.client_id
        assert new.state == "pending" and new.browser_hash != old.browser_hash
        assert old.state == "consumed"  # the old login can no longer answer the application
    status = desktop_status(client, new_id).json
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 200
    query = _redirect_query(client.get(desktop_status(client, new_id).json["continue_url"]))
    assert query["state"] == [relying_party.state] and query["iss"] == [ISSUER]
    tokens = relying_party.exchange(client, query["code"][0])
    assert tokens.status_code == 200, tokens.json
    # the same nonce as the original request (verify_id_token checks it) and the same verifier
    relying_party.verify_id_token(client, tokens.json["id_token"])


def test_a_new_code_is_counted_like_any_new_login(app, client, relying_party, db_state):
    app.config["RATE_LIMIT_LOGIN"] = "1/minute"
    login_id = relying_party.start_login(client)
    _expire(app, login_id)
    page = client.get(f"/login/{login_id}").get_data(as_text=True)
    before = db_state()
    refused = client.post(f"/login/{login_id}/renew", data={"csrf_token": csrf_token(page)})
    assert refused.status_code == 429
    assert db_state() == before


def test_after_the_answer_went_back_the_ended_page_still_offers_a_new_code(
    app, client, relying_party
):
    login_id = relying_party.start_login(client)
    _expire(app, login_id)
    assert client.get(f"/login/{login_id}/continue").status_code == 303  # the RP is told
    again = client.get(f"/login/{login_id}/continue?lang=de")
    assert again.status_code == 400 and "Location" not in again.headers
    page = Elements(again.get_data(as_text=True))
    assert "Neuen Code anzeigen" in page.by_id["renew-button"]["text"]
    # "back" no longer answers the application a second time: it leads to its site
    assert page.by_id["back-button"]["attrs"]["href"] == _site(relying_party)
    assert _renew(client, login_id).status_code == 303


def _site(relying_party: Any) -> str:
    parts = urlsplit(relying_party.redirect_uri)
    return f"{parts.scheme}://{parts.netloc}/"


def test_the_back_button_after_a_successful_login_says_you_are_logged_in(
    app, client, relying_party, enrolled_phone, db_state
):
    login_id = relying_party.start_login(client)
    status = desktop_status(client, login_id).json
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 200
    assert client.get(f"/login/{login_id}/continue").status_code == 303
    before = db_state()
    for path in (f"/login/{login_id}?lang=de", f"/login/{login_id}/continue?lang=de"):
        shown = client.get(path)
        assert shown.status_code == 200 and "Location" not in shown.headers
        page = Elements(shown.get_data(as_text=True))
        assert "Sie sind schon angemeldet" in shown.get_data(as_text=True)
        assert page.by_id["onward"]["attrs"]["href"] == _site(relying_party)
    assert db_state() == before
    # someone else (no session of this login) still gets 404
    assert app.test_client().get(f"/login/{login_id}").status_code == 404


def test_the_back_button_after_logging_in_to_buergerid_itself_leads_to_the_account(
    app, client, enrolled_phone
):
    started = client.get("/account")
    assert started.status_code == 303
    login_id = started.headers["Location"].rsplit("/", 1)[-1]
    status = desktop_status(client, login_id).json
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 200
    assert client.get(f"/login/{login_id}/continue").status_code == 303
    page = Elements(client.get(f"/login/{login_id}").get_data(as_text=True))
    assert page.by_id["onward"]["attrs"]["href"] == f"{ISSUER}/account"


def _phone_path(url: str) -> str:
    return url.replace(ISSUER, "")


def test_the_phone_link_opened_on_the_computer_explains_and_binds_nothing(
    app, client, relying_party, enrolled_phone, db_state
):
    login_id = relying_party.start_login(client)
    status = desktop_status(client, login_id).json
    before = db_state()
    opened = client.get(_phone_path(status["phone_url"]) + "&lang=de")
    assert opened.status_code == 200
    html = opened.get_data(as_text=True)
    assert "Öffnen Sie diesen Link auf Ihrem Handy" in html
    assert "approve-form" not in html and "phone-" not in opened.headers.get("Set-Cookie", "")
    page = Elements(html)
    assert page.by_id["back-to-code"]["attrs"]["href"] == f"{ISSUER}/login/{login_id}"
    assert db_state() == before
    assert desktop_status(client, login_id).json["status"] == "pending"
    # the real phone can still bind and approve it
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 200
    assert desktop_status(client, login_id).json["status"] == "approved"


def test_the_phone_page_in_another_browser_binds_as_before(app, client, relying_party):
    login_id = relying_party.start_login(client)
    status = desktop_status(client, login_id).json
    phone_browser = app.test_client()
    opened = phone_browser.get(_phone_path(status["phone_url"]))
    assert opened.status_code == 200 and 'id="approve-form"' in opened.get_data(as_text=True)
    assert desktop_status(client, login_id).json["status"] == "scanned"


def test_on_the_registered_phone_itself_the_link_can_still_be_confirmed_there(
    app, client, relying_party
):
    login_id = relying_party.start_login(client)
    status = desktop_status(client, login_id).json
    page = Elements(client.get(_phone_path(status["phone_url"])).get_data(as_text=True))
    here = page.by_id["confirm-here"]["attrs"]["href"]
    assert "here=1" in here
    confirmed = client.get(here)
    assert confirmed.status_code == 200 and 'id="approve-form"' in confirmed.get_data(as_text=True)
    assert desktop_status(client, login_id).json["status"] == "scanned"
