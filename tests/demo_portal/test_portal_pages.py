"""What every portal page shows: language, title, favicon, readable claims, local times."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest

from demo_portal import create_portal
from demo_portal.config import ConfigError
from demo_portal.page import Page

CLIENT = {"CLIENT_ID": "client", "CLIENT_SECRET": "secret"}


def _titles(text: str) -> list[str]:
    return [e.text for e in Page(text).elements if e.tag == "title"]


@pytest.mark.parametrize("kind", ["parking", "jobs"])
def test_english_is_chosen_by_accept_language(tmp_path, kind):
    app = create_portal(kind, {**CLIENT, "INSTANCE_PATH": str(tmp_path / kind)})
    client = app.test_client()
    english = client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"}).get_data(True)
    assert '<html lang="en">' in english and "Sign in with Bürger-ID" in english
    german = client.get("/", headers={"Accept-Language": "de-DE,de;q=0.9"}).get_data(True)
    assert '<html lang="de">' in german and "Mit Bürger-ID anmelden" in german
    assert '<html lang="de">' in client.get("/", headers={"Accept-Language": "fr"}).get_data(True)


def test_the_language_switch_keeps_the_choice_and_the_page(tmp_path):
    app = create_portal("jobs", {**CLIENT, "INSTANCE_PATH": str(tmp_path / "jobs")})
    client = app.test_client()
    page = Page(client.get("/positions/2025-017").get_data(True))
    assert page.fields["lang"] == "en"  # the German page offers English
    answer = client.post(
        "/language",
        data={"csrf_token": page.fields["csrf_token"], "lang": "en", "next": "/positions/2025-017"},
    )
    assert answer.status_code == 303 and answer.location == "/positions/2025-017"
    english = client.get("/positions/2025-017", headers={"Accept-Language": "de"}).get_data(True)
    assert '<html lang="en">' in english and "Apply" in english
    outside = client.post(
        "/language",
        data={
            "csrf_token": page.fields["csrf_token"],
            "lang": "de",
            "next": "https://evil.example/",
        },
    )
    assert outside.location == "/"  # no open redirect through the switch


def test_the_language_goes_to_buergerid_as_ui_locales(browser, parking, erika):
    browser.open(parking)
    client = browser.portals[parking.config["BASE_URL"]]
    for accept, expected in (("en", "en"), ("de", "de")):
        answer = client.get("/login", headers={"Accept-Language": accept})
        assert answer.status_code == 302
        assert parse_qs(urlsplit(answer.location).query)["ui_locales"] == [expected]


@pytest.mark.parametrize(
    ("kind", "path", "title"),
    [
        ("parking", "/", "Bewohnerparkausweis"),
        ("parking", "/check", "Parkausweis prüfen – Bewohnerparkausweis"),
        ("jobs", "/", "Offene Stellen – Bewerberportal"),
        ("jobs", "/nowhere", "Seite nicht gefunden – Bewerberportal"),
    ],
)
def test_the_title_names_page_and_portal_once(tmp_path, kind, path, title):
    app = create_portal(kind, {**CLIENT, "INSTANCE_PATH": str(tmp_path / kind)})
    assert _titles(app.test_client().get(path).get_data(True)) == [title]


@pytest.mark.parametrize("kind", ["parking", "jobs"])
def test_each_portal_links_its_own_svg_favicon(tmp_path, kind):
    app = create_portal(kind, {**CLIENT, "INSTANCE_PATH": str(tmp_path / kind)})
    client = app.test_client()
    page = client.get("/").get_data(True)
    (icon,) = [e for e in Page(page).elements if e.tag == "link" and e.attrs.get("rel") == "icon"]
    assert icon.attrs["href"] == f"/static/favicon-{kind}.svg"
    svg = client.get(icon.attrs["href"])
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    assert b"<svg" in svg.data and b"<script" not in svg.data


def test_the_about_page_names_claims_readably(browser, jobs, erika):
    page = browser.sign_in(jobs, erika.phone, next_path="/about")
    labels = [e.text.strip() for e in Page(page.text).elements if "data-claim" in e.attrs]
    assert "Vorname" in labels and "Geburtsdatum" in labels and "E-Mail-Adresse" in labels
    assert not {"given_name", "birthdate", "email"} & set(labels)


def test_times_are_shown_in_the_portals_time_zone(browser, jobs, erika):
    browser.sign_in(jobs, erika.phone)
    form = browser.page(jobs, "/positions/2025-017")
    sent = browser.submit(
        jobs, "/positions/2025-017/apply", form, cover_letter="Ich bewerbe mich gern. " * 5
    )
    page = browser.get(sent.location)
    shown = Page(page.text).with_attribute("datetime")
    assert shown is not None
    utc = dt.datetime.fromisoformat(shown.attrs["datetime"])
    assert utc.utcoffset() == dt.timedelta(0)
    local = utc.astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
    assert shown.text.startswith(local.strftime("%d.%m.%Y %H:%M "))
    assert "UTC" not in page.text
    assert "Mitteleuropäische" in shown.text


def test_rejects_an_unknown_time_zone(tmp_path):
    with pytest.raises(ConfigError, match="PORTAL_JOBS_TIMEZONE"):
        create_portal(
            "jobs", {**CLIENT, "TIMEZONE": "Mars/Olympus", "INSTANCE_PATH": str(tmp_path)}
        )
