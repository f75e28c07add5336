"""Relying parties: registering them, changing them, and taking them out of service.

A client's life::

    add ──► active ◄──enable/disable──► disabled
              │                            │
              └────────── delete ──────────┴──► deleted (kept, never active again)

``update`` and ``rotate_secret`` work on active and disabled clients. A disabled or deleted
client is unknown to every endpoint (``oidc.server._query_client``): /authorize shows an error
page and redirects nowhere (RFC 6749 §4.1.2.1), /token answers ``invalid_client``, and its
access tokens stop working at /userinfo. Disabling and deleting also revoke its live tokens and
void its unredeemed codes. Deleting keeps the row (its secret hash removed), so the citizens'
record of what the client received (its tokens, their consent withdrawals) and the audit log
keep naming it, and its ``client_id`` is never given to another client. Every change is an
audit event naming the actor.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from dataclasses import fields
from typing import Any
from typing import cast
from urllib.parse import urlsplit

from flask import current_app
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from ..audit import record_event
from ..config import ID_TOKEN_ALGORITHMS
from ..config import PROXIMITY_POLICIES
from ..config import SIGNING_ALGORITHM
from ..db import db
from ..db import utcnow
from ..sessions import SELF_CLIENT_ID
from .claims import SCOPES
from .errors import ClientExists
from .errors import InvalidClientMetadata
from .errors import InvalidClientScope
from .errors import InvalidRedirectUri
from .errors import UnknownClient
from .models import AUTH_METHODS
from .models import GRANT_TYPES
from .models import SECRET_METHODS
from .models import ActiveClient
from .models import AuthorizationCode
from .models import Client
from .models import RefreshToken
from .models import Token
from .models import hash_secret

__all__ = [
    "KEEP",
    "active_client",
    "delete_client",
    "disable_client",
    "enable_client",
    "find_client",
    "list_clients",
    "register_client",
    "rotate_client_secret",
    "self_client",
    "update_client",
    "validate_redirect_uri",
]

LOOPBACK = ("localhost", "127.0.0.1", "[::1]", "::1")


def validate_redirect_uri(uri: str) -> str:
    """RFC 9700 §4.1.3 and §2.6: absolute, no fragment, no wildcard, https unless loopback."""
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidRedirectUri(f"redirect URI must be an absolute http(s) URL: {uri!r}")
    if parts.fragment or "#" in uri:
        raise InvalidRedirectUri(f"redirect URI must not have a fragment: {uri!r}")
    if "*" in uri:
        raise InvalidRedirectUri(f"redirect URI must not contain wildcards: {uri!r}")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise InvalidRedirectUri(f"redirect URI must use https: {uri!r}")
    if parts.username or parts.password:
        raise InvalidRedirectUri(f"redirect URI must not carry credentials: {uri!r}")
    return uri


def _validate_jwks(jwks: Any) -> dict[str, Any]:
    try:
        keys = KeySet.import_key_set(jwks)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise InvalidClientMetadata(f"invalid JWKS: {exc}") from exc
    if any(key.is_private for key in keys.keys):
        raise InvalidClientMetadata("the JWKS must hold public keys only")
    return {"keys": [key.as_dict(private=False) for key in keys.keys]}


class _Keep:
    """``update_client``'s default: leave this field as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()


def _checked_name(name: str) -> str:
    if not name.strip():
        raise InvalidClientMetadata("a client needs a name")
    return name.strip()


def _checked_redirect_uris(redirect_uris: list[str]) -> list[str]:
    if not redirect_uris:
        raise InvalidRedirectUri("a client needs at least one redirect URI")
    return [validate_redirect_uri(u) for u in redirect_uris]


def _checked_scope(scope: str) -> str:
    scopes = scope.split()
    unknown = [s for s in scopes if s not in SCOPES]
    if "openid" not in scopes or unknown:
        raise InvalidClientScope(f"scope must include openid and only {sorted(SCOPES)}")
    return " ".join(dict.fromkeys(scopes))


def _checked_auth_method(auth_method: str) -> str:
    if auth_method not in AUTH_METHODS:
        raise InvalidClientMetadata(f"auth method must be one of {AUTH_METHODS}")
    return auth_method


def _checked_proximity_policy(proximity_policy: str | None) -> str | None:
    if proximity_policy is not None and proximity_policy not in PROXIMITY_POLICIES:
        raise InvalidClientMetadata(
            f"proximity policy must be one of {PROXIMITY_POLICIES}",
        )
    return proximity_policy


def _checked_logout_uri(uri: str | None) -> str | None:
    """Back-Channel Logout 1.0 §2.2, Front-Channel Logout 1.0 §2: absolute, no fragment; held to
    the redirect URIs' rules (https unless loopback). None or "": none."""
    if not uri:
        return None
    try:
        return validate_redirect_uri(uri)
    except InvalidRedirectUri as exc:
        raise InvalidClientMetadata(str(exc).replace("redirect URI", "logout URI")) from exc


def _checked_id_token_alg(alg: str) -> str:
    """OIDC Dynamic Client Registration §2 ``id_token_signed_response_alg``: one we sign with."""
    if alg not in ID_TOKEN_ALGORITHMS:
        raise InvalidClientMetadata(
            f"ID token algorithm must be one of {ID_TOKEN_ALGORITHMS}",
        )
    return alg


@dataclass(frozen=True)
class _Keys:
    """How a client authenticates: a new secret (shown once) or its public keys."""

    secret: str | None = None
    jwks_uri: str | None = None
    jwks: dict[str, Any] | None = None


def _checked_keys(
    auth_method: str, *, jwks_uri: str | None, jwks_file: str | None, new_secret: bool = True
) -> _Keys:
    """A fresh secret for the secret methods, exactly one key source for ``private_key_jwt``."""
    if auth_method in SECRET_METHODS:
        if jwks_uri or jwks_file:
            raise InvalidClientMetadata("--jwks-uri/--jwks-file go with private_key_jwt")
        return _Keys(secret=secrets.token_urlsafe(32) if new_secret else None)
    if bool(jwks_uri) == bool(jwks_file):
        raise InvalidClientMetadata(
            "private_key_jwt needs exactly one of --jwks-uri or --jwks-file",
        )
    if jwks_uri:
        return _Keys(jwks_uri=validate_redirect_uri(jwks_uri))
    assert jwks_file is not None
    with open(jwks_file, encoding="utf-8") as handle:
        return _Keys(jwks=_validate_jwks(json.load(handle)))


def register_client(
    *,
    name: str,
    redirect_uris: list[str],
    scope: str = "openid profile",
    auth_method: str = "client_secret_basic",
    jwks_uri: str | None = None,
    jwks_file: str | None = None,
    post_logout_redirect_uris: list[str] | None = None,
    client_id: str | None = None,
    id_token_alg: str = SIGNING_ALGORITHM,
    proximity_policy: str | None = None,
    grant_types: list[str] | None = None,
    backchannel_logout_uri: str | None = None,
    frontchannel_logout_uri: str | None = None,
    require_par: bool = False,
    actor: str | None = None,
    **audit: Any,
) -> tuple[Client, str | None]:
    """Store a new client; returns it and its secret (shown once, stored hashed).

    ``proximity_policy`` (`warn`/`deny`) overrides IDSERVER_PROXIMITY_POLICY for this client;
    ``id_token_alg`` (ES256 or RS256) is its ``id_token_signed_response_alg``.
    With an ``actor`` (the CLI: ``operator``) the registration is a ``client_added`` audit event,
    ``audit`` adding fields (the CLI's ``os_user``); set-up code that registers before anyone
    operates the server (the demo's and the benchmark's seeding, tests) passes none.
    ``grant_types`` (RFC 7591 §2) always holds ``authorization_code``; ``refresh_token`` lets
    the client ask for ``offline_access``. ``backchannel_logout_uri`` and
    ``frontchannel_logout_uri`` hear when a session that logged in to it ends (oidc.logout).
    ``require_par``: its authorization requests only
    through /par (RFC 9126 §6 ``require_pushed_authorization_requests``).
    """
    checked_name = _checked_name(name)
    uris = _checked_redirect_uris(redirect_uris)
    logout_uris = [validate_redirect_uri(u) for u in post_logout_redirect_uris or []]
    checked_scope = _checked_scope(scope)
    backchannel = _checked_logout_uri(backchannel_logout_uri)
    frontchannel = _checked_logout_uri(frontchannel_logout_uri)
    _checked_auth_method(auth_method)
    _checked_proximity_policy(proximity_policy)
    _checked_id_token_alg(id_token_alg)
    keys = _checked_keys(auth_method, jwks_uri=jwks_uri, jwks_file=jwks_file)
    unknown_grants = set(grant_types or ()) - set(GRANT_TYPES)
    if unknown_grants:
        raise InvalidClientMetadata(f"grant types must be among {GRANT_TYPES}")
    grants = ["authorization_code", *(g for g in GRANT_TYPES[1:] if g in (grant_types or ()))]
    client = Client(
        client_id=client_id or secrets.token_hex(16),  # never begins with "-": a CLI argument
        client_secret_hash=hash_secret(keys.secret) if keys.secret else None,
        name=checked_name,
        redirect_uris=uris,
        post_logout_redirect_uris=logout_uris,
        scope=checked_scope,
        token_endpoint_auth_method=auth_method,
        jwks_uri=keys.jwks_uri,
        jwks=keys.jwks,
        id_token_signed_response_alg=id_token_alg,
        proximity_policy=proximity_policy,
        grant_types=grants,
        backchannel_logout_uri=backchannel,
        frontchannel_logout_uri=frontchannel,
        require_pushed_authorization_requests=bool(require_par),
    )
    if db.session.get(Client, client.client_id) is not None:
        # A deleted client's id too: a new client must not inherit its citizens' records.
        raise ClientExists(f"client {client.client_id} exists")
    db.session.add(client)
    db.session.flush()
    if actor is not None:
        record_event(
            "client_added",
            actor=actor,
            client_id=client.client_id,
            **_described(client),
            **audit,
        )
    db.session.commit()
    return client, keys.secret


def _described(client: Client) -> dict[str, Any]:
    """The registration as the audit log keeps it: metadata, never secrets or keys."""
    return {
        "name": client.name,
        "redirect_uris": list(client.redirect_uris),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris or []),
        "scope": client.scope,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "jwks_uri": client.jwks_uri,
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
        "proximity_policy": client.proximity_policy,
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "frontchannel_logout_uri": client.frontchannel_logout_uri,
        "require_pushed_authorization_requests": bool(client.require_pushed_authorization_requests),
    }


def list_clients(*, include_deleted: bool = False) -> list[Client]:
    """Every registered relying party (not the built-in one), oldest first."""
    query = select(Client).where(Client.client_id != SELF_CLIENT_ID)
    if not include_deleted:
        query = query.where(Client.deleted_at.is_(None))
    return list(db.session.scalars(query.order_by(Client.created_at, Client.client_id)))


_CLIENTS = cast(Table, Client.__table__)
_ACTIVE_CLIENT = select(*(_CLIENTS.c[field.name] for field in fields(ActiveClient))).where(
    _CLIENTS.c.client_id == bindparam("client_id"),
    _CLIENTS.c.disabled_at.is_(None),
    _CLIENTS.c.deleted_at.is_(None),
)


def active_client(client_id: str) -> ActiveClient | None:
    """The client ``client_id`` while it is active (a disabled or deleted one is unknown), as a
    plain row read by one statement built once: every endpoint of a login asks for it."""
    row = db.session.execute(_ACTIVE_CLIENT, {"client_id": client_id}).first()
    return ActiveClient(*row) if row is not None else None


def find_client(client_id: str) -> Client:
    """A registered relying party, deleted ones too; NotFound for the built-in one."""
    client = db.session.get(Client, client_id[:64]) if client_id != SELF_CLIENT_ID else None
    if client is None:
        raise UnknownClient(f"no client {client_id!r}")
    return client


def _changeable(client_id: str) -> Client:
    client = find_client(client_id)
    if client.deleted_at is not None:
        raise UnknownClient(f"client {client_id!r} was deleted")
    return client


def update_client(
    client_id: str,
    *,
    actor: str = "operator",
    name: Any = KEEP,
    redirect_uris: Any = KEEP,
    post_logout_redirect_uris: Any = KEEP,
    scope: Any = KEEP,
    auth_method: Any = KEEP,
    jwks_uri: str | None = None,
    jwks_file: str | None = None,
    id_token_alg: Any = KEEP,
    proximity_policy: Any = KEEP,
    backchannel_logout_uri: Any = KEEP,
    frontchannel_logout_uri: Any = KEEP,
    require_par: Any = KEEP,
    **audit: Any,
) -> tuple[Client, str | None]:
    """Change a client's registration, validated as in ``register_client``.

    Returns the client and, when it moves from ``private_key_jwt`` to a secret method, its new
    secret (shown once). Moving to ``private_key_jwt`` removes the secret; new keys
    (``jwks_uri``/``jwks_file``) replace the registered ones. ``proximity_policy=None`` returns
    the client to IDSERVER_PROXIMITY_POLICY. Nothing is stored unless every value is valid.
    """
    client = _changeable(client_id)
    values: dict[str, Any] = {}
    if name is not KEEP:
        values["name"] = _checked_name(name)
    if redirect_uris is not KEEP:
        values["redirect_uris"] = _checked_redirect_uris(list(redirect_uris))
    if post_logout_redirect_uris is not KEEP:
        values["post_logout_redirect_uris"] = [
            validate_redirect_uri(u) for u in post_logout_redirect_uris
        ]
    if scope is not KEEP:
        values["scope"] = _checked_scope(scope)
    if proximity_policy is not KEEP:
        values["proximity_policy"] = _checked_proximity_policy(proximity_policy)
    if backchannel_logout_uri is not KEEP:
        values["backchannel_logout_uri"] = _checked_logout_uri(backchannel_logout_uri)
    if frontchannel_logout_uri is not KEEP:
        values["frontchannel_logout_uri"] = _checked_logout_uri(frontchannel_logout_uri)
    if require_par is not KEEP:
        values["require_pushed_authorization_requests"] = bool(require_par)
    if id_token_alg is not KEEP:
        values["id_token_signed_response_alg"] = _checked_id_token_alg(id_token_alg)
    method = client.token_endpoint_auth_method if auth_method is KEEP else auth_method
    _checked_auth_method(method)
    secret: str | None = None
    was_secret = client.token_endpoint_auth_method in SECRET_METHODS
    if method in SECRET_METHODS:
        keys = _checked_keys(method, jwks_uri=jwks_uri, jwks_file=jwks_file, new_secret=False)
        if not was_secret:  # from private_key_jwt: a secret instead of the keys
            secret = secrets.token_urlsafe(32)
            values.update(client_secret_hash=hash_secret(secret), jwks_uri=None, jwks=None)
    elif was_secret or jwks_uri or jwks_file:
        keys = _checked_keys(method, jwks_uri=jwks_uri, jwks_file=jwks_file)
        values.update(client_secret_hash=None, jwks_uri=keys.jwks_uri, jwks=keys.jwks)
    values["token_endpoint_auth_method"] = method
    changed = sorted(k for k, v in values.items() if getattr(client, k) != v)
    if not changed:
        return client, None
    for key in changed:
        setattr(client, key, values[key])
    record_event(
        "client_updated",
        actor=actor,
        client_id=client.client_id,
        changed=[k for k in changed if k != "client_secret_hash"],
        **_described(client),
        **audit,
    )
    db.session.commit()
    return client, secret


def rotate_client_secret(client_id: str, *, actor: str = "operator", **audit: Any) -> str:
    """A new secret for a secret-method client, returned once; the old one stops working."""
    client = _changeable(client_id)
    if client.token_endpoint_auth_method not in SECRET_METHODS:
        raise InvalidClientMetadata(
            f"client {client.client_id} authenticates with private_key_jwt and has no secret",
        )
    secret = secrets.token_urlsafe(32)
    client.client_secret_hash = hash_secret(secret)
    record_event("client_secret_rotated", actor=actor, client_id=client.client_id, **audit)
    db.session.commit()
    return secret


def _end_grants(client_id: str) -> tuple[int, int]:
    """Void the client's unredeemed codes and revoke its live access and refresh tokens (the
    caller commits); returns (codes, access tokens)."""
    now = utcnow()
    codes = db.session.execute(
        update(AuthorizationCode)
        .where(
            AuthorizationCode.client_id == client_id,
            AuthorizationCode.used_at.is_(None),
            AuthorizationCode.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    tokens = db.session.execute(
        update(Token)
        .where(Token.client_id == client_id, Token.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.client_id == client_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return codes.rowcount, tokens.rowcount  # type: ignore[attr-defined]


def _transition(
    client_id: str,
    event: str,
    *,
    when: Any,
    values: dict[str, Any],
    end_grants: bool,
    actor: str,
    audit: dict[str, Any],
) -> Client:
    """Move a client on by one conditional UPDATE; only the caller whose UPDATE matched
    records ``event`` (and ends the client's grants), so a repeat changes nothing."""
    client = _changeable(client_id)
    changed = db.session.execute(
        update(Client)
        .where(Client.client_id == client.client_id, Client.deleted_at.is_(None), when)
        .values(**values)
    )
    if changed.rowcount == 1:  # type: ignore[attr-defined]
        ended: dict[str, Any] = {}
        if end_grants:
            ended["codes_voided"], ended["tokens_revoked"] = _end_grants(client.client_id)
        record_event(event, actor=actor, client_id=client.client_id, **ended, **audit)
    db.session.commit()
    db.session.refresh(client)
    return client


def disable_client(client_id: str, *, actor: str = "operator", **audit: Any) -> Client:
    """Take the client out of service until ``enable_client``; ends its grants. Idempotent."""
    return _transition(
        client_id,
        "client_disabled",
        when=Client.disabled_at.is_(None),
        values={"disabled_at": utcnow()},
        end_grants=True,
        actor=actor,
        audit=audit,
    )


def enable_client(client_id: str, *, actor: str = "operator", **audit: Any) -> Client:
    """Put a disabled client back in service (the grants disabling ended stay ended)."""
    return _transition(
        client_id,
        "client_enabled",
        when=Client.disabled_at.is_not(None),
        values={"disabled_at": None},
        end_grants=False,
        actor=actor,
        audit=audit,
    )


def delete_client(client_id: str, *, actor: str = "operator", **audit: Any) -> Client:
    """Take the client out of service for good; its row, the citizens' records and the audit
    log stay (see the module docstring)."""
    return _transition(
        client_id,
        "client_deleted",
        when=Client.deleted_at.is_(None),
        values={"deleted_at": utcnow(), "client_secret_hash": None},
        end_grants=True,
        actor=actor,
        audit=audit,
    )


def self_client() -> Client:
    """The built-in client through which citizens and clerks log in to Bürger-ID itself."""
    client = db.session.get(Client, SELF_CLIENT_ID)
    if client is None:
        issuer = current_app.config["ISSUER"]
        client = Client(
            client_id=SELF_CLIENT_ID,
            client_secret_hash=None,  # it never uses the token endpoint
            name="Bürger-ID",
            redirect_uris=[f"{issuer}/account"],
            post_logout_redirect_uris=[],
            scope="openid",
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 -- a method name
        )
        db.session.add(client)
        try:
            db.session.commit()
        except IntegrityError:  # another worker created it first
            db.session.rollback()
            client = db.session.get(Client, SELF_CLIENT_ID)
    assert client is not None
    return client
