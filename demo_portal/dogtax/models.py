"""Dogs registered for the dog tax, and the SAML requests awaiting their answer."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Date
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..db import UTCDateTime
from ..db import utcnow
from ..saml_account import outstanding_table

__all__ = ["Base", "Registration"]


class Base(DeclarativeBase):
    metadata = MetaData()


outstanding_table(Base.metadata)


def _new_id() -> str:
    return str(uuid.uuid4())


class Registration(Base):
    __tablename__ = "dog_registrations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=_new_id)
    owner_sub: Mapped[str] = mapped_column(String(255), index=True)
    owner_name: Mapped[str] = mapped_column(String(400))
    owner_birthdate: Mapped[dt.date | None] = mapped_column(Date)
    owner_address: Mapped[str] = mapped_column(String(400))
    dog_name: Mapped[str] = mapped_column(String(60))
    breed: Mapped[str] = mapped_column(String(60))
    kept_since: Mapped[dt.date] = mapped_column(Date)
    registered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
