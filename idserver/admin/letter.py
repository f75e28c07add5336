"""The activation letter: an A4 PDF for a window envelope (DIN 5008 form B).

It carries the municipality's letterhead, the resident's address in the window, the activation
code printed large and as a QR code (the QR holds the activation link with the code, so
scanning it fills the code in), the expiry date and plain-language steps. All wording goes
through gettext with English message ids; the letter is rendered in the language asked for
(German by default), whatever the clerk's browser speaks.

The PDF is tagged for screen readers (ISO 14289-1, PDF/UA): document language and title, a
structure tree whose headings, paragraphs and figure (the QR code, with alternate text) follow
the reading order, and fold marks, rules and shading marked as artifacts. fpdf2 builds the
structure tree and /MarkInfo; ``_Letter.tagged`` only names the element type of each block.

The plain code exists only in the returned bytes: it is never stored or logged.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlencode

import segno
from flask_babel import force_locale
from flask_babel import format_date
from flask_babel import format_time
from flask_babel import gettext as _
from fpdf import FPDF
from fpdf import FPDFException
from fpdf import ViewerPreferences

from ..citizens.models import Citizen

__all__ = ["LETTER_LANGUAGE", "Sender", "activation_letter_pdf", "activation_link"]

# fontTools logs the glyphs it keeps when subsetting at INFO: for the monospaced font, that is
# the set of characters in the activation code. Keep it out of the logs.
logging.getLogger("fontTools").setLevel(logging.WARNING)

LETTER_LANGUAGE = "de"
FONT_FILES = {
    ("Sans", ""): "DejaVuSans.ttf",
    ("Sans", "B"): "DejaVuSans-Bold.ttf",
    ("Mono", ""): "DejaVuSansMono.ttf",
}
# DIN 5008 form B, in millimetres from the page's top left corner. The address field (the
# envelope's window) is 85 × 45 mm at 20 mm from the left and 45 mm from the top; writing
# starts 5 mm inside it. Its top 17.7 mm hold the return address, the rest the recipient.
LEFT = 25.0
RIGHT = 20.0
WIDTH = 210.0 - LEFT - RIGHT
WINDOW_LEFT = 20.0
WINDOW_TOP = 45.0
WINDOW_WIDTH = 85.0
WINDOW_HEIGHT = 45.0
ADDRESS_WIDTH = WINDOW_LEFT + WINDOW_WIDTH - LEFT
RETURN_ADDRESS_HEIGHT = 5.0
RECIPIENT_TOP = WINDOW_TOP + 17.7
RECIPIENT_HEIGHT = WINDOW_TOP + WINDOW_HEIGHT - RECIPIENT_TOP
RECIPIENT_SIZES = (11.0, 10.0, 9.0, 8.0)  # points; DIN 5008 asks for at least 8 pt
INFO_LEFT = 125.0
BODY_TOP = 98.5
FOLD_MARKS = (105.0, 210.0)
HOLE_MARK = 148.5
QR_SIZE = 38.0
BODY_SIZE = 10.0
LINE = 4.8


@dataclass(frozen=True)
class Sender:
    """Who the letter is from (from the settings MUNICIPALITY_NAME and OFFICE_*)."""

    municipality: str
    office: str
    street: str
    postcode: str
    city: str
    contact: str = ""

    @property
    def return_address(self) -> str:
        return f"{self.municipality} · {self.office} · {self.street} · {self.postcode} {self.city}"


def activation_link(activation_url: str, code: str) -> str:
    """The link in the QR code: the activation page, the code in its fragment (``#code=…``).

    A browser never sends the fragment (RFC 3986 §3.5), so the code reaches no access log;
    the page's script fills it in and removes it from the address bar and history.
    """
    return f"{activation_url}#{urlencode({'code': code})}"


def _simplify(text: str, encoding: str) -> str:
    """Text a PDF core font can show: letters outside ``encoding`` lose their accents."""
    kept = []
    for char in text:
        try:
            char.encode(encoding)
        except UnicodeEncodeError:
            base = unicodedata.normalize("NFKD", char).encode(encoding, "ignore").decode(encoding)
            kept.append(base or "?")
        else:
            kept.append(char)
    return "".join(kept)


class _Letter(FPDF):
    """FPDF with DejaVu fonts when installed, else core fonts with simplified text."""

    def __init__(self, font_dir: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        paths = {key: os.path.join(font_dir, name) for key, name in FONT_FILES.items()}
        self.unicode_fonts = all(os.path.isfile(path) for path in paths.values())
        if self.unicode_fonts:
            for (family, style), path in paths.items():
                self.add_font(family, style, path)
        self.sans = "Sans" if self.unicode_fonts else "Helvetica"
        self.mono = "Mono" if self.unicode_fonts else "Courier"
        self.set_margins(LEFT, 20.0, RIGHT)
        self.set_auto_page_break(auto=True, margin=12.0)

    def normalize_text(self, text: str) -> str:
        if not self.is_ttf_font:
            text = _simplify(text, self.core_fonts_encoding or "latin-1")
        return super().normalize_text(text)

    @contextmanager
    def tagged(self, struct_type: str) -> Iterator[None]:
        """What is drawn inside is one structure element, the next in reading order.

        fpdf2 tags only images and outline entries itself (as ``/Figure``); this is its
        ``_marked_sequence`` with the element type as a parameter (ISO 32000-1 §14.7.4).
        """
        mcid = self.struct_builder.next_mcid_for_page(self.page)
        self._add_marked_content(struct_type=f"/{struct_type}", mcid=mcid)
        page = self.page
        self._out(f"/{struct_type} <</MCID {mcid}>> BDC")
        yield
        if self.page != page:
            raise FPDFException("a tagged block must not span two pages")
        self._out("EMC")

    def make_room(self, height: float) -> None:
        """A new page unless ``height`` fits on this one: a tagged block never spans two."""
        if self.get_y() + height > self.page_break_trigger:
            self.add_page()

    def block_height(self, width: float, line_height: float, text: str) -> float:
        height = self.multi_cell(width, line_height, text, dry_run=True, output="HEIGHT")
        assert isinstance(height, float | int)
        return float(height)

    @contextmanager
    def artifact(self) -> Iterator[None]:
        """Decoration a screen reader skips (ISO 32000-1 §14.8.2.2): marks, rules, shading."""
        self._out("/Artifact BMC")
        yield
        self._out("EMC")

    def fit_line(self, text: str, width: float, *, style: str, sizes: tuple[float, ...]) -> str:
        """Set the first of ``sizes`` at which ``text`` fits one line of ``width``; at the
        last size, ``text`` is shortened to fit."""
        for size in sizes:
            self.set_font(self.sans, style, size)
            if self.get_string_width(text) + 2 * self.c_margin <= width:
                return text
        return self.shortened(text, width)

    def wrapped(self, text: str, width: float) -> list[str]:
        lines = self.multi_cell(width, 1, text, dry_run=True, output="LINES")
        assert isinstance(lines, list)
        return [str(line) for line in lines]

    def shortened(self, text: str, width: float) -> str:
        """``text`` cut to one line of ``width``, ending in an ellipsis."""
        while text and self.get_string_width(text + "…") + 2 * self.c_margin > width:
            text = text[:-1]
        return text.rstrip() + "…"

    def write_block(
        self,
        text: str,
        *,
        size: float = BODY_SIZE,
        style: str = "",
        gap: float = 1.5,
        tag: str = "P",
    ) -> None:
        self.set_font(self.sans, style, size)
        self.make_room(self.block_height(WIDTH, size * 0.48, text))
        self.set_x(LEFT)
        with self.tagged(tag):
            self.multi_cell(WIDTH, size * 0.48, text, align="L", new_x="LMARGIN", new_y="NEXT")
        self.ln(gap)

    def numbered(self, number: int, text: str) -> None:
        self.set_font(self.sans, "", BODY_SIZE)
        self.make_room(self.block_height(WIDTH - 7, LINE, text))
        self.set_x(LEFT)
        with self.tagged("P"):
            self.set_font(self.sans, "B", BODY_SIZE)
            self.cell(7, LINE, f"{number}.")
            self.set_font(self.sans, "", BODY_SIZE)
            self.multi_cell(WIDTH - 7, LINE, text, align="L", new_x="LMARGIN", new_y="NEXT")
        self.ln(1)

    def boxed_line(self, x: float, width: float, height: float, text: str) -> None:
        self.set_x(x)
        with self.tagged("P"):
            self.multi_cell(width, height, text, align="L", new_x="LEFT", new_y="NEXT")


def _recipient_lines(pdf: _Letter, fields: list[str]) -> tuple[float, list[str]]:
    """The address at the largest size at which it fits the window, wrapped to its width.

    Even at the smallest size, an address too long for the window loses the end of its
    longest field (shown by an ellipsis) rather than leave the window.
    """
    for size in RECIPIENT_SIZES:
        pdf.set_font(pdf.sans, "", size)
        blocks = [pdf.wrapped(field, ADDRESS_WIDTH) for field in fields]
        if sum(map(len, blocks)) * _line_height(size) <= RECIPIENT_HEIGHT:
            return size, [line for block in blocks for line in block]
    room = int(RECIPIENT_HEIGHT // _line_height(size))
    while sum(map(len, blocks)) > room:
        longest = max(blocks, key=len)
        del longest[-1]
        longest[-1] = pdf.shortened(longest[-1], ADDRESS_WIDTH)
    return size, [line for block in blocks for line in block]


def _line_height(size: float) -> float:
    return size * 0.5


def _grouped(code: str) -> str:
    return "  ".join(code.split("-"))


def _qr_png(link: str) -> io.BytesIO:
    buffer = io.BytesIO()
    segno.make(link, error="m", micro=False).save(buffer, kind="png", scale=8, border=4)
    buffer.seek(0)
    return buffer


def activation_letter_pdf(
    *,
    citizen: Citizen,
    code: str,
    activation_url: str,
    expires_at: dt.datetime,
    sender: Sender,
    font_dir: str,
    today: dt.date | None = None,
    language: str = LETTER_LANGUAGE,
) -> bytes:
    """The letter as PDF bytes, worded in ``language``."""
    with force_locale(language):
        return _render(
            citizen=citizen,
            code=code,
            activation_url=activation_url,
            expires_at=expires_at,
            sender=sender,
            font_dir=font_dir,
            today=today or dt.date.today(),
            language=language,
        )


def _render(
    *,
    citizen: Citizen,
    code: str,
    activation_url: str,
    expires_at: dt.datetime,
    sender: Sender,
    font_dir: str,
    today: dt.date,
    language: str,
) -> bytes:
    pdf = _Letter(font_dir)
    pdf.set_lang(language)
    pdf.set_title(_("Your activation code for Bürger-ID"))
    pdf.viewer_preferences = ViewerPreferences(display_doc_title=True)
    pdf.set_author(sender.municipality)
    pdf.set_creator("Bürger-ID")
    pdf.add_page()
    name = f"{citizen.given_name} {citizen.family_name}"
    valid_until = _(
        "%(date)s, %(time)s",
        date=format_date(expires_at, "long"),
        time=format_time(expires_at, "short"),
    )

    with pdf.artifact():  # fold and hole marks for the window envelope
        pdf.set_draw_color(120, 120, 120)
        pdf.set_line_width(0.2)
        for y in FOLD_MARKS:
            pdf.line(4, y, 8, y)
        pdf.line(4, HOLE_MARK, 10, HOLE_MARK)

    # Letterhead.
    pdf.set_text_color(11, 79, 138)
    pdf.set_xy(LEFT, 16)
    municipality = pdf.fit_line(sender.municipality, WIDTH, style="B", sizes=(18, 16, 14, 12))
    with pdf.tagged("P"):
        pdf.cell(WIDTH, 9, municipality, new_x="LMARGIN", new_y="NEXT")
    office = pdf.fit_line(sender.office, WIDTH, style="", sizes=(11, 10, 9))
    with pdf.tagged("P"):
        pdf.cell(WIDTH, 6, office, new_x="LMARGIN", new_y="NEXT")
    with pdf.artifact():
        pdf.set_draw_color(11, 79, 138)
        pdf.line(LEFT, 34, 210 - RIGHT, 34)
    pdf.set_text_color(27, 27, 27)

    # Address window: return address, then the resident, never beyond the window's edges.
    return_address = pdf.fit_line(
        sender.return_address, ADDRESS_WIDTH, style="", sizes=(7, 6.5, 6, 5.5, 5)
    )
    pdf.set_xy(LEFT, WINDOW_TOP + 8)
    with pdf.tagged("P"):
        pdf.cell(ADDRESS_WIDTH, RETURN_ADDRESS_HEIGHT, return_address)
    size, lines = _recipient_lines(
        pdf, [name, citizen.street, f"{citizen.postcode} {citizen.city}"]
    )
    pdf.set_font(pdf.sans, "", size)
    pdf.set_xy(LEFT, RECIPIENT_TOP)
    with pdf.tagged("P"):
        for line in lines:
            pdf.cell(ADDRESS_WIDTH, _line_height(size), line, new_x="LMARGIN", new_y="NEXT")

    # Information block beside the window.
    info = [
        (_("Date"), format_date(today, "long")),
        (_("From"), sender.office),
        (_("Address"), f"{sender.street}\n{sender.postcode} {sender.city}"),
    ]
    if sender.contact:
        info.append((_("Contact"), sender.contact))
    pdf.set_xy(INFO_LEFT, WINDOW_TOP + 8)
    for label, value in info:
        pdf.set_x(INFO_LEFT)
        with pdf.tagged("P"):
            pdf.set_font(pdf.sans, "B", 9)
            pdf.cell(20, 4.5, label)
            pdf.set_font(pdf.sans, "", 9)
            pdf.multi_cell(210 - RIGHT - INFO_LEFT - 20, 4.5, value, align="L", new_x="LMARGIN")

    # Subject and opening (below a long information block, if need be).
    pdf.set_xy(LEFT, max(BODY_TOP, pdf.get_y() + 4))
    pdf.write_block(_("Your activation code for Bürger-ID"), size=12.5, style="B", gap=3, tag="H1")
    # The salutation ends in a comma, so in German the next sentence begins in lower case.
    pdf.write_block(_("Dear %(name)s,", name=name))
    pdf.write_block(
        _(
            "With Bürger-ID you can log in to online services of %(municipality)s with your "
            "phone, without a password. To do so, you register your phone once. For this you "
            "need the activation code in this letter.",
            municipality=sender.municipality,
        ),
        gap=3,
    )

    # The code, large, then its QR code beside it (after the code in reading order).
    box_height = QR_SIZE + 6
    pdf.make_room(box_height)
    top = pdf.get_y()
    text_x = LEFT + 5
    text_width = WIDTH - QR_SIZE - 13
    with pdf.artifact():
        pdf.set_fill_color(242, 245, 249)
        pdf.rect(LEFT, top, WIDTH, box_height, style="F")
    pdf.set_y(top + 5)
    pdf.set_font(pdf.sans, "B", BODY_SIZE)
    pdf.boxed_line(text_x, text_width, 6, _("Your activation code:"))
    pdf.set_font(pdf.mono, "", 21)
    pdf.boxed_line(text_x, text_width, 12, _grouped(code))
    pdf.set_font(pdf.sans, "B", BODY_SIZE)
    pdf.boxed_line(text_x, text_width, 6, _("Valid until: %(date)s", date=valid_until))
    pdf.set_font(pdf.sans, "", 9)
    pdf.boxed_line(
        text_x,
        text_width,
        4.5,
        _("Upper or lower case does not matter. The code can be used only once."),
    )
    pdf.image(  # fpdf2 tags an image with alternate text as a /Figure
        _qr_png(activation_link(activation_url, code)),
        x=210 - RIGHT - QR_SIZE - 3,
        y=top + 3,
        w=QR_SIZE,
        h=QR_SIZE,
        alt_text=_("QR code with your activation link"),
    )
    pdf.set_xy(LEFT, top + box_height + 4)

    # The steps.
    pdf.write_block(_("How to register your phone"), size=11, style="B", gap=1, tag="H2")
    pdf.numbered(
        1,
        _(
            "Scan the QR code above with your phone's camera. The registration page of "
            "Bürger-ID opens, with your code already filled in."
        ),
    )
    pdf.numbered(
        2,
        _(
            "If you cannot scan the QR code, open this address in your phone's browser and "
            "type the code: %(url)s",
            url=activation_url,
        ),
    )
    pdf.numbered(
        3,
        _(
            "Give your phone a name and confirm with your fingerprint, your face or your "
            "screen lock, as your phone asks you to."
        ),
    )
    pdf.numbered(
        4,
        _(
            "At the end you see a revocation code. Write it down and keep it in a safe place, "
            "away from your phone. If your phone is lost or stolen, it blocks the phone."
        ),
    )
    pdf.ln(2)
    pdf.write_block(_("Please note"), size=11, style="B", gap=1, tag="H2")
    pdf.write_block(
        _(
            "Keep this letter safe and do not show the code to anyone. The citizens' office "
            "will never ask you for this code by phone or e-mail."
        )
    )
    contact = sender.contact or f"{sender.office}, {sender.street}, {sender.postcode} {sender.city}"
    pdf.write_block(
        _(
            "If you did not ask for this letter, or the code has expired, please contact "
            "the citizens' office: %(contact)s",
            contact=contact,
        ),
        gap=3,
    )
    pdf.write_block(_("Kind regards"), gap=0.5)
    pdf.write_block(f"{sender.office} – {sender.municipality}")

    return bytes(pdf.output())
