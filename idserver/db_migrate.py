"""Running Alembic from the application (``idserver db upgrade``, ``idserver serve``)."""

from __future__ import annotations

import os

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from flask import Flask

MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(app: Flask) -> str | None:
    """Bring the schema to the newest revision; returns that revision."""
    from .db import make_engine

    engine = make_engine(app.config["DATABASE_URL"])
    config = alembic_config(app.config["DATABASE_URL"])
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with engine.connect() as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
    engine.dispose()
    return revision
