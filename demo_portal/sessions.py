"""Sign-ins the portal remembers on its side, so that logging out really ends them.

The session itself is Flask's signed cookie; it names a random session id whose SHA-256 is
kept in the ``portal_sessions`` table. Logging out deletes the row, so a copy of the cookie
(taken before the logout) is anonymous afterwards (OWASP ASVS 5.0 V7.4.1). Rows live at most
``MAX_AGE`` (also the longest a sign-in lasts), and expired ones are swept at each sign-in.
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

__all__ = ["MAX_AGE", "end_session", "session_is_open", "sessions_table", "start_session"]

MAX_AGE = dt.timedelta(hours=8)
TABLE = "portal_sessions"


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


def _table() -> Table:
    return sessions_table(current_app.config["PORTAL"].metadata)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start_session() -> str:
    """A new server-side session; returns its id for the cookie."""
    table = _table()
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.execute(delete(table).where(table.c.expires_at <= now))
    db.session.execute(insert(table).values(id_hash=_hash(session_id), expires_at=now + MAX_AGE))
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
    table = _table()
    db.session.execute(delete(table).where(table.c.id_hash == _hash(session_id)))
    db.session.commit()
