"""Automated accessibility checks of the citizens' pages, in German and in English.

What the accessibility statement (/barrierefreiheit) calls "automatic checks": every page says
its language, has a title and one main heading, headings do not skip levels, every form
field has a label, images and the QR code have a text alternative, buttons and links have
a name, ids are unique and every reference to an id points somewhere, and the footer links
to the statement. These read the HTML; the browser suite (tests/e2e) drives real Chromium.
"""

from __future__ import annotations

import re

import pytest
from harness import desktop_status
from page import Html

LANGUAGES = ("de", "en")
UNLABELLED_INPUTS = {"hidden", "submit", "button", "reset"}


def check_structure(html: str, lang: str) -> list[str]:
    """Every problem found in ``html``, a page that should be in ``lang``."""
    page = Html(html)
    problems = []
    (root,) = page.all("html")
    if root.attrs.get("lang") != lang:
        problems.append(f'<html lang="{root.attrs.get("lang")}">, expected {lang}')
    titles = page.all("title")
    if (
        len(titles) != 1
        or not titles[0].name.endswith("– Bürger-ID")
        or titles[0].name == "– Bürger-ID"
    ):
        problems.append(f"title: {[t.name for t in titles]}")
    headings = page.all("h1", "h2", "h3", "h4", "h5", "h6")
    if [h.tag for h in headings].count("h1") != 1:
        problems.append("not exactly one h1")
    level = 0
    for heading in headings:
        if int(heading.tag[1]) > level + 1:
            problems.append(f"{heading.tag} {heading.name!r} skips a level")
        level = int(heading.tag[1])
        if not heading.name:
            problems.append(f"empty {heading.tag}")
    ids = page.ids
    problems += [f"id {i!r} used twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    labelled = {e.attrs.get("for") for e in page.all("label")}
    for control in page.all("input", "select", "textarea"):
        if control.attrs.get("type") in UNLABELLED_INPUTS:
            continue
        if control.attrs.get("id") not in labelled and not (
            control.attrs.get("aria-label") or control.attrs.get("aria-labelledby")
        ):
            problems.append(f"{control.tag} name={control.attrs.get('name')!r} has no label")
    for element in page.elements:
        for attribute in ("aria-describedby", "aria-labelledby"):
            for ref in element.attrs.get(attribute, "").split():
                if ref not in ids:
                    problems.append(f"{attribute}={ref!r} points nowhere")
    problems += [f"label for={f!r} points nowhere" for f in labelled if f and f not in ids]
    for image in page.all("img"):
        if "alt" not in image.attrs:
            problems.append(f"img {image.attrs.get('src')} has no alt")
    for element in page.elements:
        if element.attrs.get("role") == "img" and not element.attrs.get("aria-label"):
            problems.append(f"role=img {element.attrs.get('id')} has no aria-label")
    for element in page.all("a", "button", "summary"):
        if not element.name:
            problems.append(f"{element.tag} {element.attrs} has no name")
    skip = [a for a in page.all("a") if a.attrs.get("href", "").startswith("#")]
    if not skip or skip[0].attrs["href"][1:] not in ids:
        problems.append("no working skip link")
    for link in page.all("a"):
        if "hreflang" in link.attrs and link.attrs.get("lang") != link.attrs["hreflang"]:
            problems.append(f"language link {link.name!r} without matching lang")
    if not [
        a
        for a in page.all("a")
        if a.attrs.get("href") == "/barrierefreiheit" and "footer" in a.inside
    ]:
        problems.append("no link to the accessibility statement in the footer")
    return problems


def _assert_accessible(client, path: str, lang: str, status: int = 200) -> str:
    response = client.get(path, headers={"Accept-Language": lang})
    assert response.status_code == status, response.get_data(as_text=True)
    html = response.get_data(as_text=True)
    assert not check_structure(html, lang), f"{path} ({lang}): {check_structure(html, lang)}"
    return html


# -- the pages -----------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize(
    ("path", "status"),
    [("/", 200), ("/barrierefreiheit", 200), ("/lost", 200), ("/no-such-page", 404)],
)
def test_public_pages(client, path, status, lang):
    _assert_accessible(client, path, lang, status)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_activation_page(client, activation, lang):
    activation_id, _code = activation  # the letter's link carries the code in its fragment
    _assert_accessible(client, f"/activate/{activation_id}", lang)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_login_pages_on_the_computer_and_the_phone(app, client, relying_party, lang):
    login_id = relying_party.start_login(client)
    _assert_accessible(client, f"/login/{login_id}", lang)
    phone_url = desktop_status(client, login_id).json["phone_url"]
    _assert_accessible(app.test_client(), phone_url.removeprefix("http://localhost"), lang)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_account_pages(client, enrolled_phone, lang):
    started = client.get("/account")
    login_id = started.headers["Location"].rsplit("/", 1)[-1]
    status = desktop_status(client, login_id).json
    assert enrolled_phone.approve(status["phone_url"], status["number"]).status_code == 200
    assert client.get(desktop_status(client, login_id).json["continue_url"]).status_code == 303
    html = _assert_accessible(client, "/account", lang)
    device = re.search(r'href="http://localhost(/account/devices/\d+/revoke)"', html).group(1)
    _assert_accessible(client, device, lang)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    pairing = client.post("/account/pairings", data={"csrf_token": token})
    assert pairing.status_code == 303
    _assert_accessible(client, pairing.headers["Location"].removeprefix("http://localhost"), lang)
    _assert_accessible(client, "/account/logged-out", lang)


# -- the checker itself --------------------------------------------------------------------------
GOOD = """<!doctype html><html lang="de"><head><title>Start – Bürger-ID</title></head><body>
<a href="#main">Zum Inhalt</a><main id="main"><h1>Start</h1><h2>Teil</h2>
<label for="code">Code</label><input id="code" aria-describedby="hint"><p id="hint">Hinweis</p>
<div role="img" aria-label="QR-Code"></div><img src="x.png" alt="">
<a href="/?lang=en" hreflang="en" lang="en">English</a></main>
<footer><a href="/barrierefreiheit">Barrierefreiheit</a></footer></body></html>"""


def test_checker_accepts_a_good_page():
    assert check_structure(GOOD, "de") == []


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (('lang="de"', 'lang="en"'), "<html lang"),
        (("<title>Start – Bürger-ID</title>", "<title></title>"), "title"),
        (("<h1>Start</h1>", "<h1>Start</h1><h1>Noch eine</h1>"), "one h1"),
        (("<h2>Teil</h2>", "<h3>Teil</h3>"), "skips a level"),
        (('<label for="code">Code</label>', ""), "has no label"),
        (('aria-describedby="hint"', 'aria-describedby="gone"'), "points nowhere"),
        (('<p id="hint">', '<p id="code">'), "used twice"),
        (('aria-label="QR-Code"', ""), "role=img"),
        (('alt=""', ""), "has no alt"),
        (('<a href="#main">Zum Inhalt</a>', '<a href="#main"></a>'), "has no name"),
        (('hreflang="en" lang="en"', 'hreflang="en"'), "language link"),
        (('<a href="/barrierefreiheit">', '<a href="/impressum">'), "accessibility statement"),
    ],
)
def test_checker_finds_each_problem(change, complaint):
    html = GOOD.replace(*change)
    assert html != GOOD
    assert any(complaint in problem for problem in check_structure(html, "de"))
