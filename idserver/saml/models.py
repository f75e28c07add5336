"""Registered SAML service providers, the AuthnRequest IDs already answered, and which
providers each browser session sent an assertion to."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
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


class SessionServiceProvider(Base):
    """An SP a Bürger-ID browser session sent an assertion to: whom to tell when the session
    ends (SAML 2.0 Profiles §4.4, saml.logout), with the NameID and SessionIndex it was given.

    ``session_index`` is ``oidc.claims.session_identifier(login_id)``, like the ``sid`` of ID
    tokens: it names the session without revealing its id. A later login in the same browser
    takes the rows over, as ``session_clients``; the rows are also the citizen's record of the
    SAML services logged in to and what each received (account page), until the session is
    purged.
    """

    __tablename__ = "saml_session_providers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("browser_sessions.id", ondelete="CASCADE"), index=True
    )
    sp_id: Mapped[str] = mapped_column(ForeignKey("saml_service_providers.id", ondelete="CASCADE"))
    citizen_id: Mapped[str] = mapped_column(ForeignKey("citizens.id", ondelete="CASCADE"))
    login_id: Mapped[str] = mapped_column(String(64))
    name_id: Mapped[str] = mapped_column(String(64))  # the pairwise pseudonym at this SP
    session_index: Mapped[str] = mapped_column(String(64))
    attributes: Mapped[list[str]] = mapped_column(JSON, default=list)  # urn:oid: names released
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_saml_session_providers_citizen", "citizen_id"),)
