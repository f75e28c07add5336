"""The authorization request beyond the basics: POST, ui_locales, max_age, prompt, form_post."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
from harness import ISSUER
from harness import desktop_status

HTML_LANG = re.compile(r'<html lang="([a-z]+)">')


def _error_redirect(response, relying_party) -> dict[str, list[str]]:
    assert response.status_code == 303
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == relying_party.redirect_uri
    query = parse_qs(location.query)
    assert query["iss"] == [ISSUER]
    assert query["state"] == [relying_party.state]
    return query


def _approve(client, phone, login_id):
    status = desktop_status(client, login_id).json
    assert phone.approve(status["phone_url"], status["number"]).status_code == 200
    return client.get(desktop_status(client, login_id).json["continue_url"])


def test_post_authorize_completes_a_login_like_get(client, relying_party, enrolled_phone):
    params = relying_party.authorize_params()
    # From the relying party's page: cross-site, no CSRF token (an auto-submitting form).
    started = client.post("/authorize", data=params, headers={"Sec-Fetch-Site": "cross-site"})
    assert started.status_code == 303, started.get_data(as_text=True)
    assert started.headers["Location"].startswith(f"{ISSUER}/login/")
    answer = _approve(client, enrolled_phone, started.headers["Location"].rsplit("/", 1)[-1])
    assert answer.status_code == 303
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["state"] == [relying_party.state]
    assert query["iss"] == [ISSUER]
    tokens = relying_party.exchange(client, query["code"][0])
    assert tokens.status_code == 200, tokens.json


def test_post_authorize_refuses_like_get(client, relying_party, db_state):
    before = db_state()
    params = relying_party.authorize_params(prompt="none")
    response = client.post("/authorize", data=params, headers={"Sec-Fetch-Site": "cross-site"})
    assert _error_redirect(response, relying_party)["error"] == ["login_required"]
    assert db_state() == before


@pytest.mark.parametrize(
    "ui_locales, accept, expected, heading",
    [
        ("en", "de", "en", "Log in to"),
        ("en-US de", "de", "en", "Log in to"),
        ("fr de", "en", "de", "anmelden"),
        ("de", "en", "de", "anmelden"),
        ("fr x-klingon", "en", "en", "Log in to"),  # unsupported: ignored
        ("fr x-klingon", "de", "de", "anmelden"),
    ],
)
def test_ui_locales_chooses_the_login_pages_language(
    client, relying_party, ui_locales, accept, expected, heading
):
    login_id = relying_party.start_login(client, ui_locales=ui_locales)
    page = client.get(f"/login/{login_id}", headers={"Accept-Language": accept})
    text = page.get_data(as_text=True)
    assert HTML_LANG.search(text).group(1) == expected
    assert heading in text


def test_ui_locales_holds_for_the_logins_later_pages(client, relying_party):
    login_id = relying_party.start_login(client, ui_locales="en")
    cancelled = client.post(
        f"/login/{login_id}/cancel",
        data={"csrf_token": _csrf(client, login_id)},
        headers={"Accept-Language": "de"},
    )
    assert cancelled.status_code == 303
    # The cancel answered the relying party; the page of the ended login stays English.
    renewed = client.get(f"/login/{login_id}", headers={"Accept-Language": "de"})
    assert HTML_LANG.search(renewed.get_data(as_text=True)).group(1) == "en"


def test_the_citizens_own_choice_beats_ui_locales(client, relying_party):
    login_id = relying_party.start_login(client, ui_locales="en")
    page = client.get(f"/login/{login_id}?lang=de")
    assert HTML_LANG.search(page.get_data(as_text=True)).group(1) == "de"
    later = client.get(f"/login/{login_id}")  # the lang cookie the switch set
    assert HTML_LANG.search(later.get_data(as_text=True)).group(1) == "de"


def _csrf(client, login_id) -> str:
    page = client.get(f"/login/{login_id}").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


@pytest.mark.parametrize("max_age", ["abc", "-1", "1.5", " 3", "３"])
def test_invalid_max_age_is_refused(client, relying_party, db_state, max_age):
    before = db_state()
    response = client.get(
        "/authorize?" + urlencode(relying_party.authorize_params(max_age=max_age))
    )
    assert _error_redirect(response, relying_party)["error"] == ["invalid_request"]
    assert db_state() == before


def test_max_age_is_satisfied_and_the_id_token_has_auth_time(client, relying_party, enrolled_phone):
    code = relying_party.approved_code(client, enrolled_phone, max_age="0")
    tokens = relying_party.exchange(client, code)
    assert tokens.status_code == 200, tokens.json
    claims = relying_party.verify_id_token(client, tokens.json["id_token"])
    assert isinstance(claims["auth_time"], int)


@pytest.mark.parametrize(
    "prompt, error",
    [
        ("none", "login_required"),
        (" none ", "login_required"),
        ("none login", "invalid_request"),
        ("consent none", "invalid_request"),
        ("login bogus", "invalid_request"),
    ],
)
def test_prompt_refusals(client, relying_party, db_state, prompt, error):
    before = db_state()
    response = client.get("/authorize?" + urlencode(relying_party.authorize_params(prompt=prompt)))
    assert _error_redirect(response, relying_party)["error"] == [error]
    assert db_state() == before


@pytest.mark.parametrize("prompt", ["login", "consent", "select_account", "login consent"])
def test_other_prompts_start_a_login(client, relying_party, prompt):
    assert relying_party.start_login(client, prompt=prompt)


@pytest.mark.parametrize("mode", ["fragment", "jwt", "query.jwt"])
def test_unsupported_response_mode_is_refused(client, relying_party, db_state, mode):
    before = db_state()
    response = client.get(
        "/authorize?" + urlencode(relying_party.authorize_params(response_mode=mode))
    )
    assert _error_redirect(response, relying_party)["error"] == ["invalid_request"]
    assert db_state() == before


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, str]] = []
        self.fields: dict[str, str] = {}
        self.scripts: list[dict[str, str]] = []
        self.inline_handlers: list[str] = []
        self.buttons = 0

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        self.inline_handlers += [name for name in attributes if name.startswith("on")]
        if tag == "form":
            self.forms.append(attributes)
        elif tag == "input" and attributes.get("type") == "hidden":
            self.fields[attributes["name"]] = attributes["value"]
        elif tag == "script":
            self.scripts.append(attributes)
        elif tag == "button" and attributes.get("type") == "submit":
            self.buttons += 1


def _form_post_page(response, relying_party) -> _Page:
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = _Page()
    page.feed(response.get_data(as_text=True))
    assert len(page.forms) == 1
    assert page.forms[0]["method"] == "post"
    assert page.forms[0]["action"] == relying_party.redirect_uri
    assert page.buttons == 1  # without JavaScript, the citizen sends it
    assert not page.inline_handlers
    assert page.scripts and all(script.get("src") for script in page.scripts)  # no inline script
    csp = response.headers["Content-Security-Policy"]
    form_action = next(d for d in csp.split(";") if d.strip().startswith("form-action"))
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(relying_party.redirect_uri))
    assert origin in form_action.split()
    assert "'unsafe-inline'" not in csp
    return page


def test_form_post_delivers_the_code_to_the_redirect_uri(client, relying_party, enrolled_phone):
    login_id = relying_party.start_login(client, response_mode="form_post")
    answer = _approve(client, enrolled_phone, login_id)
    fields = _form_post_page(answer, relying_party).fields
    assert fields["state"] == relying_party.state
    assert fields["iss"] == ISSUER
    assert set(fields) == {"code", "state", "iss"}
    tokens = relying_party.exchange(client, fields["code"])
    assert tokens.status_code == 200, tokens.json
    assert relying_party.verify_id_token(client, tokens.json["id_token"])
    assert client.get("/static/js/form-post.js").status_code == 200


def test_form_post_delivers_errors(client, relying_party, db_state):
    before = db_state()
    params = relying_party.authorize_params(response_mode="form_post", max_age="abc")
    response = client.get("/authorize?" + urlencode(params))
    fields = _form_post_page(response, relying_party).fields
    assert fields["error"] == "invalid_request"
    assert fields["state"] == relying_party.state
    assert fields["iss"] == ISSUER
    assert db_state() == before


def test_form_post_delivers_a_denial(client, relying_party):
    login_id = relying_party.start_login(client, response_mode="form_post")
    client.post(f"/login/{login_id}/cancel", data={"csrf_token": _csrf(client, login_id)})
    answer = client.get(f"/login/{login_id}/continue")
    fields = _form_post_page(answer, relying_party).fields
    assert fields["error"] == "access_denied"
    assert fields["state"] == relying_party.state


def test_discovery_advertises_the_response_modes(client):
    meta = client.get("/.well-known/openid-configuration").json
    assert meta["response_modes_supported"] == ["query", "form_post"]
    assert "en" in meta["ui_locales_supported"]
