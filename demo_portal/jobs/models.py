"""Applications for open positions.

An application moves only forwards::

    submitted ──withdraw (by the applicant)──▶ withdrawn

"One open application per applicant and position" is a partial unique index.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Date
from sqlalchemy import Index
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import text
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..db import UTCDateTime
from ..db import utcnow

__all__ = ["SUBMITTED", "WITHDRAWN", "Application", "Base"]

SUBMITTED = "submitted"
WITHDRAWN = "withdrawn"


class Base(DeclarativeBase):
    metadata = MetaData()


def _new_id() -> str:
    return str(uuid.uuid4())


class Application(Base):
    __tablename__ = "applications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_new_id)
    position_id: Mapped[str] = mapped_column(String(32))
    applicant_sub: Mapped[str] = mapped_column(String(255), index=True)
    applicant_name: Mapped[str] = mapped_column(String(400))
    email: Mapped[str | None] = mapped_column(String(320))
    birthdate: Mapped[dt.date | None] = mapped_column(Date)
    cover_letter: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=SUBMITTED)
    submitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index(
            "uq_applications_one_open_per_position",
            "applicant_sub",
            "position_id",
            unique=True,
            sqlite_where=text("state = 'submitted'"),
            postgresql_where=text("state = 'submitted'"),
        ),
    )
