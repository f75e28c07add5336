"""Residents, activation codes, and enrolling a phone with an activation code.

Enrolment: ``begin_enrolment`` checks the code and hands out WebAuthn creation options;
``finish_enrolment`` verifies the new credential and, in one database transaction, marks the
code used (``UPDATE … WHERE used_at IS NULL``: single use is the database's job), stores the
credential and a fresh revocation code.

Revocation codes: any one of a citizen's valid codes blocks all their devices (``/lost``).
Each enrolment issues one more (``issue_revocation_code``); ``replace_revocation_codes`` lets
the citizen void them all for a single new one.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import String
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import literal
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..audit import record_event
from ..db import UTCDateTime
from ..db import db
from ..db import utcnow
from ..errors import EnrolmentRejected
from ..errors import IdServerError
from ..metrics import ENROLMENTS
from ..metrics import RATE_LIMIT_REFUSALS
from ..passkeys import ceremonies
from ..passkeys.errors import PasskeyRejected
from ..passkeys.models import Credential
from ..passkeys.service import NewCredential
from ..passkeys.service import add_credential
from ..passkeys.service import create_challenge
from ..passkeys.service import expected_origins
from ..passkeys.service import take_challenge
from .errors import ActivationCodeBlocked
from .errors import ActivationCodeExpired
from .errors import ActivationCodeUsed
from .errors import CredentialExists
from .errors import EnrolmentExpired
from .errors import InvalidCitizen
from .errors import InvalidDeviceName
from .errors import InvalidImport
from .errors import ResidentNotFound
from .errors import TooManyWrongCodes
from .errors import WrongActivationCode
from .models import PROOFING_DOCUMENTS
from .models import ActivationAttempt
from .models import ActivationCode
from .models import Citizen
from .models import RevocationCode

__all__ = [
    "CODE_ALPHABET",
    "POSTCODE",
    "Enrolment",
    "Redeem",
    "begin_enrolment",
    "count_revocation_codes",
    "finish_enrolment",
    "has_residents",
    "import_citizens",
    "issue_activation_code",
    "issue_revocation_code",
    "register_citizen",
    "replace_revocation_codes",
    "start_enrolment",
    "use_activation_code",
]

# No 0/O, 1/I/L: readable on paper and typeable on a phone. 16 of 31 symbols ≈ 79 bits.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_GROUPS = 4
CODE_GROUP_LENGTH = 4
CITIZEN_FIELDS = ("given_name", "family_name", "birthdate", "street", "postcode", "city", "email")
POSTCODE = re.compile(r"[0-9]{5}")  # a German Postleitzahl
DEVICE_NAME_MAX = 60
ATTEMPT_WINDOW = dt.timedelta(hours=1)  # ACTIVATION_MAX_ATTEMPTS_PER_ADDRESS counts per hour
_UNKNOWN_CODE_HASH = hashlib.sha256(secrets.token_bytes(32)).hexdigest()  # matches no code


def hash_code(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


def normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _new_code(groups: int = CODE_GROUPS) -> str:
    symbols = [secrets.choice(CODE_ALPHABET) for _ in range(groups * CODE_GROUP_LENGTH)]
    return "-".join("".join(symbols[i : i + CODE_GROUP_LENGTH]) for i in range(0, len(symbols), 4))


# -- residents -----------------------------------------------------------------------------
def _clean_citizen(fields: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for name in CITIZEN_FIELDS:
        value = fields.get(name)
        if isinstance(value, str):
            value = value.strip()
        if name == "email":
            clean[name] = value or None
            if value and ("@" not in value or len(value) > 320):
                raise InvalidCitizen(f"invalid email: {value!r}")
            continue
        if not value:
            raise InvalidCitizen(f"missing {name}")
        if name == "birthdate" and not isinstance(value, dt.date):
            try:
                value = dt.date.fromisoformat(str(value))
            except ValueError as exc:
                message = f"birthdate must be YYYY-MM-DD, got {value!r}"
                if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", str(value)):
                    message = f"birthdate {value!r} does not exist"  # 1980-02-31
                raise InvalidCitizen(message) from exc
        if isinstance(value, dt.date) and value > dt.date.today():
            raise InvalidCitizen(f"birthdate is in the future: {value}")
        if name == "postcode" and not POSTCODE.fullmatch(str(value)):
            raise InvalidCitizen(f"postcode must be five digits, got {value!r}")
        if name != "birthdate" and len(str(value)) > 200:
            raise InvalidCitizen(f"{name} is too long")
        clean[name] = value
    return clean


def has_residents(session: Session) -> bool:
    """Whether any resident is registered (in ``session``: the key store keeps its own)."""
    return session.scalars(select(Citizen.id).limit(1)).first() is not None


def _imported_proofing(row: dict[str, Any]) -> dict[str, Any]:
    """The optional ``proofing_document``, ``proofed_on`` (YYYY-MM-DD) and ``proofing_office``
    of an imported row; empty cells (CSV) count as absent."""
    document, on, office = (
        (str(row.get(name) or "").strip() or None)
        for name in ("proofing_document", "proofed_on", "proofing_office")
    )
    try:
        day = dt.date.fromisoformat(on) if on else None
    except ValueError as exc:
        raise InvalidCitizen(f"proofed_on must be YYYY-MM-DD, got {on!r}") from exc
    if document is None and day is None and office is not None:
        raise InvalidCitizen("proofing_office without proofing_document and proofed_on")
    return _clean_proofing(document, day, office)


def _clean_proofing(document: str | None, on: dt.date | None, office: str | None) -> dict[str, Any]:
    """Identity proofing in person (``idserver.assurance``): all three, or none recorded."""
    if document is None and on is None:
        return {}
    if document not in PROOFING_DOCUMENTS:
        raise InvalidCitizen(f"proofing_document must be one of {', '.join(PROOFING_DOCUMENTS)}")
    if not isinstance(on, dt.date) or on > dt.date.today():
        raise InvalidCitizen("proofed_on must be a date, not in the future")
    if not office or len(office) > 200:
        raise InvalidCitizen("proofing_office is missing or too long")
    return {"proofing_document": document, "proofed_on": on, "proofing_office": office}


def register_citizen(
    *,
    proofing_document: str | None = None,
    proofed_on: dt.date | None = None,
    proofing_office: str | None = None,
    **fields: Any,
) -> Citizen:
    """A new resident; with ``proofing_*`` if a clerk checked an identity document in person."""
    proofing = _clean_proofing(proofing_document, proofed_on, proofing_office)
    citizen = Citizen(**_clean_citizen(fields), **proofing)
    db.session.add(citizen)
    db.session.commit()
    return citizen


def import_citizens(text: str, *, fmt: str) -> list[Citizen]:
    """Register residents from JSON (a list of objects) or CSV (a header row); all or none."""
    rows: list[dict[str, Any]]
    if fmt == "json":
        data = json.loads(text)
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise InvalidImport("JSON import must be a list of objects")
        rows = data
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    citizens = []
    for number, row in enumerate(rows, start=1):
        try:
            citizens.append(Citizen(**_clean_citizen(row), **_imported_proofing(row)))
        except IdServerError as exc:
            raise type(exc)(f"row {number}: {exc.description}") from exc
    db.session.add_all(citizens)
    db.session.commit()
    return citizens


# -- activation codes -----------------------------------------------------------------------
def issue_activation_code(
    citizen_id: str, *, actor: str = "operator"
) -> tuple[ActivationCode, str]:
    """A new code for a resident; the plain code is returned once and never stored."""
    citizen = db.session.get(Citizen, citizen_id)
    if citizen is None or not citizen.active:
        raise ResidentNotFound()
    code = _new_code()
    ttl = dt.timedelta(days=current_app.config["ACTIVATION_TTL_DAYS"])
    record = ActivationCode(citizen_id=citizen.id, code_hash=hash_code(code))
    record.expires_at = utcnow() + ttl
    db.session.add(record)
    db.session.flush()
    record_event("activation_issued", actor=actor, subject=citizen.id, activation_id=record.id)
    db.session.commit()
    return record, code


def activation_url(record: ActivationCode) -> str:
    return f"{current_app.config['ISSUER']}/activate/{record.id}"


def _take_address_attempt(address: str) -> int:
    """Count one try from ``address`` before the code is looked at; 429 once the hour is full.

    One conditional ``INSERT … SELECT`` that counts the hour's tries and adds this one only below
    the limit, serialised per address (SQLite: a writing statement holds the database's write
    lock; PostgreSQL: a transaction-level advisory lock), so concurrent tries cannot all read
    the same count. A refused try writes nothing. The id of the new row is returned; a try that
    turns out not to be a wrong code gives it back (``_give_back_address_attempt``).
    """
    limit = current_app.config["ACTIVATION_MAX_ATTEMPTS_PER_ADDRESS"]
    now = utcnow()
    recent = (
        select(func.count())
        .select_from(ActivationAttempt)
        .where(ActivationAttempt.address == address, ActivationAttempt.at > now - ATTEMPT_WINDOW)
        .scalar_subquery()
    )
    statement = (
        insert(ActivationAttempt)
        .from_select(
            ["address", "at"],
            select(literal(address, String()), literal(now, UTCDateTime())).where(recent < limit),
        )
        .returning(ActivationAttempt.id)
    )
    with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            lock = func.hashtextextended("activation-attempts:" + address, 0)
            connection.execute(select(func.pg_advisory_xact_lock(lock)))
        attempt = connection.scalar(statement)
    if attempt is None:
        RATE_LIMIT_REFUSALS.labels("activation_max_attempts_per_address").inc()
        raise TooManyWrongCodes()
    return int(attempt)


def _give_back_address_attempt(attempt: int) -> None:
    db.session.execute(delete(ActivationAttempt).where(ActivationAttempt.id == attempt))


def _check_code(activation_id: Any, code: Any, *, address: str) -> ActivationCode:
    """The live activation record ``code`` belongs to; wrong tries are counted and bounded.

    Counted before the answer is given, per address and per code, each in one conditional
    statement (rate limits are raced by concurrent requests otherwise).
    """
    attempt = _take_address_attempt(address)
    # Known and unknown activation ids get the same answer after the same work (one lookup, one
    # hash comparison, one UPDATE), so the answers reveal nothing about which ids exist.
    well_formed_id = isinstance(activation_id, str) and len(activation_id) <= 36
    record = db.session.get(ActivationCode, activation_id) if well_formed_id else None
    presented = hash_code(code) if isinstance(code, str) and 0 < len(code) <= 64 else ""
    expected = record.code_hash if record is not None else _UNKNOWN_CODE_HASH
    right = hmac.compare_digest(presented, expected) and record is not None
    # A wrong try takes one of the code's ACTIVATION_MAX_ATTEMPTS slots; the right one only
    # checks that one is left. The row lock orders them: a code is never tried more often.
    session = db.session
    within_limit = session.execute(
        update(ActivationCode)
        .where(
            ActivationCode.id == (activation_id if well_formed_id else ""),
            ActivationCode.failed_attempts < current_app.config["ACTIVATION_MAX_ATTEMPTS"],
        )
        .values(failed_attempts=ActivationCode.failed_attempts + (0 if right else 1))
    )
    if not right:
        session.commit()
        raise WrongActivationCode()
    _give_back_address_attempt(attempt)
    session.commit()
    assert record is not None
    # Only whoever holds the right code learns that it has been blocked.
    if within_limit.rowcount != 1:  # type: ignore[attr-defined]
        RATE_LIMIT_REFUSALS.labels("activation_max_attempts").inc()
        raise ActivationCodeBlocked()
    if record.used_at is not None:
        raise ActivationCodeUsed()
    if record.expires_at <= utcnow():
        raise ActivationCodeExpired()
    citizen = db.session.get(Citizen, record.citizen_id)
    if citizen is None or not citizen.active:
        raise WrongActivationCode()
    return record


# -- revocation codes ---------------------------------------------------------------------
def issue_revocation_code(citizen_id: str) -> tuple[RevocationCode, str]:
    """A new lost-phone code in the caller's transaction: (its row, the code to show once).

    Only its SHA-256 is stored. It blocks all the citizen's devices, like every other valid one.
    """
    code = _new_code(groups=3)
    issued = RevocationCode(citizen_id=citizen_id, code_hash=hash_code(code))
    db.session.add(issued)
    return issued, code


def count_revocation_codes(citizen_id: str) -> int:
    """How many of the citizen's revocation codes still work."""
    return int(
        db.session.scalar(
            select(func.count())
            .select_from(RevocationCode)
            .where(RevocationCode.citizen_id == citizen_id, RevocationCode.used_at.is_(None))
        )
        or 0
    )


def replace_revocation_codes(citizen_id: str) -> str:
    """Void every valid revocation code of the citizen and issue one new code, audited, in one
    transaction; returns the new code (to be shown once). Commits."""
    session = db.session
    # Replacements for one citizen run one after the other, so two at once leave one code.
    session.execute(select(Citizen.id).where(Citizen.id == citizen_id).with_for_update())
    replaced = session.execute(
        update(RevocationCode)
        .where(RevocationCode.citizen_id == citizen_id, RevocationCode.used_at.is_(None))
        .values(used_at=utcnow())
    )
    issued, code = issue_revocation_code(citizen_id)
    session.flush()
    record_event(
        "revocation_codes_replaced",
        actor=f"citizen:{citizen_id}",
        subject=citizen_id,
        revocation_code_id=issued.id,
        codes_replaced=replaced.rowcount,  # type: ignore[attr-defined]
    )
    session.commit()
    return code


# -- enrolment ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Enrolment:
    credential: NewCredential
    revocation_code: str


# Burn the ticket an enrolment was started with (``challenge.subject``: an activation code's id
# or a pairing's) in the enrolment's transaction, once: (citizen id, audit fields), or raise.
Redeem = Callable[[str, dt.datetime], tuple[str, dict[str, Any]]]


def user_handle(citizen: Citizen) -> bytes:
    """A stable, opaque WebAuthn user.id (no personal data, WebAuthn L3 §14.6.1)."""
    return user_handle_of(citizen.id)


def user_handle_of(citizen_id: str) -> bytes:
    """``user_handle`` by the citizen's id, for callers that have no ``Citizen`` loaded."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, b"user-handle:" + citizen_id.encode(), hashlib.sha256).digest()


def begin_enrolment(activation_id: Any, code: Any, *, address: str) -> dict[str, Any]:
    """Check the code; return ``{enrolment_id, options}`` for ``navigator.credentials.create``."""
    try:
        record = _check_code(activation_id, code, address=address)
    except IdServerError as exc:
        ENROLMENTS.labels("refused", "activation", exc.error).inc()
        raise
    citizen = db.session.get(Citizen, record.citizen_id)
    assert citizen is not None
    started = start_enrolment(citizen, subject=record.id, via="activation")
    db.session.commit()
    return started


def start_enrolment(citizen: Citizen, *, subject: str, via: str) -> dict[str, Any]:
    """Creation options; ``via`` (activation | pairing) and ``subject`` say what gets burnt."""
    existing = db.session.scalars(
        select(Credential.credential_id).where(
            Credential.citizen_id == citizen.id, Credential.revoked_at.is_(None)
        )
    ).all()
    config = current_app.config
    challenge = create_challenge("enrol", subject=subject, data={"via": via})
    options = ceremonies.registration_options(
        rp_id=config["RP_ID"],
        rp_name=config["RP_NAME"],
        user_id=user_handle(citizen),
        user_name=f"{citizen.given_name} {citizen.family_name}",
        display_name=f"{citizen.given_name} {citizen.family_name}",
        challenge=challenge.challenge,
        exclude_ids=list(existing),
        want_attestation=config["ATTESTATION_POLICY"] != "none",
    )
    return {"enrolment_id": challenge.id, "options": options}


def _device_name(name: Any) -> str:
    if name is None or (isinstance(name, str) and not name.strip()):
        return str(_l("My phone"))
    if not isinstance(name, str) or len(name.strip()) > DEVICE_NAME_MAX:
        raise InvalidDeviceName()
    return name.strip()


def finish_enrolment(
    enrolment_id: Any, credential: Any, *, name: Any, via: str, redeem: Redeem
) -> Enrolment:
    """Verify the new credential, then store it and burn its ticket at once: ``redeem`` is the
    activation code's ``use_activation_code`` or the pairing's ``use_pairing`` (``via`` names
    which, for the challenge check and the metrics)."""
    try:
        enrolment = _finish_enrolment(enrolment_id, credential, name=name, via=via, redeem=redeem)
    except IdServerError as exc:
        ENROLMENTS.labels("refused", via, exc.error).inc()
        raise
    ENROLMENTS.labels("succeeded", via, "").inc()
    return enrolment


def _finish_enrolment(
    enrolment_id: Any, credential: Any, *, name: Any, via: str, redeem: Redeem
) -> Enrolment:
    device_name = _device_name(name)
    config = current_app.config
    try:
        challenge = take_challenge(enrolment_id, purpose="enrol")
        if challenge.data.get("via", "activation") != via or challenge.subject is None:
            raise EnrolmentExpired()
        roots = ceremonies.load_attestation_roots(config["ATTESTATION_ROOTS"])
        verified = ceremonies.verify_registration(
            credential=credential,
            expected_challenge=challenge.challenge,
            expected_rp_id=config["RP_ID"],
            expected_origins=expected_origins(),
            attestation_policy=config["ATTESTATION_POLICY"],
            aaguid_allowlist=config["AAGUID_ALLOWLIST"],
            attestation_roots=roots,
        )
    except PasskeyRejected as exc:
        raise EnrolmentRejected(exc.description, error=exc.error) from exc
    hardware = ceremonies.proves_hardware_key(
        verified, aaguid_allowlist=config["AAGUID_ALLOWLIST"], attestation_roots=roots
    )
    session = db.session
    now = utcnow()
    citizen_id, burned = redeem(challenge.subject, now)
    _issued, revocation_code = issue_revocation_code(citizen_id)
    try:
        stored = add_credential(
            verified,
            citizen_id=citizen_id,
            name=device_name,
            response=credential,
            hardware_attested=hardware,
            now=now,
        )
        record_event(
            "enrolment",
            actor=f"citizen:{citizen_id}",
            subject=citizen_id,
            credential_id=stored.id,
            kind=stored.kind,
            aaguid=stored.aaguid,
            attestation_format=stored.attestation_format,
            **burned,
        )
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise CredentialExists() from exc
    return Enrolment(credential=stored, revocation_code=revocation_code)


def use_activation_code(activation_id: str, now: dt.datetime) -> tuple[str, dict[str, Any]]:
    """Burn the activation code, once, in the enrolment's transaction; (citizen id, audit)."""
    session = db.session
    used = session.execute(
        update(ActivationCode)
        .where(
            ActivationCode.id == activation_id,
            ActivationCode.used_at.is_(None),
            ActivationCode.expires_at > now,
        )
        .values(used_at=now)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise ActivationCodeUsed()
    record = session.get(ActivationCode, activation_id)
    assert record is not None
    return record.citizen_id, {"activation_id": record.id}
