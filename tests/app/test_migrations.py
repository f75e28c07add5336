"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from idserver import create_app
from idserver.db import Base
from idserver.db import make_engine
from idserver.db_migrate import upgrade


def test_upgrade_from_empty_matches_the_models(app_config, tmp_path):
    app = create_app(app_config)
    assert upgrade(app) is not None
    engine = make_engine(app.config["DATABASE_URL"])
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


def test_upgrade_twice_is_harmless(app_config, tmp_path):
    app = create_app(app_config)
    assert upgrade(app) == upgrade(app)
