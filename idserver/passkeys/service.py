"""The credential store and the challenge store, in the database.

A challenge is deleted *before* the answer to it is verified, in its own committed
transaction, so that a response can never be verified twice (the Warehouse rule).

A device suspended as cloned loses what it obtained, but passkeys know nothing of sessions,
tokens or pairings: ``record_assertion`` sends the ``device_suspended`` signal, and the
package that ends a device's grants (``account.devices``) subscribes to it at app start. The
receivers run in the suspension's transaction, before it commits.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any
from typing import Protocol
from typing import cast

from blinker import Namespace
from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from webauthn.helpers import base64url_to_bytes
from webauthn.registration.verify_registration_response import VerifiedRegistration

from ..audit import record_event
from ..db import db
from ..db import utcnow
from ..errors import LoginRejected
from . import ceremonies
from .ceremonies import VerifiedAssertion
from .errors import ChallengeExpired
from .errors import DeviceSuspended
from .models import Challenge
from .models import Credential

log = logging.getLogger(__name__)

__all__ = [
    "NewCredential",
    "device_suspended",
    "add_credential",
    "create_challenge",
    "expected_origins",
    "find_credential",
    "record_assertion",
    "take_challenge",
]


signals = Namespace()
# Sent by the app, with ``citizen_id``, ``credential_pk`` and ``reason``, after a device was
# suspended and before the suspension commits: end what it obtained, in the same transaction.
device_suspended = signals.signal("device-suspended")


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


def take_challenge(challenge_id: Any, *, purpose: str) -> Challenge:
    """Remove and return a live challenge; exactly one caller can take it (else
    ``ChallengeExpired``)."""
    if not isinstance(challenge_id, str) or len(challenge_id) > 64:
        raise ChallengeExpired()
    session = db.session
    found = session.get(Challenge, challenge_id)
    if found is None or found.purpose != purpose:
        raise ChallengeExpired()
    result = session.execute(delete(Challenge).where(Challenge.id == challenge_id))
    session.commit()
    if result.rowcount != 1 or found.expires_at <= utcnow():  # type: ignore[attr-defined]
        raise ChallengeExpired()
    return found


@dataclass(frozen=True)
class NewCredential:
    """A credential ``add_credential`` has just stored."""

    id: int
    name: str
    kind: str  # passkey | app
    aaguid: str
    attestation_format: str


def add_credential(
    verified: VerifiedRegistration,
    *,
    citizen_id: str,
    name: str,
    response: dict[str, Any],
    hardware_attested: bool,
    now: dt.datetime,
) -> NewCredential:
    """Store a verified new credential in the caller's transaction (flushed, not committed).

    The only place a credential row is made. ``response`` is the browser's
    ``PublicKeyCredential`` JSON, already verified: it gives the origin and transports. A
    credential that is already registered raises ``IntegrityError`` (unique credential id).
    """
    client_data = json.loads(base64url_to_bytes(response["response"]["clientDataJSON"]))
    stored = Credential(
        credential_id=verified.credential_id,
        citizen_id=citizen_id,
        name=name,
        kind="passkey" if client_data.get("origin") == expected_origins()[0] else "app",
        public_key=verified.credential_public_key,
        public_key_hash=ceremonies.public_key_fingerprint(verified.credential_public_key),
        sign_count=verified.sign_count,
        aaguid=verified.aaguid,
        attestation_format=_enum_value(verified.fmt),
        attestation_object=verified.attestation_object,
        transports=_transports(response),
        origin=str(client_data.get("origin", ""))[:300],
        backup_eligible=_enum_value(verified.credential_device_type) == "multi_device",
        backed_up=verified.credential_backed_up,
        hardware_attested=hardware_attested,
        created_at=now,
    )
    db.session.add(stored)
    db.session.flush()
    return NewCredential(
        id=stored.id,
        name=stored.name,
        kind=stored.kind,
        aaguid=stored.aaguid,
        attestation_format=stored.attestation_format,
    )


def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value))


def _transports(credential: dict[str, Any]) -> list[str]:
    transports = credential.get("response", {}).get("transports") or []
    if not isinstance(transports, list):
        return []
    return [t for t in transports if isinstance(t, str) and len(t) < 20][:8]


def find_credential(credential_id: bytes) -> Credential | None:
    return db.session.scalars(
        select(Credential).where(Credential.credential_id == credential_id)
    ).first()


_CREDENTIALS = cast(Table, Credential.__table__)
# Built once (issue 16): on every login's path. Core on the session's connection, not the ORM's
# bulk UPDATE, which costs more than the statement; ``record_assertion`` updates a loaded copy.
_ADVANCE_COUNTER = (
    update(_CREDENTIALS)
    .where(
        _CREDENTIALS.c.id == bindparam("credential_pk"),
        _CREDENTIALS.c.sign_count == bindparam("read_count"),
    )
    .values(
        {
            name: bindparam(f"new_{name}", type_=_CREDENTIALS.c[name].type)
            for name in ("sign_count", "backed_up", "last_used_at")
        }
    )
)


class AssertedKey(Protocol):
    """The credential an assertion was verified with: a ``Credential`` or a row read for it."""

    @property
    def id(self) -> int: ...
    @property
    def citizen_id(self) -> str: ...
    @property
    def sign_count(self) -> int: ...
    @property
    def backup_eligible(self) -> bool: ...


def record_assertion(credential: AssertedKey, verified: VerifiedAssertion) -> None:
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
        ended = device_suspended.send(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            citizen_id=credential.citizen_id,
            credential_pk=credential.id,
            reason="sign_count_regression",
        )
        if not ended:  # a suspension that ends nothing would leave the clone its grants
            session.rollback()
            raise RuntimeError("nothing receives passkeys.service.device_suspended")
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
        raise DeviceSuspended()
    if credential.backup_eligible != verified.backup_eligible:
        # §6.1.3: BE is fixed at creation; a change means a different authenticator.
        raise LoginRejected(_l("The confirmation on the phone could not be verified."))
    advanced = {
        "sign_count": verified.sign_count,
        "backed_up": verified.backed_up,
        "last_used_at": now,
    }
    result = session.connection().execute(
        _ADVANCE_COUNTER,
        {"credential_pk": credential.id, "read_count": credential.sign_count}
        | {f"new_{name}": value for name, value in advanced.items()},
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise LoginRejected(_l("The confirmation on the phone could not be verified."))
    loaded = session.identity_map.get(identity_key(Credential, credential.id))
    if loaded is not None:  # what the ORM's UPDATE did: the session's copy shows the new values
        for name, value in advanced.items():
            set_committed_value(loaded, name, value)
