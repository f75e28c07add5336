"""Resident parking permits: who may have one, issuing, cancelling and checking them."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from flask import current_app
from flask_babel import lazy_gettext as _l
from joserfc.jwk import ECKey
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from ..db import db
from ..db import utcnow
from ..errors import PortalError
from ..records import change_owned
from ..records import find_owned
from ..records import list_owned
from .models import ACTIVE
from .models import CANCELLED
from .models import LAPSED
from .models import Permit
from .reference import PermitReferenceInvalid
from .reference import load_reference_key
from .reference import sign_reference
from .reference import verify_reference
from .tokens import PermitTokenExpired
from .tokens import PermitTokenInvalid
from .tokens import load_signing_key
from .tokens import sign_permit_token
from .tokens import verify_permit_token
from .zones import Zone
from .zones import find_zone

__all__ = [
    "AlreadyHolding",
    "InvalidPlate",
    "NotEligible",
    "PermitCheck",
    "cancel_permit",
    "check_permit_number",
    "check_permit_reference",
    "check_permit_token",
    "find_permit",
    "init_app",
    "issue_permit",
    "list_permits",
    "normalise_plate",
    "permit_reference",
    "permit_token",
    "signing_key",
]

KEY_EXTENSION = "demo_portal.parking.key"
REFERENCE_KEY_EXTENSION = "demo_portal.parking.reference_key"
MAX_NUMBER_LENGTH = 32
NUMBER_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
# District (1-3 letters, umlauts occur: "LÖ"), 1-2 letters, 1-4 digits without a leading zero,
# and "E" (electric) or "H" (historic) at the end: Fahrzeug-Zulassungsverordnung §8, §9.
PLATE = re.compile(r"([A-ZÄÖÜ]{1,3})(?:\s*-\s*|\s+)([A-Z]{1,2})\s*([1-9][0-9]{0,3})([EH]?)")
PLATE_MAX_CHARACTERS = 8


class InvalidPlate(PortalError):
    error = "invalid_plate"
    status = 422


class NotEligible(PortalError):
    error = "not_eligible"
    status = 403
    title = _l("No resident parking zone")


class AlreadyHolding(PortalError):
    error = "already_holding"
    status = 409
    title = _l("You already hold a permit")


@dataclass(frozen=True)
class PermitCheck:
    """What a warden's device shows: ``valid``, ``expired``, ``cancelled``, ``invalid`` (a
    forged or altered code) or ``unknown`` (a typed number the register does not know)."""

    result: str
    permit: Permit | None = None


def init_app(app: Flask) -> None:
    key_file = Path(app.config["INSTANCE_PATH"]) / "permit-signing-key.json"
    app.extensions[KEY_EXTENSION] = load_signing_key(key_file)
    reference_key = Path(app.config["INSTANCE_PATH"]) / "permit-reference-key"
    app.extensions[REFERENCE_KEY_EXTENSION] = load_reference_key(reference_key)


def signing_key() -> ECKey:
    return current_app.extensions[KEY_EXTENSION]


# -- rules ----------------------------------------------------------------------------------
def normalise_plate(text: str) -> str:
    """ "do ab123" → "DO-AB 123"; anything that is no German plate raises InvalidPlate."""
    cleaned = re.sub(r"[\u2010-\u2015]", "-", (text or "").strip().upper())
    match = PLATE.fullmatch(cleaned)
    if match is None:
        raise InvalidPlate(
            _l('This is not a German number plate. Please write it like "DO-AB 123".')
        )
    district, letters, digits, suffix = match.groups()
    if len(district + letters + digits) > PLATE_MAX_CHARACTERS:
        raise InvalidPlate(_l("A number plate has at most eight letters and digits."))
    return f"{district}-{letters} {digits}{suffix}"


def eligible_zone(claims: dict[str, Any]) -> Zone | None:
    """The zone of the resident's registered address (the ``address`` claim), if any."""
    return find_zone(claims.get("address"))


def one_year_from(day: dt.date) -> dt.date:
    """The last day of a permit valid for one year from ``day``."""
    try:
        anniversary = day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        anniversary = day.replace(year=day.year + 1, day=28)
    return anniversary - dt.timedelta(days=1)


def _new_number(zone: Zone, day: dt.date) -> str:
    suffix = "".join(secrets.choice(NUMBER_ALPHABET) for _ in range(6))
    return f"{zone.id}-{day.year}-{suffix}"


def _formatted_address(claims: dict[str, Any]) -> str:
    address = claims.get("address") or {}
    return str(
        address.get("formatted")
        or f"{address.get('street_address', '')}, {address.get('postal_code', '')} "
        f"{address.get('locality', '')}"
    ).replace("\n", ", ")


# -- issuing and cancelling -------------------------------------------------------------------
def issue_permit(*, holder_sub: str, claims: dict[str, Any], plate: str) -> Permit:
    """A permit for one year, if the resident lives in a zone and holds no valid permit."""
    plate = normalise_plate(plate)
    zone = eligible_zone(claims)
    if zone is None:
        raise NotEligible(_l("Your registered address is not inside a resident parking zone."))
    today = dt.date.today()
    session = db.session
    # An old permit that ran out no longer blocks a new one.
    session.execute(
        update(Permit)
        .where(
            Permit.holder_sub == holder_sub,
            Permit.state == ACTIVE,
            Permit.valid_until < today,
        )
        .values(state=LAPSED)
    )
    for _attempt in range(3):
        permit = Permit(
            number=_new_number(zone, today),
            holder_sub=holder_sub,
            holder_name=str(claims.get("name") or ""),
            address=_formatted_address(claims),
            zone_id=zone.id,
            zone_name=zone.name,
            plate=plate,
            valid_from=today,
            valid_until=one_year_from(today),
            state=ACTIVE,
        )
        session.add(permit)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            if active_permit(holder_sub) is not None:
                raise AlreadyHolding(
                    _l("Cancel your current permit first if your car has changed.")
                ) from None
            continue  # a clash of permit numbers: draw another
        return permit
    raise PortalError(_l("No permit number could be assigned. Please try again."))


def active_permit(holder_sub: str) -> Permit | None:
    today = dt.date.today()
    return db.session.scalars(
        select(Permit).where(
            Permit.holder_sub == holder_sub, Permit.state == ACTIVE, Permit.valid_until >= today
        )
    ).first()


def list_permits(holder_sub: str) -> list[Permit]:
    return list_owned(Permit.holder_sub, holder_sub, newest=Permit.issued_at)


def find_permit(permit_id: str, *, holder_sub: str) -> Permit | None:
    """The resident's own permit; another resident's is as good as missing."""
    return find_owned(Permit, permit_id, Permit.holder_sub, holder_sub)


def cancel_permit(permit_id: str, *, holder_sub: str) -> bool:
    """Cancel an active permit of this holder; False if there was none to cancel."""
    return change_owned(
        Permit.holder_sub,
        holder_sub,
        permit_id,
        only_if=Permit.state == ACTIVE,
        state=CANCELLED,
        cancelled_at=utcnow(),
    )


# -- tokens -----------------------------------------------------------------------------------
def _midnight(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp())


def permit_token(permit: Permit) -> str:
    """The signed token the permit's QR code carries."""
    claims = {
        "iss": current_app.config["BASE_URL"],
        "jti": permit.number,
        "plate": permit.plate,
        "zone": permit.zone_id,
        "zone_name": permit.zone_name,
        "nbf": _midnight(permit.valid_from),
        "exp": _midnight(permit.valid_until + dt.timedelta(days=1)),
        "iat": int(permit.issued_at.timestamp()),
    }
    return sign_permit_token(claims, key=signing_key())


def check_permit_token(token: str) -> PermitCheck:
    """Signature, issuer and dates first; then the register, which knows of cancellations."""
    try:
        claims = verify_permit_token(
            token, key=signing_key(), expected_issuer=current_app.config["BASE_URL"]
        )
    except PermitTokenExpired:
        return PermitCheck("expired")
    except PermitTokenInvalid:
        return PermitCheck("invalid")
    permit = db.session.scalars(select(Permit).where(Permit.number == claims["jti"])).first()
    if permit is None or permit.plate != claims["plate"] or permit.zone_id != claims["zone"]:
        return PermitCheck("invalid")
    return PermitCheck(permit.status(dt.date.today()), permit)


# -- what the windscreen shows: the short reference and the printed number ----------------------
def _registered(number: str) -> Permit | None:
    return db.session.scalars(select(Permit).where(Permit.number == number)).first()


def permit_reference(permit: Permit) -> str:
    """The short signed reference the permit's QR code carries."""
    return sign_reference(permit.number, key=current_app.extensions[REFERENCE_KEY_EXTENSION])


def check_permit_reference(reference: str) -> PermitCheck:
    """A scanned QR code: the tag must be ours, then the register says how the permit stands."""
    try:
        number = verify_reference(reference, key=current_app.extensions[REFERENCE_KEY_EXTENSION])
    except PermitReferenceInvalid:
        return PermitCheck("invalid")
    permit = _registered(number)
    if permit is None:
        return PermitCheck("unknown")
    return PermitCheck(permit.status(dt.date.today()), permit)


def check_permit_number(number: str) -> PermitCheck:
    """A number typed from the printed permit: the register knows it, or it is ``unknown``.

    A typo is far likelier than a forgery, so an unknown number is never called forged.
    """
    typed = re.sub(r"\s+", "", (number or "").upper())[:MAX_NUMBER_LENGTH]
    permit = _registered(typed) if typed else None
    if permit is None:
        return PermitCheck("unknown")
    return PermitCheck(permit.status(dt.date.today()), permit)
