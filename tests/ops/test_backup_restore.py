"""Backup and restore as docs/operations.md describes them, tried end to end.

A citizen enrols and logs in; the database is backed up, lost and restored; then the same
phone logs in again as the same ``sub``, the audit chain verifies, /readyz is ready, and the
access token issued before the backup still works at /userinfo. The signing keys and the pairwise
salt are in the database: the restore needs the key-encryption key, and no keys folder.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from harness import ISSUER
from harness import complete_login
from harness import postgres_schema
from sqlalchemy import create_engine
from sqlalchemy import text
from sqlalchemy.engine import make_url

from idserver import create_app
from idserver.db import db
from idserver.keys.sealing import new_kek

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _pg_tool(name: str) -> str:
    found = shutil.which(name) or (str(PG_BIN / name) if (PG_BIN / name).exists() else None)
    if found is None:
        pytest.skip(f"{name} is not installed (PATH or {PG_BIN})")
    return found


def _cli(app: Any, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # the log goes to stderr


def _app(database_url: str, keys: Path, kek: str) -> Any:
    app = create_app(
        {
            "ISSUER": ISSUER,
            "DATABASE_URL": database_url,
            "KEYS_DIR": str(keys),
            "KEY_ENCRYPTION_KEY": kek,
            "SECRET_KEY": "test-secret-" + "x" * 32,
        }
    )
    app.config["TESTING"] = True
    _cli(app, "db", "upgrade")
    return app


def _enrol_and_log_in(app: Any, tmp_path: Path) -> tuple[Any, Any, dict[str, Any]]:
    """A citizen with a phone, a relying party, and one login's tokens."""
    from harness import Phone
    from harness import enrol_resident
    from harness import register_relying_party

    from idserver.phone.authenticator import SoftAuthenticator

    phone = Phone(app.test_client(), SoftAuthenticator(path=tmp_path / "phone.json"))
    enrol_resident(app, phone)
    rp = register_relying_party(app)
    tokens = complete_login(app.test_client(), rp, phone)
    return phone, rp, tokens


def _check_restored(app: Any, phone: Any, rp: Any, tokens: dict[str, Any]) -> None:
    browser = app.test_client()
    before = rp.verify_id_token(browser, tokens["id_token"])
    userinfo = browser.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert userinfo.status_code == 200 and userinfo.json["sub"] == before["sub"]
    phone.client = app.test_client()
    again = complete_login(app.test_client(), rp, phone)
    assert rp.verify_id_token(browser, again["id_token"])["sub"] == before["sub"]
    assert _cli(app, "audit", "verify") == {"ok": True}
    assert browser.get("/readyz").status_code == 200


@pytest.mark.skipif(
    not os.environ.get("IDSERVER_TEST_DATABASE_URL"),
    reason="needs PostgreSQL: set IDSERVER_TEST_DATABASE_URL",
)
def test_postgresql_dump_and_restore_of_the_schema(tmp_path):
    pg_dump, pg_restore, psql = (_pg_tool(n) for n in ("pg_dump", "pg_restore", "psql"))
    with postgres_schema("bk_") as url:
        schema = make_url(url).query["options"].split("=", 1)[1]
        libpq = make_url(url).set(drivername="postgresql", query={})
        dsn = libpq.render_as_string(hide_password=False)
        kek = new_kek()
        app = _app(url, tmp_path / "keys", kek)
        phone, rp, tokens = _enrol_and_log_in(app, tmp_path)

        dump = tmp_path / "idserver.dump"
        subprocess.run(
            [pg_dump, "-Fc", "-n", schema, "-f", str(dump), "-d", dsn], check=True, timeout=120
        )
        with app.app_context():
            db.engine.dispose()
        subprocess.run(
            [psql, "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", f"DROP SCHEMA {schema} CASCADE"],
            check=True,
            timeout=60,
        )
        engine = create_engine(url)
        with engine.connect() as connection:
            assert not connection.execute(
                text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}
            ).all()
        subprocess.run(
            [pg_restore, "--exit-on-error", "-d", dsn, str(dump)], check=True, timeout=120
        )
        engine.dispose()

        # `db upgrade` finds it at the newest revision; the keys come back with the database
        restored = _app(url, tmp_path / "no-keys-folder", kek)
        assert not (tmp_path / "keys").exists() and not (tmp_path / "no-keys-folder").exists()
        _check_restored(restored, phone, rp, tokens)
        with restored.app_context():
            db.engine.dispose()
        with app.app_context():
            db.engine.dispose()


def test_sqlite_online_backup_and_restore(tmp_path):
    live = tmp_path / "instance" / "idserver.sqlite3"
    kek = new_kek()
    app = _app(f"sqlite:///{live}", tmp_path / "keys", kek)
    phone, rp, tokens = _enrol_and_log_in(app, tmp_path)

    # the backup API copies a consistent snapshot, the WAL included, while the server runs
    backup = tmp_path / "backup" / "idserver.sqlite3"
    backup.parent.mkdir()
    with sqlite3.connect(live) as source, sqlite3.connect(backup) as target:
        source.backup(target)
    source.close()
    target.close()

    with app.app_context():
        db.engine.dispose()
    for lost in live.parent.glob("idserver.sqlite3*"):  # the file, its -wal and -shm
        lost.unlink()
    shutil.copy(backup, live)

    restored = _app(f"sqlite:///{live}", tmp_path / "no-keys-folder", kek)
    assert not (tmp_path / "keys").exists() and not (tmp_path / "no-keys-folder").exists()
    _check_restored(restored, phone, rp, tokens)
    with restored.app_context():
        db.engine.dispose()
