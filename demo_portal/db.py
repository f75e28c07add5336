"""Storage: one SQLAlchemy engine and scoped session per portal.

A demo portal owns a handful of tables; it creates them on start (``create_all``), so a fresh
clone needs no migration step. SQLite by default, any SQLAlchemy URL works the same.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from flask import Flask
from flask import current_app
from sqlalchemy import DateTime
from sqlalchemy import MetaData
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm import scoped_session
from sqlalchemy.orm import sessionmaker
from sqlalchemy.types import TypeDecorator

__all__ = ["UTCDateTime", "db", "utcnow"]

EXTENSION = "demo_portal.db"


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


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})

    @event.listens_for(engine, "connect")
    def _tune(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    return engine


class Database:
    """The Flask extension: ``db.session`` is the current portal's scoped session."""

    def init_app(self, app: Flask, metadata: MetaData) -> None:
        engine = _make_engine(app.config["DATABASE_URL"])
        metadata.create_all(engine)
        sessions = scoped_session(sessionmaker(bind=engine, expire_on_commit=False))
        app.extensions[EXTENSION] = (engine, sessions)

        @app.teardown_appcontext
        def _remove_session(_exc: BaseException | None) -> None:
            sessions.remove()

    @property
    def engine(self) -> Engine:
        return current_app.extensions[EXTENSION][0]

    @property
    def session(self) -> Session:
        return current_app.extensions[EXTENSION][1]()


db = Database()
