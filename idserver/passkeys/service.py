"""The credential store and the challenge store, in the database.

A challenge is deleted *before* the answer to it is verified, in its own committed
transaction, so that a response can never be verified twice (the Warehouse rule).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update

from ..audit import record_event
from ..db import db
from ..db import utcnow
from ..errors import LoginRejected
from .ceremonies import VerifiedAssertion
from .models import Challenge
from .models import Credential

log = logging.getLogger(__name__)

__all__ = [
    "create_challenge",
    "expected_origins",
    "find_credential",
    "record_assertion",
    "take_challenge",
]


def expected_origins() -> list[str]:
    """The issuer's origin plus configured native-app origins (WebAuthn L3 §7.1 step 9)."""
    issuer = current_app.config["ISSUER"]
    scheme, rest = issuer.split("://", 1)
    origin = f"{scheme}://{rest.split('/', 1)[0]}"
    return [origin, *current_app.config["ALLOWED_ORIGINS"]]


def create_challenge(purpose: str, *, subject: str | None, data: dict[str, Any]) -> Challenge:
    """Store a fresh 32-byte challenge; the caller commits."""
    ttl = dt.timedelta(seconds=current_app.config["CEREMONY_TTL_SECONDS"])
    challenge = Challenge(
        id=secrets.token_urlsafe(24),
        purpose=purpose,
        challenge=secrets.token_bytes(32),
        subject=subject,
        data=data,
        expires_at=utcnow() + ttl,
    )
    db.session.add(challenge)
    return challenge


def take_challenge(challenge_id: Any, *, purpose: str, rejected: type[Exception]) -> Challenge:
    """Remove and return a live challenge; exactly one caller can take it."""
    if not isinstance(challenge_id, str) or len(challenge_id) > 64:
        raise rejected(_l("This step has expired. Please start again."))
    session = db.session
    found = session.get(Challenge, challenge_id)
    if found is None or found.purpose != purpose:
        raise rejected(_l("This step has expired. Please start again."))
    result = session.execute(delete(Challenge).where(Challenge.id == challenge_id))
    session.commit()
    if result.rowcount != 1 or found.expires_at <= utcnow():  # type: ignore[attr-defined]
        raise rejected(_l("This step has expired. Please start again."))
    return found


def find_credential(credential_id: bytes) -> Credential | None:
    return db.session.scalars(
        select(Credential).where(Credential.credential_id == credential_id)
    ).first()


def record_assertion(credential: Credential, verified: VerifiedAssertion) -> None:
    """Advance the signature counter and backup state after a genuine assertion.

    A counter that does not grow (when either side is non-zero) means a cloned authenticator
    (WebAuthn L3 §6.1.1): the device is suspended, what it obtained before ends with it (its
    sessions, tokens and codes: either copy may have made them) and the login is refused. The
    update is conditional on the counter we read, so two concurrent assertions cannot both pass.
    """
    now = utcnow()
    session = db.session
    if (verified.sign_count or credential.sign_count) and (
        verified.sign_count <= credential.sign_count
    ):
        session.execute(
            update(Credential)
            .where(Credential.id == credential.id, Credential.suspended_at.is_(None))
            .values(suspended_at=now)
        )
        # account builds on passkeys, not vice versa: imported here, where a device goes
        from ..account.devices import end_device_grants

        end_device_grants(
            credential.citizen_id,
            [credential.id],
            reason="sign_count_regression",
            actor="system",
        )
        record_event(
            "device_suspended",
            actor="system",
            subject=credential.citizen_id,
            credential_id=credential.id,
            reason="sign_count_regression",
            stored_count=credential.sign_count,
            presented_count=verified.sign_count,
        )
        session.commit()
        log.warning("credential %s suspended: signature counter went back", credential.id)
        raise LoginRejected(
            _l("This phone has been blocked for safety. Please contact the citizens' office."),
            error="device_suspended",
        )
    if credential.backup_eligible != verified.backup_eligible:
        # §6.1.3: BE is fixed at creation; a change means a different authenticator.
        raise LoginRejected(_l("The confirmation on the phone could not be verified."))
    result = session.execute(
        update(Credential)
        .where(Credential.id == credential.id, Credential.sign_count == credential.sign_count)
        .values(sign_count=verified.sign_count, backed_up=verified.backed_up, last_used_at=now)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise LoginRejected(_l("The confirmation on the phone could not be verified."))
