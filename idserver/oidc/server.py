"""The OpenID Connect provider: Authlib's authorization server with our small hooks.

Only the authorization code flow exists, always with PKCE S256 (RFC 9700 §2.1.1), exact
redirect URIs, ``iss`` in the authorization response (RFC 9207), ID tokens signed with
``kid`` by ES256 or, per client, RS256, with ``azp`` and ``sid``, pairwise ``sub`` (OIDC Core
§8.1), and client authentication by ``client_secret_basic``,
``client_secret_post`` or ``private_key_jwt`` (RFC 7523, single-use ``jti``, issuer as the only
audience). Only active clients exist here: a disabled or deleted one is unknown (oidc.clients).

Refresh tokens go only to clients registered for the ``refresh_token`` grant that ask for
``offline_access`` with ``prompt=consent`` (OIDC Core §11). They rotate on every use; a used one
presented again revokes its whole family (RFC 9700 §4.14.2). Clients revoke (RFC 7009) and
introspect (RFC 7662) their own tokens.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass
from dataclasses import fields
from dataclasses import replace
from typing import Any
from typing import cast

import requests
from authlib.integrations.flask_oauth2 import AuthorizationServer as FlaskAuthorizationServer
from authlib.integrations.flask_oauth2 import ResourceProtector
from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749 import InvalidGrantError
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc6749 import InvalidScopeError
from authlib.oauth2.rfc6749 import MissingAuthorizationError
from authlib.oauth2.rfc6749 import UnsupportedTokenTypeError
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import OpenIDCode
from authlib.oidc.core import UserInfo
from authlib.oidc.core import UserInfoEndpoint
from authlib.oidc.rpinitiated import EndSessionEndpoint
from flask import Flask
from flask import current_app
from flask import g
from flask import has_request_context
from flask import request  # only for RFC 6750 §2.2 body tokens, which Authlib does not read
from joserfc import jws
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from ..audit import record_event
from ..citizens.models import CITIZEN_ROW
from ..citizens.models import Citizen
from ..citizens.models import CitizenRecord
from ..config import ID_TOKEN_ALGORITHMS
from ..crosslogin.models import LoginTransaction
from ..db import db
from ..db import utcnow
from ..keys import ID_TOKEN
from ..keys import key_store
from ..logs import note_client
from ..metrics import TOKEN_GRANTS
from ..passkeys.models import usable_device
from ..sessions import end_session
from .claims import SCOPES
from .claims import ClaimsRequest
from .claims import claim_names
from .claims import claims_for_scope
from .claims import pairwise_subject
from .claims import requested_claims
from .claims import session_identifier
from .clients import active_client
from .errors import BearerTokenMissing
from .errors import ClientGone
from .models import AUTH_METHODS
from .models import OFFLINE_ACCESS
from .models import PUSHED_AUTHORIZATION
from .models import ActiveClient
from .models import AuthorizationCode
from .models import Client
from .models import IssuedCode
from .models import RefreshToken
from .models import Token
from .models import UsedAssertion
from .models import hash_secret
from .verified_claims import requested_verified_claims
from .verified_claims import verified_claims_for

log = logging.getLogger(__name__)

__all__ = [
    "Authentication",
    "StoredAuthorizationRequest",
    "authorization",
    "revoke_client_tokens",
    "revoke_device_grants",
]

ASSERTION_ALGORITHMS = ("ES256", "ES384", "PS256", "RS256", "EdDSA")  # private_key_jwt
MAX_ASSERTION_LIFETIME = 300  # seconds between a client assertion's iat and exp
HEADER_KEY_PARAMETERS = ("jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256")
USERINFO_REALM = "userinfo"  # RFC 6750 §3: the protection space of the bearer-token challenges


@dataclass(frozen=True)
class Authentication:
    """Who approved a login, how and when: the ``grant_user`` of an authorization."""

    citizen_id: str
    auth_time: int
    amr: list[str]
    acr: str
    login_id: str | None = None
    credential_pk: int | None = None  # the device that approved the login


class StoredAuthorizationRequest(OAuth2Request):
    """An authorization request replayed from the parameters saved with a login transaction."""

    def __init__(self, params: dict[str, str]) -> None:
        issuer = current_app.config["ISSUER"]
        super().__init__("GET", f"{issuer}/authorize", headers={})
        self.payload = BasicOAuth2Payload(params)
        self._params = params

    @property
    def args(self) -> dict[str, str]:
        return self._params

    @property
    def form(self) -> dict[str, str]:
        return {}


class AuthorizationServer(FlaskAuthorizationServer):
    def validate_requested_scope(self, scope: str | None) -> None:
        """An OpenID provider only: every request asks for ``openid`` (OIDC Core §3.1.2.1)."""
        if "openid" not in (scope or "").split():
            raise InvalidScopeError("The scope must include 'openid'.")
        super().validate_requested_scope(scope)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return super().create_oauth2_request(request)

    def create_authorization_response(
        self, request: Any = None, grant_user: Any = None, grant: Any = None
    ) -> Any:
        """The answer to a login approved on the phone (crosslogin replays the request).

        A client disabled or deleted since the login began is unknown now; no redirect can go
        to it (RFC 6749 §4.1.2.1), so the browser is shown why instead.
        """
        if isinstance(request, StoredAuthorizationRequest) and (
            self.query_client(request.payload.client_id) is None
        ):
            raise ClientGone()
        return super().create_authorization_response(request, grant_user, grant)

    def authenticate_pushing_client(self, request: OAuth2Request) -> ActiveClient:
        """The client pushing to /par, authenticated as at the token endpoint (RFC 9126 §2)."""
        _refuse_two_client_auth_methods(request)
        client: ActiveClient = self.authenticate_client(
            request, list(AUTH_METHODS), PUSHED_AUTHORIZATION
        )
        return client

    def create_token_response(self, request: Any = None) -> Any:
        oauth_request = self.create_oauth2_request(request)
        try:
            _refuse_two_client_auth_methods(oauth_request)
            if not oauth_request.payload.grant_type:
                # A required parameter is missing: invalid_request (RFC 6749 §5.2), not
                # unsupported_grant_type, which is for a grant type we do not know.
                raise InvalidRequestError("Missing 'grant_type' in request.")
        except InvalidRequestError as error:
            return self.handle_error_response(oauth_request, error)
        return super().create_token_response(oauth_request)


def _refuse_two_client_auth_methods(request: OAuth2Request) -> None:
    """RFC 6749 §2.3: a client MUST NOT use more than one authentication method per request."""
    form = request.form
    used = [
        request.headers.get("Authorization", "").lower().startswith("basic "),
        "client_secret" in form,
        "client_assertion" in form or "client_assertion_type" in form,
    ]
    if sum(used) > 1:
        raise InvalidRequestError("Use one client authentication method, not several.")


class S256Challenge(CodeChallenge):
    """PKCE for every client, S256 only (RFC 9700 §2.1.1, FAPI 2.0 §5.3.2.2)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge': PKCE is required")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be 'S256'")
        super().validate_code_challenge(grant, redirect_uri)


def granted_scope(client: ActiveClient, scope: str | None, *, prompt: str | None) -> str:
    """The requested scope the client is registered for; ``offline_access`` only with
    ``prompt=consent`` (OIDC Core §11: otherwise it is ignored, not an error)."""
    granted = scope_to_list(client.get_allowed_scope(scope or "")) or []
    if "consent" not in (prompt or "").split():
        granted = [item for item in granted if item != OFFLINE_ACCESS]
    return " ".join(granted)


_CODES = cast(Table, AuthorizationCode.__table__)
_INSERT_CODE = insert(_CODES)
_CODE_BY_HASH = select(*(_CODES.c[field.name] for field in fields(IssuedCode))).where(
    _CODES.c.code_hash == bindparam("code_hash")
)
# Single use: of two redemptions exactly one changes the row (GUIDE rule 3).
_BURN_CODE = (
    update(_CODES)
    .where(
        _CODES.c.id == bindparam("code_id"),
        _CODES.c.used_at.is_(None),
        _CODES.c.revoked_at.is_(None),
        usable_device(_CODES.c.credential_pk),
    )
    .values(used_at=bindparam("now"))
)
_NONCE_USED = (
    select(_CODES.c.id)
    .where(_CODES.c.client_id == bindparam("client_id"), _CODES.c.nonce == bindparam("nonce"))
    .limit(1)
)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def generate_token(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """A refresh token only where the code's scope holds ``offline_access``."""
        scope = kwargs.get("scope") or ""
        kwargs["include_refresh_token"] = kwargs.get(
            "include_refresh_token", True
        ) and OFFLINE_ACCESS in (scope_to_list(scope) or [])
        return super().generate_token(*args, **kwargs)

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        """Store the code (hashed) in the caller's transaction: ``views._grant`` commits it
        together with the browser's session, once."""
        auth: Authentication = request.user
        data = request.payload.data
        ttl = current_app.config["AUTH_CODE_TTL_SECONDS"]
        db.session.execute(
            _INSERT_CODE,
            {
                "code_hash": hash_secret(code),
                "client_id": request.client.get_client_id(),
                "citizen_id": auth.citizen_id,
                "redirect_uri": request.payload.redirect_uri,
                "scope": granted_scope(
                    request.client, request.payload.scope, prompt=data.get("prompt")
                ),
                "nonce": data.get("nonce"),
                "code_challenge": data["code_challenge"],
                "code_challenge_method": data["code_challenge_method"],
                "auth_time": auth.auth_time,
                "acr": auth.acr,
                "amr": auth.amr,
                "login_id": auth.login_id,
                "claims_request": claims_request_of(request.client, data.get("claims")),
                "credential_pk": auth.credential_pk,
                "created_at": utcnow(),
                "expires_at": utcnow() + dt.timedelta(seconds=ttl),
            },
        )

    def query_authorization_code(self, code: str, client: ActiveClient) -> IssuedCode | None:
        row = db.session.execute(_CODE_BY_HASH, {"code_hash": hash_secret(code)}).first()
        if row is None:
            return None
        record = IssuedCode(*row)
        if record.client_id != client.client_id:
            return None
        if record.used_at is not None:
            # RFC 6749 §4.1.2: a reused code revokes what it issued.
            revoke_tokens_of_code(record.id)
            log.warning("authorization code %s reused; its tokens are revoked", record.id)
            return None
        if record.revoked_at is not None or record.expires_at <= utcnow():
            return None
        return record

    def authenticate_user(self, authorization_code: IssuedCode) -> CitizenRecord | None:
        # Runs after PKCE passed: now burn the code, exactly once, in the database, and only
        # while it is not voided and the device that approved its login is still usable.
        session = db.session
        burned = session.execute(_BURN_CODE, {"code_id": authorization_code.id, "now": utcnow()})
        if burned.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            raise InvalidGrantError("Invalid 'code' in request.")
        row = (
            session.connection()
            .execute(CITIZEN_ROW, {"citizen_id": authorization_code.citizen_id})
            .first()
        )
        if row is None or not (citizen := CitizenRecord(*row)).active:
            session.rollback()
            return None
        return citizen

    def delete_authorization_code(self, authorization_code: IssuedCode) -> None:
        """Nothing to do: the code was burned in ``authenticate_user`` and is kept as evidence."""


def claims_request_of(client: ActiveClient, raw: str | None) -> dict[str, Any] | None:
    """The request's ``claims`` parameter as stored, limited to what ``client`` may get (the
    login checked it already: a request replayed from a login is valid), with the claims asked
    for in ``userinfo.verified_claims`` (what the scope does not release is dropped when they
    are answered, ``verified_claims_for``)."""
    wanted = requested_claims(raw, allowed_scope=client.scope)
    verified = requested_verified_claims(raw, target="userinfo") or []
    wanted = replace(wanted, verified_userinfo=tuple(verified))
    return wanted.as_json() if wanted.names or wanted.verified_userinfo else None


def revoke_tokens_of_code(code_id: int) -> None:
    db.session.execute(
        update(Token)
        .where(Token.code_id == code_id, Token.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    db.session.commit()


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """RFC 6749 §6 with rotation: each refresh token is used once and issues its successor."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        record = find_refresh_token(refresh_token)
        if record is None:
            return None
        if (
            record.used_at is not None
            and record.revoked_at is None  # a revoked family needs no second revocation
            and record.client_id == self.request.client.client_id
        ):
            revoke_refresh_family(record, event="refresh_token_reused")
            log.warning("refresh token %s reused; its family is revoked", record.id)
            return None
        if record.is_revoked() or record.is_expired():
            return None
        return record

    def authenticate_user(self, refresh_token: RefreshToken) -> Citizen:
        # Single use, in the database: of two requests with the same token exactly one marks it
        # used; the other finds it used and counts as a reuse (RFC 9700 §4.14.2). The successor
        # is saved in the same transaction (``_save_token`` commits).
        session = db.session
        now = utcnow()
        marked = session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.id == refresh_token.id,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > now,
                RefreshToken.idle_expires_at > now,
                usable_device(RefreshToken.credential_pk),
            )
            .values(used_at=now)
        )
        if marked.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            record = session.get(RefreshToken, refresh_token.id)
            if record is not None and record.used_at is not None and record.revoked_at is None:
                revoke_refresh_family(record, event="refresh_token_reused")
                log.warning("refresh token %s used concurrently; family revoked", record.id)
            raise InvalidGrantError("Invalid 'refresh_token' in request.")
        citizen = session.get(Citizen, refresh_token.citizen_id)
        if citizen is None or not citizen.active:
            session.rollback()
            raise InvalidGrantError("Invalid 'refresh_token' in request.")
        return citizen

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        """Nothing to do: ``authenticate_user`` marked it used, and it is kept for reuse checks."""


def _live(model: Any, token_hash: Any, secret: str) -> Any:
    """The ``model`` row whose ``token_hash`` is ``secret``'s, while its client is active and
    the device that approved its login is usable."""
    return db.session.scalars(
        select(model)
        .join(Client, Client.client_id == model.client_id)
        .where(
            token_hash == hash_secret(secret),
            usable_device(model.credential_pk),
            Client.disabled_at.is_(None),
            Client.deleted_at.is_(None),
        )
    ).first()


def find_refresh_token(refresh_token: str) -> RefreshToken | None:
    """The refresh token, while its client is active and its device usable."""
    return cast(RefreshToken | None, _live(RefreshToken, RefreshToken.token_hash, refresh_token))


def find_access_token(access_token: str) -> Token | None:
    """The access token, while its client is active and its device usable."""
    return cast(Token | None, _live(Token, Token.access_token_hash, access_token))


def revoke_refresh_family(record: RefreshToken, *, event: str) -> None:
    """Revoke every refresh token of ``record``'s family and the access tokens issued with them;
    audited as ``event``, committed. Rows first, then the audit log's lock."""
    session = db.session
    now = utcnow()
    refresh = session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == record.family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    access = session.execute(
        update(Token)
        .where(Token.refresh_family == record.family_id, Token.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    record_event(
        event,
        actor=f"client:{record.client_id}",
        subject=record.citizen_id,
        client_id=record.client_id,
        refresh_token_id=record.id,
        refresh_tokens_revoked=refresh.rowcount,  # type: ignore[attr-defined]
        tokens_revoked=access.rowcount,  # type: ignore[attr-defined]
    )
    session.commit()


def revoke_client_tokens(*, citizen_id: str, client_id: str) -> int:
    """Revoke the client's refresh tokens for this citizen (consent withdrawn); returns how many.

    Runs in the caller's transaction; the caller commits. Access tokens are the caller's.
    """
    revoked = db.session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.citizen_id == citizen_id,
            RefreshToken.client_id == client_id,
            RefreshToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    return revoked.rowcount  # type: ignore[attr-defined]


def revoke_device_tokens(*, citizen_id: str, credential_pks: Collection[int]) -> int:
    """Revoke the refresh tokens of these devices' logins; returns how many.

    Runs in the caller's transaction; the caller commits.
    """
    if not credential_pks:
        return 0
    revoked = db.session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.citizen_id == citizen_id,
            RefreshToken.credential_pk.in_(credential_pks),
            RefreshToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    return revoked.rowcount  # type: ignore[attr-defined]


def revoke_device_grants(*, citizen_id: str, credential_pks: Collection[int]) -> tuple[int, int]:
    """Void the unredeemed codes and revoke the live access and refresh tokens of these devices'
    logins.

    Returns (codes voided, access tokens revoked). Runs in the caller's transaction; the caller
    commits. Codes go first: a redemption running at the same moment either burned its code
    before (then its token is committed when the token UPDATE looks, and is revoked) or finds it
    voided.
    """
    if not credential_pks:
        return 0, 0
    now = utcnow()
    session = db.session
    codes = session.execute(
        update(AuthorizationCode)
        .where(
            AuthorizationCode.credential_pk.in_(credential_pks),
            AuthorizationCode.citizen_id == citizen_id,
            AuthorizationCode.used_at.is_(None),
            AuthorizationCode.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    tokens = session.execute(
        update(Token)
        .where(
            Token.citizen_id == citizen_id,
            Token.credential_pk.in_(credential_pks),
            Token.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    revoke_device_tokens(citizen_id=citizen_id, credential_pks=credential_pks)
    return codes.rowcount, tokens.rowcount  # type: ignore[attr-defined]


class IdToken(OpenIDCode):
    """ID tokens: the client's ``id_token_signed_response_alg`` with that algorithm's active
    key and its ``kid``, claims by scope, pairwise ``sub``, ``azp`` and the session's ``sid``."""

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        """Has this client had a code for ``nonce`` (OIDC Core §3.1.2.1, replay)? An index
        lookup (``ix_authorization_codes_client_nonce``) by a statement built once."""
        found = db.session.execute(
            _NONCE_USED, {"client_id": request.payload.client_id, "nonce": nonce}
        ).first()
        return found is not None

    def resolve_client_private_key(self, client: ActiveClient) -> Any:
        return key_store().signing_key(ID_TOKEN, client.id_token_signed_response_alg)

    def get_client_algorithm(self, client: ActiveClient) -> str:
        return client.id_token_signed_response_alg

    def get_encode_header(self, client: ActiveClient) -> dict[str, str]:
        alg = client.id_token_signed_response_alg
        return {"alg": alg, "kid": key_store().signing_key(ID_TOKEN, alg).kid or "", "typ": "JWT"}

    def get_client_claims(self, client: ActiveClient) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": current_app.config["ISSUER"],
            "aud": client.client_id,
            "azp": client.client_id,  # OIDC Core §2: optional with one audience, RPs accept it
            "iat": now,
            "exp": now + current_app.config["ID_TOKEN_TTL_SECONDS"],
        }

    def get_authorization_code_claims(self, authorization_code: Any) -> dict[str, Any]:
        claims: dict[str, Any] = super().get_authorization_code_claims(authorization_code)
        if authorization_code.login_id:
            claims["sid"] = session_identifier(authorization_code.login_id)
            verified = _verified_claims(authorization_code)
            if verified is not None:
                claims["verified_claims"] = verified
        return claims

    def generate_user_info(self, user: CitizenRecord, scope: str) -> UserInfo:
        wanted = ClaimsRequest.from_json(g.oidc_claims_request)
        return claims_for_scope(user, scope, client_id=g.oidc_client_id, also=wanted.id_token)

    def process_token(self, grant: Any, response: Any) -> Any:
        # generate_user_info has no request argument: what it needs goes through ``g``.
        g.oidc_client_id = grant.request.client.client_id
        code = grant.request.authorization_code
        g.oidc_claims_request = code.claims_request if code is not None else None
        g.oidc_citizen = grant.request.user
        return super().process_token(grant, response)


_LOGINS = cast(Table, LoginTransaction.__table__)
_LOGIN_PARAMS = select(_LOGINS.c.request_params).where(_LOGINS.c.id == bindparam("login_id"))


def _verified_claims(code: IssuedCode) -> dict[str, Any] | None:
    """``verified_claims`` for the ID token of ``code``, if its request asked for them.

    Only a citizen identified in person can have them, and only where a trust framework is
    configured; only then is the login's request read (its ``claims`` parameter). The citizen
    is the one ``authenticate_user`` read (``process_token`` hands it on: no second read).
    """
    trust_framework = current_app.config["VERIFIED_CLAIMS_TRUST_FRAMEWORK"]
    if not trust_framework:
        return None
    citizen: CitizenRecord = g.oidc_citizen
    if not citizen.proofing_document or citizen.proofed_on is None:
        return None
    params = db.session.execute(_LOGIN_PARAMS, {"login_id": code.login_id}).scalar()
    requested = requested_verified_claims(params.get("claims")) if params else None
    if not requested:
        return None
    return verified_claims_for(
        citizen,
        requested,
        scope=code.scope,
        client_id=code.client_id,
        trust_framework=trust_framework,
    )


class PrivateKeyJWT(JWTBearerClientAssertion):
    """``private_key_jwt`` (OIDC Core §9): registered keys only, single-use ``jti``."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self) -> None:
        super().__init__(validate_jti=True, leeway=30)

    def get_audiences(self) -> list[str]:
        return [current_app.config["ISSUER"]]  # FAPI 2.0 §5.3.2.1: the issuer, nothing else

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        try:
            header = jws.extract_compact(assertion.encode()).headers()
            # Keys come from the client's registration only, never from the assertion itself
            # (RFC 7515 §10.7, RFC 8725 §3.10): refuse header-supplied keys and key URLs.
            if any(name in header for name in HEADER_KEY_PARAMETERS):
                raise InvalidClientError(description="Keys in the assertion header are refused.")
            token = jwt.decode(assertion, resolve_key, algorithms=list(ASSERTION_ALGORITHMS))
        except (JoseError, ValueError, TypeError) as exc:
            raise InvalidClientError(description="Invalid client assertion.") from exc
        claims = token.claims
        now = int(time.time())
        exp, iat = claims.get("exp"), claims.get("iat", now)
        if not isinstance(exp, int) or not isinstance(iat, int):
            raise InvalidClientError(description="Client assertion needs numeric exp and iat.")
        if iat > now + self.leeway or exp - iat > MAX_ASSERTION_LIFETIME:
            raise InvalidClientError(description="Client assertion lifetime is out of bounds.")
        self.verify_claims(claims)
        return claims

    def verify_claims(self, claims: Any) -> None:
        """The issuer as a plain string is the only audience (FAPI 2.0 §5.3.2.1).

        Authlib accepts an ``aud`` array that merely contains the issuer; refusing every array
        (even ``[issuer]``) stops audience injection, where an assertion meant for another
        server also names us. Checked before the ``jti`` is recorded as used.
        """
        if claims.get("aud") != current_app.config["ISSUER"]:
            raise InvalidClientError(
                description="The assertion's 'aud' must be the issuer, as a single string."
            )
        super().verify_claims(claims)

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        if not isinstance(jti, str) or not 0 < len(jti) <= 200:
            return False
        expires = dt.datetime.fromtimestamp(int(claims["exp"]) + self.leeway, dt.UTC)
        session = db.session
        session.add(UsedAssertion(client_id=claims["sub"], jti=jti, expires_at=expires))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return False
        return True

    def resolve_client_public_key(self, client: ActiveClient) -> KeySet:
        if client.jwks:
            return KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]
        if client.jwks_uri:
            try:
                response = requests.get(client.jwks_uri, timeout=5, allow_redirects=False)
                response.raise_for_status()
                return KeySet.import_key_set(response.json())
            except (requests.RequestException, JoseError, ValueError, TypeError, KeyError):
                # An unreachable or broken JWKS verifies nothing: invalid_client, not a 500.
                log.warning("client %s: JWKS at %s unusable", client.client_id, client.jwks_uri)
        return KeySet([])


class BearerTokenProtector(ResourceProtector):
    """Bearer tokens in the ``Authorization`` header (RFC 6750 §2.1) or in a form-encoded POST
    body's ``access_token`` (§2.2), never in the query string (RFC 9700 §4.3.2)."""

    def parse_request_authorization(self, request: Any) -> tuple[Any, str]:
        body_token = _form_body_token()
        if body_token is None:
            try:
                return super().parse_request_authorization(request)
            except (MissingAuthorizationError, UnsupportedTokenTypeError) as exc:
                raise BearerTokenMissing(realm=USERINFO_REALM) from exc
        if request.headers.get("Authorization"):
            # RFC 6750 §2: one way of sending the token per request.
            raise InvalidRequestError("Send the access token once: header or body.")
        return self.get_token_validator(AccessTokenValidator.TOKEN_TYPE), body_token


def _form_body_token() -> str | None:
    """The ``access_token`` of an RFC 6750 §2.2 request: POST, ``application/x-www-form-
    urlencoded``, exactly one value; None if the request does not send the token that way."""
    if request.method != "POST" or request.mimetype != "application/x-www-form-urlencoded":
        return None
    values = request.form.getlist("access_token")
    if not values:
        return None
    if len(values) > 1 or not values[0]:
        raise InvalidRequestError("Send one access token.")
    return values[0]


class AccessTokenValidator(BearerTokenValidator):
    def authenticate_token(self, token_string: str) -> Token | None:
        """The token, while its client is active and the device that approved its login is
        usable (else invalid_token).

        ``revoke_device_grants`` marks a device's tokens revoked when it goes, and disabling or
        deleting a client its tokens; this check also holds for tokens those revocations did
        not see (a device blocked before tokens named their device, a token issued while its
        client was being disabled).
        """
        token = find_access_token(token_string)
        if token is not None:
            note_client(token.client_id)
        return token


class UserInfoView(UserInfoEndpoint):
    def get_issuer(self) -> str:
        return current_app.config["ISSUER"]

    def generate_user_info(self, user: Citizen, scope: str) -> UserInfo:
        token = self.resource_protector.acquire_token("openid")
        wanted = ClaimsRequest.from_json(token.claims_request)
        info = claims_for_scope(user, scope, client_id=token.client_id, also=wanted.userinfo)
        if wanted.verified_userinfo:  # Identity Assurance 1.0 §5: asked for at userinfo
            verified = verified_claims_for(
                user,
                list(wanted.verified_userinfo),
                scope=scope,
                client_id=token.client_id,
                trust_framework=current_app.config["VERIFIED_CLAIMS_TRUST_FRAMEWORK"],
            )
            if verified is not None:
                info["verified_claims"] = verified
        return info

    def resolve_private_key(self) -> Any:
        return key_store().signing_key()


class EndSession(EndSessionEndpoint):
    """RP-Initiated Logout 1.0: end the browser's session; redirect only where registered."""

    def get_server_jwks(self) -> KeySet:
        # Retired ID-token keys too: a hint signed before a retirement still shows that we
        # issued it (§2). They verify here only; they are never published and never sign.
        return key_store().verification_keys(ID_TOKEN)

    def get_algorithms(self) -> list[str]:
        return list(ID_TOKEN_ALGORITHMS)

    def end_session(self, end_session_request: Any) -> None:
        end_session()


def _query_token(token_string: str, token_type_hint: str | None) -> Token | RefreshToken | None:
    if token_type_hint == "refresh_token":  # noqa: S105 -- a hint's name, not a secret
        return find_refresh_token(token_string) or find_access_token(token_string)
    return find_access_token(token_string) or find_refresh_token(token_string)


class Revocation(RevocationEndpoint):
    """RFC 7009: a client revokes its own tokens; a refresh token takes its family with it
    (§2.1: the access tokens of the same grant too). Unknown tokens get 200 (§2.2)."""

    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return _query_token(token_string, token_type_hint)

    def revoke_token(self, token: Token | RefreshToken, request: OAuth2Request) -> None:
        if isinstance(token, RefreshToken):
            revoke_refresh_family(token, event="token_revoked")
            return
        session = db.session
        session.execute(
            update(Token)
            .where(Token.id == token.id, Token.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        record_event(
            "token_revoked",
            actor=f"client:{token.client_id}",
            subject=token.citizen_id,
            client_id=token.client_id,
            token_id=token.id,
        )
        session.commit()


class Introspection(IntrospectionEndpoint):
    """RFC 7662: a client introspects its own tokens; any other token is ``active: false``."""

    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return _query_token(token_string, token_type_hint)

    def check_permission(
        self, token: Token | RefreshToken, client: ActiveClient, request: OAuth2Request
    ) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: Token | RefreshToken) -> dict[str, Any]:
        refresh = isinstance(token, RefreshToken)
        expires = min(token.expires_at, token.idle_expires_at) if refresh else token.expires_at
        return {
            "active": True,
            "scope": token.scope,
            "client_id": token.client_id,
            "sub": pairwise_subject(token.citizen_id, client_id=token.client_id),
            "exp": int(expires.timestamp()),
            "iat": int(token.issued_at.timestamp()),
            # RFC 7662 §2.2: an access token's type (RFC 6749 §7.1); a refresh token's hint name.
            "token_type": "refresh_token" if refresh else "Bearer",
            "aud": token.client_id,
            "iss": current_app.config["ISSUER"],
        }


class RFC9207(IssuerParameter):
    def get_issuer(self) -> str:
        return current_app.config["ISSUER"]


CLIENTS_READ = "oidc_clients_read"  # ``g``: the clients this request has read


def _query_client(client_id: Any) -> ActiveClient | None:
    """The active client ``client_id``: a disabled or deleted one is unknown to every endpoint
    (oidc.clients). Read once per request (Authlib asks up to three times), never kept beyond
    it, so a client disabled or changed counts from the next request on, in every process."""
    if not isinstance(client_id, str) or len(client_id) > 64 or "\x00" in client_id:
        return None  # NUL: no such client, and PostgreSQL could not even look it up
    read: dict[str, ActiveClient | None] | None = (
        g.setdefault(CLIENTS_READ, {}) if has_request_context() else None
    )
    if read is not None and client_id in read:
        return read[client_id]
    client = active_client(client_id)
    if read is not None:
        read[client_id] = client
    if client is not None:
        note_client(client.client_id)
    return client


def _forget_clients_read(_exc: BaseException | None) -> None:
    g.pop(CLIENTS_READ, None)  # a test's app context may outlive its requests


def _save_refresh_token(
    value: str, request: OAuth2Request, parent: RefreshToken | None, scope: str
) -> RefreshToken:
    """A new family after a login, or ``parent``'s successor: same family, scope (RFC 6749 §6)
    and absolute expiry; a new idle expiry, never beyond the absolute one."""
    config = current_app.config
    now = utcnow()
    code: IssuedCode | None = request.authorization_code
    if parent is not None:
        family, expires = parent.family_id, parent.expires_at
        credential_pk, scope = parent.credential_pk, parent.scope
        claims_request = parent.claims_request
    else:
        family = secrets.token_hex(16)
        expires = now + dt.timedelta(days=config["REFRESH_TOKEN_TTL_DAYS"])
        credential_pk = code.credential_pk if code is not None else None
        claims_request = code.claims_request if code is not None else None
    record = RefreshToken(
        token_hash=hash_secret(value),
        family_id=family,
        parent_id=parent.id if parent is not None else None,
        client_id=request.client.get_client_id(),
        citizen_id=request.user.id,
        scope=scope,
        claims_request=claims_request,
        credential_pk=credential_pk,
        issued_at=now,
        expires_at=expires,
        idle_expires_at=min(expires, now + dt.timedelta(days=config["REFRESH_TOKEN_IDLE_DAYS"])),
    )
    db.session.add(record)
    return record


_TOKENS = cast(Table, Token.__table__)
_INSERT_TOKEN = insert(_TOKENS).returning(_TOKENS.c.id)


def _save_token(token: dict[str, Any], request: OAuth2Request) -> None:
    code: IssuedCode | None = request.authorization_code
    parent: RefreshToken | None = getattr(request, "refresh_token", None)
    now = utcnow()
    scope = token.get("scope", "")
    family = parent.family_id if parent is not None else None
    if token.get("refresh_token"):
        family = _save_refresh_token(token["refresh_token"], request, parent, scope).family_id
    if parent is not None:
        credential_pk, claims_request = parent.credential_pk, parent.claims_request
    else:
        credential_pk = code.credential_pk if code is not None else None
        claims_request = code.claims_request if code is not None else None
    wanted = ClaimsRequest.from_json(claims_request)
    client_id, citizen_id = request.client.get_client_id(), request.user.id
    claims = list(dict.fromkeys((*claim_names(scope), *wanted.names)))
    token_id = db.session.execute(
        _INSERT_TOKEN,
        {
            "access_token_hash": hash_secret(token["access_token"]),
            "client_id": client_id,
            "citizen_id": citizen_id,
            "scope": scope,
            "claims": claims,
            "claims_request": claims_request,
            "code_id": code.id if code is not None else None,
            "credential_pk": credential_pk,
            "refresh_family": family,
            "issued_at": now,
            "expires_at": now + dt.timedelta(seconds=int(token["expires_in"])),
        },
    ).scalar_one()
    record_event(
        "token_issued",
        actor=f"client:{client_id}",
        subject=citizen_id,
        client_id=client_id,
        token_id=token_id,
        claims=claims,
        acr=code.acr if code is not None else None,
    )
    db.session.commit()
    TOKEN_GRANTS.labels(client_id, request.payload.grant_type).inc()


def _generate_token(**_kwargs: Any) -> str:
    return secrets.token_urlsafe(32)


def authorization() -> AuthorizationServer:
    """The current application's authorization server."""
    return current_app.extensions["idserver.oidc"]  # type: ignore[no-any-return]


def init_app(app: Flask) -> None:
    authorization = AuthorizationServer()
    protector = BearerTokenProtector()
    app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {
        "authorization_code": app.config["ACCESS_TOKEN_TTL_SECONDS"],
        "refresh_token": app.config["ACCESS_TOKEN_TTL_SECONDS"],
    }
    app.config["OAUTH2_ACCESS_TOKEN_GENERATOR"] = _generate_token
    app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = _generate_token
    authorization.init_app(app, query_client=_query_client, save_token=_save_token)
    authorization.scopes_supported = [*SCOPES, OFFLINE_ACCESS]
    authorization.register_grant(AuthorizationCodeGrant, [S256Challenge(required=True), IdToken()])
    authorization.register_grant(RefreshTokenGrant)
    authorization.register_endpoint(Revocation())
    authorization.register_endpoint(Introspection())
    authorization.register_client_auth_method(PrivateKeyJWT.CLIENT_AUTH_METHOD, PrivateKeyJWT())
    authorization.register_extension(RFC9207())
    authorization.register_endpoint(UserInfoView(resource_protector=protector))
    authorization.register_endpoint(EndSession())
    protector.register_token_validator(AccessTokenValidator(realm=USERINFO_REALM))
    app.extensions["idserver.oidc"] = authorization
    app.teardown_request(_forget_clients_read)
