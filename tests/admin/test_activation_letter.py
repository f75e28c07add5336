"""The activation letter: a one-page PDF whose QR code and printed code enrol a phone.

The text is read back with pypdf and the QR code decoded from the embedded image with
zxing-cpp, so the test checks what a resident would actually see and scan.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
import zxingcpp
from clerk_session import sign_in_clerk
from page import html_of

from idserver.citizens.models import Citizen
from idserver.citizens.service import register_citizen
from idserver.db import db
from idserver.db import utcnow

pypdf = pytest.importorskip("pypdf")


def _letter(clerk, citizen_id, **form):
    response = clerk.post(f"/admin/residents/{citizen_id}/letter", form)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def _read(pdf_bytes):
    reader = pypdf.PdfReader(io.BytesIO(pdf_bytes))
    return reader, " ".join(page.extract_text() for page in reader.pages)


def _qr_links(reader):
    found = []
    for image in reader.pages[0].images:
        found += [barcode.text for barcode in zxingcpp.read_barcodes(image.image)]
    return found


def test_the_letter_is_a_pdf_download_that_enrols_a_phone(
    app, runner, tmp_path, citizen, phone, db_state
):
    clerk = sign_in_clerk(app, runner, tmp_path)
    response = _letter(clerk, citizen.id)
    assert response.mimetype == "application/pdf"
    assert response.headers["Cache-Control"] == "no-store"
    assert re.fullmatch(
        r'attachment; filename="activation-letter-[0-9a-f]{8}\.pdf"',
        response.headers["Content-Disposition"],
    )
    assert response.data.startswith(b"%PDF-") and len(response.data) > 5_000

    reader, text = _read(response.data)
    assert len(reader.pages) == 1
    for expected in ("Stadt Musterstadt", "Erika Mustermann", "Kampstraße 12", "44137 Dortmund"):
        assert expected in text
    printed = re.search(r"([A-Z0-9]{4})  ([A-Z0-9]{4})  ([A-Z0-9]{4})  ([A-Z0-9]{4})", text)
    assert printed, text
    code = "-".join(printed.groups())

    (link,) = _qr_links(reader)
    parts = urlsplit(link)
    activation_id = parts.path.rsplit("/", 1)[-1]
    assert (
        f"{parts.scheme}://{parts.netloc}{parts.path}"
        == f"http://localhost/activate/{activation_id}"
    )
    # the code rides in the fragment, which a browser never sends to the server
    assert parts.query == ""
    assert parse_qs(parts.fragment) == {"code": [code]}
    assert f"http://localhost/activate/{activation_id}" in text

    # the plain code is nowhere in the database
    state = repr(db_state())
    assert code not in state and code.replace("-", "") not in state

    # the page the QR code opens is served without the code (its script reads the fragment,
    # see tests/e2e), and the code enrols a phone
    page = app.test_client().get(link.split("#", 1)[0].removeprefix("http://localhost"))
    assert page.status_code == 200 and code not in page.get_data(as_text=True)
    assert 'src="/static/js/activate.js"' in page.get_data(as_text=True)
    assert phone.enrol(activation_id, code).status_code == 201


def test_a_link_from_an_older_letter_moves_the_code_into_the_fragment(
    app, client, activation, db_state
):
    """Letters printed before the change carry ``?code=``: the page sends it on as ``#code=``."""
    activation_id, code = activation
    before = db_state()
    moved = client.get(f"/activate/{activation_id}?code={code}&lang=en")
    assert moved.status_code == 303
    assert moved.headers["Location"] == (
        f"http://localhost/activate/{activation_id}?lang=en#code={code}"
    )
    assert moved.headers["Cache-Control"] == "no-store"
    assert db_state() == before


def test_the_letter_is_german_by_default_and_names_the_expiry_date(app, runner, tmp_path, citizen):
    clerk = sign_in_clerk(app, runner, tmp_path)
    reader, text = _read(_letter(clerk, citizen.id).data)
    assert reader.trailer["/Root"]["/Lang"] == "de"
    months = ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August"]
    months += ["September", "Oktober", "November", "Dezember"]
    assert any(f" {month} 20" in text for month in months)  # the expiry date, in German
    reader, _ = _read(_letter(clerk, citizen.id, language="en").data)
    assert reader.trailer["/Root"]["/Lang"] == "en"


def test_the_letterhead_comes_from_the_settings(app, runner, tmp_path, citizen):
    app.config["MUNICIPALITY_NAME"] = "Gemeinde Beispielhausen"
    app.config["OFFICE_CONTACT"] = "Telefon 0123 456-0"
    clerk = sign_in_clerk(app, runner, tmp_path)
    _, text = _read(_letter(clerk, citizen.id).data)
    assert "Gemeinde Beispielhausen" in text and "Telefon 0123 456-0" in text


@pytest.mark.parametrize("fonts", ["dejavu", "core"])
def test_names_beyond_latin_1_are_printed(app, runner, tmp_path, fonts):
    if fonts == "core":
        app.config["LETTER_FONT_DIR"] = str(tmp_path / "no-fonts-here")
    elif not Path(app.config["LETTER_FONT_DIR"], "DejaVuSans.ttf").is_file():
        pytest.skip("DejaVu fonts are not installed")
    with app.app_context():
        resident = register_citizen(
            given_name="Łucja",
            family_name="Dvořák",
            birthdate="1979-03-03",
            street="Ulica Świętego 3",
            postcode="12345",
            city="Musterstadt",
        )
    clerk = sign_in_clerk(app, runner, tmp_path)
    _, text = _read(_letter(clerk, resident.id).data)
    if fonts == "dejavu":
        assert "Łucja Dvořák" in text
    else:  # core fonts: the letters the font lacks lose their accents
        assert "Dvorák" in text


def test_no_letter_for_a_deleted_resident(app, runner, tmp_path, citizen, db_state):
    with app.app_context():
        db.session.get(Citizen, citizen.id).deleted_at = utcnow()
        db.session.commit()
    clerk = sign_in_clerk(app, runner, tmp_path)
    token = clerk.csrf()
    before = db_state()
    refused = clerk.browser.post(
        f"/admin/residents/{citizen.id}/letter", data={"csrf_token": token}
    )
    assert refused.status_code == 404
    assert db_state() == before


def test_making_the_letter_logs_nothing_about_the_code(app, runner, tmp_path, citizen, caplog):
    clerk = sign_in_clerk(app, runner, tmp_path)
    caplog.set_level(logging.DEBUG)
    _, text = _read(_letter(clerk, citizen.id).data)
    printed = re.search(r"[A-Z0-9]{4}  [A-Z0-9]{4}  [A-Z0-9]{4}  [A-Z0-9]{4}", text).group(0)
    assert printed.replace("  ", "-") not in caplog.text
    assert "Glyph" not in caplog.text  # a font subsetter's glyph list names the code's letters


def test_after_the_download_the_residents_page_shows_the_new_letter(app, runner, tmp_path, citizen):
    clerk = sign_in_clerk(app, runner, tmp_path)
    before = html_of(clerk.browser.get(f"/admin/residents/{citizen.id}"))
    (form,) = [f for f in before.find("form") if f.attrs["action"].endswith("/letter")]
    # the console's script sends this form, saves the PDF and then opens data-after
    assert "data-letter" in form.attrs
    assert form.attrs["data-after"].startswith(f"/admin/residents/{citizen.id}")
    assert before.find("script", src="/static/js/admin-letter.js")
    assert before.find("p", id="letter-status", role="status")
    assert "not used yet" not in " ".join(td.words for td in before.find("td"))
    _letter(clerk, citizen.id)
    after = html_of(clerk.browser.get(form.attrs["data-after"]))
    flashes = [p.words for p in after.find("p", class_="notice")]
    assert any(text.startswith("A new activation letter has been issued.") for text in flashes)
    assert "not used yet" in [td.words for td in after.find("td")]
