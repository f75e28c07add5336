"""Adding a device from an enrolled one, without a new letter: the pairing state machine.

::

    pending ──claim──▶ claimed ──approve──▶ approved ──use_pairing──▶ used
       │                  │                    │
       ├──cancel──────────┼────────────────────┼──▶ cancelled
       └──expire──────────┴────────────────────┴──▶ expired

- ``create_pairing``: the citizen, logged in at ``/account``, starts a pairing; the page shows a
  QR code and a link to ``/pair/<id>`` (192-bit id) for the new device.
- ``claim``: the first new device to open the link and continue gets a binding secret in an
  HttpOnly cookie (only its hash is stored) and shows a two-digit number.
- ``approve``: the citizen types that number on the enrolled side and confirms with one of their
  own passkeys (WebAuthn L3 §7.2). The number proves the device they hold is the one that
  claimed the pairing; a wrong number cancels it.
- ``use``: the new device registers a passkey; ``citizens.service.finish_enrolment``, given
  ``redeem=use_pairing``, burns the pairing in the transaction that stores the credential.
- ``cancel``: wrong number, the citizen gives up, a newer pairing replaces it, the approving
  device is revoked, or the lost-phone code revokes everything (``cancel_pairings``).
- ``expire``: any live state once ``expires_at`` has passed.

``Pairing.TRANSITIONS`` lists these moves and ``states.transition`` makes them: each is one
conditional ``UPDATE … WHERE state IN (…)`` whose row count says whether this caller won, as in
``crosslogin.service``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Collection
from typing import Any

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam
from sqlalchemy import select

from ..citizens.errors import EnrolmentExpired
from ..citizens.models import Citizen
from ..citizens.service import Enrolment
from ..citizens.service import finish_enrolment
from ..citizens.service import start_enrolment
from ..config import duration
from ..db import db
from ..db import utcnow
from ..errors import LoginRejected
from ..passkeys import ceremonies
from ..passkeys.errors import PasskeyRejected
from ..passkeys.models import Challenge
from ..passkeys.models import Credential
from ..passkeys.service import create_challenge
from ..passkeys.service import expected_origins
from ..passkeys.service import find_credential
from ..passkeys.service import record_assertion
from ..passkeys.service import take_challenge
from ..states import transition
from .errors import InvalidNumber
from .errors import NotBound
from .errors import NotOwnDevice
from .errors import NoUsableDevice
from .errors import PairingCancelled
from .errors import PairingClaimed
from .errors import PairingExpired
from .errors import PairingNotFound
from .errors import PairingRejected
from .errors import PairingUsed
from .errors import TooManyApprovals
from .errors import WrongNumber
from .errors import WrongPairingState
from .models import Pairing
from .models import PairingState

__all__ = [
    "PairingState",
    "approve",
    "begin_approval",
    "begin_device_enrolment",
    "cancel",
    "cancel_pairings",
    "check_claimable",
    "claim",
    "create_pairing",
    "finish_device_enrolment",
    "find_pairing",
    "for_citizen",
    "for_device",
    "holds_binding",
    "status",
    "use_pairing",
]

LIVE = (PairingState.PENDING, PairingState.CLAIMED, PairingState.APPROVED)
CHALLENGE_PURPOSE = "pair"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# The conditions the transitions add, built once (``states.transition`` caches by them).
_NOT_EXPIRED = Pairing.expires_at > bindparam("now")
_EXPIRED = Pairing.expires_at <= bindparam("now")
_UNDER_CHALLENGE_LIMIT = Pairing.challenges_issued < bindparam("challenge_limit")
_ONE_MORE_CHALLENGE = Pairing.challenges_issued + 1


def _transition(
    pairing_id: str,
    *,
    from_states: tuple[str, ...],
    where: tuple[Any, ...] = (),
    params: dict[str, Any] | None = None,
    **values: Any,
) -> bool:
    """Move ``pairing_id`` out of ``from_states`` while it is live; True for the one winner.

    The caller commits (so a transition can share a transaction with what it records).
    """
    return transition(
        Pairing,
        pairing_id,
        from_states,
        where=(_NOT_EXPIRED, *where),
        params={"now": utcnow(), **(params or {})},
        **values,
    )


def _ended(pairing: Pairing) -> PairingRejected:
    """The refusal for a pairing that is not in the state a step needs."""
    if pairing.state == PairingState.EXPIRED:
        return PairingExpired()
    if pairing.state == PairingState.USED:
        return PairingUsed()
    if pairing.state == PairingState.CANCELLED:
        return PairingCancelled()
    return WrongPairingState()


def expire(pairing: Pairing) -> None:
    """Any live state → expired, once ``expires_at`` has passed."""
    session = db.session
    transition(
        Pairing,
        pairing.id,
        LIVE,
        where=(_EXPIRED,),
        params={"now": utcnow()},
        state=PairingState.EXPIRED,
    )
    session.commit()
    session.refresh(pairing)


def find_pairing(pairing_id: Any) -> Pairing:
    """The pairing with this id (expired first if its time is up), or 404."""
    if not isinstance(pairing_id, str) or not 20 <= len(pairing_id) <= 64:
        raise PairingNotFound()
    pairing = db.session.get(Pairing, pairing_id, populate_existing=True)
    if pairing is None:
        raise PairingNotFound()
    if pairing.state in LIVE and pairing.expires_at <= utcnow():
        expire(pairing)
    return pairing


# -- the enrolled side -----------------------------------------------------------------------
def create_pairing(citizen_id: str) -> Pairing:
    """A fresh pairing for the citizen; an older live one is cancelled (one at a time)."""
    session = db.session
    cancel_pairings(citizen_id, reason="replaced")
    now = utcnow()
    pairing = Pairing(
        id=secrets.token_urlsafe(24),  # 192 bits
        citizen_id=citizen_id,
        state=PairingState.PENDING,
        number=f"{secrets.randbelow(90) + 10}",
        created_at=now,
        expires_at=now + duration("PAIRING_TTL_SECONDS"),
    )
    session.add(pairing)
    session.commit()
    return pairing


def for_citizen(pairing_id: Any, citizen_id: str) -> Pairing:
    """The pairing, only for the citizen who started it; everyone else gets 404."""
    pairing = find_pairing(pairing_id)
    if not hmac.compare_digest(pairing.citizen_id, citizen_id):
        raise PairingNotFound()
    return pairing


def status(pairing: Pairing) -> dict[str, Any]:
    """What either side polls; never the number."""
    return {
        "status": pairing.state,
        "version": pairing.version,
        "expires_at": int(pairing.expires_at.timestamp()),
    }


def _check_number(pairing: Pairing, number: Any) -> None:
    if not isinstance(number, str) or not re.fullmatch(r"[0-9]{2}", number.strip()):
        raise InvalidNumber()
    if not hmac.compare_digest(number.strip(), pairing.number):
        cancelled = _transition(
            pairing.id,
            from_states=(PairingState.CLAIMED,),
            state=PairingState.CANCELLED,
            cancel_reason="wrong_number",
        )
        if cancelled:
            db.session.commit()
        raise WrongNumber()


def _usable_credential_ids(citizen_id: str) -> list[bytes]:
    return list(
        db.session.scalars(
            select(Credential.credential_id).where(
                Credential.citizen_id == citizen_id,
                Credential.revoked_at.is_(None),
                Credential.suspended_at.is_(None),
            )
        )
    )


def begin_approval(pairing: Pairing, *, number: Any) -> dict[str, Any]:
    """After the citizen typed the number: WebAuthn request options for their own passkeys."""
    if pairing.state != PairingState.CLAIMED:
        raise _ended(pairing)
    _check_number(pairing, number)
    allowed = _usable_credential_ids(pairing.citizen_id)
    if not allowed:
        raise NoUsableDevice()
    limit = current_app.config["MAX_CHALLENGES_PER_PAIRING"]
    if pairing.challenges_issued >= limit:
        raise TooManyApprovals()
    if not _transition(
        pairing.id,
        from_states=(PairingState.CLAIMED,),
        where=(_UNDER_CHALLENGE_LIMIT,),
        params={"challenge_limit": limit},
        challenges_issued=_ONE_MORE_CHALLENGE,
    ):
        db.session.rollback()
        raise _ended(find_pairing(pairing.id))
    challenge = create_challenge(CHALLENGE_PURPOSE, subject=pairing.id, data={})
    db.session.commit()
    options = ceremonies.authentication_options(
        rp_id=current_app.config["RP_ID"], challenge=challenge.challenge, allow_ids=allowed
    )
    return {"ceremony_id": challenge.id, "options": options}


def approve(pairing: Pairing, *, number: Any, ceremony_id: Any, credential: Any) -> Pairing:
    """claimed → approved, with an assertion by one of the pairing citizen's usable devices."""
    try:
        challenge = take_challenge(ceremony_id, purpose=CHALLENGE_PURPOSE)
    except PasskeyRejected as exc:
        raise PairingRejected(exc.description, error=exc.error) from exc
    if challenge.subject != pairing.id:
        raise PairingRejected(_l("This step has expired. Please start again."))
    pairing = find_pairing(pairing.id)
    if pairing.state != PairingState.CLAIMED:
        raise _ended(pairing)
    _check_number(pairing, number)
    try:
        raw_id = ceremonies.credential_id_of(credential)
    except PasskeyRejected as exc:
        raise PairingRejected(exc.description, error=exc.error) from exc
    stored = find_credential(raw_id)
    if stored is None or not stored.usable or stored.citizen_id != pairing.citizen_id:
        raise NotOwnDevice()
    try:
        verified = ceremonies.verify_assertion(
            credential=credential,
            expected_challenge=challenge.challenge,
            expected_rp_id=current_app.config["RP_ID"],
            expected_origins=expected_origins(),
            credential_public_key=stored.public_key,
        )
    except PasskeyRejected as exc:  # refused as a login's confirmation, as ever
        raise LoginRejected(exc.description, error=exc.error) from exc
    record_assertion(stored, verified)
    now = utcnow()
    if not _transition(
        pairing.id,
        from_states=(PairingState.CLAIMED,),
        state=PairingState.APPROVED,
        approved_by=stored.id,
        approved_at=now,
    ):
        db.session.rollback()
        raise _ended(find_pairing(pairing.id))
    db.session.commit()
    return find_pairing(pairing.id)


def cancel(pairing: Pairing, *, reason: str) -> None:
    """The citizen gives up: any live state → cancelled."""
    if not _transition(
        pairing.id, from_states=LIVE, state=PairingState.CANCELLED, cancel_reason=reason
    ):
        db.session.rollback()
        raise _ended(find_pairing(pairing.id))
    db.session.commit()


def cancel_pairings(
    citizen_id: str, *, reason: str, approved_by: Collection[int] | None = None
) -> int:
    """Cancel the citizen's live pairings (only those ``approved_by`` one of these devices, if
    given).

    Runs inside the caller's transaction; the caller commits. Expired ones not yet marked are
    cancelled too.
    """
    conditions = [Pairing.citizen_id == citizen_id, Pairing.state.in_(LIVE)]
    if approved_by is not None:
        conditions.append(Pairing.approved_by.in_(approved_by))
    live = db.session.scalars(select(Pairing.id).where(*conditions)).all()
    return sum(
        transition(Pairing, pairing_id, LIVE, state=PairingState.CANCELLED, cancel_reason=reason)
        for pairing_id in live
    )


# -- the new device --------------------------------------------------------------------------
def claim(pairing_id: Any, *, binding: Any) -> tuple[Pairing, str]:
    """pending → claimed for the first device; returns the binding secret for its cookie.

    The device that already holds the binding may claim again (a reload, a double tap).
    """
    pairing = find_pairing(pairing_id)
    if holds_binding(pairing, binding):
        assert isinstance(binding, str)
        return pairing, binding
    if pairing.state == PairingState.PENDING:
        new_binding = secrets.token_urlsafe(32)
        if _transition(
            pairing.id,
            from_states=(PairingState.PENDING,),
            state=PairingState.CLAIMED,
            device_hash=_hash(new_binding),
            claimed_at=utcnow(),
        ):
            db.session.commit()
            return find_pairing(pairing.id), new_binding
        db.session.rollback()
        pairing = find_pairing(pairing.id)
    check_claimable(pairing)
    raise _ended(pairing)


def check_claimable(pairing: Pairing) -> None:
    """Refuse a device without the binding unless the pairing is still waiting for one."""
    if pairing.state in (PairingState.CLAIMED, PairingState.APPROVED):
        raise PairingClaimed()
    if pairing.state != PairingState.PENDING:
        raise _ended(pairing)


def holds_binding(pairing: Pairing, binding: Any) -> bool:
    return (
        isinstance(binding, str)
        and pairing.device_hash is not None
        and hmac.compare_digest(_hash(binding), pairing.device_hash)
    )


def for_device(pairing_id: Any, binding: Any) -> Pairing:
    """The pairing, only for the device that claimed it."""
    pairing = find_pairing(pairing_id)
    if not holds_binding(pairing, binding):
        raise NotBound()
    return pairing


def begin_device_enrolment(pairing: Pairing) -> dict[str, Any]:
    """Once approved: WebAuthn creation options for the new device (``{enrolment_id, options}``)."""
    if pairing.state != PairingState.APPROVED:
        raise _ended(pairing)
    citizen = db.session.get(Citizen, pairing.citizen_id)
    if citizen is None or not citizen.active:
        raise _ended(pairing)
    started = start_enrolment(citizen, subject=pairing.id, via="pairing")
    db.session.commit()
    return started


def finish_device_enrolment(
    pairing: Pairing, *, enrolment_id: Any, credential: Any, name: Any
) -> Enrolment:
    """Store the new device's credential; ``use_pairing`` burns the pairing with it."""
    # Challenges are never changed, only deleted: reading it before it is taken is safe.
    challenge = db.session.get(Challenge, enrolment_id) if isinstance(enrolment_id, str) else None
    if challenge is None or challenge.subject != pairing.id:
        raise EnrolmentExpired()
    if pairing.state != PairingState.APPROVED:
        raise _ended(pairing)
    return finish_enrolment(enrolment_id, credential, name=name, via="pairing", redeem=use_pairing)


def use_pairing(pairing_id: str, now: dt.datetime) -> tuple[str, dict[str, Any]]:
    """approved → used, inside the enrolment's transaction; (citizen id, audit data).

    ``finish_device_enrolment`` hands it to ``citizens.service.finish_enrolment`` (``redeem``).
    """
    session = db.session
    if not _transition(
        pairing_id, from_states=(PairingState.APPROVED,), state=PairingState.USED, used_at=now
    ):
        session.rollback()
        raise _ended(find_pairing(pairing_id))
    pairing = session.get(Pairing, pairing_id, populate_existing=True)
    assert pairing is not None
    return pairing.citizen_id, {
        "via": "pairing",
        "pairing_id": pairing.id,
        "approved_by": pairing.approved_by,
    }
