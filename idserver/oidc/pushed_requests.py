"""Pushed authorization requests (RFC 9126): kept once validated, used once at /authorize.

A client pushes its authorization request to ``/par`` with its client authentication; the
request is validated there as ``/authorize`` would validate it, stored, and answered with a
``request_uri`` (``urn:ietf:params:oauth:request_uri:`` and 256 random bits, §2.2) that only
the client that pushed it can use, once, within ``IDSERVER_PAR_TTL_SECONDS``::

    push ──► stored ──take (client, not used, not expired)──► used
                 └─────────────── expires ──────────────────► (purged)

Only its SHA-256 is stored. ``take_pushed_request`` is a conditional UPDATE: of two browsers
presenting the same ``request_uri``, exactly one gets the request.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy import update

from ..db import db
from ..db import utcnow
from .models import PushedAuthorizationRequest
from .models import hash_secret

__all__ = ["REQUEST_URI_PREFIX", "push_authorization_request", "take_pushed_request"]

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"  # RFC 9126 §2.2


def push_authorization_request(*, client_id: str, params: dict[str, str]) -> tuple[str, int]:
    """Store a validated request for ``client_id``; returns its ``request_uri`` and lifetime."""
    ttl = int(current_app.config["PAR_TTL_SECONDS"])
    request_uri = REQUEST_URI_PREFIX + secrets.token_urlsafe(32)
    db.session.add(
        PushedAuthorizationRequest(
            request_uri_hash=hash_secret(request_uri),
            client_id=client_id,
            params=dict(params),
            expires_at=utcnow() + dt.timedelta(seconds=ttl),
        )
    )
    db.session.commit()
    return request_uri, ttl


def take_pushed_request(request_uri: Any, *, expected_client_id: Any) -> dict[str, str] | None:
    """The parameters pushed as ``request_uri`` by ``expected_client_id``, used up now; None for
    an unknown, expired, used or another client's one (and then nothing changes)."""
    if not isinstance(request_uri, str) or not isinstance(expected_client_id, str):
        return None
    if not request_uri.startswith(REQUEST_URI_PREFIX) or len(request_uri) > 200:
        return None
    now = utcnow()
    uri_hash = hash_secret(request_uri)
    taken = db.session.execute(
        update(PushedAuthorizationRequest)
        .where(
            PushedAuthorizationRequest.request_uri_hash == uri_hash,
            PushedAuthorizationRequest.client_id == expected_client_id[:64],
            PushedAuthorizationRequest.used_at.is_(None),
            PushedAuthorizationRequest.expires_at > now,
        )
        .values(used_at=now)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        return None
    params = db.session.scalars(
        select(PushedAuthorizationRequest.params).where(
            PushedAuthorizationRequest.request_uri_hash == uri_hash
        )
    ).one()
    db.session.commit()
    return dict(params)
