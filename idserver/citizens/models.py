"""Residents, their activation codes and their lost-phone revocation codes."""

from __future__ import annotations

import datetime as dt
import unicodedata
import uuid
from dataclasses import dataclass
from dataclasses import fields
from typing import Any
from typing import cast

from sqlalchemy import Date
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import Text
from sqlalchemy import bindparam
from sqlalchemy import event
from sqlalchemy import select
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..db import Base
from ..db import UTCDateTime
from ..db import utcnow

# Identity documents a clerk may check in person (``Citizen.proofing_document``).
PROOFING_DOCUMENTS = ("id_card", "passport", "residence_permit")


def new_id() -> str:
    return str(uuid.uuid4())


# German spellings without umlauts (DIN 5007-2): "Mueller" is how "Müller" is typed on a
# keyboard without ü, and how it stands in many foreign documents.
_TRANSLITERATION = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})


def searchable_name(text: str) -> str:
    """``text`` as the clerk search compares it: lower case, ä/ö/ü/ß spelt ae/oe/ue/ss, other
    accents dropped (é → e), spaces collapsed. Applied to names on write and to search terms."""
    spelt = unicodedata.normalize("NFC", text).casefold().translate(_TRANSLITERATION)
    plain = "".join(
        char for char in unicodedata.normalize("NFKD", spelt) if not unicodedata.combining(char)
    )
    return " ".join(plain.split())


class Citizen(Base):
    __tablename__ = "citizens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    given_name: Mapped[str] = mapped_column(String(200))
    family_name: Mapped[str] = mapped_column(String(200))
    birthdate: Mapped[dt.date] = mapped_column(Date)
    street: Mapped[str] = mapped_column(String(200))
    postcode: Mapped[str] = mapped_column(String(20))
    city: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Given and family name as ``searchable_name`` spells them; kept up to date on every write.
    search_name: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Identity proofing in person (idserver/assurance.py): the document a clerk checked
    # (``PROOFING_DOCUMENTS``), on which day, at which office. None: not recorded.
    proofing_document: Mapped[str | None] = mapped_column(String(32))
    proofed_on: Mapped[dt.date | None] = mapped_column(Date)
    proofing_office: Mapped[str | None] = mapped_column(String(200))

    @property
    def active(self) -> bool:
        return self.deleted_at is None


@dataclass(frozen=True, eq=False)
class CitizenRecord:
    """A citizen as /token reads it (``CITIZEN_ROW``): the claims' values, no ORM object.

    Loading the mapped ``Citizen`` costs more than the row; nothing is written through this.
    """

    id: str
    given_name: str
    family_name: str
    birthdate: dt.date
    street: str
    postcode: str
    city: str
    email: str | None
    deleted_at: dt.datetime | None
    proofing_document: str | None
    proofed_on: dt.date | None
    proofing_office: str | None

    @property
    def active(self) -> bool:
        return self.deleted_at is None


_CITIZENS = cast(Table, Citizen.__table__)
# Built once: a statement made per call costs more to build than the row costs to read.
CITIZEN_ROW = select(*(_CITIZENS.c[field.name] for field in fields(CitizenRecord))).where(
    _CITIZENS.c.id == bindparam("citizen_id")
)


@event.listens_for(Citizen, "before_insert")
@event.listens_for(Citizen, "before_update")
def _keep_search_name(_mapper: Any, _connection: Any, citizen: Citizen) -> None:
    citizen.search_name = searchable_name(f"{citizen.given_name} {citizen.family_name}")


class ActivationCode(Base):
    """A one-time code from the citizens' office; only its SHA-256 is stored."""

    __tablename__ = "activation_codes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    citizen_id: Mapped[str] = mapped_column(ForeignKey("citizens.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_activation_codes_citizen", "citizen_id"),)


class ActivationAttempt(Base):
    """A wrong activation code from one client address, for the per-address bound."""

    __tablename__ = "activation_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)  # purge

    __table_args__ = (Index("ix_activation_attempts_address_at", "address", "at"),)


class RevocationCode(Base):
    """Shown once after enrolment; revokes all of a citizen's devices when a phone is lost."""

    __tablename__ = "revocation_codes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    citizen_id: Mapped[str] = mapped_column(ForeignKey("citizens.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
