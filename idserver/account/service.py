"""Starting, finding and ending a citizen's session at Bürger-ID.

The cookie holds only a random session id (Flask's signed session); the session itself lives
in the database, so logging out, a lost-phone revocation or a clerk can end it for every worker.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time

from flask import current_app
from flask import session
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from ..clerks import active_clerk
from ..db import db
from ..db import utcnow
from ..oidc.models import Client
from .models import BrowserSession

__all__ = [
    "SELF_CLIENT_ID",
    "current_session",
    "end_all_sessions",
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


def start_session(*, citizen_id: str, acr: str, amr: list[str], login_id: str | None) -> str:
    """A fresh session after a login; the old cookie content is dropped (session rotation)."""
    session.clear()
    lifetime = dt.timedelta(seconds=current_app.config["SESSION_TTL_SECONDS"])
    record = BrowserSession(
        id=secrets.token_urlsafe(32),
        citizen_id=citizen_id,
        expires_at=utcnow() + lifetime,
        acr=acr,
        amr=amr,
        login_id=login_id,
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
    record = db.session.get(BrowserSession, sid)
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


def end_all_sessions(citizen_id: str) -> int:
    """End every open session of a citizen (lost phone, clerk action); returns how many."""
    result = db.session.execute(
        update(BrowserSession)
        .where(BrowserSession.citizen_id == citizen_id, BrowserSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )
    db.session.commit()
    return result.rowcount  # type: ignore[attr-defined,no-any-return]
