"""Running Alembic from the application (``idserver db upgrade``, ``idserver serve``).

Several instances may start at once on an empty or old database; exactly one of them upgrades
the schema and the others wait for it, then find it at the newest revision:

- PostgreSQL: a session-level ``pg_advisory_lock`` on the migration connection, one fixed key
  for every instance, held around Alembic's upgrade (and released when that connection closes,
  should the process die).
- SQLite: the whole upgrade runs in one ``BEGIN IMMEDIATE`` transaction, SQLite's write lock on
  the file; the others wait for it (up to ``SQLITE_WAIT_SECONDS``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import event
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")
# Any fixed 64-bit number, the same in every instance and version: "BurgerID" in ASCII.
MIGRATION_LOCK_KEY = 0x4275726765724944
SQLITE_WAIT_SECONDS = 300

log = logging.getLogger(__name__)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _migration_engine(url: str) -> Engine:
    """An engine whose transactions on SQLite take the write lock at BEGIN, DDL included.

    pysqlite opens transactions only before data changes, so by default each CREATE TABLE
    would commit on its own and two instances could both find an empty schema.
    """
    from .db import make_engine

    engine = make_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _manual_transactions(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_WAIT_SECONDS * 1000}")

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextlib.contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    """On PostgreSQL, hold the advisory lock; elsewhere the transaction itself is the lock."""
    if connection.dialect.name != "postgresql":
        yield
        return
    key = {"key": MIGRATION_LOCK_KEY}
    if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar():
        log.info("another instance is upgrading the schema; waiting for it")
        connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
    connection.commit()
    try:
        yield
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)
        connection.commit()


def upgrade(app: Flask) -> str | None:
    """Bring the schema to the newest revision, one instance at a time; returns that revision."""
    engine = _migration_engine(app.config["DATABASE_URL"])
    config = alembic_config(app.config["DATABASE_URL"])
    try:
        with (
            engine.connect() as connection,
            _migration_lock(connection),
            connection.begin(),
        ):
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            revision = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    return revision


def revisions(app: Flask) -> tuple[str | None, str | None]:
    """(the database's revision, the newest revision this version knows)."""
    from .db import make_engine

    head = ScriptDirectory.from_config(
        alembic_config(app.config["DATABASE_URL"])
    ).get_current_head()
    engine = make_engine(app.config["DATABASE_URL"])
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    return current, head
