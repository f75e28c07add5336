"""Enrolled authenticators (phones' passkeys and native apps' keys) and pending challenges."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import Boolean
from sqlalchemy import ColumnElement
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy import exists
from sqlalchemy import false
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..db import Base
from ..db import UTCDateTime
from ..db import utcnow

MAX_CREDENTIAL_ID_BYTES = 1023  # WebAuthn L3 §7.1 step 24


class Credential(Base):
    """One enrolled device. ``credential_id`` and the public key are unique across all citizens."""

    __tablename__ = "credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(MAX_CREDENTIAL_ID_BYTES), unique=True)
    citizen_id: Mapped[str] = mapped_column(ForeignKey("citizens.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20), default="passkey")  # passkey | app
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    # SHA-256 of the key's SubjectPublicKeyInfo (ceremonies.public_key_fingerprint): one key, one
    # credential, whoever holds it and whatever its state. NULL only where migration 0006 met a
    # key it could not read, or one an older credential already had (that one it revoked).
    public_key_hash: Mapped[str | None] = mapped_column(String(64))
    sign_count: Mapped[int] = mapped_column(Integer, default=0)
    aaguid: Mapped[str] = mapped_column(String(36))
    attestation_format: Mapped[str] = mapped_column(String(32))
    attestation_object: Mapped[bytes] = mapped_column(LargeBinary)
    transports: Mapped[list[str]] = mapped_column(JSON, default=list)
    origin: Mapped[str] = mapped_column(String(300))
    backup_eligible: Mapped[bool] = mapped_column(Boolean, default=False)
    backed_up: Mapped[bool] = mapped_column(Boolean, default=False)
    # At enrolment, attestation proved a hardware-bound key (ceremonies.proves_hardware_key):
    # the only ground for amr "hwk". Credentials from before it was recorded count as not proved.
    hardware_attested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    suspended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_credentials_citizen", "citizen_id"),
        # a unique index, not a constraint: SQLite adds it without rebuilding the table
        Index("ix_credentials_public_key_hash", "public_key_hash", unique=True),
    )

    @property
    def usable(self) -> bool:
        return self.revoked_at is None and self.suspended_at is None


def usable_device(credential_pk: Any) -> ColumnElement[bool]:
    """SQL condition: ``credential_pk`` names a device that is neither revoked nor suspended.

    What a device obtained (an approved login, a session, a code, a token) counts only while
    this holds; NULL names no device and never holds. A primary-key lookup per row.
    """
    return exists().where(
        Credential.id == credential_pk,
        Credential.revoked_at.is_(None),
        Credential.suspended_at.is_(None),
    )


class Challenge(Base):
    """A WebAuthn challenge waiting for its answer; deleted before the answer is verified."""

    __tablename__ = "webauthn_challenges"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(20))  # enrol | login
    challenge: Mapped[bytes] = mapped_column(LargeBinary(64))
    subject: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)  # for the purge
