"""Storage: one SQLAlchemy engine and scoped session per application.

SQLite is the embedded default; any SQLAlchemy URL (PostgreSQL in production) works the same.
The schema is owned by Alembic (``idserver/migrations``); ``idserver db upgrade`` applies it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from typing import Any

from flask import Flask
from flask import current_app
from sqlalchemy import DateTime
from sqlalchemy import MetaData
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Session
from sqlalchemy.orm import scoped_session
from sqlalchemy.orm import sessionmaker
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every database (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL, foreign keys and a busy timeout.

    ``hide_parameters``: a logged database error shows its SQL, never the values (names,
    addresses, hashes) bound to it.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 10}, hide_parameters=True
        )
        _tune_sqlite(engine)
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20, hide_parameters=True)
    _ping_when_idle(engine)
    return engine


IDLE_PING_SECONDS = 10.0


def _ping_when_idle(engine: Engine) -> None:
    """Test a pooled connection before use only if it has been idle for a while.

    ``pool_pre_ping`` would cost a round trip on every checkout (about twenty per login); a
    connection that was in use moments ago is alive. One that idled, perhaps across a database
    restart, is pinged, and a dead one is replaced before the request sees it.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_connection.rollback()
        except Exception as exc:  # noqa: BLE001 -- any failure: the pool opens a new one
            raise DisconnectionError("idle connection is gone") from exc


class Database:
    """The Flask extension: ``db.session`` is the current application's scoped session."""

    def init_app(self, app: Flask) -> None:
        engine = make_engine(app.config["DATABASE_URL"])
        factory = sessionmaker(bind=engine, expire_on_commit=False)
        app.extensions["idserver.db"] = (engine, scoped_session(factory))

        @app.teardown_appcontext
        def _remove_session(_exc: BaseException | None) -> None:
            sessions = app.extensions["idserver.db"][1]
            try:
                sessions.remove()
            except DBAPIError as exc:
                # The server went away under an open transaction (a restart): the rollback on
                # close fails, SQLAlchemy has invalidated the connection, nothing was committed.
                # Drop the session instead of turning an answered request into a 500.
                if not (exc.connection_invalidated or isinstance(exc, OperationalError)):
                    raise
                log.warning("database connection lost while closing a session: %s", exc.orig)
                sessions.registry.clear()

    @property
    def engine(self) -> Engine:
        return current_app.extensions["idserver.db"][0]

    @property
    def session(self) -> Session:
        return current_app.extensions["idserver.db"][1]()

    def create_all(self) -> None:
        """Create the schema directly (tests); production uses ``idserver db upgrade``."""
        Base.metadata.create_all(self.engine)


db = Database()
