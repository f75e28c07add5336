"""Relying parties, authorization codes and tokens, shaped for Authlib's mixins."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc6749 import TokenMixin
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oidc.core import AuthorizationCodeMixin as OIDCCodeMixin
from sqlalchemy import JSON
from sqlalchemy import Boolean
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import UniqueConstraint
from sqlalchemy import false
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..config import SIGNING_ALGORITHM
from ..db import Base
from ..db import UTCDateTime
from ..db import db
from ..db import utcnow

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
SECRET_METHODS = ("client_secret_basic", "client_secret_post")  # RFC 6749 §2.3.1
OFFLINE_ACCESS = "offline_access"  # OIDC Core §11: asks for a refresh token
GRANT_TYPES = ("authorization_code", "refresh_token")
PUSHED_AUTHORIZATION = "pushed_authorization"  # the PAR endpoint's name (client authentication)


def hash_secret(value: str) -> str:
    """SHA-256 of a high-entropy server-generated secret (codes, tokens, client secrets)."""
    return hashlib.sha256(value.encode()).hexdigest()


class ClientRules(ClientMixin):
    """What Authlib asks of a client (RFC 6749 ``ClientMixin``), answered from its registration:
    shared by the mapped ``Client`` and ``ActiveClient``, the plain row a login reads."""

    @property
    def client_metadata(self) -> dict[str, Any]:
        return {"post_logout_redirect_uris": list(self.post_logout_redirect_uris or [])}

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # OIDC Core §3.1.2.1: redirect_uri is always required

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(scope_to_list(self.scope))
        if self.check_grant_type("refresh_token"):
            allowed.add(OFFLINE_ACCESS)
        return " ".join(s for s in scope_to_list(scope) or [] if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # RFC 9700 §4.1.3: exact string match

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.client_secret_hash:
            return False
        return hmac.compare_digest(hash_secret(client_secret), self.client_secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # Revocation, introspection and PAR take the token endpoint's client authentication
        # (RFC 7009 §2.1, RFC 7662 §2.1, RFC 9126 §2).
        if endpoint in ("token", "revocation", "introspection", PUSHED_AUTHORIZATION):
            return method == self.token_endpoint_auth_method
        return True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in (self.grant_types or ["authorization_code"])


class Client(Base, ClientRules):
    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_secret_hash: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    scope: Mapped[str] = mapped_column(String(500))
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(40))
    jwks_uri: Mapped[str | None] = mapped_column(String(500))
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # `warn` or `deny` for a phone in another network than the computer; NULL: the server's
    # IDSERVER_PROXIMITY_POLICY (crosslogin.proximity).
    proximity_policy: Mapped[str | None] = mapped_column(String(8))
    # OIDC Dynamic Client Registration §2: how its ID tokens are signed (ES256 or RS256).
    id_token_signed_response_alg: Mapped[str] = mapped_column(
        String(8), default=SIGNING_ALGORITHM, server_default=SIGNING_ALGORITHM
    )
    # A disabled client is unknown to every endpoint until enabled again; a deleted one for
    # good. Deleting keeps the row, so the citizens' record of what it received (its tokens,
    # their consent withdrawals) and the audit log keep naming it (oidc.clients).
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # RFC 7591 §2 `grant_types`: `refresh_token` only for clients registered for it.
    grant_types: Mapped[list[str]] = mapped_column(
        JSON, default=lambda: ["authorization_code"], server_default='["authorization_code"]'
    )
    # OIDC Back-Channel Logout 1.0 §2.2 and Front-Channel Logout 1.0 §2: where its sessions are
    # ended (oidc.logout). Logout tokens and front-channel requests always carry ``sid``.
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(500))
    frontchannel_logout_uri: Mapped[str | None] = mapped_column(String(500))
    # RFC 9126 §6: its authorization requests only through /par (a pushed request_uri).
    require_pushed_authorization_requests: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )

    @property
    def status(self) -> str:
        if self.deleted_at is not None:
            return "deleted"
        return "disabled" if self.disabled_at is not None else "active"


@dataclass(frozen=True)
class ActiveClient(ClientRules):
    """An active client's registration as one plain row (``oidc.clients.active_client``): what
    the endpoints of a login read, without an ORM object. Read-only; changes go through
    ``oidc.clients`` on the mapped ``Client``."""

    client_id: str
    client_secret_hash: str | None
    name: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    scope: str
    token_endpoint_auth_method: str
    jwks_uri: str | None
    jwks: dict[str, Any] | None
    proximity_policy: str | None
    id_token_signed_response_alg: str
    grant_types: list[str]
    backchannel_logout_uri: str | None
    frontchannel_logout_uri: str | None
    require_pushed_authorization_requests: bool

    status = "active"  # ``active_client`` reads no other


class CodeRules(OIDCCodeMixin):
    """What Authlib asks of an authorization code (OIDC Core ``AuthorizationCodeMixin``):
    shared by the mapped ``AuthorizationCode`` and ``IssuedCode``, the row /token reads."""

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str | None:
        return self.acr

    def get_amr(self) -> list[str]:
        return list(self.amr or [])


class AuthorizationCode(Base, CodeRules):
    __tablename__ = "authorization_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    citizen_id: Mapped[str] = mapped_column(ForeignKey("citizens.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(String(500))
    scope: Mapped[str] = mapped_column(String(500))
    nonce: Mapped[str | None] = mapped_column(String(500))
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(10))
    auth_time: Mapped[int] = mapped_column(Integer)
    acr: Mapped[str | None] = mapped_column(String(100))
    amr: Mapped[list[str]] = mapped_column(JSON, default=list)
    login_id: Mapped[str | None] = mapped_column(String(64))
    # The request's validated ``claims`` parameter (``oidc.claims.ClaimsRequest``), or None.
    claims_request: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The device that approved the login: revoking or suspending it voids the code.
    credential_pk: Mapped[int | None] = mapped_column(
        ForeignKey("credentials.id", ondelete="SET NULL")
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)  # for the purge
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # Authlib's nonce-replay check looks codes up by (client, nonce) on every login.
        Index("ix_authorization_codes_client_nonce", "client_id", "nonce"),
        Index("ix_authorization_codes_credential", "credential_pk"),
    )


@dataclass(frozen=True)
class IssuedCode(CodeRules):
    """An authorization code as /token reads it (``oidc.server``): one plain row, no ORM
    object. Read-only; its single use is a conditional UPDATE of the table."""

    id: int
    client_id: str
    citizen_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    auth_time: int
    acr: str | None
    amr: list[str]
    login_id: str | None
    claims_request: dict[str, Any] | None
    credential_pk: int | None
    expires_at: dt.datetime
    used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class Token(Base, TokenMixin):
    """An issued access token (stored hashed) and the claims it released."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    access_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    citizen_id: Mapped[str] = mapped_column(ForeignKey("citizens.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(500))
    claims: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The login's validated ``claims`` parameter: what userinfo releases beyond the scope.
    claims_request: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    code_id: Mapped[int | None] = mapped_column(
        ForeignKey("authorization_codes.id", ondelete="SET NULL")
    )
    # The device that approved the login: revoking or suspending it revokes the token.
    credential_pk: Mapped[int | None] = mapped_column(
        ForeignKey("credentials.id", ondelete="SET NULL")
    )
    # The refresh-token family it was issued with or from: revoking the family revokes it.
    refresh_family: Mapped[str | None] = mapped_column(String(32), index=True)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)  # for the purge
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_tokens_citizen", "citizen_id"),
        # The client's citizens, for resolving a ``login_hint`` (``oidc.claims.hinted_citizen``).
        Index("ix_tokens_client_citizen", "client_id", "citizen_id"),
    )

    def check_client(self, client: ClientRules) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int((self.expires_at - self.issued_at).total_seconds())

    def is_expired(self) -> bool:
        return utcnow() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def get_client(self) -> Client | None:
        return db.session.get(Client, self.client_id)

    def get_user(self) -> Any:
        from ..citizens.models import Citizen

        return db.session.get(Citizen, self.citizen_id)


class RefreshToken(Base):
    """A refresh token (stored hashed), single use: each use issues its successor.

    All tokens descending from one login share a ``family_id`` and the family's absolute
    expiry; each has its own idle expiry. A token presented after its use revokes the family
    (RFC 9700 §4.14.2, refresh token rotation).
    """

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(32), index=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("refresh_tokens.id", ondelete="SET NULL")
    )
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    citizen_id: Mapped[str] = mapped_column(
        ForeignKey("citizens.id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(String(500))
    # The login's validated ``claims`` parameter, handed on to every successor and access token.
    claims_request: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The device that approved the login: revoking or suspending it revokes the family.
    credential_pk: Mapped[int | None] = mapped_column(
        ForeignKey("credentials.id", ondelete="SET NULL"), index=True
    )
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)  # absolute
    idle_expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    def check_client(self, client: ClientRules) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return utcnow() >= min(self.expires_at, self.idle_expires_at)

    def is_revoked(self) -> bool:
        return self.revoked_at is not None or self.used_at is not None


class UsedAssertion(Base):
    """A ``private_key_jwt`` ``jti`` already seen (RFC 7523 §3 item 7: single use)."""

    __tablename__ = "used_client_assertions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(64))
    jti: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("client_id", "jti"),)


class SessionClient(Base):
    """A client a Bürger-ID browser session issued a code to, with the ``sid`` of its ID tokens.

    A later login in the same browser takes the earlier session's rows over (oidc.logout), so
    logging out reaches every client the browser logged in to.
    """

    __tablename__ = "session_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("browser_sessions.id", ondelete="CASCADE"), index=True
    )
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    citizen_id: Mapped[str] = mapped_column(ForeignKey("citizens.id", ondelete="CASCADE"))
    login_id: Mapped[str] = mapped_column(String(64))  # its codes, and so its access tokens
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class LogoutDelivery(Base):
    """A back-channel logout still to be sent (an outbox row, written in the transaction that
    ended the session; the message is made when it is sent, oidc.logout).

    ``protocol`` says how: ``oidc``, a logout token POSTed to the client's
    ``backchannel_logout_uri``; ``saml``, a signed LogoutRequest over the SOAP binding to the
    SP's SingleLogoutService (``saml.logout``). ``client_id`` names the OIDC client or the SAML
    service provider, so it has no foreign key (as ``login_transactions.client_id``); a party
    that is gone by the time of sending fails the delivery. ``sid``/``sub`` are the SAML
    SessionIndex and NameID.
    """

    __tablename__ = "logout_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    protocol: Mapped[str] = mapped_column(String(8), default="oidc", server_default="oidc")
    client_id: Mapped[str] = mapped_column(String(64))
    sid: Mapped[str] = mapped_column(String(64))
    sub: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # gave up
    last_error: Mapped[str | None] = mapped_column(String(200))


class PushedAuthorizationRequest(Base):
    """An authorization request a client pushed to /par (RFC 9126), validated when pushed.

    Only the SHA-256 of its ``request_uri`` is stored; /authorize uses it once, by
    ``UPDATE … WHERE used_at IS NULL AND expires_at > now`` for the client that pushed it.
    """

    __tablename__ = "pushed_authorization_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_uri_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    params: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)  # for the purge
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
