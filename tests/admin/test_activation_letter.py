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


# -- the address window and the tagged PDF ------------------------------------------------------
MM = 72 / 25.4  # PDF points per millimetre
PAGE_HEIGHT = 297 * MM
WINDOW = {"left": 20, "right": 105, "top": 45, "bottom": 90}  # DIN 5008 form B, in mm


def _marked_texts(pdf_bytes):
    """Each text run on the page with its marked-content id, font size and position (points)."""
    page = pypdf.PdfReader(io.BytesIO(pdf_bytes)).pages[0]
    runs, marked = [], [None]

    def before(operator, operands, cm, tm):
        if operator == b"BDC":
            properties = operands[1]
            marked[0] = properties.get("/MCID") if hasattr(properties, "get") else None
        elif operator == b"EMC":
            marked[0] = None

    def text(content, cm, tm, font, size):
        if content.strip():
            runs.append((marked[0], content, size * tm[0], tm[4], tm[5]))

    page.extract_text(visitor_operand_before=before, visitor_text=text)
    return runs


def _structure(pdf_bytes):
    reader = pypdf.PdfReader(io.BytesIO(pdf_bytes))
    (document,) = reader.trailer["/Root"]["/StructTreeRoot"]["/K"]
    document = document.get_object()
    assert document["/S"] == "/Document"
    return [kid.get_object() for kid in document["/K"]]


def _width_in_mm(text, size, font_dir):
    """The run's printed width, measured with the font the letter embeds."""
    from fpdf import FPDF

    measure = FPDF(unit="mm")
    measure.add_font("Sans", "", str(Path(font_dir, "DejaVuSans.ttf")))
    measure.set_font("Sans", "", size)
    return measure.get_string_width(text)


LONG_NAME = {  # 80 characters with umlauts, and a street nearly as long
    "given_name": "Anna-Lena Friederike Jösephin",
    "family_name": "von Müller-Lüdenscheidt-Wäldchenbrück zu Übelhöfen",
    "street": "Oberbürgermeister-Dr.-Günther-Schäfer-Straße 1234 a, Hinterhaus, Öbergeschoss",
}


@pytest.mark.parametrize(
    "street", [LONG_NAME["street"], "Kampstraße 12", "Ö" * 200], ids=["long", "short", "too-long"]
)
def test_a_long_name_stays_inside_the_address_window(app, runner, tmp_path, street):
    font_dir = app.config["LETTER_FONT_DIR"]
    if not Path(font_dir, "DejaVuSans.ttf").is_file():
        pytest.skip("DejaVu fonts are not installed")
    name = f"{LONG_NAME['given_name']} {LONG_NAME['family_name']}"
    assert len(name) == 80
    with app.app_context():
        resident = register_citizen(
            given_name=LONG_NAME["given_name"],
            family_name=LONG_NAME["family_name"],
            birthdate="1979-03-03",
            street=street,
            postcode="44137",
            city="Dortmund",
        )
    clerk = sign_in_clerk(app, runner, tmp_path)
    runs = _marked_texts(_letter(clerk, resident.id).data)

    near_window = [
        run for run in runs if run[3] < 110 * MM and 40 * MM < PAGE_HEIGHT - run[4] < 95 * MM
    ]
    assert near_window
    for _mcid, text, size, x, y in near_window:
        left, baseline = x / MM, (PAGE_HEIGHT - y) / MM
        right = left + _width_in_mm(text, size, font_dir)
        top, bottom = baseline - size * 0.76 / MM, baseline + size * 0.24 / MM
        assert WINDOW["left"] <= left and right <= WINDOW["right"], (text, left, right)
        assert WINDOW["top"] <= top and bottom <= WINDOW["bottom"], (text, top, bottom)
    # the address, wrapped but whole: name and town in full, the street shortened only if
    # nothing else would fit
    printed = "".join(text for _, text, *_ in near_window).replace(" ", "")
    assert name.replace(" ", "") in printed and "44137Dortmund" in printed
    if len(street) < 100:
        assert street.replace(" ", "") in printed
    else:
        assert "…" in printed


def test_the_letter_is_a_tagged_pdf_in_reading_order(app, runner, tmp_path, citizen):
    clerk = sign_in_clerk(app, runner, tmp_path)
    pdf_bytes = _letter(clerk, citizen.id).data
    reader = pypdf.PdfReader(io.BytesIO(pdf_bytes))
    catalog = reader.trailer["/Root"]
    assert catalog["/Lang"] == "de"
    assert catalog["/MarkInfo"]["/Marked"].value is True
    assert catalog["/ViewerPreferences"]["/DisplayDocTitle"].value is True
    assert reader.metadata.title == "Ihr Aktivierungscode für die Bürger-ID"
    assert reader.pages[0]["/StructParents"] == 0

    elements = _structure(pdf_bytes)
    types = [element["/S"] for element in elements]
    assert types.index("/H1") < types.index("/Figure") < types.index("/H2")
    assert [t for t in types if t.startswith("/H")] == ["/H1", "/H2", "/H2"]
    assert set(types) == {"/P", "/H1", "/H2", "/Figure"}
    (figure,) = [element for element in elements if element["/S"] == "/Figure"]
    assert figure["/Alt"] == "QR-Code mit Ihrem Aktivierungslink"

    # every text run on the page belongs to an element (decoration is an artifact), and the
    # elements, read in the tree's order, give the letter in the order a reader needs it
    runs = _marked_texts(pdf_bytes)
    assert all(mcid is not None for mcid, *_ in runs)
    text_of = {}
    for mcid, text, *_ in runs:
        text_of[mcid] = text_of.get(mcid, "") + text
    (heading,) = [element for element in elements if element["/S"] == "/H1"]
    assert text_of[heading["/K"][0]] == "Ihr Aktivierungscode für die Bürger-ID"
    in_order = " | ".join(text_of.get(element["/K"][0], "[figure]") for element in elements)
    code = re.search(r"[A-Z0-9]{4}  [A-Z0-9]{4}  [A-Z0-9]{4}  [A-Z0-9]{4}", in_order).group(0)
    milestones = [
        "Stadt Musterstadt",
        "Erika Mustermann",
        "Ihr Aktivierungscode für die Bürger-ID",
        "Guten Tag Erika Mustermann, | mit der Bürger-ID melden Sie sich",
        code,
        "[figure]",
        "So richten Sie Ihr Handy ein",
        "1. Scannen Sie den QR-Code",
        "2. Sie können den QR-Code nicht scannen?",
        "3. Geben Sie Ihrem Handy einen Namen.",
        "4. Zum Schluss sehen Sie einen Sperrcode.",
        "Bitte beachten Sie",
        "Mit freundlichen Grüßen",
    ]
    positions = [in_order.find(milestone) for milestone in milestones]
    assert -1 not in positions, list(zip(milestones, positions, strict=True))
    assert positions == sorted(positions), in_order


def test_the_english_letter_keeps_its_capital_after_the_salutation(app, runner, tmp_path, citizen):
    clerk = sign_in_clerk(app, runner, tmp_path)
    pdf_bytes = _letter(clerk, citizen.id, language="en").data
    texts = [text for _, text, *_ in _marked_texts(pdf_bytes)]
    salutation = texts.index("Dear Erika Mustermann,")
    assert texts[salutation + 1].startswith("With Bürger-ID you can log in")
    assert _structure(pdf_bytes)[-1]["/S"] == "/P"


def test_a_letter_too_long_for_one_page_goes_on_tagged(app, runner, tmp_path, citizen):
    """Long settings push the end onto a second page; no tagged block is cut in two."""
    app.config["MUNICIPALITY_NAME"] = "Verbandsgemeinde " + " ".join(
        ["Langenlonsheim-Stromberg"] * 4
    )
    app.config["OFFICE_CONTACT"] = "; ".join(
        [f"Servicezentrum {number}: Telefon 0123 456-{number}" for number in range(12)]
    )
    clerk = sign_in_clerk(app, runner, tmp_path)
    pdf_bytes = _letter(clerk, citizen.id).data
    reader, text = _read(pdf_bytes)
    assert len(reader.pages) == 2
    letterhead = _marked_texts(pdf_bytes)[0][1]
    assert letterhead.startswith("Verbandsgemeinde Langenlonsheim") and letterhead.endswith("…")
    assert [page["/StructParents"] for page in reader.pages] == [0, 1]
    assert "Servicezentrum 11: Telefon 0123 456-11" in text.replace("\n", " ")
    elements = _structure(pdf_bytes)
    assert [element["/S"] for element in elements].count("/H2") == 2
    assert {element["/Pg"].get_object()["/StructParents"] for element in elements} == {0, 1}
