"""The accessibility statement (Erklärung zur Barrierefreiheit, BITV 2.0 § 7).

It speaks of every feature (login, adding a device, sessions), so it sits above them all,
next to ``create_app``, rather than in ``web``, which every package builds on.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint
from flask import current_app
from flask import render_template

from .account.pairing import PAIRING_TTL

bp = Blueprint("accessibility", __name__)

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


@bp.get("/barrierefreiheit")
def statement() -> str:
    """Erklärung zur Barrierefreiheit (BITV 2.0 § 7; model: EU implementing decision 2018/1523)."""
    config = current_app.config
    return render_template(
        "accessibility.html",
        reviewed=ACCESSIBILITY_REVIEWED,
        login_minutes=max(1, round(config["LOGIN_TTL_SECONDS"] / 60)),
        pairing_minutes=max(1, round(PAIRING_TTL.total_seconds() / 60)),
        idle_minutes=max(1, round(config["SESSION_IDLE_SECONDS"] / 60)),
        arbitration_board=ARBITRATION_BOARD,
        arbitration_board_website=ARBITRATION_BOARD_WEBSITE,
    )
