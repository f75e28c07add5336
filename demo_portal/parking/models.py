"""Resident parking permits.

A permit moves only forwards::

    active ──cancel (by its holder)──▶ cancelled
       └────lapse (past valid_until, when a new one is issued)──▶ lapsed

"A resident holds at most one active permit" is a partial unique index, so two concurrent
applications cannot both succeed.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Date
from sqlalchemy import Index
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import text
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..db import UTCDateTime
from ..db import utcnow

__all__ = ["ACTIVE", "CANCELLED", "LAPSED", "Base", "Permit"]

ACTIVE = "active"
CANCELLED = "cancelled"
LAPSED = "lapsed"


class Base(DeclarativeBase):
    metadata = MetaData()


def _new_id() -> str:
    return str(uuid.uuid4())


class Permit(Base):
    __tablename__ = "permits"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_new_id)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    holder_sub: Mapped[str] = mapped_column(String(255), index=True)
    holder_name: Mapped[str] = mapped_column(String(400))
    address: Mapped[str] = mapped_column(String(600))
    zone_id: Mapped[str] = mapped_column(String(16))
    zone_name: Mapped[str] = mapped_column(String(200))
    plate: Mapped[str] = mapped_column(String(16))
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_until: Mapped[dt.date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index(
            "uq_permits_one_active_per_holder",
            "holder_sub",
            unique=True,
            sqlite_where=text("state = 'active'"),
            postgresql_where=text("state = 'active'"),
        ),
    )

    def status(self, today: dt.date) -> str:
        """What a warden would see today: ``valid``, ``cancelled`` or ``expired``."""
        if self.state == CANCELLED:
            return "cancelled"
        if self.state == LAPSED or today > self.valid_until:
            return "expired"
        return "valid"
