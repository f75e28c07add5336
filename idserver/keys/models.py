"""Signing keys and server secrets, their private parts encrypted under the KEK.

A key's state follows from two columns: ``active_purpose`` names the purpose it signs for now
(unique with ``alg``, so each purpose has at most one active key per algorithm, whichever
instance writes first), and
``retired_at`` marks a key taken out of the JWKS; it is kept to verify what it signed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..db import Base
from ..db import UTCDateTime


class SigningKey(Base):
    """One ES256 or RS256 key: public JWK in clear, PKCS#8 private key sealed with AES-GCM."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    alg: Mapped[str] = mapped_column(String(8), default="ES256", server_default="ES256")
    active_purpose: Mapped[str | None] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    sealed_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("active_purpose", "alg"),)

    @property
    def state(self) -> str:
        """``active`` (signs), ``published`` (an older ID-token key still in the JWKS), ``kept``
        (an older audit key) or ``retired`` (verifies what it signed, nothing else)."""
        if self.active_purpose is not None:
            return "active"
        if self.retired_at is not None:
            return "retired"
        return "published" if self.purpose == "id_token" else "kept"


class ServerSecret(Base):
    """A secret created once and never rotated (the pairwise salt), sealed with AES-GCM."""

    __tablename__ = "server_secrets"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    sealed_value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
