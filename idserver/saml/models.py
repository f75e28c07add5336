"""Registered SAML service providers and the AuthnRequest IDs already answered."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..db import Base
from ..db import UTCDateTime
from ..db import utcnow


class ServiceProvider(Base):
    """A SAML 2.0 service provider, known by its metadata (``idserver saml-sp add``).

    ``id`` is short and ours: it is what a login transaction names as its requester
    (``login_transactions.client_id``) and what the pairwise NameID is derived from, so the
    pseudonym stays the same when the SP republishes its metadata.
    """

    __tablename__ = "saml_service_providers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    entity_id: Mapped[str] = mapped_column(String(512), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    metadata_xml: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(1000))  # the file or URL it was read from
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SamlRequest(Base):
    """One accepted request ID per service provider: the primary key makes it single-use.

    Kept until ``expires_at`` (IssueInstant + IDSERVER_SAML_REQUEST_MAX_AGE_SECONDS); after that
    the IssueInstant check refuses the request anyway.
    """

    __tablename__ = "saml_requests"

    sp_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_saml_requests_expires_at", "expires_at"),)
