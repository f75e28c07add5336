"""Clerks: staff of the citizens' office, each signing in with their own enrolled passkey."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint
from sqlalchemy import ForeignKey
from sqlalchemy import String
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..citizens.models import new_id
from ..db import Base
from ..db import UTCDateTime
from ..db import utcnow

ROLES = ("clerk", "supervisor", "admin")


class Clerk(Base):
    """A role on a citizen record: the clerk logs in with that record's passkeys."""

    __tablename__ = "clerks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    citizen_id: Mapped[str] = mapped_column(
        ForeignKey("citizens.id", ondelete="CASCADE"), unique=True
    )
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default="clerk")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (CheckConstraint("role IN ('clerk', 'supervisor', 'admin')", name="role"),)

    @property
    def active(self) -> bool:
        return self.disabled_at is None
