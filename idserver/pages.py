"""The pages that belong to no feature: the start page and the accessibility statement."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint
from flask import current_app
from flask import render_template

from .config import whole_minutes

# Named "web" (where these pages were first): templates link ``web.home`` and
# ``web.accessibility``.
bp = Blueprint("web", __name__)

# The accessibility statement says when it was last checked against the pages (BITV 2.0 § 7):
# review it, and move this date, whenever pages change in a way that affects the known gaps.
ACCESSIBILITY_REVIEWED = dt.date(2026, 11, 21)
ARBITRATION_BOARD = (
    "Schlichtungsstelle nach dem Behindertengleichstellungsgesetz bei dem Beauftragten der "
    "Bundesregierung für die Belange von Menschen mit Behinderungen",
    "Mauerstraße 53",
    "10117 Berlin",
)
ARBITRATION_BOARD_WEBSITE = "https://www.schlichtungsstelle-bgg.de"


@bp.get("/")
def home() -> str:
    config = current_app.config
    return render_template(
        "home.html", office=config["OFFICE_NAME"], office_contact=config["OFFICE_CONTACT"]
    )


@bp.get("/barrierefreiheit")
def accessibility() -> str:
    """Erklärung zur Barrierefreiheit (BITV 2.0 § 7; model: EU implementing decision 2018/1523)."""
    return render_template(
        "accessibility.html",
        reviewed=ACCESSIBILITY_REVIEWED,
        login_minutes=whole_minutes("LOGIN_TTL_SECONDS"),
        pairing_minutes=whole_minutes("PAIRING_TTL_SECONDS"),
        idle_minutes=whole_minutes("SESSION_IDLE_SECONDS"),
        arbitration_board=ARBITRATION_BOARD,
        arbitration_board_website=ARBITRATION_BOARD_WEBSITE,
    )
