"""The QR-code login transaction (see ``crosslogin.service`` for its state machine)."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import fields
from functools import cached_property
from typing import Any
from typing import ClassVar
from typing import cast

from sqlalchemy import JSON
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import LargeBinary
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..db import Base
from ..db import UTCDateTime
from ..db import utcnow
from ..states import edges
from ..states import state_check


class LoginState(enum.StrEnum):
    PENDING = "pending"
    SCANNED = "scanned"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CONSUMED = "consumed"


class DenyReason(enum.StrEnum):
    """Why a login was denied (``deny_reason``); the relying party's answer names it."""

    DENIED = "denied"  # the citizen said no on the phone
    WRONG_NUMBER = "wrong_number"
    CANCELLED = "cancelled"  # at the computer
    OTHER_NETWORK = "other_network"  # the phone in another network, under the deny policy
    OTHER_ACCOUNT = "other_account"  # approved by another citizen than the one expected
    LEVEL_TOO_LOW = "level_too_low"  # the approval's assurance level is below the requested one


@dataclass(frozen=True)
class Requester:
    """Who asks for a login, as the owner of the request (``oidc``) describes it at the start.

    The login never looks the client up itself: it shows and enforces what it was given.
    """

    name: str  # shown on the computer and the phone
    claims: tuple[str, ...]  # the claim names the phone lists (and the approval commits to)
    proximity_policy: str | None  # `warn`/`deny`; None: IDSERVER_PROXIMITY_POLICY
    site_url: str  # where "back" leads without an answer; "": the issuer's start page
    form_origin: str  # scheme://host[:port] the cancel form's redirects end at; "": none
    answers_endings: bool  # False: a login that ends unapproved just says so (no one to tell)
    language: str | None = None  # the computer's pages' language (OIDC ``ui_locales``); None: any
    essential_claims: tuple[str, ...] = ()  # of ``claims``, those the relying party needs
    # The only citizen who may approve (OIDC ``login_hint``); None: anyone. Never shown.
    expected_citizen_id: str | None = None
    required_level: str | None = None  # the least assurance level the approval must reach
    protocol: str = "oidc"  # whose second leg answers (``crosslogin.views.init_app``'s ``resume``)
    # SAML (BundID): the SP's online service the login is for (AKDB OnlineServiceId), for the
    # audit log; never shown, as no display name for it exists. "": none named.
    online_service_id: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "claims": list(self.claims),
            "essential_claims": list(self.essential_claims),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Requester:
        return cls(
            **{
                **data,
                "claims": tuple(data["claims"]),
                "essential_claims": tuple(data.get("essential_claims") or ()),
            }
        )


class LoginTransaction(Base):
    __tablename__ = "login_transactions"

    # The moves of the diagram in ``crosslogin.service`` (``states.transition`` checks them).
    TRANSITIONS: ClassVar[frozenset[tuple[str, str]]] = edges(
        ((LoginState.PENDING,), LoginState.SCANNED),
        ((LoginState.PENDING, LoginState.SCANNED), LoginState.APPROVED),
        ((LoginState.PENDING, LoginState.SCANNED), LoginState.DENIED),
        ((LoginState.PENDING, LoginState.SCANNED, LoginState.APPROVED), LoginState.EXPIRED),
        ((LoginState.APPROVED, LoginState.DENIED, LoginState.EXPIRED), LoginState.CONSUMED),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default=LoginState.PENDING)
    deny_reason: Mapped[str | None] = mapped_column(String(32))
    browser_hash: Mapped[str] = mapped_column(String(64))
    phone_hash: Mapped[str | None] = mapped_column(String(64))
    # An OIDC client's id, or a SAML service provider's (``requester.protocol`` says which).
    client_id: Mapped[str] = mapped_column(String(64))
    request_params: Mapped[dict[str, str]] = mapped_column(JSON)
    scope: Mapped[str] = mapped_column(String(500))
    requester: Mapped[dict[str, Any]] = mapped_column(JSON)
    number: Mapped[str] = mapped_column(String(2))
    desktop_ip: Mapped[str] = mapped_column(String(64))
    desktop_user_agent: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    challenge_nonce: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    challenges_issued: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    citizen_id: Mapped[str | None] = mapped_column(ForeignKey("citizens.id", ondelete="SET NULL"))
    credential_pk: Mapped[int | None] = mapped_column(
        ForeignKey("credentials.id", ondelete="SET NULL")
    )
    approved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    amr: Mapped[list[str] | None] = mapped_column(JSON)
    acr: Mapped[str | None] = mapped_column(String(100))
    level: Mapped[str | None] = mapped_column(String(16))  # assurance level of the approval
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    phone_ip: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        Index("ix_login_transactions_expires", "expires_at"),
        state_check(LoginState),
    )

    @property
    def requesting(self) -> Requester:
        """``requester`` as its value object."""
        return Requester.from_json(self.requester)


@dataclass(frozen=True, eq=False)
class Login:
    """A login transaction as one request reads it (``LOGIN_ROW``): plain values, no ORM object.

    Loading the mapped ``LoginTransaction`` costs about three times the row itself, and a login
    is read in nearly every one of its requests. Nothing is written through a ``Login``: the
    state changes only by ``states.transition``, and the service hands back a new ``Login``
    (``dataclasses.replace``) with what its transition wrote. ``evidence`` is written once and
    never read on the login's path, so it is left out.
    """

    id: str
    state: str
    deny_reason: str | None
    browser_hash: str
    phone_hash: str | None
    client_id: str
    request_params: dict[str, str]
    scope: str
    requester: dict[str, Any]
    number: str
    desktop_ip: str
    desktop_user_agent: str
    created_at: dt.datetime
    expires_at: dt.datetime
    challenge_nonce: bytes | None
    challenges_issued: int
    citizen_id: str | None
    credential_pk: int | None
    approved_at: dt.datetime | None
    amr: list[str] | None
    acr: str | None
    level: str | None
    phone_ip: str | None
    version: int

    @cached_property
    def requesting(self) -> Requester:
        """``requester`` as its value object."""
        return Requester.from_json(self.requester)


LOGIN_TABLE = cast(Table, LoginTransaction.__table__)
# Built once: a statement made per call costs more to build than the row costs to read.
LOGIN_ROW = select(*(LOGIN_TABLE.c[field.name] for field in fields(Login))).where(
    LOGIN_TABLE.c.id == bindparam("login_id")
)
