"""Bewerberportal: open positions, applying with Bürger-ID, following and withdrawing."""

from __future__ import annotations

import re

import pytest

JOBS = "http://localhost:8102"
LETTER = (
    "Sehr geehrte Damen und Herren,\n\nich bewerbe mich um die Stelle in den Bürgerdiensten, "
    "weil ich gern mit Menschen arbeite.\n\nMit freundlichen Grüßen\nErika Mustermann"
)


def _application_id(location: str) -> str:
    match = re.fullmatch(rf"{JOBS}/applications/([0-9a-f-]+)", location)
    assert match, location
    return match.group(1)


def _apply(browser, jobs, position: str = "2025-017", letter: str = LETTER):
    page = browser.page(jobs, f"/positions/{position}")
    return browser.submit(jobs, f"/positions/{position}/apply", page, cover_letter=letter)


@pytest.fixture
def signed_in_erika(browser, jobs, erika):
    browser.sign_in(jobs, erika.phone)
    return browser


def test_lists_open_positions_only(browser, jobs):
    browser.open(jobs)
    page = browser.page(jobs, "/")
    assert "Sachbearbeitung Bürgerdienste" in page.text
    assert "Westfalenpark" not in page.text  # closed
    assert browser.page(jobs, "/positions/2024-112").status == 404


def test_application_is_submitted_and_shown(signed_in_erika, jobs):
    answer = _apply(signed_in_erika, jobs)
    assert answer.status == 303
    page = signed_in_erika.get(answer.location)
    assert 'data-state="submitted"' in page.text
    assert "eingegangen – in Prüfung" in page.text
    assert "Vielen Dank! Ihre Bewerbung ist eingegangen." in page.text
    assert "erika@example.org" in page.text and "weil ich gern mit Menschen arbeite" in page.text
    overview = signed_in_erika.page(jobs, "/")
    assert 'id="my-applications"' in overview.text


def test_application_is_withdrawn(signed_in_erika, jobs):
    location = _apply(signed_in_erika, jobs).location
    page = signed_in_erika.get(location)
    path = f"/applications/{_application_id(location)}/withdraw"
    answer = signed_in_erika.submit(jobs, path, page)
    assert answer.status == 303 and answer.location == location
    page = signed_in_erika.get(location)
    assert 'data-state="withdrawn"' in page.text and "zurückgezogen" in page.text
    assert "/withdraw" not in page.text
    again = signed_in_erika.submit(jobs, path, page)
    assert again.status == 303  # withdrawing twice changes nothing and says so


def test_may_apply_again_after_withdrawing(signed_in_erika, jobs):
    first = _apply(signed_in_erika, jobs).location
    page = signed_in_erika.get(first)
    signed_in_erika.submit(jobs, f"/applications/{_application_id(first)}/withdraw", page)
    second = _apply(signed_in_erika, jobs)
    assert second.status == 303 and second.location != first


def test_rejects_second_open_application_for_one_position(signed_in_erika, jobs, portal_rows):
    form = signed_in_erika.page(jobs, "/positions/2025-017")
    _apply(signed_in_erika, jobs)
    before = portal_rows(jobs)
    answer = signed_in_erika.submit(jobs, "/positions/2025-017/apply", form, cover_letter=LETTER)
    assert answer.status == 409 and 'data-error="already_applied"' in answer.text
    assert portal_rows(jobs) == before
    assert 'id="already-applied"' in signed_in_erika.page(jobs, "/positions/2025-017").text


@pytest.mark.parametrize("letter", ["", "   ", "Zu kurz.", "x" * 4001, "\x00" * 60])
def test_rejects_cover_letters_of_the_wrong_length(signed_in_erika, jobs, portal_rows, letter):
    before = portal_rows(jobs)
    answer = _apply(signed_in_erika, jobs, letter=letter)
    assert answer.status == 422 and 'id="letter-error"' in answer.text
    assert portal_rows(jobs) == before


def test_rejects_applicant_below_the_minimum_age(browser, jobs, max_outside, portal_rows):
    browser.sign_in(jobs, max_outside.phone)
    before = portal_rows(jobs)
    answer = _apply(browser, jobs, position="2025-023")
    assert answer.status == 422 and "mindestens 18 Jahre alt" in answer.text
    assert portal_rows(jobs) == before


def test_rejects_application_for_a_closed_position(signed_in_erika, jobs, portal_rows):
    before = portal_rows(jobs)
    form = signed_in_erika.page(jobs, "/positions/2025-017")
    answer = signed_in_erika.submit(jobs, "/positions/2024-112/apply", form, cover_letter=LETTER)
    assert answer.status == 400 and 'data-error="position_closed"' in answer.text
    assert portal_rows(jobs) == before


def test_rejects_application_without_csrf_token(signed_in_erika, jobs, portal_rows):
    before = portal_rows(jobs)
    answer = signed_in_erika.post(f"{JOBS}/positions/2025-017/apply", {"cover_letter": LETTER})
    assert answer.status == 400 and 'data-error="csrf_rejected"' in answer.text
    answer = signed_in_erika.post(
        f"{JOBS}/positions/2025-017/apply", {"cover_letter": LETTER, "csrf_token": "guess"}
    )
    assert answer.status == 400
    assert portal_rows(jobs) == before


def test_rejects_application_after_signing_out(signed_in_erika, jobs, portal_rows):
    """Signing out clears the session, and with it the CSRF token of forms still open."""
    form = signed_in_erika.page(jobs, "/positions/2025-017")
    signed_out = signed_in_erika.submit(jobs, "/logout", form)
    assert signed_out.status == 303
    before = portal_rows(jobs)
    answer = signed_in_erika.submit(jobs, "/positions/2025-017/apply", form, cover_letter=LETTER)
    assert answer.status == 400 and 'data-error="csrf_rejected"' in answer.text
    assert portal_rows(jobs) == before


def test_others_cannot_see_or_withdraw_an_application(
    signed_in_erika, second_browser, jobs, max_outside, portal_rows
):
    location = _apply(signed_in_erika, jobs).location
    application_id = _application_id(location)
    page = second_browser.sign_in(jobs, max_outside.phone)
    before = portal_rows(jobs)
    assert second_browser.page(jobs, f"/applications/{application_id}").status == 404
    answer = second_browser.submit(jobs, f"/applications/{application_id}/withdraw", page)
    assert answer.status == 404
    assert portal_rows(jobs) == before


def test_about_page_shows_the_jobs_claims(signed_in_erika, jobs):
    page = signed_in_erika.page(jobs, "/about")
    assert "1984-08-12" in page.text and "erika@example.org" in page.text
    assert "Kreuzstraße" not in page.text  # the job portal never asked for the address
