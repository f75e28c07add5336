"""Open positions (``positions.json``) and applications: submit, list, withdraw."""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..db import db
from ..db import utcnow
from ..errors import PortalError
from ..records import change_owned
from ..records import find_owned
from ..records import list_owned
from .models import SUBMITTED
from .models import WITHDRAWN
from .models import Application

__all__ = [
    "COVER_LETTER_MAX",
    "COVER_LETTER_MIN",
    "AlreadyApplied",
    "InvalidApplication",
    "Position",
    "find_application",
    "find_position",
    "list_applications",
    "open_positions",
    "submit_application",
    "withdraw_application",
]

POSITIONS_FILE = Path(__file__).with_name("positions.json")
COVER_LETTER_MIN = 50
COVER_LETTER_MAX = 4000
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class InvalidApplication(PortalError):
    error = "invalid_application"
    status = 422


class AlreadyApplied(PortalError):
    error = "already_applied"
    status = 409
    title = _l("You have already applied")


@dataclass(frozen=True)
class Position:
    id: str
    title: str
    department: str
    location: str
    hours: str
    pay: str
    summary: str
    open: bool
    min_age: int | None = None


@functools.cache
def load_positions(path: Path = POSITIONS_FILE) -> tuple[Position, ...]:
    document = json.loads(path.read_text(encoding="utf-8"))
    positions = tuple(Position(**entry) for entry in document["positions"])
    if len({p.id for p in positions}) != len(positions):
        raise ValueError(f"{path}: position ids must be unique")
    return positions


def open_positions() -> list[Position]:
    return [p for p in load_positions() if p.open]


def find_position(position_id: str) -> Position | None:
    return next((p for p in load_positions() if p.id == position_id), None)


def age_on(birthdate: dt.date, day: dt.date) -> int:
    return day.year - birthdate.year - ((day.month, day.day) < (birthdate.month, birthdate.day))


def _birthdate(claims: dict[str, Any]) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(claims.get("birthdate")))
    except ValueError:
        return None


def clean_cover_letter(text: str) -> str:
    """Line endings unified, control characters dropped, length between the limits."""
    text = CONTROL_CHARACTERS.sub("", (text or "").replace("\r\n", "\n").replace("\r", "\n"))
    text = text.strip()
    if len(text) < COVER_LETTER_MIN:
        raise InvalidApplication(
            _l("Please write at least %(min)d characters.", min=COVER_LETTER_MIN)
        )
    if len(text) > COVER_LETTER_MAX:
        raise InvalidApplication(
            _l("Please write at most %(max)d characters.", max=COVER_LETTER_MAX)
        )
    return text


def submit_application(
    *, applicant_sub: str, claims: dict[str, Any], position_id: str, cover_letter: str
) -> Application:
    position = find_position(position_id)
    if position is None or not position.open:
        raise PortalError(_l("This position is no longer open."), error="position_closed")
    letter = clean_cover_letter(cover_letter)
    birthdate = _birthdate(claims)
    if position.min_age is not None:
        if birthdate is None or age_on(birthdate, dt.date.today()) < position.min_age:
            raise InvalidApplication(
                _l("This position requires a minimum age of %(age)d.", age=position.min_age)
            )
    application = Application(
        position_id=position.id,
        applicant_sub=applicant_sub,
        applicant_name=str(claims.get("name") or ""),
        email=claims.get("email"),
        birthdate=birthdate,
        cover_letter=letter,
        state=SUBMITTED,
    )
    db.session.add(application)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise AlreadyApplied(
            _l("Your application for this position is being considered.")
        ) from None
    return application


def list_applications(applicant_sub: str) -> list[Application]:
    return list_owned(Application.applicant_sub, applicant_sub, newest=Application.submitted_at)


def open_application(applicant_sub: str, position_id: str) -> Application | None:
    return db.session.scalars(
        select(Application).where(
            Application.applicant_sub == applicant_sub,
            Application.position_id == position_id,
            Application.state == SUBMITTED,
        )
    ).first()


def find_application(application_id: str, *, applicant_sub: str) -> Application | None:
    """The applicant's own application; anyone else's is as good as missing."""
    return find_owned(Application, application_id, Application.applicant_sub, applicant_sub)


def withdraw_application(application_id: str, *, applicant_sub: str) -> bool:
    """Withdraw a submitted application; False if it was not (or no longer) submitted."""
    return change_owned(
        Application.applicant_sub,
        applicant_sub,
        application_id,
        only_if=Application.state == SUBMITTED,
        state=WITHDRAWN,
        withdrawn_at=utcnow(),
    )
