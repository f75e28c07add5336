"""Sign-ins the portal remembers on its side, so that logging out really ends them.

The session itself is Flask's signed cookie; it names a random session id whose SHA-256 is
kept in the ``portal_sessions`` table. Logging out deletes the row, so a copy of the cookie
(taken before the logout) is anonymous afterwards (OWASP ASVS 5.0 V7.4.1). Rows live at most
``MAX_AGE`` (also the longest a sign-in lasts), and expired ones are swept at each sign-in.

Each row also knows the Bürger-ID session (``sid``) and the resident (``sub``) it came from, in
``portal_session_logins`` (a table of its own, so an older demo database gains it on start):
a back-channel logout from Bürger-ID ends the portal sessions of that ``sid`` or ``sub``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from flask import current_app
from sqlalchemy import Column
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select

from .db import UTCDateTime
from .db import db
from .db import utcnow

__all__ = [
    "MAX_AGE",
    "end_session",
    "end_sessions_of",
    "session_is_open",
    "sessions_table",
    "start_session",
]

MAX_AGE = dt.timedelta(hours=8)
TABLE = "portal_sessions"
LOGINS = "portal_session_logins"


def sessions_table(metadata: MetaData) -> Table:
    """The table in a portal's metadata (added on first use, so ``create_all`` makes it)."""
    existing = metadata.tables.get(TABLE)
    if existing is not None:
        return existing
    return Table(
        TABLE,
        metadata,
        Column("id_hash", String(64), primary_key=True),
        Column("expires_at", UTCDateTime, nullable=False, index=True),
    )


def logins_table(metadata: MetaData) -> Table:
    """Which Bürger-ID session and resident each portal session belongs to."""
    existing = metadata.tables.get(LOGINS)
    if existing is not None:
        return existing
    return Table(
        LOGINS,
        metadata,
        Column("id_hash", String(64), primary_key=True),
        Column("idp_sid", String(128), nullable=True, index=True),
        Column("sub", String(255), nullable=False, index=True),
    )


def _table() -> Table:
    return sessions_table(current_app.config["PORTAL"].metadata)


def _logins() -> Table:
    return logins_table(current_app.config["PORTAL"].metadata)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start_session(*, sub: str, idp_sid: str | None) -> str:
    """A new server-side session of resident ``sub``, from Bürger-ID's session ``idp_sid``;
    returns its id for the cookie."""
    table, logins = _table(), _logins()
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    expired = select(table.c.id_hash).where(table.c.expires_at <= now)
    db.session.execute(delete(logins).where(logins.c.id_hash.in_(expired)))
    db.session.execute(delete(table).where(table.c.expires_at <= now))
    db.session.execute(insert(table).values(id_hash=_hash(session_id), expires_at=now + MAX_AGE))
    db.session.execute(insert(logins).values(id_hash=_hash(session_id), idp_sid=idp_sid, sub=sub))
    db.session.commit()
    return session_id


def session_is_open(session_id: object) -> bool:
    if not isinstance(session_id, str) or not session_id:
        return False
    table = _table()
    found = db.session.execute(
        select(table.c.id_hash).where(
            table.c.id_hash == _hash(session_id), table.c.expires_at > utcnow()
        )
    ).first()
    return found is not None


def end_session(session_id: object) -> None:
    if not isinstance(session_id, str) or not session_id:
        return
    table, logins = _table(), _logins()
    db.session.execute(delete(logins).where(logins.c.id_hash == _hash(session_id)))
    db.session.execute(delete(table).where(table.c.id_hash == _hash(session_id)))
    db.session.commit()


def end_sessions_of(*, sid: str | None, sub: str | None) -> int:
    """End the sessions of Bürger-ID session ``sid`` (of resident ``sub`` if given), or with
    no ``sid`` every session of ``sub`` (Back-Channel Logout 1.0 §2.7); returns how many."""
    table, logins = _table(), _logins()
    query = select(logins.c.id_hash)
    if sid is not None:
        query = query.where(logins.c.idp_sid == sid)
    if sub is not None:
        query = query.where(logins.c.sub == sub)
    if sid is None and sub is None:
        return 0
    hashes = list(db.session.scalars(query))
    if hashes:
        db.session.execute(delete(table).where(table.c.id_hash.in_(hashes)))
        db.session.execute(delete(logins).where(logins.c.id_hash.in_(hashes)))
    db.session.commit()
    return len(hashes)
