"""Registering relying parties, with their redirect URIs validated at registration time."""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy.exc import IntegrityError

from ..config import PROXIMITY_POLICIES
from ..db import db
from ..errors import IdServerError
from ..sessions import SELF_CLIENT_ID
from .claims import SCOPES
from .models import AUTH_METHODS
from .models import Client
from .models import hash_secret

__all__ = ["register_client", "self_client", "validate_redirect_uri"]

LOOPBACK = ("localhost", "127.0.0.1", "[::1]", "::1")


def validate_redirect_uri(uri: str) -> str:
    """RFC 9700 §4.1.3 and §2.6: absolute, no fragment, no wildcard, https unless loopback."""
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise IdServerError(
            f"redirect URI must be an absolute http(s) URL: {uri!r}", error="invalid_redirect_uri"
        )
    if parts.fragment or "#" in uri:
        raise IdServerError(
            f"redirect URI must not have a fragment: {uri!r}", error="invalid_redirect_uri"
        )
    if "*" in uri:
        raise IdServerError(
            f"redirect URI must not contain wildcards: {uri!r}", error="invalid_redirect_uri"
        )
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise IdServerError(f"redirect URI must use https: {uri!r}", error="invalid_redirect_uri")
    if parts.username or parts.password:
        raise IdServerError(
            f"redirect URI must not carry credentials: {uri!r}", error="invalid_redirect_uri"
        )
    return uri


def _validate_jwks(jwks: Any) -> dict[str, Any]:
    try:
        keys = KeySet.import_key_set(jwks)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise IdServerError(f"invalid JWKS: {exc}", error="invalid_client_metadata") from exc
    if any(key.is_private for key in keys.keys):
        raise IdServerError("the JWKS must hold public keys only", error="invalid_client_metadata")
    return {"keys": [key.as_dict(private=False) for key in keys.keys]}


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
    proximity_policy: str | None = None,
) -> tuple[Client, str | None]:
    """Store a new client; returns it and its secret (shown once, stored hashed).

    ``proximity_policy`` (`warn`/`deny`) overrides IDSERVER_PROXIMITY_POLICY for this client.
    """
    if not name.strip():
        raise IdServerError("a client needs a name", error="invalid_client_metadata")
    if not redirect_uris:
        raise IdServerError(
            "a client needs at least one redirect URI", error="invalid_redirect_uri"
        )
    uris = [validate_redirect_uri(u) for u in redirect_uris]
    logout_uris = [validate_redirect_uri(u) for u in post_logout_redirect_uris or []]
    scopes = scope.split()
    unknown = [s for s in scopes if s not in SCOPES]
    if "openid" not in scopes or unknown:
        raise IdServerError(
            f"scope must include openid and only {sorted(SCOPES)}", error="invalid_scope"
        )
    if auth_method not in AUTH_METHODS:
        raise IdServerError(
            f"auth method must be one of {AUTH_METHODS}", error="invalid_client_metadata"
        )
    if proximity_policy is not None and proximity_policy not in PROXIMITY_POLICIES:
        raise IdServerError(
            f"proximity policy must be one of {PROXIMITY_POLICIES}",
            error="invalid_client_metadata",
        )
    secret: str | None = None
    jwks: dict[str, Any] | None = None
    if auth_method == "client_secret_basic":
        if jwks_uri or jwks_file:
            raise IdServerError(
                "--jwks-uri/--jwks-file go with private_key_jwt", error="invalid_client_metadata"
            )
        secret = secrets.token_urlsafe(32)
    else:
        if bool(jwks_uri) == bool(jwks_file):
            raise IdServerError(
                "private_key_jwt needs exactly one of --jwks-uri or --jwks-file",
                error="invalid_client_metadata",
            )
        if jwks_uri:
            validate_redirect_uri(jwks_uri)
        if jwks_file:
            with open(jwks_file, encoding="utf-8") as handle:
                jwks = _validate_jwks(json.load(handle))
    client = Client(
        client_id=client_id or secrets.token_urlsafe(16),
        client_secret_hash=hash_secret(secret) if secret else None,
        name=name.strip(),
        redirect_uris=uris,
        post_logout_redirect_uris=logout_uris,
        scope=" ".join(dict.fromkeys(scopes)),
        token_endpoint_auth_method=auth_method,
        jwks_uri=jwks_uri,
        jwks=jwks,
        proximity_policy=proximity_policy,
    )
    if db.session.get(Client, client.client_id) is not None:
        raise IdServerError(f"client {client.client_id} exists", error="client_exists")
    db.session.add(client)
    db.session.commit()
    return client, secret


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
