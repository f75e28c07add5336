"""A fresh database for a run: schema, many residents, enrolled soft phones, one relying party.

Residents are bulk-loaded (``executemany`` on SQLite, ``COPY`` on PostgreSQL) because a million
ORM inserts would take longer than the benchmark. Phones are enrolled the way a real phone is,
through ``/api/v1/enrolments`` on an in-process app, so their credentials are genuine.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import secrets
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import Date
from sqlalchemy import DateTime
from sqlalchemy import create_engine
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.engine import make_url

from idserver import create_app
from idserver.citizens.models import Citizen
from idserver.citizens.service import issue_activation_code
from idserver.db import db
from idserver.db_migrate import upgrade
from idserver.oidc.clients import register_client
from idserver.oidc.models import AuthorizationCode
from idserver.phone.authenticator import SoftAuthenticator

__all__ = [
    "REDIRECT_URI",
    "UNREACHED_LIMITS",
    "SCOPE",
    "BenchDatabase",
    "Enrolled",
    "bulk_load_citizens",
    "bulk_load_codes",
    "count_citizens",
    "enrol_phones",
    "fresh_database",
    "make_app",
    "register_relying_party",
]

REDIRECT_URI = "http://localhost:8001/callback"
# Every virtual user comes from 127.0.0.1 and a few phones approve thousands of logins, so the
# rate limits are raised out of reach; they are still counted, so their cost is measured.
UNREACHED_LIMITS = {
    "RATE_LIMIT_ACTIVATION": "1000000/minute",
    "RATE_LIMIT_LOGIN": "1000000/minute",
    "RATE_LIMIT_APPROVAL": "1000000/minute",
    "RATE_LIMIT_TOKEN": "1000000/minute",
}
SCOPE = "openid profile address"
GIVEN = ("Erika", "Max", "Fatma", "Lukas", "Anna", "Mehmet", "Sophie", "Jonas", "Olga", "Paul")
FAMILY = ("Mustermann", "Schmidt", "Yılmaz", "Müller", "Nowak", "Weber", "Becker", "Wagner")
STREETS = ("Kampstraße", "Hauptstraße", "Bahnhofstraße", "Lindenweg", "Am Markt", "Ostwall")
CITIES = (("44137", "Dortmund"), ("44135", "Dortmund"), ("44139", "Dortmund"))


@dataclass
class BenchDatabase:
    kind: str  # sqlite | postgresql
    url: str
    drop: Callable[[], None]


def fresh_database(kind: str, workdir: Path, *, base_url: str | None = None) -> BenchDatabase:
    """An empty SQLite file, or a new schema in the PostgreSQL database at ``base_url``."""
    if kind == "sqlite":
        path = workdir / "bench.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return BenchDatabase("sqlite", f"sqlite:///{path}", lambda: None)
    if not base_url:
        raise ValueError("PostgreSQL needs IDSERVER_TEST_DATABASE_URL (or --database-url)")
    base = make_url(base_url)
    schema = "bench_" + secrets.token_hex(5)
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    admin.dispose()

    def drop() -> None:
        engine = create_engine(base)
        with engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        engine.dispose()

    url = base.update_query_dict({"options": f"-csearch_path={schema}"})
    return BenchDatabase("postgresql", url.render_as_string(hide_password=False), drop)


def make_app(*, database_url: str, issuer: str, keys_dir: Path, secret_key: str) -> Flask:
    """An in-process app on the benchmark's database and keys, its schema brought up to date."""
    app = create_app(
        {
            "ISSUER": issuer,
            "DATABASE_URL": database_url,
            "KEYS_DIR": str(keys_dir),
            "SECRET_KEY": secret_key,
            "LOG_LEVEL": "WARNING",
            **UNREACHED_LIMITS,
        }
    )
    upgrade(app)
    return app


def _citizen_rows(count: int, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    created = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    start = dt.date(1930, 1, 1).toordinal()
    for _ in range(count):
        given = rng.choice(GIVEN)
        family = rng.choice(FAMILY)
        postcode, city = rng.choice(CITIES)
        yield (
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            given,
            family,
            dt.date.fromordinal(start + rng.randrange(30_000)),
            f"{rng.choice(STREETS)} {rng.randrange(1, 200)}",
            postcode,
            city,
            f"{given.lower()}.{rng.randrange(10**9)}@example.org",
            created,
        )


def _same(value: Any) -> Any:
    return value


COLUMNS = ("id", "given_name", "family_name", "birthdate", "street", "postcode", "city", "email")


def bulk_load_citizens(
    engine: Engine, count: int, *, seed: int = 1, batch: int = 50_000
) -> dict[str, Any]:
    """Insert ``count`` residents quickly; returns timing and a few of their ids."""
    rng = random.Random(seed)
    keep = set(rng.sample(range(count), min(count, 512))) if count else set()
    kept: list[str] = []
    started = time.perf_counter()
    columns = (*COLUMNS, "created_at")
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "postgresql":
            cursor = raw.cursor()
            names = ", ".join(columns)
            with cursor.copy(f"COPY citizens ({names}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for index, row in enumerate(_citizen_rows(count, rng)):
                    copy.write_row(row)
                    if index in keep:
                        kept.append(row[0])
            raw.commit()
            # Vacuum and analyse now, so that autovacuum does not do it during the measurement.
            driver = raw.driver_connection  # type: ignore[attr-defined]
            driver.autocommit = True
            driver.execute("VACUUM (ANALYZE) citizens")
            driver.autocommit = False
        else:
            # the exact text SQLAlchemy stores for a Date and a (naive UTC) DateTime
            dialect = engine.dialect
            as_date = Date().dialect_impl(dialect).bind_processor(dialect) or _same
            created_of = DateTime().dialect_impl(dialect).bind_processor(dialect) or _same
            cursor = raw.cursor()
            marks = ", ".join("?" for _ in columns)
            sql = f"INSERT INTO citizens ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
            rows: list[tuple[Any, ...]] = []
            for index, row in enumerate(_citizen_rows(count, rng)):
                rows.append((*row[:3], as_date(row[3]), *row[4:8], created_of(row[8])))
                if index in keep:
                    kept.append(row[0])
                if len(rows) >= batch:
                    cursor.executemany(sql, rows)
                    rows.clear()
            if rows:
                cursor.executemany(sql, rows)
            raw.commit()
    finally:
        raw.close()
    seconds = time.perf_counter() - started
    return {
        "citizens": count,
        "seconds": round(seconds, 2),
        "rows_per_second": round(count / seconds) if seconds else None,
        "sample_ids": kept,
    }


def bulk_load_codes(
    engine: Engine, count: int, *, client_id: str, citizen_id: str, batch: int = 50_000
) -> dict[str, Any]:
    """Past logins' (used, expired) authorization codes, as a server in service for a while has."""
    table = AuthorizationCode.__table__
    long_ago = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with engine.begin() as connection:
        for _ in range(count):
            rows.append(
                {
                    "code_hash": secrets.token_hex(32),
                    "client_id": client_id,
                    "citizen_id": citizen_id,
                    "redirect_uri": REDIRECT_URI,
                    "scope": SCOPE,
                    "nonce": secrets.token_urlsafe(12),
                    "code_challenge": secrets.token_urlsafe(32),
                    "code_challenge_method": "S256",
                    "auth_time": int(long_ago.timestamp()),
                    "acr": "urn:buergerid:acr:phone-number-matching",
                    "amr": ["mfa", "swk", "user"],
                    "created_at": long_ago,
                    "expires_at": long_ago,
                    "used_at": long_ago,
                }
            )
            if len(rows) >= batch:
                connection.execute(table.insert(), rows)
                rows.clear()
        if rows:
            connection.execute(table.insert(), rows)
    seconds = time.perf_counter() - started
    return {"authorization_codes": count, "seconds": round(seconds, 2)}


def count_citizens(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Citizen)) or 0


@dataclass
class Enrolled:
    citizen_id: str
    authenticator: SoftAuthenticator


def enrol_phones(app: Flask, citizen_ids: list[str], *, origin: str) -> list[Enrolled]:
    """Enrol one soft phone per resident through the phone API, as the phone app does."""
    client = app.test_client()
    phones = []
    for citizen_id in citizen_ids:
        with app.app_context():
            record, code = issue_activation_code(citizen_id)
            activation_id = record.id
        begun = client.post(
            "/api/v1/enrolments", json={"activation_id": activation_id, "code": code}
        )
        if begun.status_code != 200:
            raise RuntimeError(f"enrolment refused: {begun.get_data(as_text=True)}")
        assert begun.json is not None
        authenticator = SoftAuthenticator()
        credential = authenticator.create_credential(begun.json["options"], origin=origin)
        finished = client.post(
            f"/api/v1/enrolments/{begun.json['enrolment_id']}",
            json={"credential": credential, "name": "Bench phone"},
        )
        if finished.status_code != 201:
            raise RuntimeError(f"enrolment refused: {finished.get_data(as_text=True)}")
        phones.append(Enrolled(citizen_id, authenticator))
    return phones


def register_relying_party(app: Flask) -> tuple[str, str]:
    with app.app_context():
        client, secret = register_client(
            name="Bewohnerparkausweis (bench)", redirect_uris=[REDIRECT_URI], scope=SCOPE
        )
        assert secret is not None
        return client.client_id, secret


def default_base_url() -> str | None:
    return os.environ.get("IDSERVER_TEST_DATABASE_URL") or None
