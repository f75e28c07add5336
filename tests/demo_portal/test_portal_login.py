"""Signing in to a portal with Bürger-ID over real HTTP, and signing out of both."""

from __future__ import annotations

import re
from urllib.parse import parse_qs
from urllib.parse import urlencode
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

import pytest
from sqlalchemy import select

from idserver.db import db
from idserver.oidc.claims import pairwise_subject
from idserver.sessions import BrowserSession


def _sub(page_text: str) -> str:
    match = re.search(r'<code id="sub"[^>]*>([^<]+)</code>', page_text)
    assert match, "no sub on the page"
    return match.group(1)


def _with_query(url: str, **changes: str | None) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_resident_signs_in_and_sees_the_claims(browser, parking, erika):
    page = browser.sign_in(parking, erika.phone)
    assert "Sie sind mit Bürger-ID angemeldet." in page.text
    about = browser.page(parking, "/about")
    assert about.status == 200
    assert "Kreuzstraße 5" in about.text and "Erika Mustermann" in about.text
    assert "birthdate" not in about.text  # parking never asked for it


def test_login_returns_to_the_page_asked_for(browser, jobs, erika):
    browser.open(jobs)
    answer = browser.page(jobs, "/positions/2025-017")
    assert "Mit Bürger-ID anmelden" in answer.text
    page = browser.sign_in(jobs, erika.phone, next_path="/positions/2025-017")
    assert "Anschreiben" in page.text


def test_protected_page_sends_the_browser_to_login(browser, parking):
    browser.open(parking)
    answer = browser.page(parking, "/about")
    assert answer.status == 303
    assert answer.location == "http://localhost:8101/login?next=/about"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil"])
def test_rejects_open_redirect_after_login(browser, parking, erika, target):
    callback = browser.authorize(parking, erika.phone, next_path=target)
    answer = browser.get(callback)
    assert answer.status == 303
    assert answer.location == "http://localhost:8101/"


def test_two_portals_receive_different_subs_for_one_citizen(browser, idp, parking, jobs, erika):
    browser.sign_in(parking, erika.phone)
    browser.sign_in(jobs, erika.phone)
    at_parking = _sub(browser.page(parking, "/about").text)
    at_jobs = _sub(browser.page(jobs, "/about").text)
    assert at_parking != at_jobs
    with idp.app.app_context():
        assert at_parking == pairwise_subject(
            erika.citizen_id, client_id=parking.config["CLIENT_ID"]
        )
        assert at_jobs == pairwise_subject(erika.citizen_id, client_id=jobs.config["CLIENT_ID"])


def test_logout_ends_the_portal_and_the_idp_session(browser, idp, parking, erika):
    page = browser.sign_in(parking, erika.phone)
    answer = browser.submit(parking, "/logout", page)
    assert answer.status == 303
    end_session = urlsplit(answer.location)
    assert answer.location.startswith(f"{idp.issuer}/logout?")
    query = parse_qs(end_session.query)
    assert query["post_logout_redirect_uri"] == ["http://localhost:8101/logged-out"]
    assert query["client_id"] == [parking.config["CLIENT_ID"]]
    assert query["id_token_hint"][0].count(".") == 2 and query["state"][0]

    at_idp = browser.get(answer.location)
    assert at_idp.status == 303
    assert at_idp.location == f"http://localhost:8101/logged-out?state={query['state'][0]}"
    back = browser.get(at_idp.location)
    assert 'id="logout-confirmed"' in back.text

    assert browser.page(parking, "/about").status == 303  # the portal session is gone
    with idp.app.app_context():
        sessions = db.session.scalars(select(BrowserSession)).all()
    assert sessions and all(s.ended_at is not None for s in sessions)


def test_logout_with_a_foreign_state_is_not_confirmed(browser, parking, erika):
    page = browser.sign_in(parking, erika.phone)
    answer = browser.submit(parking, "/logout", page)
    back = browser.get("http://localhost:8101/logged-out?state=forged")
    assert answer.status == 303
    assert back.status == 200 and 'id="logout-confirmed"' not in back.text


def test_rejects_logout_without_csrf_token(browser, parking, erika):
    browser.sign_in(parking, erika.phone)
    answer = browser.post("http://localhost:8101/logout", {})
    assert answer.status == 400 and 'data-error="csrf_rejected"' in answer.text
    assert browser.page(parking, "/about").status == 200  # still signed in


@pytest.mark.parametrize("iss", ["http://evil.example", None])
def test_rejects_authorization_response_from_another_issuer(browser, parking, erika, iss):
    """RFC 9207 §2.4: the iss parameter must name our issuer, and must be present."""
    callback = browser.authorize(parking, erika.phone)
    answer = browser.get(_with_query(callback, iss=iss))
    assert answer.status == 400 and 'data-error="issuer_mismatch"' in answer.text
    assert browser.page(parking, "/about").status == 303


def test_rejects_authorization_response_with_foreign_state(browser, parking, erika):
    callback = browser.authorize(parking, erika.phone)
    answer = browser.get(_with_query(callback, state="not-ours"))
    assert answer.status == 400 and 'data-error="login_failed"' in answer.text
    assert browser.page(parking, "/about").status == 303


def test_rejects_a_code_from_an_earlier_login(browser, parking, erika):
    first = browser.authorize(parking, erika.phone)
    assert browser.get(first).status == 303
    second = browser.authorize(parking, erika.phone)
    old_code = parse_qs(urlsplit(first).query)["code"][0]
    answer = browser.get(_with_query(second, code=old_code))
    assert answer.status == 400 and 'data-error="login_failed"' in answer.text


def test_denied_login_shows_a_friendly_page(browser, idp, parking, erika):
    browser.open(parking)
    login_url, _page = browser.follow(browser.page(parking, "/login"))
    status = browser.status(login_url)
    erika.phone.deny(status["phone_url"])
    status = browser.status(login_url)
    assert status["status"] == "denied"
    _url, page = browser.follow(browser.get(status["continue_url"]))
    assert page.status == 400 and 'data-error="access_denied"' in page.text
    assert "auf dem Telefon abgelehnt" in page.text


def test_unreachable_idp_is_explained(tmp_path):
    from demo_portal import create_portal

    app = create_portal(
        "jobs",
        {
            "ISSUER": "http://localhost:9",
            "CLIENT_ID": "x",
            "CLIENT_SECRET": "y",
            "INSTANCE_PATH": str(tmp_path / "unreachable"),
        },
    )
    answer = app.test_client().get("/login")
    assert answer.status_code == 503
    assert "Bürger-ID ist gerade nicht erreichbar" in answer.get_data(as_text=True)


def test_a_failed_login_shows_only_the_failure_and_signs_nobody_in(browser, parking, erika):
    """A replayed callback after a login: the failure page, no "signed in" notice or name."""
    callback = browser.authorize(parking, erika.phone)
    assert browser.get(callback).status == 303  # signed in; the notice waits in the session
    failed = browser.get(callback)
    assert failed.status == 400 and 'data-error="login_failed"' in failed.text
    assert "Anmeldung fehlgeschlagen" in failed.text
    assert "angemeldet" not in failed.text.lower()
    assert "Erika" not in failed.text
    assert browser.page(parking, "/about").status == 303  # not signed in any more
