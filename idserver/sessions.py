"""Starting, finding and ending a browser session at Bürger-ID itself (infrastructure, as in
Warehouse's ``warehouse/sessions.py``: the account pages, the clerk console, the QR login and
the OIDC logout all build on it).

The cookie holds only a random session id (Flask's signed session); the session itself lives
in the database, so logging out, a lost-phone revocation or a clerk can end it for every worker.

Sessions know neither devices, clerks nor relying parties: ``create_app`` plugs in the rules
that need them (``init_app(app, usable_device=…, privileged=…, ended=(…, …))``), the way
Authlib's server takes hooks. Each ``ended`` hook hears of every session that ends here (a
logout, the idle timeout, a device revoked or lost, a new login in the same browser taking over),
in the transaction that ends it, so logout reaches the relying parties of every protocol
(oidc.logout, saml.logout).
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from typing import cast

from flask import Flask
from flask import current_app
from flask import session
from sqlalchemy import JSON
from sqlalchemy import ColumnElement
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from .db import Base
from .db import UTCDateTime
from .db import db
from .db import utcnow

__all__ = [
    "SELF_CLIENT_ID",
    "BrowserSession",
    "current_session",
    "end_device_sessions",
    "end_session",
    "init_app",
    "safe_next",
    "start_session",
]

SESSION_KEY = "sid"
SEEN_KEY = "seen"  # last request of the session, Unix seconds (in the signed cookie)
SELF_CLIENT_ID = "buergerid"  # the built-in client through which sessions here are started
NEXT_PAGES = ("/account", "/admin")


class BrowserSession(Base):
    __tablename__ = "browser_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    citizen_id: Mapped[str] = mapped_column(ForeignKey("citizens.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)  # for the purge
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    acr: Mapped[str] = mapped_column(String(100))
    amr: Mapped[list[str]] = mapped_column(JSON, default=list)
    login_id: Mapped[str | None] = mapped_column(String(64))
    # The device that approved the login: revoking or suspending it ends the session.
    credential_pk: Mapped[int | None] = mapped_column(
        ForeignKey("credentials.id", ondelete="SET NULL")
    )

    __table_args__ = (Index("ix_browser_sessions_citizen", "citizen_id"),)


@dataclass(frozen=True)
class SessionRules:
    """What the domain decides about a session, plugged in by ``create_app``."""

    # SQL condition on ``BrowserSession.credential_pk``: the approving device is still usable.
    usable_device: Callable[[Any], ColumnElement[bool]]
    # Whether this citizen's session is a privileged one (a clerk's), with the shorter idle limit.
    privileged: Callable[[str], bool]
    # Told of sessions ending, in the transaction that ends them, in this order; ``successor``:
    # the session of a new login in the same browser, by the same citizen, that takes this one
    # over.
    ended: tuple[Callable[..., None], ...]


def init_app(
    app: Flask,
    *,
    usable_device: Callable[[Any], ColumnElement[bool]],
    privileged: Callable[[str], bool],
    ended: Sequence[Callable[..., None]] = (),
) -> None:
    app.extensions["sessions"] = SessionRules(
        usable_device=usable_device, privileged=privileged, ended=tuple(ended)
    )


def _tell_ended(session_ids: Collection[str], *, successor: str | None = None) -> None:
    for hook in _rules().ended:
        hook(session_ids, successor=successor)


def _rules() -> SessionRules:
    rules: SessionRules = current_app.extensions["sessions"]
    return rules


def safe_next(value: object) -> str:
    """Only our own account and clerk pages are valid places to return to."""
    if isinstance(value, str) and any(
        value == page or value.startswith(page + "/") for page in NEXT_PAGES
    ):
        return current_app.config["ISSUER"] + value
    return current_app.config["ISSUER"] + "/account"


# Built once (issue 16): every login inserts one. Core, not the unit of work: the row is not
# read back through the session, and ``created_at`` still gets its column default.
_NEW_SESSION = insert(cast(Table, BrowserSession.__table__))


def start_session(
    *,
    citizen_id: str,
    acr: str,
    amr: list[str],
    login_id: str | None,
    credential_pk: int | None,
    also: Callable[[str], None] | None = None,
) -> str:
    """A fresh session after a login approved by ``credential_pk``; the old cookie content is
    dropped (session rotation).

    The browser's earlier session ends: taken over by the new one if it is the same citizen's
    (``ended(…, successor=…)``), logged out otherwise. ``also(session_id)`` writes what else
    the login leaves behind (oidc: the client the session logged in to) in the same
    transaction, which commits once.
    """
    previous = session.get(SESSION_KEY)
    session.clear()
    lifetime = dt.timedelta(seconds=current_app.config["SESSION_TTL_SECONDS"])
    session_id = secrets.token_urlsafe(32)
    db.session.connection().execute(
        _NEW_SESSION,
        {
            "id": session_id,
            "citizen_id": citizen_id,
            "expires_at": utcnow() + lifetime,
            "acr": acr,
            "amr": amr,
            "login_id": login_id,
            "credential_pk": credential_pk,
        },
    )
    if isinstance(previous, str):
        ended = db.session.execute(
            update(BrowserSession)
            .where(BrowserSession.id == previous, BrowserSession.ended_at.is_(None))
            .values(ended_at=utcnow())
            .returning(BrowserSession.citizen_id)
        ).all()
        if ended:
            same_citizen = ended[0].citizen_id == citizen_id
            _tell_ended([previous], successor=session_id if same_citizen else None)
    if also is not None:
        also(session_id)
    db.session.commit()
    session[SESSION_KEY] = session_id
    session[SEEN_KEY] = int(time.time())
    return session_id


def current_session() -> BrowserSession | None:
    sid = session.get(SESSION_KEY)
    if not isinstance(sid, str):
        return None
    # Only while the device that approved the login is usable: this also holds for a session
    # started in the moment between the device check at ``consume`` and its revocation.
    record = db.session.scalars(
        select(BrowserSession).where(
            BrowserSession.id == sid, _rules().usable_device(BrowserSession.credential_pk)
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
    if idle > clerk_limit and _rules().privileged(record.citizen_id):
        return clerk_limit
    return limit


def end_session() -> None:
    sid = session.get(SESSION_KEY)
    session.clear()
    if isinstance(sid, str):
        ended = db.session.execute(
            update(BrowserSession)
            .where(BrowserSession.id == sid, BrowserSession.ended_at.is_(None))
            .values(ended_at=utcnow())
            .returning(BrowserSession.id)
        ).all()
        if ended:
            _tell_ended([sid])
        db.session.commit()


def end_device_sessions(*, citizen_id: str, credential_pks: Collection[int]) -> int:
    """End the open sessions of logins these devices approved; returns how many.

    Runs in the caller's transaction (a device's revocation); the caller commits.
    """
    if not credential_pks:
        return 0
    ended = db.session.scalars(
        update(BrowserSession)
        .where(
            BrowserSession.citizen_id == citizen_id,
            BrowserSession.credential_pk.in_(credential_pks),
            BrowserSession.ended_at.is_(None),
        )
        .values(ended_at=utcnow())
        .returning(BrowserSession.id)
    ).all()
    if ended:
        _tell_ended(list(ended))
    return len(ended)
