"""Starting, finding and ending a citizen's session at Bürger-ID.

The cookie holds only a random session id (Flask's signed session); the session itself lives
in the database, so logging out, a lost-phone revocation or a clerk can end it for every worker.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Collection

from flask import current_app
from flask import session
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from ..clerks import active_clerk
from ..db import db
from ..db import utcnow
from ..oidc.models import Client
from ..passkeys.models import usable_device
from .models import BrowserSession

__all__ = [
    "SELF_CLIENT_ID",
    "current_session",
    "end_device_sessions",
    "end_session",
    "safe_next",
    "self_client",
    "start_session",
]

SESSION_KEY = "sid"
SEEN_KEY = "seen"  # last request of the session, Unix seconds (in the signed cookie)
SELF_CLIENT_ID = "buergerid"
NEXT_PAGES = ("/account", "/admin")


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


def safe_next(value: object) -> str:
    """Only our own account and clerk pages are valid places to return to."""
    if isinstance(value, str) and any(
        value == page or value.startswith(page + "/") for page in NEXT_PAGES
    ):
        return current_app.config["ISSUER"] + value
    return current_app.config["ISSUER"] + "/account"


def start_session(
    *, citizen_id: str, acr: str, amr: list[str], login_id: str | None, credential_pk: int | None
) -> str:
    """A fresh session after a login approved by ``credential_pk``; the old cookie content is
    dropped (session rotation)."""
    session.clear()
    lifetime = dt.timedelta(seconds=current_app.config["SESSION_TTL_SECONDS"])
    record = BrowserSession(
        id=secrets.token_urlsafe(32),
        citizen_id=citizen_id,
        expires_at=utcnow() + lifetime,
        acr=acr,
        amr=amr,
        login_id=login_id,
        credential_pk=credential_pk,
    )
    db.session.add(record)
    db.session.commit()
    session[SESSION_KEY] = record.id
    session[SEEN_KEY] = int(time.time())
    return record.id


def current_session() -> BrowserSession | None:
    sid = session.get(SESSION_KEY)
    if not isinstance(sid, str):
        return None
    # Only while the device that approved the login is usable: this also holds for a session
    # started in the moment between the device check at ``consume`` and its revocation.
    record = db.session.scalars(
        select(BrowserSession).where(
            BrowserSession.id == sid, usable_device(BrowserSession.credential_pk)
        )
    ).first()
    if record is None or record.ended_at is not None or record.expires_at <= utcnow():
        session.pop(SESSION_KEY, None)
        return None
    # Idle timeout (OWASP ASVS 5.0 V7.3.1); the absolute one is ``expires_at`` (V7.3.2).
    now = int(time.time())
    seen = session.get(SEEN_KEY)
    if not isinstance(seen, int) or now - seen > _idle_limit(record, idle=now - seen):
        end_session()
        return None
    if now - seen >= 60:  # refresh the signed timestamp at most once a minute
        session[SEEN_KEY] = now
    return record


def _idle_limit(record: BrowserSession, *, idle: int) -> int:
    """How long this session may stay unused: shorter for a clerk's (ASVS 5.0 V7.3, privileged).

    The same session opens the clerk console, so it is a clerk's wherever it is used. The clerk
    role is looked up only when the session has been idle longer than a clerk's may be.
    """
    config = current_app.config
    limit: int = config["SESSION_IDLE_SECONDS"]
    clerk_limit = min(limit, config["CLERK_SESSION_IDLE_SECONDS"])
    if idle > clerk_limit and active_clerk(record.citizen_id) is not None:
        return clerk_limit
    return limit


def end_session() -> None:
    sid = session.get(SESSION_KEY)
    session.clear()
    if isinstance(sid, str):
        db.session.execute(
            update(BrowserSession)
            .where(BrowserSession.id == sid, BrowserSession.ended_at.is_(None))
            .values(ended_at=utcnow())
        )
        db.session.commit()


def end_device_sessions(*, citizen_id: str, credential_pks: Collection[int]) -> int:
    """End the open sessions of logins these devices approved; returns how many.

    Runs in the caller's transaction (a device's revocation); the caller commits.
    """
    if not credential_pks:
        return 0
    result = db.session.execute(
        update(BrowserSession)
        .where(
            BrowserSession.citizen_id == citizen_id,
            BrowserSession.credential_pk.in_(credential_pks),
            BrowserSession.ended_at.is_(None),
        )
        .values(ended_at=utcnow())
    )
    return result.rowcount  # type: ignore[attr-defined,no-any-return]
