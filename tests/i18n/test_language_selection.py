"""Which language a person gets: German by default, English on request, a switch remembered.

The order: ``?lang=`` (and then the ``lang`` cookie it sets), then Accept-Language, then
German. API errors follow the same rule, so a phone app gets ``error_description`` in the
language it sends.
"""

from __future__ import annotations

import re

import pytest

GERMAN_HEADING = "So funktioniert es"
ENGLISH_HEADING = "How it works"
HTML_LANG = re.compile(r'<html lang="([a-z]+)">')


def _page_language(response) -> str:
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    lang = HTML_LANG.search(html).group(1)
    if lang == "de":
        assert GERMAN_HEADING in html and ENGLISH_HEADING not in html
    else:
        assert ENGLISH_HEADING in html and GERMAN_HEADING not in html
    return lang


def test_offers_german_and_english(app):
    assert app.config["LANGUAGES"] == ("de", "en")


def test_german_is_the_default(client):
    assert _page_language(client.get("/")) == "de"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("de", "de"),
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("en", "en"),
        ("en-GB", "en"),
        ("en-US,en;q=0.9", "en"),
        ("fr-FR,fr;q=0.9,en;q=0.5", "en"),
        ("fr", "de"),
        ("*", "de"),
        ("", "de"),
    ],
)
def test_follows_accept_language(client, accept, expected):
    assert _page_language(client.get("/", headers={"Accept-Language": accept})) == expected


def test_switch_is_remembered_in_a_cookie(client):
    switched = client.get("/?lang=en", headers={"Accept-Language": "de"})
    assert _page_language(switched) == "en"
    cookie = client.get_cookie("lang")
    assert cookie is not None and cookie.value == "en"
    assert cookie.http_only and cookie.same_site == "Lax"
    # Later pages stay English although the browser still prefers German.
    assert _page_language(client.get("/", headers={"Accept-Language": "de"})) == "en"
    assert _page_language(client.get("/?lang=de", headers={"Accept-Language": "en"})) == "de"
    assert client.get_cookie("lang").value == "de"
    assert _page_language(client.get("/", headers={"Accept-Language": "en"})) == "de"


@pytest.mark.parametrize("lang", ["fr", "EN", "", "de-DE", "../en"])
def test_ignores_unknown_languages(client, lang):
    response = client.get("/", query_string={"lang": lang}, headers={"Accept-Language": "en"})
    assert _page_language(response) == "en"
    assert client.get_cookie("lang") is None


def test_each_page_links_to_the_other_language_keeping_its_query(client):
    html = client.get("/barrierefreiheit?x=1").get_data(as_text=True)
    assert '<a href="/barrierefreiheit?x=1&amp;lang=en" hreflang="en" lang="en">English</a>' in html
    html = client.get("/barrierefreiheit?x=1&lang=en").get_data(as_text=True)
    assert '<a href="/barrierefreiheit?x=1&amp;lang=de" hreflang="de" lang="de">Deutsch</a>' in html


def test_error_pages_are_translated_too(client):
    german = client.get("/no-such-page")
    assert german.status_code == 404
    assert 'lang="de"' in german.get_data(as_text=True)
    assert "Diese Seite gibt es nicht (mehr)." in german.get_data(as_text=True)
    english = client.get("/no-such-page", headers={"Accept-Language": "en"})
    assert "This page or object does not exist (any more)." in english.get_data(as_text=True)


@pytest.mark.parametrize(
    ("accept", "description"),
    [
        (None, "Dieser Code stimmt nicht. Bitte prüfen Sie ihn und versuchen Sie es noch einmal."),
        ("de", "Dieser Code stimmt nicht. Bitte prüfen Sie ihn und versuchen Sie es noch einmal."),
        ("en", "This code is not right. Please check it and try again."),
    ],
)
def test_api_error_description_follows_accept_language(phone, activation, accept, description):
    activation_id, _code = activation
    headers = {"Accept-Language": accept} if accept else {}
    response = phone.client.post(
        "/api/v1/enrolments",
        json={"activation_id": activation_id, "code": "AAAA-AAAA-AAAA-AAAA"},
        headers=headers,
    )
    assert response.status_code == 400
    assert response.json == {"error": "invalid_activation_code", "error_description": description}


@pytest.mark.parametrize(
    ("accept", "description"),
    [
        ("de", "Diese Seite gibt es nicht (mehr)."),
        ("en", "This page or object does not exist (any more)."),
    ],
)
def test_api_errors_from_routing_are_translated(client, accept, description):
    response = client.get("/api/v1/no-such-thing", headers={"Accept-Language": accept})
    assert response.status_code == 404
    assert response.json["error_description"] == description
