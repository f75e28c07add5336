"""The accessibility statement (Erklärung zur Barrierefreiheit, BITV 2.0 § 7)."""

from __future__ import annotations

import html as html_module

import pytest


def _statement(client, lang: str = "de") -> str:
    response = client.get("/barrierefreiheit", headers={"Accept-Language": lang})
    assert response.status_code == 200
    return html_module.unescape(response.get_data(as_text=True))


def test_says_honestly_that_bürger_id_is_partially_compliant(client):
    page = _statement(client)
    assert "<h1>Erklärung zur Barrierefreiheit</h1>" in page
    assert "teilweise vereinbar" in page
    assert "BITV 2.0" in page and "WCAG) 2.1, Stufe AA" in page and "EN 301 549" in page


def test_lists_the_known_gaps_with_the_configured_time_limits(app, client):
    app.config["LOGIN_TTL_SECONDS"] = 180
    app.config["SESSION_IDLE_SECONDS"] = 60
    app.config["PAIRING_TTL_SECONDS"] = 600
    page = _statement(client)
    assert "Was noch nicht barrierefrei ist" in page
    assert "haben Sie 3 Minuten Zeit" in page and "1 Minute lang nichts tun" in page
    assert "Hinzufügen eines weiteren Geräts 10 Minuten" in page
    for gap in ("(WCAG 2.2.1)", "(WCAG 2.2.2)", "Gebärdensprache", "Leichter Sprache", "PDF"):
        assert gap in page, gap


def test_says_how_it_was_made_and_when(client):
    page = _statement(client)
    assert "Selbstbewertung" in page and "Chromium" in page
    assert '<time datetime="2026-11-21">21. November 2026</time>' in page


def test_feedback_goes_to_the_configured_office(app, client):
    app.config.update(
        MUNICIPALITY_NAME="Gemeinde Beispielhausen",
        OFFICE_NAME="Bürgeramt",
        OFFICE_STREET="Rathausplatz 3",
        OFFICE_POSTCODE="54321",
        OFFICE_CITY="Beispielhausen",
        OFFICE_CONTACT="Telefon 0123 456-0, buergeramt@beispielhausen.example",
    )
    page = _statement(client)
    contact = page.split("Barriere melden", 1)[1].split("Schlichtungsverfahren", 1)[0]
    for line in (
        "Bürgeramt",
        "Gemeinde Beispielhausen",
        "Rathausplatz 3",
        "54321 Beispielhausen",
        "Telefon 0123 456-0, buergeramt@beispielhausen.example",
    ):
        assert line in contact, line


def test_names_the_arbitration_board(client):
    page = _statement(client)
    procedure = page.split("Schlichtungsverfahren", 1)[1]
    assert "§ 16 Behindertengleichstellungsgesetz (BGG)" in procedure
    assert "Mauerstraße 53" in procedure and "10117 Berlin" in procedure
    assert 'href="https://www.schlichtungsstelle-bgg.de"' in procedure
    assert "Bundeslandes" in procedure  # a municipality's own state may be responsible


@pytest.mark.parametrize("lang", ["de", "en"])
def test_every_page_links_to_it(client, lang):
    for path in ("/", "/lost", "/no-such-page", "/barrierefreiheit"):
        page = client.get(path, headers={"Accept-Language": lang}).get_data(as_text=True)
        footer = page.split('<footer class="site-footer">', 1)[1]
        assert '<a href="/barrierefreiheit">' in footer, path


def test_reads_in_english_too(client):
    page = _statement(client, "en")
    assert '<html lang="en">' in page and "<h1>Accessibility statement</h1>" in page
    assert "partially compliant" in page and "Arbitration procedure" in page
    assert '<time datetime="2026-11-21">November 21, 2026</time>' in page
