"""The account pages' own tables: pairings (adding a device) and withdrawn consents."""

from __future__ import annotations

import datetime as dt
import enum
from typing import ClassVar

from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..db import Base
from ..db import UTCDateTime
from ..db import utcnow
from ..states import edges
from ..states import state_check


class PairingState(enum.StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    APPROVED = "approved"
    USED = "used"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Pairing(Base):
    """Adding a device from an enrolled one (state machine in ``account.pairing``)."""

    __tablename__ = "pairings"

    # The moves of the diagram in ``account.pairing`` (``states.transition`` checks them).
    TRANSITIONS: ClassVar[frozenset[tuple[str, str]]] = edges(
        ((PairingState.PENDING,), PairingState.CLAIMED),
        ((PairingState.CLAIMED,), PairingState.APPROVED),
        ((PairingState.APPROVED,), PairingState.USED),
        (
            (PairingState.PENDING, PairingState.CLAIMED, PairingState.APPROVED),
            PairingState.CANCELLED,
        ),
        ((PairingState.PENDING, PairingState.CLAIMED, PairingState.APPROVED), PairingState.EXPIRED),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    citizen_id: Mapped[str] = mapped_column(ForeignKey("citizens.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default=PairingState.PENDING)
    cancel_reason: Mapped[str | None] = mapped_column(String(32))
    number: Mapped[str] = mapped_column(String(2))
    # SHA-256 of the binding secret in the claiming device's cookie; set once, by ``claim``.
    device_hash: Mapped[str | None] = mapped_column(String(64))
    challenges_issued: Mapped[int] = mapped_column(Integer, default=0)
    approved_by: Mapped[int | None] = mapped_column(
        ForeignKey("credentials.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    approved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_pairings_citizen", "citizen_id"), state_check(PairingState))


class ConsentWithdrawal(Base):
    """A citizen took back what a relying party was given; its earlier logins are hidden."""

    __tablename__ = "consent_withdrawals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    citizen_id: Mapped[str] = mapped_column(ForeignKey("citizens.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    withdrawn_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    tokens_revoked: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_consent_withdrawals_citizen", "citizen_id"),)
